//! Container terminals over WebSocket: `GET /api/websocket/exec` and `GET
//! /api/websocket/attach`, the routes Portainer's clients open shells
//! through (browsers cannot hijack an HTTP connection, so they cannot use
//! the Docker proxy's `Upgrade: tcp` directly).
//!
//! Before anything is upgraded, in this order: credentials (headers or the
//! session cookie, never `?token=`; a cookie session must come from Berth's
//! own origin, which `server/csrf.rs` checks like a state-changing
//! request), the query, the endpoint and the caller's access to it, the
//! WebSocket handshake, then the object itself: a standard user must be
//! allowed the exec instance's container or the container by the
//! restricted-access policy (Portainer checks only the endpoint). Then
//! Berth asks Docker to start the exec (`Tty`) or attach, with `Upgrade:
//! tcp`; only when Docker has switched protocols does the client get its
//! `101`, so every failure up to there is an ordinary JSON error.
//!
//! The session itself (frames, pings, limits, closing when access ends) is
//! [`bridge`]'s.

mod bridge;
mod text;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use serde_json::Value;

use crate::access::{scope, ResourceKind};
use crate::api::doc::{Doc, Query, QueryType, Reply};
use crate::auth::Principal;
use crate::body::{ResponseBody, UpstreamBody};
use crate::endpoints::EndpointEntry;
use crate::error::ApiError;
use crate::proxy::restrict::Restricted;
use crate::proxy::{ProxyTarget, Tunnels};
use crate::state::AppState;
use crate::store::model::Id;

/// Time allowed for Docker to answer the start or attach request.
const DOCKER_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Docker's ids are 64 hex digits; a prefix of one also names the object.
const MAX_ID_LEN: usize = 64;

/// Which terminal a route opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An exec instance created through the Docker proxy, started here.
    Exec,
    /// A running container's main process.
    Attach,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Exec, Kind::Attach];

    /// The route template (the request metrics' and access log's label).
    pub fn template(self) -> &'static str {
        match self {
            Kind::Exec => "/api/websocket/exec",
            Kind::Attach => "/api/websocket/attach",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Exec => "exec",
            Kind::Attach => "attach",
        }
    }

    fn resource(self) -> ResourceKind {
        match self {
            Kind::Exec => ResourceKind::Exec,
            Kind::Attach => ResourceKind::Container,
        }
    }
}

/// What the API document says of both terminal routes.
pub const DOC: Doc =
    Doc::new("Open a terminal (WebSocket)", &[Reply::empty(101, "Switching to the WebSocket protocol")])
        .describe(
            "A WebSocket: exec starts an exec instance created through the Docker proxy, attach joins a \
         running container's main process. Frames carry the terminal's bytes both ways.",
        )
        .query(&[
            Query::required("endpointId", QueryType::Integer, "The endpoint"),
            Query::required("id", QueryType::String, "The exec instance or container id (hexadecimal)"),
            Query::optional("nodeName", QueryType::String, "Accepted and ignored (agent endpoints)"),
        ])
        .errors(&[(502, "The Docker host could not be reached")]);

/// The terminal route a request path names, if any.
pub fn route(path: &str) -> Option<Kind> {
    match path {
        "/api/websocket/exec" => Some(Kind::Exec),
        "/api/websocket/attach" => Some(Kind::Attach),
        _ => None,
    }
}

/// Opens a terminal, or answers why not. The response carries the caller
/// ([`crate::response::AuthedUser`]) for the access log once they are known.
pub async fn handle(
    state: &Arc<AppState>,
    tunnels: &Tunnels,
    req: Request<Incoming>,
    kind: Kind,
    client: IpAddr,
) -> Response<ResponseBody> {
    if req.method() != Method::GET {
        let e = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed", "Allowed: GET")
            .with_header(header::ALLOW, HeaderValue::from_static("GET"));
        return e.into_response();
    }
    let principal = match state.authenticate(&req) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let caller = crate::response::Caller::of(&principal);
    let mut resp = match open(state, tunnels, req, kind, client, principal).await {
        Ok(resp) | Err(resp) => resp,
    };
    caller.mark(&mut resp);
    resp
}

type Answer = Result<Response<ResponseBody>, Response<ResponseBody>>;

