//! Ownership: which Docker objects a standard user may see and touch,
//! decided from Portainer's resource controls, pure (the proxy supplies the
//! controls through [`Controls`] and names through [`Directory`]).
//!
//! Portainer's order is kept: an object's own control first; otherwise the
//! one it inherits (a container or task from its swarm service via
//! `com.docker.swarm.service.id`, anything from its stack via
//! `com.docker.stack.namespace`, else `com.docker.compose.project`; an exec
//! instance from its container); otherwise a control built from the
//! `io.portainer.accesscontrol.*` labels (which the proxy stores, as
//! Portainer does); otherwise none, and no control means admins only.

use serde_json::{Map, Value};

use super::deny::{Denial, DenyRule, Verdict};
use super::ResourceKind;
use crate::store::model::{
    Id, ResourceControl, SecuritySettings, TeamAccess, UserAccess, RESOURCE_CONTROL_NETWORK, RESOURCE_CONTROL_SERVICE,
    RESOURCE_CONTROL_STACK,
};

pub const LABEL_PUBLIC: &str = "io.portainer.accesscontrol.public";
pub const LABEL_USERS: &str = "io.portainer.accesscontrol.users";
pub const LABEL_TEAMS: &str = "io.portainer.accesscontrol.teams";
pub const LABEL_SERVICE_ID: &str = "com.docker.swarm.service.id";
pub const LABEL_STACK_NAMESPACE: &str = "com.docker.stack.namespace";
pub const LABEL_COMPOSE_PROJECT: &str = "com.docker.compose.project";

/// Networks every user sees (Portainer's synthetic public "System" control).
pub const SYSTEM_NETWORKS: &[&str] = &["bridge", "host", "ingress", "nat", "none"];

/// Who is asking. `teams` are the ids of the user's teams.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub user_id: Id,
    pub teams: &'a [Id],
    pub admin: bool,
}

/// The proxy's in-memory resource controls.
pub trait Controls {
    /// The control with this type and `ResourceId`, or any control whose
    /// `SubResourceIds` holds `resource_id` (Portainer matches those
    /// regardless of type).
    fn find(&self, control_type: u8, resource_id: &str) -> Option<&ResourceControl>;
}

impl Controls for Vec<ResourceControl> {
    fn find(&self, control_type: u8, resource_id: &str) -> Option<&ResourceControl> {
        self.iter()
            .find(|c| c.kind == control_type && c.resource_id == resource_id)
            .or_else(|| self.iter().find(|c| c.sub_resource_ids.iter().any(|s| s == resource_id)))
    }
}

/// User and team names, for the access-control labels.
pub trait Directory {
    fn user_id(&self, name: &str) -> Option<Id>;
    fn team_id(&self, name: &str) -> Option<Id>;
}

/// Where the objects live: stack controls are `<endpointId>_<stack>` and
/// volume controls `<volumeName>_<dockerId>` (the swarm cluster id, or the
/// engine id outside swarm), as in Portainer.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub endpoint_id: Id,
    pub docker_id: &'a str,
}

/// Whether `caller` may use an object governed by `rc`; no control at all
/// means admins only.
pub fn can_use(caller: &Caller, rc: Option<&ResourceControl>) -> bool {
    if caller.admin {
        return true;
    }
    let Some(rc) = rc else { return false };
    if rc.administrators_only {
        return false;
    }
    rc.public
        || rc.user_accesses.iter().any(|u| u.user_id == caller.user_id)
        || rc.team_accesses.iter().any(|t| caller.teams.contains(&t.team_id))
}

/// The `io.portainer.accesscontrol.*` labels of an object or create body.
/// `users`/`teams` are `Some` when the label is present (even empty: a
/// control with no access, admins only, as in Portainer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessLabels {
    pub public: bool,
    pub users: Option<Vec<String>>,
    pub teams: Option<Vec<String>>,
}

/// Comma-separated names, trimmed, empty and repeated ones dropped.
fn names(v: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    }
    out
}

