//! Fan-out (issue 17): `GET /api/docker/containers/json` (and `images/json`,
//! `volumes`, `networks`, `services`, `info`, `version`, each also after a
//! `/vX.Y` prefix) asks every endpoint the caller may use and answers one
//! JSON document (see [`document`]): Docker's own items, each labelled with
//! its endpoint, and the endpoints that failed, with why.
//!
//! Who sees what is decided exactly as on the Docker proxy, never anew:
//! the endpoints are those [`EndpointMap::may_access`] lets the caller use
//! (it applies a scoped key's or bundle's endpoint scope too), narrowed by
//! `endpointIds[]`, `groupIds[]` and `tagIds[]`; a scoped key's access
//! level is asked about the GET as the proxy asks it; a standard user's
//! request to each host goes through the restricted proxy
//! ([`Restricted::get`]), so each host's list is filtered as the proxy
//! filters it; an admin's is decorated as the proxy decorates it.
//!
//! Bounds: at most `--fanout-concurrency` hosts are asked at once; each
//! has `--fanout-timeout` for its whole exchange (connect, answer, body,
//! filtering), after which it is listed as failed; each host's answer
//! (after filtering) is read whole, at most [`MAX_HOST_ANSWER`] bytes, so
//! that a host cut off midway leaves no half of its items in the
//! document. Memory is thus at most about `concurrency × 2 ×
//! MAX_HOST_ANSWER` (the answer and its labelled copy), whatever the
//! number of endpoints; the whole call takes at most about
//! `ceil(endpoints / concurrency) × timeout`. The document streams: the
//! head goes out at once and each host's items as soon as that host is
//! done, so a slow host holds back no one else's items.

mod document;
mod query;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::Value;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use crate::access::deny::DeniedBy;
use crate::api::doc::{json, Doc, Query, QueryType, Reply};
use crate::body::{ResponseBody, UpstreamBody};
use crate::endpoints::{EndpointEntry, EndpointMap};
use crate::error::ApiError;
use crate::proxy::restrict::{self, Restricted};
use crate::proxy::{forward_body, ProxyFailure, ProxyTarget, Tunnels};
use crate::state::AppState;
use crate::store::model::Id;

use document::{Failure, Shape};

/// Cap on one host's answer as the document takes it (after a standard
/// user's filtering). 10,000 containers are about 20 MiB; a host over the
/// cap is listed as failed (`too_large`), not cut.
pub const MAX_HOST_ANSWER: usize = 32 << 20;

/// Cap on a host's error answer read for its message.
const MAX_ERROR_ANSWER: usize = 64 << 10;

/// The fixed list of fan-out routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Containers,
    Images,
    Volumes,
    Networks,
    Services,
    Info,
    Version,
}

impl Kind {
    pub const ALL: [Kind; 7] =
        [Kind::Containers, Kind::Images, Kind::Volumes, Kind::Networks, Kind::Services, Kind::Info, Kind::Version];

    /// The Docker route every host is asked.
    pub fn docker_path(self) -> &'static str {
        match self {
            Kind::Containers => "/containers/json",
            Kind::Images => "/images/json",
            Kind::Volumes => "/volumes",
            Kind::Networks => "/networks",
            Kind::Services => "/services",
            Kind::Info => "/info",
            Kind::Version => "/version",
        }
    }

    /// The route template (request metrics, access log).
    pub fn template(self) -> &'static str {
        match self {
            Kind::Containers => "/api/docker/containers/json",
            Kind::Images => "/api/docker/images/json",
            Kind::Volumes => "/api/docker/volumes",
            Kind::Networks => "/api/docker/networks",
            Kind::Services => "/api/docker/services",
            Kind::Info => "/api/docker/info",
            Kind::Version => "/api/docker/version",
        }
    }

    /// The fan-out metrics' `kind` label.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Containers => "containers",
            Kind::Images => "images",
            Kind::Volumes => "volumes",
            Kind::Networks => "networks",
            Kind::Services => "services",
            Kind::Info => "info",
            Kind::Version => "version",
        }
    }

    fn shape(self) -> Shape {
        match self {
            Kind::Volumes => Shape::Volumes,
            Kind::Info | Kind::Version => Shape::Object,
            _ => Shape::List,
        }
    }
}