async fn open(
    state: &Arc<AppState>,
    tunnels: &Tunnels,
    mut req: Request<Incoming>,
    kind: Kind,
    client: IpAddr,
    principal: Principal,
) -> Answer {
    let (endpoint_id, id) = query(req.uri().query()).map_err(ApiError::into_response)?;
    let entry = state.endpoints.get(endpoint_id);
    // A scoped API key: the endpoint must be in its scope, and a terminal
    // writes into a container, so `read` keys never open one.
    if let Some(s) = principal.scope() {
        let group = entry.as_ref().map(|e| e.record.group_id);
        scope::endpoint(s, endpoint_id, group)
            .and_then(|()| scope::terminal(s))
            .map_err(|d| d.to_error().into_response())?;
    }
    let entry = entry.ok_or_else(|| ApiError::not_found("an environment").into_response())?;
    let teams = state.identity.teams_of(principal.id());
    if !state.endpoints.may_access(&principal, &entry.record, &teams) {
        return Err(ApiError::forbidden("Permission denied to access environment", "Access denied to environment")
            .into_response());
    }
    let accept = handshake(&req).map_err(ApiError::into_response)?;
    let target = ProxyTarget {
        endpoint_id,
        endpoint_name: &entry.record.name,
        upstream: &entry.upstream,
        tunnels,
        bytes_in: None,
        body_read_timeout: state.config.body_read_timeout,
        read_body: None,
    };
    // The object: a standard user must be allowed it; an attach needs to
    // know whether Docker will multiplex the container's output.
    let (object_id, container) = if principal.is_admin() {
        let container = match kind {
            Kind::Attach => Some(inspect_container(&entry, &id).await?),
            Kind::Exec => None,
        };
        (id, container)
    } else {
        let r = Restricted { state, entry: &entry, user_id: principal.id(), teams, target };
        let (full_id, container) = r.terminal(kind.resource(), &id).await?;
        (full_id, Some(container))
    };
    let multiplexed = kind == Kind::Attach && !container.as_ref().is_some_and(has_tty);
    let container_id = match kind {
        Kind::Attach => object_id.clone(),
        Kind::Exec => container.as_ref().and_then(|c| c.get("Id")).and_then(Value::as_str).unwrap_or("").to_string(),
    };

    let Some(slot) = tunnels.reserve() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many open attach/exec sessions",
            format!("the limit of {} concurrent hijacked connections is reached, retry later", tunnels.max()),
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
        .into_response());
    };
    let client_upgrade = hyper::upgrade::on(&mut req);
    let docker_upgrade = start(&entry, kind, &object_id).await?;

    let session = bridge::Session {
        state: state.clone(),
        kind,
        endpoint_id,
        object_id,
        container_id,
        user_id: principal.id(),
        username: principal.user.username.clone(),
        was_admin: principal.is_admin(),
        client,
        credentials: credentials(req.headers()),
        cert: req.extensions().get::<crate::bundles::ClientCert>().cloned(),
        multiplexed,
    };
    tunnels.spawn(slot, bridge::run(session, client_upgrade, docker_upgrade));
    let mut resp = Response::new(ResponseBody::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    Ok(resp)
}

/// `endpointId` (a positive integer) and `id` (hexadecimal, as Portainer
/// requires), each given once. `nodeName` (agent endpoints) is accepted and
/// ignored; `token` never authenticates (the authenticator refuses it alone).
fn query(raw: Option<&str>) -> Result<(Id, String), ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| ApiError::bad_request("Invalid query string", e.to_string()))?;
    let one = |name: &str| -> Result<Option<&str>, ApiError> {
        let mut found = pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let first = found.next();
        if found.next().is_some() {
            return Err(ApiError::bad_request(
                format!("Invalid query parameter: {name}"),
                format!("{name} is given more than once"),
            ));
        }
        Ok(first)
    };
    let endpoint = one("endpointId")?.and_then(|v| v.parse::<Id>().ok()).filter(|&v| v > 0).ok_or_else(|| {
        ApiError::bad_request("Invalid query parameter: endpointId", "a positive integer is required")
    })?;
    let id = one("id")?.unwrap_or("");
    if id.is_empty() || id.len() > MAX_ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(
            "Invalid query parameter: id (must be hexadecimal identifier)",
            format!("an identifier of 1 to {MAX_ID_LEN} hexadecimal digits is required"),
        ));
    }
    Ok((endpoint, id.to_ascii_lowercase()))
}

/// Checks the client's WebSocket handshake (RFC 6455 section 4.2.1) and
/// returns the `Sec-WebSocket-Accept` value of the answer.
fn handshake(req: &Request<Incoming>) -> Result<HeaderValue, ApiError> {
    let h = req.headers();
    let has_token = |name: header::HeaderName, token: &str| {
        h.get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if req.version() != Version::HTTP_11
        || !has_token(header::UPGRADE, "websocket")
        || !has_token(header::CONNECTION, "upgrade")
    {
        return Err(ApiError::bad_request(
            "A WebSocket handshake is required",
            "send an HTTP/1.1 GET with Upgrade: websocket and Connection: Upgrade",
        ));
    }
    if h.get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
        return Err(ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "Unsupported WebSocket version",
            "only version 13 (RFC 6455) is spoken",
        )
        .with_header(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13")));
    }
    let key = h.get(header::SEC_WEBSOCKET_KEY).map(HeaderValue::as_bytes).unwrap_or_default();
    let decoded = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, key.trim_ascii());
    if decoded.map(|k| k.len()) != Ok(16) {
        return Err(ApiError::bad_request("Invalid Sec-WebSocket-Key", "the key must be 16 random bytes in base64"));
    }
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.trim_ascii());
    HeaderValue::from_str(&accept).map_err(|e| ApiError::internal("building the WebSocket answer failed", e))
}

