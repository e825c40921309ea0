//! The rule table: what a standard user may do with each (method, Docker
//! Engine API route) of API versions 1.24 to 1.47. Every route Docker
//! serves has an explicit row; a request that matches no row is
//! admin-only, so a route added to Docker later is closed until someone
//! writes its rule (Portainer forwarded unlisted paths: CVE-2026-44848).
//!
//! Matching uses `matchit` on the canonical path from [`super::path`]; a
//! `{id}` is one path segment (Docker's own patterns are greedier, so a
//! multi-segment "id" matches nothing here and is admin-only). Image,
//! distribution and plugin names may hold `/`, so those routes match a
//! catch-all and then a fixed suffix, as Docker's `{name:.*}/json` does.

use std::sync::LazyLock;

use super::body::BodyKind;
use super::ResourceKind;
use super::ResourceKind::{Config, Container, Event, Exec, Network, Secret, Service, Task, Volume};

/// Where an owner-only route names its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdFrom {
    /// The `{id}` path segment.
    Path,
    /// A query parameter (`POST /commit?container=`).
    Query(&'static str),
}

/// What an owner-only route does to its object, which tells the proxy what
/// else to do around forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerOp {
    /// Inspect: decorate the answer with the object's control.
    Read,
    /// Any other use (logs, start, attach, archive, ...).
    Act,
    /// Delete: on success, delete the object's control.
    Delete,
    /// A use whose body is checked too (update, exec create, connect).
    WithBody(BodyKind),
    /// `POST /services/{id}/update?rollback=previous`: the body is ignored
    /// and the service's `PreviousSpec` comes back, so that spec (from the
    /// inspect that resolves visibility) is checked with
    /// [`super::body::inspect_value`] as a `ServiceUpdate`.
    ServiceRollback,
}

/// Parts of an allowed answer that standard users must not see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redaction {
    /// `GET /swarm`: `JoinTokens` (whoever holds one can join a node, as a
    /// manager even) and `TLSInfo`, as Portainer drops them.
    SwarmJoinTokens,
}

impl Redaction {
    /// Applies the redaction to a parsed answer.
    pub fn apply(self, answer: &mut serde_json::Value) {
        match self {
            Redaction::SwarmJoinTokens => {
                if let Some(o) = answer.as_object_mut() {
                    o.remove("JoinTokens");
                    o.remove("TLSInfo");
                }
            }
        }
    }
}

/// Query-only checks (the body is not JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    /// `POST /build`: `networkmode`, `version` (BuildKit), `cgroupparent`,
    /// `isolation`.
    Build,
}

/// One row's rule for standard users (admins never consult the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Forwarded as is.
    Allow,
    /// Forwarded; the answer loses the parts named.
    AllowRedacted(Redaction),
    /// The object must be visible to the caller.
    OwnerOnly {
        kind: ResourceKind,
        id: IdFrom,
        op: OwnerOp,
    },
    /// The answer is filtered item by item and decorated.
    FilterList {
        kind: ResourceKind,
    },
    /// The body is checked against the endpoint's security settings; a
    /// successful create gets a resource control.
    InspectBody {
        kind: BodyKind,
    },
    /// The query is checked against the endpoint's security settings.
    InspectQuery {
        kind: QueryKind,
    },
    AdminOnly,
}

use OwnerOp::{Act, Delete, Read, WithBody};
use Rule::{AdminOnly, Allow};

const fn own(kind: ResourceKind, op: OwnerOp) -> Rule {
    Rule::OwnerOnly { kind, id: IdFrom::Path, op }
}
const fn list(kind: ResourceKind) -> Rule {
    Rule::FilterList { kind }
}
const fn body(kind: BodyKind) -> Rule {
    Rule::InspectBody { kind }
}