impl AccessLabels {
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut l = AccessLabels::default();
        for (k, v) in pairs {
            match k {
                LABEL_PUBLIC => l.public = true,
                LABEL_USERS => l.users = Some(names(v)),
                LABEL_TEAMS => l.teams = Some(names(v)),
                _ => {}
            }
        }
        l
    }

    /// From a Docker labels object (non-string values are ignored).
    pub fn from_labels(labels: Option<&Map<String, Value>>) -> Self {
        Self::from_pairs(labels.into_iter().flatten().filter_map(|(k, v)| Some((k.as_str(), v.as_str()?))))
    }

    pub fn is_empty(&self) -> bool {
        !self.public && self.users.is_none() && self.teams.is_none()
    }
}

/// Who a new control grants, before the object (and its id) exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlDraft {
    pub public: bool,
    pub users: Vec<Id>,
    pub teams: Vec<Id>,
}

impl ControlDraft {
    /// Portainer's control from labels (public wins; unknown names are
    /// dropped), or `None` when there are no such labels.
    pub fn from_labels(l: &AccessLabels, dir: &dyn Directory) -> Option<Self> {
        if l.public {
            return Some(ControlDraft { public: true, users: Vec::new(), teams: Vec::new() });
        }
        if l.is_empty() {
            return None;
        }
        let mut users: Vec<Id> = l.users.iter().flatten().filter_map(|n| dir.user_id(n)).collect();
        let mut teams: Vec<Id> = l.teams.iter().flatten().filter_map(|n| dir.team_id(n)).collect();
        users.dedup();
        teams.dedup();
        Some(ControlDraft { public: false, users, teams })
    }

    /// The stored control (`id` assigned by the store); `None` for kinds
    /// that have no controls of their own (tasks, execs, events).
    pub fn control(&self, id: Id, kind: ResourceKind, resource_id: impl Into<String>) -> Option<ResourceControl> {
        Some(self.control_of_type(id, kind.control_type()?, resource_id))
    }

    fn control_of_type(&self, id: Id, control_type: u8, resource_id: impl Into<String>) -> ResourceControl {
        ResourceControl {
            id,
            resource_id: resource_id.into(),
            sub_resource_ids: Vec::new(),
            kind: control_type,
            user_accesses: self.users.iter().map(|&user_id| UserAccess { user_id, access_level: 1 }).collect(),
            team_accesses: self.teams.iter().map(|&team_id| TeamAccess { team_id, access_level: 1 }).collect(),
            public: self.public,
            administrators_only: false,
            system: false,
        }
    }
}

/// The control to store when `caller` creates an object: from the body's
/// access labels when present, otherwise private to the caller. A standard
/// user may only set what Portainer lets them set on a control (public;
/// themselves alone; or teams, one of them their own), so the create is
/// refused before it reaches Docker rather than give the object away or
/// lose it.
pub fn draft_for_create(caller: &Caller, labels: &AccessLabels, dir: &dyn Directory) -> Verdict<ControlDraft> {
    let Some(d) = ControlDraft::from_labels(labels, dir) else {
        return Ok(ControlDraft { public: false, users: vec![caller.user_id], teams: Vec::new() });
    };
    let allowed = caller.admin
        || d.public
        || (d.teams.is_empty() && d.users == [caller.user_id])
        || (d.users.is_empty() && d.teams.iter().any(|t| caller.teams.contains(t)));
    if allowed {
        Ok(d)
    } else {
        Err(Denial::new(
            DenyRule::AccessLabels,
            "io.portainer.accesscontrol labels may make an object public, yours alone, or shared with a team of yours",
        ))
    }
}

/// The id a create answer names (volumes: the name), for the new control.
pub fn created_id(kind: ResourceKind, answer: &Value) -> Option<&str> {
    let key: &[&str] = match kind {
        ResourceKind::Volume => &["Name"],
        ResourceKind::Container | ResourceKind::Network => &["Id"],
        _ => &["ID", "Id"],
    };
    key.iter().find_map(|k| answer.get(k)?.as_str()).filter(|s| !s.is_empty())
}

