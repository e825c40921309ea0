//! The one entry point of every request: classify (Docker proxy, API,
//! metrics), authenticate, apply the route's policy, dispatch, then write
//! the access-log line and the request metrics.
//!
//! The Docker proxy prefix is recognised by hand before the route table:
//! it is the hot path, and it must not pay for the generic machinery.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::Surface;
use crate::access::scope::{self as access_scope, ScopeDenial};
use crate::api::{self, ApiRequest, Match, Policy, Routes};
use crate::body::ResponseBody;
use crate::error::ApiError;
use crate::metrics::{self, UpstreamState};
use crate::proxy::Tunnels;
use crate::response::{AuthedUser, InternalCause};
use crate::state::AppState;

/// What every request is dispatched with. The compiled API routes and the
/// proxy's tunnels belong here, above `api/` and `proxy/`, so that the
/// state the handlers share ([`AppState`]) depends on neither.
pub struct Router {
    pub state: Arc<AppState>,
    routes: Routes,
    /// Hijacked connections (attach, exec), drained on shutdown.
    pub tunnels: Tunnels,
}

impl Router {
    pub fn new(state: Arc<AppState>) -> Router {
        let tunnels = Tunnels::new(state.config.max_tunnels, state.metrics.tunnels_open.clone());
        Router { state, routes: api::table(), tunnels }
    }
}

pub async fn handle(
    router: &Router,
    req: Request<Incoming>,
    peer: SocketAddr,
    tls: bool,
    surface: Surface,
) -> Response<ResponseBody> {
    let state = &router.state;
    let start = Instant::now();
    let method = req.method().clone();
    // A clone shares the request target's bytes: no allocation.
    let uri = req.uri().clone();
    let client_ip = client_ip(state, &req, peer);
    let (mut resp, route) = if let Some(e) = crate::server::protocol::reject(&req) {
        (e.into_response(), "unmatched")
    } else if head_bytes(&req) > state.config.max_header_bytes {
        // hyper's buffer limit is approximate (a head that arrives in one
        // read may pass it), so the configured size is enforced here exactly.
        let e = ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "Request header fields too large",
            format!("The limit is {} bytes", state.config.max_header_bytes),
        );
        let mut r = e.into_response();
        r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        (r, "unmatched")
    } else if let Some(refused) = crate::server::csrf::refuse(state, &router.routes, &req, tls) {
        refused
    } else {
        route(router, req, client_ip, surface).await
    };
    // A body refused as too large (or that stalled) was left unread, so this
    // connection cannot carry another request: say so, or a client may reuse it and fail.
    if matches!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT) {
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
        crate::server::activity::record(state, &method, uri.path(), route, &resp, client_ip).await;
    }
    let status = resp.status().as_u16();
    crate::server::csrf::security_headers(resp.headers_mut());
    let elapsed = start.elapsed();
    if route != "/api/endpoints/{id}/docker/*" {
        let m = metrics::method_label(&method);
        state.metrics.http_requests.with_label_values(&[route, m, &status.to_string()]).inc();
        state.metrics.http_duration.with_label_values(&[route, m]).observe(elapsed.as_secs_f64());
    }
    // The access log is built only when it is enabled: with
    // `--log-level ...,berth::access=off` a request pays one cached check.
    if tracing::enabled!(target: "berth::access", tracing::Level::INFO) {
        access_log(&resp, &method, uri.path(), status, elapsed, client_ip);
    }
    resp
}

fn access_log(
    resp: &Response<ResponseBody>,
    method: &Method,
    path: &str,
    status: u16,
    elapsed: std::time::Duration,
    client: IpAddr,
) {
    // Bodies Berth builds carry no Content-Length yet (hyper adds it on
    // write): their exact size hint is the length.
    let bytes = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .or_else(|| http_body::Body::size_hint(resp.body()).exact());
    crate::server::access_log::write(&crate::server::access_log::Line {
        method,
        path,
        status,
        elapsed,
        user: resp.extensions().get::<AuthedUser>().map(|u| u.0),
        bundle: resp.extensions().get::<crate::response::AuthedBundle>().map(|b| b.0),
        bytes,
        client,
        cause: resp.extensions().get::<InternalCause>().map(|c| c.0.as_str()),
        denied: resp.extensions().get::<crate::access::deny::DeniedBy>().map(|d| d.0.name()),
    });
}

