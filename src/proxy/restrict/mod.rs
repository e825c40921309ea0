//! The Docker proxy for standard users (issue 14): asks [`crate::access`]
//! and acts on its answer, in the order its module doc gives. Admins never
//! come here (the route's one branch), except that their list answers are
//! decorated with `Portainer.ResourceControl` once any control exists
//! ([`decorate_for_admin`]).
//!
//! Nothing a standard user sends reaches Docker before it is decided: the
//! pre-flight inspects Berth makes itself, as the proxy, through the same
//! upstream pool; inspected bodies are read whole (capped) and the very
//! bytes inspected are forwarded; an owner-only route is forwarded with the
//! object's full id in place of the name or prefix the client wrote, so a
//! rename in between cannot swap the object.

mod answer;
mod list;
mod objects;

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;

use super::{forward, forward_body, ProxyTarget};
use crate::access::control::{self, Caller, Directory};
use crate::access::deny::DeniedBy;
use crate::access::{self, Action, BodyKind, Decision, Denial, DenyRule, OwnerOp, ResourceKind};
use crate::body::{ClientBody, ResponseBody, UpstreamBody};
use crate::endpoints::EndpointEntry;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::model::Id;

pub use answer::MAX_ANSWER;
pub use list::{MAX_LIST_ANSWER, MAX_LIST_ITEM};

/// Why a standard user's request stops before (or instead of) Docker's
/// answer: a policy denial (counted and logged with its rule) or a
/// ready-made answer (Docker's 404 of a pre-flight inspect, an unreachable
/// host, a body that could not be read).
enum Stop {
    Denied(Denial),
    Answer(Box<Response<ResponseBody>>),
}

impl Stop {
    fn answer(resp: Response<ResponseBody>) -> Self {
        Stop::Answer(Box::new(resp))
    }
}

impl From<Denial> for Stop {
    fn from(d: Denial) -> Self {
        Stop::Denied(d)
    }
}

type Flow<T> = Result<T, Stop>;

/// User and team names for the `io.portainer.accesscontrol.*` labels.
struct Names<'a>(&'a crate::auth::Identity);

impl Directory for Names<'_> {
    fn user_id(&self, name: &str) -> Option<Id> {
        self.0.user_by_name(name).map(|u| u.id)
    }

    fn team_id(&self, name: &str) -> Option<Id> {
        self.0.teams().into_iter().find(|t| t.name == name).map(|t| t.id)
    }
}

/// What an owner-only route names and does.
#[derive(Clone, Copy)]
struct OwnerRequest<'q> {
    raw_query: Option<&'q str>,
    d: &'q Decision,
    kind: ResourceKind,
    id: &'q str,
    op: OwnerOp,
}

/// One standard user's request on one endpoint.
pub struct Restricted<'a> {
    pub state: &'a Arc<AppState>,
    pub entry: &'a EndpointEntry,
    pub user_id: Id,
    pub teams: Vec<Id>,
    pub target: ProxyTarget<'a>,
}