/// Portainer's volume control id.
pub fn volume_resource_id(name: &str, docker_id: &str) -> String {
    format!("{name}_{docker_id}")
}

/// Portainer's stack control id.
pub fn stack_resource_id(endpoint_id: Id, stack: &str) -> String {
    format!("{endpoint_id}_{stack}")
}

/// What an object looks like to the policy, from a list item or an
/// inspect answer (Docker's shapes differ by kind and by route).
#[derive(Debug, Clone, Copy)]
pub struct ObjectView<'a> {
    pub kind: ResourceKind,
    /// Docker id; a volume's name.
    pub id: &'a str,
    pub name: &'a str,
    pub labels: Option<&'a Map<String, Value>>,
    /// A task's service.
    pub service_id: &'a str,
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter().try_fold(v, |v, k| v.get(k)).and_then(Value::as_str).unwrap_or("")
}

fn labels_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Map<String, Value>> {
    path.iter().try_fold(v, |v, k| v.get(k)).and_then(Value::as_object)
}

impl<'a> ObjectView<'a> {
    /// Reads `obj` (list item or inspect answer of `kind`). Events map to
    /// the kind of their actor; `None` when the object has no usable id
    /// (or, for events, its type is not one Berth shows standard users).
    pub fn of(kind: ResourceKind, obj: &'a Value) -> Option<Self> {
        let v = |kind, id: &'a str, name: &'a str, labels, service_id: &'a str| {
            (!id.is_empty()).then_some(ObjectView { kind, id, name, labels, service_id })
        };
        match kind {
            ResourceKind::Container => {
                let labels = labels_at(obj, &["Labels"]).or_else(|| labels_at(obj, &["Config", "Labels"]));
                v(kind, s(obj, &["Id"]), s(obj, &["Name"]), labels, "")
            }
            ResourceKind::Service | ResourceKind::Secret | ResourceKind::Config => {
                v(kind, s(obj, &["ID"]), s(obj, &["Spec", "Name"]), labels_at(obj, &["Spec", "Labels"]), "")
            }
            ResourceKind::Task => v(
                kind,
                s(obj, &["ID"]),
                "",
                labels_at(obj, &["Spec", "ContainerSpec", "Labels"]),
                s(obj, &["ServiceID"]),
            ),
            ResourceKind::Volume => v(kind, s(obj, &["Name"]), s(obj, &["Name"]), labels_at(obj, &["Labels"]), ""),
            ResourceKind::Network => v(kind, s(obj, &["Id"]), s(obj, &["Name"]), labels_at(obj, &["Labels"]), ""),
            ResourceKind::Exec => None,
            ResourceKind::Event => {
                let actor_kind = match s(obj, &["Type"]) {
                    "container" => ResourceKind::Container,
                    "service" => ResourceKind::Service,
                    "network" => ResourceKind::Network,
                    "volume" => ResourceKind::Volume,
                    "secret" => ResourceKind::Secret,
                    "config" => ResourceKind::Config,
                    _ => return None,
                };
                let attrs = labels_at(obj, &["Actor", "Attributes"]);
                let name = attrs.and_then(|a| a.get("name")).and_then(Value::as_str).unwrap_or("");
                let id = s(obj, &["Actor", "ID"]);
                v(actor_kind, id, name, attrs, "")
            }
        }
    }
}

/// Event types every user sees: images, the daemon, nodes and builds are
/// not access-controlled (as their routes).
pub fn public_event(event: &Value) -> bool {
    matches!(s(event, &["Type"]), "image" | "daemon" | "node" | "builder")
}

/// The container an exec instance runs in (`GET /exec/{id}/json`), whose
/// visibility is the exec's.
pub fn exec_container(exec_inspect: &Value) -> Option<&str> {
    exec_inspect.get("ContainerID")?.as_str().filter(|s| !s.is_empty())
}