/// Size of the request line and headers as sent (give or take optional
/// whitespace): what `max_header_bytes` limits.
fn head_bytes(req: &Request<Incoming>) -> usize {
    let target = req.uri().path_and_query().map_or(1, |pq| pq.as_str().len());
    let line = req.method().as_str().len() + target + " HTTP/1.1\r\n ".len();
    line + req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + ": \r\n".len()).sum::<usize>() + 2
}

/// The client's address: the TCP peer, or the nearest untrusted hop of
/// `X-Forwarded-For` when the peer is a configured trusted proxy. A client
/// cannot pick its own address by sending the header directly.
fn client_ip(state: &AppState, req: &Request<Incoming>, peer: SocketAddr) -> IpAddr {
    let peer_ip = peer.ip();
    if state.config.trusted_proxies.is_empty() || !state.config.trusted_proxies.contains(&peer_ip) {
        return peer_ip;
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for v in req.headers().get_all("x-forwarded-for") {
        if let Ok(s) = v.to_str() {
            hops.extend(s.split(',').filter_map(|h| h.trim().parse::<IpAddr>().ok()));
        }
    }
    hops.into_iter().rev().find(|ip| !state.config.trusted_proxies.contains(ip)).unwrap_or(peer_ip)
}

async fn route(
    router: &Router,
    req: Request<Incoming>,
    client_ip: IpAddr,
    surface: Surface,
) -> (Response<ResponseBody>, &'static str) {
    let state = &router.state;
    // A clone shares the request target's bytes, so the path can be
    // borrowed while the request itself moves on.
    let uri = req.uri().clone();
    let path = uri.path();
    if surface == Surface::MetricsOnly {
        if path == "/metrics" && req.method() == Method::GET {
            return (metrics_response(state), "/metrics");
        }
        return (ApiError::new(StatusCode::NOT_FOUND, "Not found", "").into_response(), "unmatched");
    }
    if let Some(kind) = crate::terminal::route(path) {
        let resp = Box::pin(crate::terminal::handle(state, &router.tunnels, req, kind, client_ip)).await;
        return (resp, kind.template());
    }
    if let Some(fan) = crate::fanout::route(path) {
        let resp = Box::pin(crate::fanout::handle(state, &router.tunnels, req, fan)).await;
        return (resp, fan.kind.template());
    }
    if let Some((raw_id, docker_path)) = crate::proxy::route::split_docker_path(path) {
        let resp = crate::proxy::route::handle(state, &router.tunnels, req, raw_id, docker_path).await;
        return (resp, "/api/endpoints/{id}/docker/*");
    }
    if path == crate::openapi::PATH {
        return (openapi_response(req.method()), crate::openapi::PATH);
    }
    if path == "/metrics" {
        if req.method() != Method::GET {
            return (method_not_allowed(), "/metrics");
        }
        if state.config.metrics_auth {
            match state.authenticate(&req) {
                // Every endpoint's figures: an admin route about no one
                // endpoint, so a scoped key is asked like one.
                Ok(p) if p.is_admin() => {
                    if let Some(Err(d)) = p.scope().map(|s| access_scope::api(s, &Method::GET, "/metrics", true)) {
                        return (d.to_error().into_response(), "/metrics");
                    }
                }
                Ok(_) => return (ApiError::access_denied().into_response(), "/metrics"),
                Err(e) => return (e.into_response(), "/metrics"),
            }
        }
        return (metrics_response(state), "/metrics");
    }
    if !path.starts_with("/api/") && path != "/api" {
        return (ApiError::new(StatusCode::NOT_FOUND, "Not found", "No such route").into_response(), "unmatched");
    }
    let (policy, handler, template, params) = match router.routes.find(req.method(), path) {
        Match::Found { policy, handler, template, params } => (policy, handler, template, params),
        Match::MethodNotAllowed(r) => return (method_not_allowed_for(r), r.path),
        Match::NotFound => {
            return (
                ApiError::new(StatusCode::NOT_FOUND, "Not found", "No such API route").into_response(),
                "unmatched",
            )
        }
    };
    // Portainer's admin-init watchdog: once the window has passed with no
    // administrator, the API answers only status and public settings.
    if !state.admin_init_open() && state.identity.admin_count() == 0 && !api::OPEN_WITHOUT_ADMIN.contains(&template) {
        let e = ApiError::new(StatusCode::SEE_OTHER, "Administrator initialization timeout", "").with_header(
            header::HeaderName::from_static("redirect-reason"),
            HeaderValue::from_static("AdminInitTimeout"),
        );
        return (e.into_response(), template);
    }
    let principal = if policy == Policy::Public {
        None
    } else {
        match state.authenticate(&req) {
            Ok(p) => Some(p),
            Err(e) => return (e.into_response(), template),
        }
    };
    if let Some(p) = &principal {
        let allowed = match policy {
            Policy::Admin => p.is_admin(),
            Policy::TeamLeader => p.is_admin() || state.identity.is_any_leader(p.id()),
            Policy::Public | Policy::Authenticated | Policy::Restricted => true,
        };
        if !allowed {
            let mut r = ApiError::access_denied().into_response();
            r.extensions_mut().insert(AuthedUser(p.id()));
            return (r, template);
        }
        // Scoped API keys only: JWTs and unrestricted keys pay this branch.
        if let Some(scope) = p.scope() {
            let verdict = api_scope(state, scope, req.method(), template, policy == Policy::Admin, &params, &uri);
            if let Err(d) = verdict {
                let mut r = d.to_error().into_response();
                r.extensions_mut().insert(AuthedUser(p.id()));
                return (r, template);
            }
        }
    }
    let caller = principal.as_ref().map(crate::response::Caller::of);
    let (parts, body) = req.into_parts();
    let body = Some(crate::body::ClientBody::new(body, state.config.body_read_timeout));
    let api_req = ApiRequest { parts, body, params, principal, client_ip, max_json_body: state.config.max_json_body };
    let mut resp = match handler(state.clone(), api_req).await {
        Ok(r) => r,
        Err(e) => {
            if e.status().is_server_error() {
                tracing::warn!(route = template, status = e.status().as_u16(), message = %e.message, cause = e.internal.as_deref().unwrap_or(""), "request failed");
            }
            e.into_response()
        }
    };
    if let Some(c) = caller {
        c.mark(&mut resp);
    }
    (resp, template)
}

/// A scoped key on a management route: its access level, then every
/// endpoint the request names, in the route (`/api/endpoints/{id}/...`,
/// `{endpointId}`) or in an `endpointId` query parameter (stacks). A value
/// that is not an id is refused for an endpoint-limited key rather than
/// left for a handler that might read it otherwise.
fn api_scope(
    state: &AppState,
    scope: &crate::store::model::KeyScope,
    method: &Method,
    template: &str,
    admin_route: bool,
    params: &[(String, String)],
    uri: &http::Uri,
) -> Result<(), ScopeDenial> {
    access_scope::api(scope, method, template, admin_route)?;
    if !scope.limits_endpoints() {
        return Ok(());
    }
    let check = |raw: &str| {
        let Ok(id) = raw.trim().parse::<u64>() else {
            return access_scope::endpoint(scope, 0, None);
        };
        access_scope::endpoint(scope, id, state.endpoints.get(id).map(|e| e.record.group_id))
    };
    if let Some(name) = access_scope::endpoint_param(template) {
        if let Some((_, v)) = params.iter().find(|(k, _)| k == name) {
            check(v)?;
        }
    }
    if let Some(q) = uri.query() {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q).unwrap_or_default();
        for (_, v) in pairs.iter().filter(|(k, _)| k == "endpointId") {
            check(v)?;
        }
    }
    Ok(())
}