/// What the API document says of every fan-out route (`crate::openapi`
/// lists one operation per [`Kind`]).
pub const DOC: Doc = Doc::new(
    "Ask every endpoint at once",
    &[Reply::json(200, "Every host's items, labelled, and the hosts that failed", json::<document::Document>)],
)
.describe(
    "Berth's fan-out: the same Docker route asked of every endpoint the caller may use (as through the \
     Docker proxy), answered as one streamed document. Docker's own query parameters are passed on; a \
     `/vX.Y` prefix after `/api/docker` is too.",
)
.query(&[
    Query::optional("endpointIds[]", QueryType::IntegerList, "Only these endpoints"),
    Query::optional("groupIds[]", QueryType::IntegerList, "Only endpoints of these groups"),
    Query::optional("tagIds[]", QueryType::IntegerList, "Only endpoints with these tags"),
]);

/// A fan-out route: its kind and the `vX.Y` prefix the client wrote, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route<'a> {
    pub kind: Kind,
    pub version: Option<&'a str>,
}

/// Recognises `/api/docker[/vX.Y]/<route>` exactly (no allocation); any
/// other path under `/api/docker/` is left to the route table's 404.
pub fn route(path: &str) -> Option<Route<'_>> {
    let rest = path.strip_prefix("/api/docker/")?;
    let (version, rest) = match rest.split_once('/') {
        Some((v, r)) if is_version(v) => (Some(v), r),
        _ => (None, rest),
    };
    let kind = Kind::ALL.into_iter().find(|k| k.docker_path().strip_prefix('/') == Some(rest))?;
    Some(Route { kind, version })
}

/// `v<digits>.<digits>`, the only prefix spelling passed on.
fn is_version(s: &str) -> bool {
    let Some((major, minor)) = s.strip_prefix('v').and_then(|v| v.split_once('.')) else { return false };
    let digits = |p: &str| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit());
    digits(major) && digits(minor)
}