impl<'a> Restricted<'a> {
    fn caller(&self) -> Caller<'_> {
        Caller { user_id: self.user_id, teams: &self.teams, admin: false }
    }

    fn settings(&self) -> &crate::store::model::SecuritySettings {
        &self.entry.record.security_settings
    }

    /// Decides and forwards. `path_and_query` is the Docker path as the
    /// client sent it (its `token` parameter already dropped).
    pub async fn handle(self, req: Request<Incoming>, path_and_query: &str) -> Response<ResponseBody> {
        let (state, endpoint) = (self.state, self.entry.record.id);
        match self.run(req, path_and_query).await {
            Ok(resp) => resp,
            Err(Stop::Answer(resp)) => *resp,
            Err(Stop::Denied(d)) => denied(state, endpoint, &d),
        }
    }

    async fn run(self, req: Request<Incoming>, path_and_query: &str) -> Flow<Response<ResponseBody>> {
        let (raw_path, raw_query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let decision = access::authorize(req.method(), raw_path, raw_query, self.settings())?;
        match decision.action.clone() {
            a @ (Action::Forward | Action::ForwardRedacted(_) | Action::FilterList(_)) => {
                self.read(a, Outgoing::Client(req), path_and_query).await
            }
            Action::CheckReferences(refs) => {
                self.check_references(&refs).await?;
                Ok(forward(self.target, req, path_and_query).await)
            }
            Action::InspectBody(kind) => self.create(req, path_and_query, kind).await,
            Action::Owner { kind, id, op } => {
                self.owner(req, OwnerRequest { raw_query, d: &decision, kind, id: &id, op }).await
            }
        }
    }

    /// A GET Berth sends itself on the user's behalf (the fan-out of
    /// `/api/docker/...` to every endpoint): decided by the same policy as
    /// the user's own request through the proxy, and its answer filtered or
    /// redacted the same way, so the two can never disagree. Only the
    /// actions that read without naming an object apply; any other
    /// decision is refused (the fan-out asks list and info routes only).
    /// `path_and_query` is the Docker path and the query to send.
    pub async fn get(self, path_and_query: &str) -> Response<ResponseBody> {
        let (state, endpoint) = (self.state, self.entry.record.id);
        let (raw_path, raw_query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let verdict = access::authorize(&http::Method::GET, raw_path, raw_query, self.settings()).map_err(Stop::from);
        let result = match verdict.map(|d| d.action) {
            Ok(a @ (Action::Forward | Action::ForwardRedacted(_) | Action::FilterList(_))) => {
                let mut req = Request::new(UpstreamBody::empty());
                req.headers_mut().insert(header::ACCEPT, HeaderValue::from_static("application/json"));
                self.read(a, Outgoing::Own(req), path_and_query).await
            }
            Ok(_) => Err(Denial::new(DenyRule::ResourceAccess, "only list and read routes are fanned out").into()),
            Err(stop) => Err(stop),
        };
        match result {
            Ok(resp) => resp,
            Err(Stop::Answer(resp)) => *resp,
            Err(Stop::Denied(d)) => denied(state, endpoint, &d),
        }
    }

    /// The actions that only read: forward, forward redacted, filter a
    /// list. Shared by the user's own requests and Berth's [`Self::get`].
    async fn read(self, action: Action, req: Outgoing, path_and_query: &str) -> Flow<Response<ResponseBody>> {
        match action {
            Action::ForwardRedacted(r) => {
                let resp = req.send(self.target, path_and_query).await;
                Ok(answer::rewrite_json(resp, |v| r.apply(v)).await)
            }
            Action::FilterList(kind) => {
                let filter = self.list_filter(kind).await?;
                let resp = req.send(self.target, path_and_query).await;
                Ok(list::filtered(resp, filter))
            }
            _ => Ok(req.send(self.target, path_and_query).await),
        }
    }

    /// A body route that is not about an existing object: creates.
    async fn create(self, req: Request<Incoming>, pq: &str, kind: BodyKind) -> Flow<Response<ResponseBody>> {
        let (parts, bytes) = self.read_body(req).await?;
        let findings = access::body::inspect(kind, &bytes, self.settings())?;
        self.check_references(&findings.references).await?;
        let Some(created) = kind.creates() else {
            return Ok(self.forward_bytes(parts, bytes, pq).await);
        };
        let draft = control::draft_for_create(&self.caller(), &findings.labels, &Names(&self.state.identity))?;
        if created == ResourceKind::Volume {
            // Creating an existing volume answers 201 with that volume:
            // it must not hand someone else's volume to the caller.
            self.check_existing_volume(&bytes).await?;
        }
        let docker_id = self.docker_id(created).await?;
        let (state, endpoint) = (self.state, self.entry.record.id);
        let resp = self.forward_bytes(parts, bytes, pq).await;
        if !resp.status().is_success() {
            return Ok(resp);
        }
        let (parts, answer) = answer::read(resp, MAX_ANSWER).await.map_err(Stop::answer)?;
        let v: Value = serde_json::from_slice(&answer).map_err(|e| Stop::answer(answer::bad_answer(&e)))?;
        let Some(id) = control::created_id(created, &v) else {
            return Err(Stop::answer(answer::bad_answer(&"the answer names no object")));
        };
        let rid = match created {
            ResourceKind::Volume => control::volume_resource_id(id, &docker_id),
            _ => id.to_string(),
        };
        if let Some(rc) = draft.control(0, created, rid) {
            match state.controls.create(&state.store, rc).await {
                // An object Docker handed back again keeps its control.
                Ok(_) | Err(crate::controls::ControlError::Conflict(_)) => {}
                Err(crate::controls::ControlError::Store(e)) => {
                    tracing::error!(endpoint, error = %e, "storing the resource control of a new object failed");
                    return Err(Stop::answer(crate::api::store_err(e).into_response()));
                }
            }
        }
        Ok(Response::from_parts(parts, ResponseBody::full(answer)))
    }

    /// Whether the caller may open a terminal (`/api/websocket/exec` on an
    /// exec instance, `/api/websocket/attach` on a container): decided as
    /// the proxy's own `POST /exec/{id}/start` or `POST
    /// /containers/{id}/attach` would be, so the governing container must
    /// be visible to the caller (Portainer checks only the endpoint).
    /// Returns the object's full id and the governing container's inspect
    /// answer; a refusal is the response to send.
    pub async fn terminal(&self, kind: ResourceKind, id: &str) -> Result<(String, Value), Response<ResponseBody>> {
        let checked = async {
            let encoded = objects::encode(id);
            let path = match kind {
                ResourceKind::Exec => format!("/exec/{encoded}/start"),
                _ => format!("/containers/{encoded}/attach"),
            };
            let decision = access::authorize(&http::Method::POST, &path, None, self.settings())?;
            let Action::Owner { kind, id, .. } = decision.action else {
                return Err(Denial::new(DenyRule::ResourceAccess, "terminals open on owned objects only").into());
            };
            let (full_id, governed_kind, object) = self.resolve(kind, &id).await?;
            self.visible(governed_kind, &object).await?;
            Ok::<_, Stop>((full_id, object))
        };
        checked.await.map_err(|stop| match stop {
            Stop::Answer(resp) => *resp,
            Stop::Denied(d) => denied(self.state, self.entry.record.id, &d),
        })
    }

    /// Inspects the object an owner-only route names: its full id, the
    /// kind whose control governs it (an exec instance's container) and
    /// that object's inspect answer.
    async fn resolve(&self, kind: ResourceKind, id: &str) -> Flow<(String, ResourceKind, Value)> {
        if kind == ResourceKind::Exec {
            let exec = self.inspect(kind, id).await?;
            let full = exec.get("ID").and_then(Value::as_str).unwrap_or(id).to_string();
            let container = control::exec_container(&exec)
                .ok_or_else(|| Denial::new(DenyRule::ResourceAccess, format!("exec instance {id} has no container")))?;
            return Ok((full, ResourceKind::Container, self.inspect(ResourceKind::Container, container).await?));
        }
        let object = self.inspect(kind, id).await?;
        let full = control::ObjectView::of(kind, &object).map(|v| v.id.to_string()).unwrap_or_default();
        if full.is_empty() {
            return Err(Stop::answer(answer::bad_answer(&"the inspect answer names no object")));
        }
        Ok((full, kind, object))
    }

    /// An owner-only route: the object must be visible to the caller.
    async fn owner(self, req: Request<Incoming>, o: OwnerRequest<'_>) -> Flow<Response<ResponseBody>> {
        let OwnerRequest { raw_query, d, kind, id, op } = o;
        let body_kind = match op {
            OwnerOp::WithBody(k) => k,
            OwnerOp::ServiceRollback => BodyKind::ServiceUpdate,
            OwnerOp::Read | OwnerOp::Act | OwnerOp::Delete => return self.owner_streamed(req, o).await,
        };
        // The body is judged first: a refused one never costs a call to Docker.
        let (parts, bytes) = self.read_body(req).await?;
        let mut findings = access::body::inspect(body_kind, &bytes, self.settings())?;
        let (full_id, governed_kind, object) = self.resolve(kind, id).await?;
        self.visible(governed_kind, &object).await?;
        if op == OwnerOp::ServiceRollback {
            if let Some(previous) = object.get("PreviousSpec") {
                let restored = access::body::inspect_value(body_kind, previous, self.settings())?;
                findings.references.extend(restored.references);
            }
        }
        if kind == ResourceKind::Network {
            control::check_network_use(&object, self.settings())?;
        }
        self.check_references(&findings.references).await?;
        let pq = objects::rewritten_target(d, &full_id, raw_query)?;
        Ok(self.forward_bytes(parts, bytes, &pq).await)
    }

    /// Owner-only routes whose body (if any) streams through: inspect, any
    /// use (logs, attach, start, ...) and delete.
    async fn owner_streamed(self, req: Request<Incoming>, o: OwnerRequest<'_>) -> Flow<Response<ResponseBody>> {
        let OwnerRequest { raw_query, d, kind, id, op } = o;
        let (full_id, governed_kind, object) = self.resolve(kind, id).await?;
        let rc = self.visible(governed_kind, &object).await?;
        let pq = objects::rewritten_target(d, &full_id, raw_query)?;
        match op {
            OwnerOp::Read => {
                let resp = forward(self.target, req, &pq).await;
                Ok(match rc {
                    Some(rc) => answer::rewrite_json(resp, |v| control::decorate(v, &rc)).await,
                    None => resp,
                })
            }
            OwnerOp::Delete => {
                let rid = match kind {
                    ResourceKind::Volume => control::volume_resource_id(&full_id, &self.docker_id(kind).await?),
                    _ => full_id.clone(),
                };
                let state = self.state;
                let resp = forward(self.target, req, &pq).await;
                if let (true, Some(t)) = (resp.status().is_success(), kind.control_type()) {
                    if let Err(e) = state.controls.remove_resource(&state.store, t, &rid).await {
                        tracing::error!(error = %e, resource = %rid, "removing a deleted object's resource control failed");
                    }
                }
                Ok(resp)
            }
            _ => Ok(forward(self.target, req, &pq).await),
        }
    }

    /// Reads an inspected body: at most [`access::MAX_INSPECTED_BODY`]
    /// bytes, never compressed; what cannot be read whole is refused.
    async fn read_body(&self, req: Request<Incoming>) -> Flow<(http::request::Parts, Bytes)> {
        let (parts, body) = req.into_parts();
        if let Some(enc) = parts.headers.get(header::CONTENT_ENCODING) {
            if !enc.as_bytes().eq_ignore_ascii_case(b"identity") {
                return Err(Denial::new(
                    DenyRule::BodyInvalid,
                    "compressed bodies (Content-Encoding) are not inspected",
                )
                .into());
            }
        }
        // Already read whole (a service spec whose image chose the
        // registry credentials): those are the bytes Docker would get.
        if let Some(read) = &self.target.read_body {
            if read.len() > access::MAX_INSPECTED_BODY {
                return Err(Denial::too_large().into());
            }
            return Ok((parts, read.clone()));
        }
        let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let body = http_body_util::BodyExt::into_data_stream(ClientBody::new(body, self.target.body_read_timeout));
        match crate::api::form::read_body(body, declared, access::MAX_INSPECTED_BODY).await {
            Ok(b) => Ok((parts, b)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(Denial::too_large().into()),
            Err(e) => Err(Stop::answer(e.into_response())),
        }
    }

    /// Forwards the inspected bytes themselves.
    async fn forward_bytes(self, mut parts: http::request::Parts, bytes: Bytes, pq: &str) -> Response<ResponseBody> {
        parts.headers.remove(header::TRANSFER_ENCODING);
        parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        if let Some(c) = &self.target.bytes_in {
            c.inc_by(bytes.len() as u64);
        }
        let body = if bytes.is_empty() { UpstreamBody::empty() } else { UpstreamBody::Full(Some(bytes)) };
        forward_body(self.target, Request::from_parts(parts, body), pq).await
    }
}

/// What the read-only actions forward: the client's own request, or a
/// GET Berth built ([`Restricted::get`]).
enum Outgoing {
    Client(Request<Incoming>),
    Own(Request<UpstreamBody>),
}

impl Outgoing {
    async fn send(self, target: ProxyTarget<'_>, path_and_query: &str) -> Response<ResponseBody> {
        match self {
            Outgoing::Client(req) => forward(target, req, path_and_query).await,
            Outgoing::Own(req) => forward_body(target, req, path_and_query).await,
        }
    }
}

/// A denial as Portainer shapes it, counted and marked for the access log.
fn denied(state: &AppState, endpoint: Id, d: &Denial) -> Response<ResponseBody> {
    state.metrics.access_denied.with_label_values(&[&endpoint.to_string(), d.rule.name()]).inc();
    let mut resp = ApiError::new(d.status(), d.message(), d.details()).into_response();
    resp.extensions_mut().insert(DeniedBy(d.rule));
    resp
}

/// Whether a path can be a list route at all (its last segment), so that
/// an admin's other answers cost no path parsing.
fn maybe_list(path: &str) -> bool {
    let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    matches!(last, "json" | "services" | "tasks" | "volumes" | "networks" | "secrets" | "configs")
}

/// An admin's list answer, decorated with `Portainer.ResourceControl` once
/// any control exists; every other answer is returned untouched.
pub async fn decorate_for_admin(
    state: &Arc<AppState>,
    entry: &EndpointEntry,
    docker_path: &str,
    resp: Response<ResponseBody>,
) -> Response<ResponseBody> {
    let decorated = state.controls.any() || !state.stacks.is_empty();
    if resp.status() != StatusCode::OK || !decorated || !maybe_list(docker_path) {
        return resp;
    }
    let Ok(p) = access::path::normalize(docker_path) else { return resp };
    let Some(access::rules::Matched { rule: access::Rule::FilterList { kind }, .. }) =
        access::rules::lookup("GET", &p.path)
    else {
        return resp;
    };
    if kind == ResourceKind::Event {
        return resp;
    }
    match Box::pin(list::ListFilter::admin(state, entry, kind)).await {
        Some(filter) => list::filtered(resp, filter),
        None => resp,
    }
}