/// Every route of Docker Engine API 1.24-1.47 (the swagger documents plus
/// the routes the daemon registers without documenting them: exec,
/// checkpoints, `/grpc`, `/build/cancel`). Templates are what metrics and
/// denials show.
pub static ROUTES: &[(&str, &str, Rule)] = &[
    // System.
    ("GET", "/_ping", Allow),
    ("HEAD", "/_ping", Allow),
    ("GET", "/version", Allow),
    ("GET", "/info", Allow),
    ("POST", "/auth", Allow),
    ("GET", "/events", list(Event)),
    // Lists every container, image and volume with their sizes and labels.
    ("GET", "/system/df", AdminOnly),
    // Containers.
    ("GET", "/containers/json", list(Container)),
    ("POST", "/containers/create", body(BodyKind::ContainerCreate)),
    ("POST", "/containers/prune", AdminOnly),
    ("GET", "/containers/{id}/json", own(Container, Read)),
    ("GET", "/containers/{id}/top", own(Container, Act)),
    ("GET", "/containers/{id}/logs", own(Container, Act)),
    ("GET", "/containers/{id}/changes", own(Container, Act)),
    ("GET", "/containers/{id}/export", own(Container, Act)),
    ("GET", "/containers/{id}/stats", own(Container, Act)),
    ("POST", "/containers/{id}/resize", own(Container, Act)),
    ("POST", "/containers/{id}/start", own(Container, Act)),
    ("POST", "/containers/{id}/stop", own(Container, Act)),
    ("POST", "/containers/{id}/restart", own(Container, Act)),
    ("POST", "/containers/{id}/kill", own(Container, Act)),
    ("POST", "/containers/{id}/update", own(Container, WithBody(BodyKind::ContainerUpdate))),
    ("POST", "/containers/{id}/rename", own(Container, Act)),
    ("POST", "/containers/{id}/pause", own(Container, Act)),
    ("POST", "/containers/{id}/unpause", own(Container, Act)),
    ("POST", "/containers/{id}/attach", own(Container, Act)),
    ("GET", "/containers/{id}/attach/ws", own(Container, Act)),
    ("POST", "/containers/{id}/wait", own(Container, Act)),
    ("DELETE", "/containers/{id}", own(Container, Delete)),
    ("HEAD", "/containers/{id}/archive", own(Container, Act)),
    ("GET", "/containers/{id}/archive", own(Container, Act)),
    ("PUT", "/containers/{id}/archive", own(Container, Act)),
    ("POST", "/containers/{id}/exec", own(Container, WithBody(BodyKind::ExecCreate))),
    // Experimental checkpoint/restore (CRIU runs as root on the host).
    ("GET", "/containers/{id}/checkpoints", AdminOnly),
    ("POST", "/containers/{id}/checkpoints", AdminOnly),
    ("DELETE", "/containers/{id}/checkpoints/{checkpoint}", AdminOnly),
    // Exec instances: visible when their container is.
    ("GET", "/exec/{id}/json", own(Exec, Read)),
    ("POST", "/exec/{id}/start", own(Exec, Act)),
    ("POST", "/exec/{id}/resize", own(Exec, Act)),
    // Images (not access-controlled, as in Portainer).
    ("GET", "/images/json", Allow),
    ("POST", "/build", Rule::InspectQuery { kind: QueryKind::Build }),
    ("POST", "/build/prune", AdminOnly),
    ("POST", "/build/cancel", Allow),
    ("POST", "/images/create", Allow),
    ("GET", "/images/{name}/json", Allow),
    ("GET", "/images/{name}/history", Allow),
    ("POST", "/images/{name}/push", Allow),
    ("POST", "/images/{name}/tag", Allow),
    ("DELETE", "/images/{name}", Allow),
    ("GET", "/images/search", Allow),
    ("POST", "/images/prune", AdminOnly),
    ("GET", "/images/{name}/get", Allow),
    ("GET", "/images/get", Allow),
    ("POST", "/images/load", Allow),
    // A commit reads the container's whole filesystem.
    ("POST", "/commit", Rule::OwnerOnly { kind: Container, id: IdFrom::Query("container"), op: Act }),
    ("GET", "/distribution/{name}/json", Allow),
    ("POST", "/session", Allow),
    // BuildKit's control API: builds with any entitlement.
    ("POST", "/grpc", AdminOnly),
    // Networks.
    ("GET", "/networks", list(Network)),
    ("GET", "/networks/{id}", own(Network, Read)),
    ("DELETE", "/networks/{id}", own(Network, Delete)),
    ("POST", "/networks/create", body(BodyKind::NetworkCreate)),
    ("POST", "/networks/{id}/connect", own(Network, WithBody(BodyKind::NetworkConnect))),
    ("POST", "/networks/{id}/disconnect", own(Network, WithBody(BodyKind::NetworkConnect))),
    ("POST", "/networks/prune", AdminOnly),
    // Volumes.
    ("GET", "/volumes", list(Volume)),
    ("POST", "/volumes/create", body(BodyKind::VolumeCreate)),
    ("GET", "/volumes/{id}", own(Volume, Read)),
    // Cluster (CSI) volume update.
    ("PUT", "/volumes/{id}", AdminOnly),
    ("DELETE", "/volumes/{id}", own(Volume, Delete)),
    ("POST", "/volumes/prune", AdminOnly),
    // Swarm.
    ("GET", "/swarm", Rule::AllowRedacted(Redaction::SwarmJoinTokens)),
    ("POST", "/swarm/init", AdminOnly),
    ("POST", "/swarm/join", AdminOnly),
    ("POST", "/swarm/leave", AdminOnly),
    ("POST", "/swarm/update", AdminOnly),
    ("GET", "/swarm/unlockkey", AdminOnly),
    ("POST", "/swarm/unlock", AdminOnly),
    // Nodes: the list as in Portainer, everything else admin-only.
    ("GET", "/nodes", Allow),
    ("GET", "/nodes/{id}", AdminOnly),
    ("DELETE", "/nodes/{id}", AdminOnly),
    ("POST", "/nodes/{id}/update", AdminOnly),
    // Services and tasks.
    ("GET", "/services", list(Service)),
    ("POST", "/services/create", body(BodyKind::ServiceCreate)),
    ("GET", "/services/{id}", own(Service, Read)),
    ("DELETE", "/services/{id}", own(Service, Delete)),
    ("POST", "/services/{id}/update", own(Service, WithBody(BodyKind::ServiceUpdate))),
    ("GET", "/services/{id}/logs", own(Service, Act)),
    ("GET", "/tasks", list(Task)),
    ("GET", "/tasks/{id}", own(Task, Read)),
    ("GET", "/tasks/{id}/logs", own(Task, Act)),
    // Secrets and configs.
    ("GET", "/secrets", list(Secret)),
    ("POST", "/secrets/create", body(BodyKind::SecretCreate)),
    ("GET", "/secrets/{id}", own(Secret, Read)),
    ("DELETE", "/secrets/{id}", own(Secret, Delete)),
    ("POST", "/secrets/{id}/update", own(Secret, Act)),
    ("GET", "/configs", list(Config)),
    ("POST", "/configs/create", body(BodyKind::ConfigCreate)),
    ("GET", "/configs/{id}", own(Config, Read)),
    ("DELETE", "/configs/{id}", own(Config, Delete)),
    ("POST", "/configs/{id}/update", own(Config, Act)),
    // Plugins run with the privileges they ask for: admins only.
    ("GET", "/plugins", AdminOnly),
    ("GET", "/plugins/privileges", AdminOnly),
    ("POST", "/plugins/pull", AdminOnly),
    ("POST", "/plugins/create", AdminOnly),
    ("GET", "/plugins/{name}/json", AdminOnly),
    ("DELETE", "/plugins/{name}", AdminOnly),
    ("POST", "/plugins/{name}/enable", AdminOnly),
    ("POST", "/plugins/{name}/disable", AdminOnly),
    ("POST", "/plugins/{name}/upgrade", AdminOnly),
    ("POST", "/plugins/{name}/push", AdminOnly),
    ("POST", "/plugins/{name}/set", AdminOnly),
];