/// Answers one fan-out call: refusals as Portainer's JSON errors, else a
/// 200 whose body the call's task writes as the hosts answer.
pub async fn handle(
    state: &Arc<AppState>,
    tunnels: &Tunnels,
    req: Request<Incoming>,
    route: Route<'_>,
) -> Response<ResponseBody> {
    if req.method() != Method::GET {
        let mut r = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed", "Allowed: GET").into_response();
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET"));
        return r;
    }
    let principal = match state.authenticate(&req) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let mut resp = match start(state, tunnels, &req, route, &principal) {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    crate::response::mark_caller(&mut resp, &principal);
    resp
}

fn start(
    state: &Arc<AppState>,
    tunnels: &Tunnels,
    req: &Request<Incoming>,
    route: Route<'_>,
    principal: &crate::auth::Principal,
) -> Result<Response<ResponseBody>, ApiError> {
    let kind = route.kind;
    // A scoped key's access level is asked as the proxy asks it; its
    // endpoint scope is applied by `may_access` below.
    if let Some(scope) = principal.scope() {
        crate::access::scope::docker(scope, &Method::GET, kind.docker_path()).map_err(|d| d.to_error())?;
    }
    let split = query::split(req.uri().query())?;
    let teams = if principal.is_admin() { None } else { Some(state.identity.teams_of(principal.id())) };
    let entries = select(&state.endpoints, principal, teams.as_deref().unwrap_or(&[]), &split.select);
    let docker_path = match route.version {
        Some(v) => format!("/{v}{}", kind.docker_path()),
        None => kind.docker_path().to_owned(),
    };
    let path_and_query =
        if split.forward.is_empty() { docker_path.clone() } else { format!("{docker_path}?{}", split.forward) };
    state.metrics.fanout_requests.with_label_values(&[kind.label()]).inc();
    state.metrics.fanout_endpoints.with_label_values(&[kind.label()]).inc_by(entries.len() as u64);
    let call = Call {
        state: state.clone(),
        tunnels: tunnels.clone(),
        kind,
        user_id: principal.id(),
        teams,
        docker_path,
        path_and_query,
        timeout: state.config.fanout_timeout,
    };
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(call.run(entries, state.config.fanout_concurrency, tx));
    let mut resp = Response::new(ResponseBody::Rewritten(document::ChannelBody(rx).boxed()));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

/// The endpoints the caller may use that the query selects, by id.
fn select(
    endpoints: &EndpointMap,
    principal: &crate::auth::Principal,
    teams: &[Id],
    sel: &query::Select,
) -> Vec<Arc<EndpointEntry>> {
    let mut chosen: Vec<_> = endpoints
        .all()
        .into_iter()
        .filter(|e| {
            let r = &e.record;
            let tags = || {
                let mut t = r.tag_ids.clone();
                t.extend(endpoints.group(r.group_id).map(|g| g.tag_ids).unwrap_or_default());
                t
            };
            sel.matches(r.id, r.group_id, tags) && endpoints.may_access(principal, r, teams)
        })
        .collect();
    chosen.sort_by_key(|e| e.record.id);
    chosen
}

/// One fan-out call, shared by its per-host tasks.
struct Call {
    state: Arc<AppState>,
    tunnels: Tunnels,
    kind: Kind,
    user_id: Id,
    /// A standard user's teams; `None` for an admin.
    teams: Option<Vec<Id>>,
    /// The Docker path (with the client's version prefix), no query.
    docker_path: String,
    path_and_query: String,
    timeout: Duration,
}

impl Call {
    /// Asks every host (at most `concurrency` at once) and writes the
    /// document. Stops early when the client has gone (the receiver is
    /// dropped): dropping the task set aborts the hosts' exchanges.
    async fn run(self, entries: Vec<Arc<EndpointEntry>>, concurrency: usize, tx: mpsc::Sender<Bytes>) {
        let started = Instant::now();
        let (state, kind) = (self.state.clone(), self.kind);
        self.write(entries, concurrency, tx).await;
        // Counted however the call ended (done, or the client gone).
        state.metrics.fanout_duration.with_label_values(&[kind.label()]).observe(started.elapsed().as_secs_f64());
    }

    async fn write(self, entries: Vec<Arc<EndpointEntry>>, concurrency: usize, tx: mpsc::Sender<Bytes>) {
        let call = Arc::new(self);
        let permits = Arc::new(Semaphore::new(concurrency));
        let mut tasks = JoinSet::new();
        // Which endpoint a task was for, should it fail without saying.
        let mut names = std::collections::HashMap::new();
        for entry in entries {
            let (call, permits) = (call.clone(), permits.clone());
            let who = (entry.record.id, entry.record.name.clone());
            let handle = tasks.spawn(async move {
                // Held until this task's answer is taken from the set:
                // finished answers not yet written count against the bound.
                let permit = permits.acquire_owned().await;
                (call.ask(&entry).await, permit)
            });
            names.insert(handle.id(), who);
        }
        if tx.send(Bytes::from_static(document::HEAD)).await.is_err() {
            return;
        }
        let mut wrote_item = false;
        let mut failures = Vec::new();
        while let Some(joined) = tasks.join_next_with_id().await {
            let outcome = match joined {
                Ok((_, (outcome, _permit))) => outcome,
                Err(e) => {
                    let (id, name) = names.remove(&e.id()).unwrap_or_default();
                    tracing::error!(endpoint = id, error = %e, "a fan-out task failed");
                    Err(Failure {
                        endpoint_id: id,
                        endpoint_name: name,
                        reason: "internal",
                        status: None,
                        message: "Berth failed while asking this environment".into(),
                        details: String::new(),
                    })
                }
            };
            match outcome {
                Ok(items) if items.is_empty() => {}
                Ok(mut items) => {
                    if wrote_item {
                        items.insert(0, b',');
                    }
                    wrote_item = true;
                    if tx.send(Bytes::from(items)).await.is_err() {
                        return;
                    }
                }
                Err(f) => {
                    call.state.metrics.fanout_failures.with_label_values(&[call.kind.label(), f.reason]).inc();
                    failures.push(f);
                }
            }
        }
        failures.sort_by_key(|f| f.endpoint_id);
        let _ = tx.send(document::tail(&failures)).await;
    }

    /// One host: its labelled items, or why there are none.
    async fn ask(&self, entry: &EndpointEntry) -> Result<Vec<u8>, Failure> {
        let (id, name) = (entry.record.id, entry.record.name.as_str());
        let exchange = async {
            let resp = self.send(entry).await;
            if resp.status() != StatusCode::OK {
                return Err(self.refused(entry, resp).await);
            }
            let answer = match Limited::new(resp.into_body(), MAX_HOST_ANSWER).collect().await {
                Ok(c) => c.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    let details = format!("the answer exceeds the fan-out's limit of {MAX_HOST_ANSWER} bytes per host");
                    return Err(self.failure(
                        entry,
                        "too_large",
                        Some(200),
                        "The Docker host's answer is too large",
                        details,
                    ));
                }
                Err(e) => {
                    return Err(self.failure(
                        entry,
                        "invalid",
                        Some(200),
                        "The Docker host's answer broke off",
                        e.to_string(),
                    ))
                }
            };
            document::label_items(self.kind.shape(), &answer, id, name)
                .map_err(|d| self.failure(entry, "invalid", Some(200), "Invalid answer from the Docker host", d))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(self.failure(
                entry,
                "timeout",
                None,
                format!("The Docker host of environment {id} ({name}) did not answer in time"),
                format!("no complete answer within {} (--fanout-timeout)", humantime::format_duration(self.timeout)),
            )),
        }
    }

    /// The GET to one host: through the restricted proxy for a standard
    /// user, forwarded and decorated as the proxy does for an admin.
    async fn send(&self, entry: &EndpointEntry) -> Response<ResponseBody> {
        let target = ProxyTarget {
            endpoint_id: entry.record.id,
            endpoint_name: &entry.record.name,
            upstream: &entry.upstream,
            tunnels: &self.tunnels,
            bytes_in: None,
            body_read_timeout: self.state.config.body_read_timeout,
            read_body: None,
        };
        match &self.teams {
            Some(teams) => {
                let r = Restricted { state: &self.state, entry, user_id: self.user_id, teams: teams.clone(), target };
                r.get(&self.path_and_query).await
            }
            None => {
                let mut req = Request::new(UpstreamBody::empty());
                req.headers_mut().insert(header::ACCEPT, HeaderValue::from_static("application/json"));
                let resp = forward_body(target, req, &self.path_and_query).await;
                restrict::decorate_for_admin(&self.state, entry, &self.docker_path, resp).await
            }
        }
    }

    /// A host (or Berth on its behalf) that did not answer 200: the
    /// message of its JSON error, a standard user's copy of a Berth-made
    /// failure without the host's address (as the proxy redacts it).
    async fn refused(&self, entry: &EndpointEntry, resp: Response<ResponseBody>) -> Failure {
        let status = resp.status();
        let reason = match (resp.extensions().get::<ProxyFailure>(), resp.extensions().get::<DeniedBy>()) {
            (Some(f), _) => f.label(),
            (None, Some(_)) => "denied",
            (None, None) => "status",
        };
        let resp =
            if self.teams.is_some() { crate::proxy::redact::proxy_failure_for_standard_user(resp) } else { resp };
        let body = Limited::new(resp.into_body(), MAX_ERROR_ANSWER).collect().await.map(|c| c.to_bytes());
        let v: Value = body.ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(Value::Null);
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let message = text("message").unwrap_or_else(|| format!("The Docker host answered with HTTP status {status}"));
        self.failure(entry, reason, Some(status.as_u16()), message, text("details").unwrap_or_default())
    }

    fn failure(
        &self,
        entry: &EndpointEntry,
        reason: &'static str,
        status: Option<u16>,
        message: impl Into<String>,
        details: impl Into<String>,
    ) -> Failure {
        Failure {
            endpoint_id: entry.record.id,
            endpoint_name: entry.record.name.clone(),
            reason,
            status,
            message: message.into(),
            details: details.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_the_fixed_list_with_an_optional_version() {
        assert_eq!(route("/api/docker/containers/json"), Some(Route { kind: Kind::Containers, version: None }));
        assert_eq!(route("/api/docker/v1.41/volumes"), Some(Route { kind: Kind::Volumes, version: Some("v1.41") }));
        assert_eq!(route("/api/docker/info"), Some(Route { kind: Kind::Info, version: None }));
        for k in Kind::ALL {
            assert_eq!(route(k.template()).map(|r| r.kind), Some(k));
        }
        for p in [
            "/api/docker/containers/json/",
            "/api/docker/containers",
            "/api/docker/v1/info",
            "/api/docker/vx.1/info",
            "/api/docker/v1.41/v1.41/info",
            "/api/docker//info",
            "/api/docker",
            "/api/dockerinfo",
            "/api/endpoints/1/docker/info",
        ] {
            assert_eq!(route(p), None, "{p}");
        }
    }
}