fn metrics_response(state: &AppState) -> Response<ResponseBody> {
    // Pool sizes and breakers are read at scrape time: cheap, never stale,
    // and nothing kept per endpoint between scrapes.
    let upstreams: Vec<UpstreamState> = state
        .endpoints
        .all()
        .iter()
        .map(|e| UpstreamState {
            endpoint: e.record.id,
            idle: e.upstream.idle_connections(),
            open: e.upstream.open_connections(),
            breaker: e.upstream.breaker_state() as u8,
        })
        .collect();
    let text = state.metrics.render_with_upstreams(&upstreams);
    let mut r = Response::new(ResponseBody::full(text));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    r
}

/// The API document: public (see [`crate::openapi::PATH`]), built once.
/// HEAD gets GET's headers (hyper drops the body).
fn openapi_response(method: &Method) -> Response<ResponseBody> {
    if method != Method::GET && method != Method::HEAD {
        let mut r = method_not_allowed();
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let mut r = Response::new(ResponseBody::full(crate::openapi::document()));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn method_not_allowed() -> Response<ResponseBody> {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed", "").into_response()
}

fn method_not_allowed_for(r: &api::Route) -> Response<ResponseBody> {
    let allow: Vec<&str> = r.methods.iter().map(|op| op.method.as_str()).collect();
    let mut resp =
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed", format!("Allowed: {}", allow.join(", ")))
            .into_response();
    if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
        resp.headers_mut().insert(header::ALLOW, v);
    }
    resp
}
