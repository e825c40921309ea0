//! Pre-flight look-ups: Berth inspects the objects a standard user's
//! request names (as the proxy, through the endpoint's upstream pool) and
//! decides their visibility with the policy.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use serde_json::Value;

use super::{answer, Flow, Names, Restricted, Stop};
use crate::access::control::{self, Governing, ObjectView, Scope};
use crate::access::{gojson, path, Decision, Denial, DenyRule, Reference, ResourceKind};
use crate::connector::UpstreamError;
use crate::controls::WithStacks;
use crate::error::ApiError;
use crate::store::model::ResourceControl;

/// Bound on one pre-flight exchange with the Docker host.
const INSPECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one inspect answer (a container's is a few KiB; labels and
/// environment can make it larger, never this large).
const MAX_INSPECT: usize = 4 << 20;

/// The id volume controls are keyed by (`<name>_<dockerId>`): the swarm
/// cluster's id, or the engine's outside swarm. Asked once per endpoint.
pub(super) async fn engine_id(
    state: &crate::state::AppState,
    entry: &crate::endpoints::EndpointEntry,
) -> Result<Arc<str>, UpstreamError> {
    let endpoint = entry.record.id;
    if let Some(id) = state.controls.engine_id(endpoint) {
        return Ok(id);
    }
    let info = entry.upstream.get_json_limited("/info", INSPECT_TIMEOUT, MAX_INSPECT).await?;
    let cluster = info.pointer("/Swarm/Cluster/ID").and_then(Value::as_str).unwrap_or("");
    let engine = info.get("ID").and_then(Value::as_str).unwrap_or("");
    Ok(state.controls.set_engine_id(endpoint, if cluster.is_empty() { engine } else { cluster }))
}

/// Percent-encodes one path segment or query value: everything but
/// RFC 3986's unreserved characters.
pub(super) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn inspect_path(kind: ResourceKind, id: &str) -> Option<String> {
    let id = encode(id);
    Some(match kind {
        ResourceKind::Container => format!("/containers/{id}/json"),
        ResourceKind::Service => format!("/services/{id}"),
        ResourceKind::Volume => format!("/volumes/{id}"),
        ResourceKind::Network => format!("/networks/{id}"),
        ResourceKind::Secret => format!("/secrets/{id}"),
        ResourceKind::Config => format!("/configs/{id}"),
        ResourceKind::Task => format!("/tasks/{id}"),
        ResourceKind::Exec => format!("/exec/{id}/json"),
        ResourceKind::Event => return None,
    })
}

fn kind_name(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::Container => "container",
        ResourceKind::Service => "service",
        ResourceKind::Volume => "volume",
        ResourceKind::Network => "network",
        ResourceKind::Secret => "secret",
        ResourceKind::Config => "config",
        ResourceKind::Task => "task",
        ResourceKind::Exec => "exec instance",
        ResourceKind::Event => "event",
    }
}

/// The request target forwarded for an owner-only route: the route with the
/// object's full id, the client's version prefix and query (for `POST
/// /commit`, its `container` parameter replaced by the full id).
pub(super) fn rewritten_target(d: &Decision, full_id: &str, raw_query: Option<&str>) -> Flow<String> {
    let mut out = match d.version {
        Some(v) => format!("/v{}.{}", v.major, v.minor),
        None => String::new(),
    };
    let with_id = d.route.contains("{id}");
    out.push_str(&d.route.replace("{id}", &encode(full_id)));
    let mut pairs: Vec<String> = Vec::new();
    for raw in raw_query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let names_container = path::Query::parse(Some(raw))?.unique("container")?.is_some();
        if with_id || !names_container {
            pairs.push(raw.to_string());
        }
    }
    if !with_id {
        pairs.push(format!("container={}", encode(full_id)));
    }
    if !pairs.is_empty() {
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    Ok(out)
}