/// The headers that authenticated the request, kept to authenticate the
/// session again while it lasts (logout, password or role change, deletion).
fn credentials(h: &HeaderMap) -> HeaderMap {
    let mut kept = HeaderMap::new();
    for name in [header::AUTHORIZATION, header::COOKIE, header::HeaderName::from_static("x-api-key")] {
        for v in h.get_all(&name) {
            kept.append(name.clone(), v.clone());
        }
    }
    kept
}

fn has_tty(container: &Value) -> bool {
    container.pointer("/Config/Tty").and_then(Value::as_bool).unwrap_or(false)
}

/// An admin's attach: the container's inspect answer (its TTY setting).
async fn inspect_container(entry: &EndpointEntry, id: &str) -> Result<Value, Response<ResponseBody>> {
    let path = format!("/containers/{id}/json");
    match entry.upstream.get_json_limited(&path, DOCKER_HANDSHAKE_TIMEOUT, 4 << 20).await {
        Ok(v) => Ok(v),
        Err(crate::connector::UpstreamError::BadStatus(404)) => {
            Err(ApiError::new(StatusCode::NOT_FOUND, format!("No such container: {id}"), "").into_response())
        }
        Err(e) => Err(unreachable(entry, &e)),
    }
}

fn unreachable(entry: &EndpointEntry, e: &dyn std::fmt::Display) -> Response<ResponseBody> {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        format!("Unable to reach the Docker host of environment {} ({})", entry.record.id, entry.record.name),
        e.to_string(),
    )
    .into_response()
}

/// Asks Docker to start the exec instance or attach, upgrading to a raw
/// stream (`Upgrade: tcp`), as the Docker CLI does.
async fn start(
    entry: &EndpointEntry,
    kind: Kind,
    id: &str,
) -> Result<hyper::upgrade::OnUpgrade, Response<ResponseBody>> {
    let (path, body) = match kind {
        Kind::Exec => (format!("/exec/{id}/start"), Bytes::from_static(br#"{"Tty":true,"Detach":false}"#)),
        Kind::Attach => (format!("/containers/{id}/attach?stream=1&stdin=1&stdout=1&stderr=1"), Bytes::new()),
    };
    let built = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "tcp")
        .header(header::CONTENT_LENGTH, body.len())
        .body(if body.is_empty() { UpstreamBody::empty() } else { UpstreamBody::Full(Some(body)) });
    let req = built.map_err(|e| ApiError::internal("building the Docker request failed", e).into_response())?;
    let mut resp = match tokio::time::timeout(DOCKER_HANDSHAKE_TIMEOUT, entry.upstream.request(req)).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => return Err(unreachable(entry, &e)),
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "The Docker host of environment {} ({}) did not answer in time",
                    entry.record.id, entry.record.name
                ),
                "no answer to the start or attach request",
            )
            .into_response())
        }
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        return Ok(hyper::upgrade::on(&mut resp));
    }
    // Docker refused (no such exec, container not running, ...): its
    // message, in Portainer's shape, with its status.
    let status = resp.status();
    let body = http_body_util::Limited::new(resp.into_body(), 64 << 10);
    let bytes = http_body_util::BodyExt::collect(body).await.map(|c| c.to_bytes()).unwrap_or_default();
    let details = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
    let message = match kind {
        Kind::Exec => "Unable to start the exec instance",
        Kind::Attach => "Unable to attach to the container",
    };
    let status = if status.is_success() { StatusCode::BAD_GATEWAY } else { status };
    Err(ApiError::new(status, message, details).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_need_an_endpoint_and_a_hex_id() {
        assert_eq!(query(Some("endpointId=3&id=ABCdef0")).unwrap(), (3, "abcdef0".to_string()));
        assert_eq!(query(Some("id=abc&endpointId=1&nodeName=x")).unwrap(), (1, "abc".to_string()));
        for bad in [
            None,
            Some("id=abc"),
            Some("endpointId=0&id=abc"),
            Some("endpointId=x&id=abc"),
            Some("endpointId=1"),
            Some("endpointId=1&id="),
            Some("endpointId=1&id=my-container"),
            Some("endpointId=1&id=..%2F..%2Fx"),
            Some("endpointId=1&endpointId=2&id=abc"),
            Some("endpointId=1&id=abc&id=def"),
        ] {
            let e = query(bad).unwrap_err();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        }
        let long = format!("endpointId=1&id={}", "a".repeat(65));
        assert!(query(Some(&long)).is_err());
    }

    #[test]
    fn routes_are_the_two_terminal_paths() {
        assert_eq!(route("/api/websocket/exec"), Some(Kind::Exec));
        assert_eq!(route("/api/websocket/attach"), Some(Kind::Attach));
        assert_eq!(route("/api/websocket/pod"), None);
        assert_eq!(route("/api/websocket/exec/"), None);
    }

    #[test]
    fn only_credential_headers_are_kept() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        h.insert(header::COOKIE, HeaderValue::from_static("portainer_api_key=y"));
        h.insert("x-api-key", HeaderValue::from_static("ptr_z"));
        h.insert(header::USER_AGENT, HeaderValue::from_static("ua"));
        let kept = credentials(&h);
        assert_eq!(kept.len(), 3);
        assert!(!kept.contains_key(header::USER_AGENT));
    }
}