/// The control that governs an object.
#[derive(Debug, Clone, PartialEq)]
pub enum Governing<'c> {
    /// Its own or an inherited stored control.
    Stored(&'c ResourceControl),
    /// Portainer's synthetic public control of a system network (not stored).
    System(ResourceControl),
    /// Built from its access-control labels: the proxy stores it (id 0 here).
    Labels(ResourceControl),
    None,
}

impl Governing<'_> {
    pub fn control(&self) -> Option<&ResourceControl> {
        match self {
            Governing::Stored(c) => Some(c),
            Governing::System(c) | Governing::Labels(c) => Some(c),
            Governing::None => None,
        }
    }
}

/// Finds the control governing `obj` in Portainer's order.
pub fn governing<'c>(
    obj: &ObjectView,
    scope: &Scope,
    controls: &'c dyn Controls,
    dir: &dyn Directory,
) -> Governing<'c> {
    let own_id = match obj.kind {
        ResourceKind::Volume => volume_resource_id(obj.id, scope.docker_id),
        _ => obj.id.to_string(),
    };
    if obj.kind == ResourceKind::Network && SYSTEM_NETWORKS.contains(&obj.name) {
        let mut rc = ControlDraft { public: true, users: Vec::new(), teams: Vec::new() }.control_of_type(
            0,
            RESOURCE_CONTROL_NETWORK,
            own_id,
        );
        rc.system = true;
        return Governing::System(rc);
    }
    if let Some(t) = obj.kind.control_type() {
        if let Some(rc) = controls.find(t, &own_id) {
            return Governing::Stored(rc);
        }
    }
    let label = |k: &str| obj.labels.and_then(|l| l.get(k)).and_then(Value::as_str).unwrap_or("");
    let service = if obj.kind == ResourceKind::Task { obj.service_id } else { label(LABEL_SERVICE_ID) };
    if matches!(obj.kind, ResourceKind::Container | ResourceKind::Task) && !service.is_empty() {
        if let Some(rc) = controls.find(RESOURCE_CONTROL_SERVICE, service) {
            return Governing::Stored(rc);
        }
    }
    let stack = match label(LABEL_STACK_NAMESPACE) {
        "" => label(LABEL_COMPOSE_PROJECT),
        ns => ns,
    };
    if !stack.is_empty() {
        if let Some(rc) = controls.find(RESOURCE_CONTROL_STACK, &stack_resource_id(scope.endpoint_id, stack)) {
            return Governing::Stored(rc);
        }
    }
    if obj.kind == ResourceKind::Task {
        return Governing::None;
    }
    match ControlDraft::from_labels(&AccessLabels::from_labels(obj.labels), dir)
        .and_then(|d| d.control(0, obj.kind, own_id))
    {
        Some(rc) => Governing::Labels(rc),
        None => Governing::None,
    }
}

/// Adds Portainer's `Portainer.ResourceControl` to a list item or inspect
/// answer (clients, Portainer's UI included, read it).
pub fn decorate(obj: &mut Value, rc: &ResourceControl) {
    if let Some(o) = obj.as_object_mut() {
        let entry = o.entry("Portainer").or_insert_with(|| Value::Object(Map::new()));
        if let (Some(p), Ok(rc)) = (entry.as_object_mut(), serde_json::to_value(rc)) {
            p.insert("ResourceControl".into(), rc);
        }
    }
}

/// A network a container or service joins: the host network, however it
/// was named, is the host namespace. Called with the network's inspect
/// answer after its visibility was checked.
pub fn check_network_use(network: &Value, settings: &SecuritySettings) -> Verdict<()> {
    let host = s(network, &["Driver"]) == "host" || s(network, &["Name"]) == "host";
    if host && !settings.allow_host_namespace_for_regular_users {
        return Err(Denial::new(DenyRule::HostNamespace, "the host network"));
    }
    Ok(())
}

#[cfg(test)]
#[path = "control_tests.rs"]
pub(crate) mod tests;