impl Restricted<'_> {
    /// Inspects one object on the Docker host; Docker's 404 (and any other
    /// refusal) comes back as the answer, an unreachable host as the usual
    /// 502/504.
    pub(super) async fn inspect(&self, kind: ResourceKind, id: &str) -> Flow<Value> {
        self.try_inspect(kind, id).await?.ok_or_else(|| {
            Stop::answer(
                ApiError::new(StatusCode::NOT_FOUND, format!("No such {}: {id}", kind_name(kind)), "").into_response(),
            )
        })
    }

    /// [`Self::inspect`], with `None` for an object that does not exist.
    async fn try_inspect(&self, kind: ResourceKind, id: &str) -> Flow<Option<Value>> {
        let Some(path) = inspect_path(kind, id) else {
            return Err(Denial::new(DenyRule::ResourceAccess, "no such object").into());
        };
        match self.entry.upstream.get_json_limited(&path, INSPECT_TIMEOUT, MAX_INSPECT).await {
            Ok(v) => Ok(Some(v)),
            Err(UpstreamError::BadStatus(404)) => Ok(None),
            Err(e) => Err(Stop::answer(self.upstream_error(kind, id, &e))),
        }
    }

    fn upstream_error(
        &self,
        kind: ResourceKind,
        id: &str,
        e: &UpstreamError,
    ) -> http::Response<crate::body::ResponseBody> {
        match e {
            UpstreamError::BadStatus(s) => {
                let status = StatusCode::from_u16(*s).unwrap_or(StatusCode::BAD_GATEWAY);
                ApiError::new(status, format!("Unable to inspect {} {id}", kind_name(kind)), e.to_string())
                    .into_response()
            }
            UpstreamError::BadJson(_) | UpstreamError::TooLarge(_) => answer::bad_answer(e),
            _ => super::super::unreachable_host(&self.target, e),
        }
    }

    /// The id volume controls are keyed by; empty for other kinds, which
    /// do not need it.
    pub(super) async fn docker_id(&self, kind: ResourceKind) -> Flow<Arc<str>> {
        if kind != ResourceKind::Volume {
            return Ok(Arc::from(""));
        }
        engine_id(self.state, self.entry)
            .await
            .map_err(|e| Stop::answer(self.upstream_error(ResourceKind::Volume, "(engine info)", &e)))
    }

    /// The control governing an object (inspect answer of `kind`) if the
    /// caller may use it; a denial otherwise. A control built from the
    /// object's access-control labels is stored, as Portainer does.
    pub(super) async fn visible(&self, kind: ResourceKind, object: &Value) -> Flow<Option<ResourceControl>> {
        let view = ObjectView::of(kind, object)
            .ok_or_else(|| Denial::new(DenyRule::ResourceAccess, format!("unidentified {}", kind_name(kind))))?;
        let docker_id = self.docker_id(kind).await?;
        let scope = Scope { endpoint_id: self.entry.record.id, docker_id: &docker_id };
        let controls = WithStacks { table: &self.state.controls, stacks: &self.state.stacks };
        let gov = control::governing(&view, &scope, &controls, &Names(&self.state.identity));
        if !control::can_use(&self.caller(), gov.control()) {
            return Err(Denial::new(DenyRule::ResourceAccess, format!("{} {}", kind_name(kind), view.id)).into());
        }
        if let Governing::Labels(rc) = &gov {
            // Already there (a concurrent request stored it) is fine.
            let _ = self.state.controls.create(&self.state.store, rc.clone()).await;
        }
        Ok(gov.control().cloned())
    }

    /// Every object a body or query points at must exist and be visible
    /// (a volume that does not exist yet is fine: Docker creates it, and
    /// the caller's container gets it); networks may not be the host's.
    pub(super) async fn check_references(&self, refs: &[Reference]) -> Flow<()> {
        for r in refs {
            let found = self.try_inspect(r.kind, &r.id).await?;
            let Some(object) = found else {
                if r.kind == ResourceKind::Volume {
                    continue;
                }
                return Err(
                    Denial::new(DenyRule::ResourceAccess, format!("{}: no such {}", r.at, kind_name(r.kind))).into()
                );
            };
            self.visible(r.kind, &object).await.map_err(|s| match s {
                Stop::Denied(d) => Stop::Denied(Denial::new(d.rule, format!("{}: {}", r.at, d.detail))),
                other => other,
            })?;
            if r.kind == ResourceKind::Network {
                control::check_network_use(&object, self.settings())?;
            }
        }
        Ok(())
    }

    /// A volume create naming an existing volume: Docker would answer 201
    /// with that volume, so the caller must already be allowed to use it.
    pub(super) async fn check_existing_volume(&self, body: &[u8]) -> Flow<()> {
        let v = gojson::parse(body)?;
        let name = gojson::string(gojson::top(&v)?, "Name", "")?;
        if name.is_empty() {
            return Ok(());
        }
        if let Some(existing) = self.try_inspect(ResourceKind::Volume, name).await? {
            self.visible(ResourceKind::Volume, &existing).await?;
        }
        Ok(())
    }

    /// The streamed list filter for this caller.
    pub(super) async fn list_filter(&self, kind: ResourceKind) -> Flow<super::list::ListFilter> {
        Ok(super::list::ListFilter {
            state: self.state.clone(),
            user_id: self.user_id,
            teams: self.teams.clone(),
            admin: false,
            endpoint_id: self.entry.record.id,
            docker_id: self.docker_id(kind).await?,
            kind,
            stores_left: super::list::MAX_LABEL_STORES,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{authorize, Action};
    use crate::store::model::SecuritySettings;

    fn target(method: &str, path: &str, query: Option<&str>, full: &str) -> String {
        let m = http::Method::from_bytes(method.as_bytes()).unwrap();
        let d = authorize(&m, path, query, &SecuritySettings::default()).unwrap();
        assert!(matches!(d.action, Action::Owner { .. }), "{path}: {:?}", d.action);
        rewritten_target(&d, full, query).unwrap_or_else(|_| panic!("{path}"))
    }

    #[test]
    fn owner_routes_are_forwarded_with_the_full_id_and_the_client_query() {
        assert_eq!(
            target("POST", "/v1.41/containers/web/stop", Some("t=5"), "abc123"),
            "/v1.41/containers/abc123/stop?t=5"
        );
        assert_eq!(target("GET", "/containers/we%62/json", None, "abc"), "/containers/abc/json");
        assert_eq!(target("GET", "/volumes/my-vol", None, "my vol"), "/volumes/my%20vol");
        assert_eq!(
            target("POST", "/commit", Some("repo=x&%63ontainer=web&tag=1"), "abc"),
            "/commit?repo=x&tag=1&container=abc"
        );
        assert_eq!(encode("a/b?c#d%"), "a%2Fb%3Fc%23d%25");
    }
}