/// Prefixes whose `{name}` may contain `/`: matched as a catch-all, then
/// by the suffix of the row's template.
const NAMED: &[&str] = &["/images/", "/distribution/", "/plugins/"];

/// A matched row: its template, rule and the captured object id or name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub template: &'static str,
    pub rule: Rule,
    pub id: Option<String>,
}

enum Slot {
    Row(usize),
    /// Rows of one catch-all: (suffix after `{name}`, row).
    Named(Vec<(&'static str, usize)>),
}

static ROUTER: LazyLock<matchit::Router<Slot>> = LazyLock::new(build);

fn build() -> matchit::Router<Slot> {
    let mut r = matchit::Router::new();
    let mut named: Vec<(String, Vec<(&'static str, usize)>)> = Vec::new();
    for (i, (method, template, _)) in ROUTES.iter().enumerate() {
        let prefix = NAMED.iter().find(|p| template.starts_with(**p) && template[p.len()..].starts_with("{name}"));
        match prefix {
            Some(p) => {
                let key = format!("/{method}{p}{{*name}}");
                let suffix = &template[p.len() + "{name}".len()..];
                match named.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, rows)) => rows.push((suffix, i)),
                    None => named.push((key, vec![(suffix, i)])),
                }
            }
            None => {
                // The table is static and tested; a bad row shows in every test.
                let _ = r.insert(format!("/{method}{template}"), Slot::Row(i));
            }
        }
    }
    for (key, rows) in named {
        let _ = r.insert(key, Slot::Named(rows));
    }
    r
}

/// The row for `method` and a canonical path, or `None` (admin-only).
pub fn lookup(method: &str, path: &str) -> Option<Matched> {
    if !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let key = format!("/{method}{path}");
    let m = ROUTER.at(&key).ok()?;
    let (row, id) = match m.value {
        Slot::Row(i) => (*i, m.params.get("id").map(str::to_string)),
        Slot::Named(rows) => {
            let name = m.params.get("name")?;
            rows.iter().find_map(|(suffix, i)| {
                let n = name.strip_suffix(suffix)?;
                (!n.is_empty()).then(|| (*i, Some(n.to_string())))
            })?
        }
    };
    let (_, template, rule) = ROUTES[row];
    Some(Matched { template, rule, id })
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
