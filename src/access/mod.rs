//! Restricted access through the Docker proxy (issue 14): one pure policy
//! that decides what a standard user may do, so the proxy only asks and
//! acts. No I/O, no store, no locks, no async here: the proxy supplies
//! what the policy needs (the caller, the endpoint's security settings,
//! resource controls through [`control::Controls`], inspect answers).
//!
//! Admins are never restricted and never reach this module: the proxy's
//! one branch is `if !caller.admin { access::authorize(..) }`. The one
//! exception is [`scope`], what a scoped API key may do, which applies to
//! any user's key (admins' too) and only ever narrows.
//!
//! For a standard user, in order:
//! 1. [`authorize`] (method, raw path, raw query, settings) → a [`Decision`]
//!    (route template + [`Action`]) or a [`Denial`]: the path is read as
//!    Docker reads it ([`path`]), matched against the table ([`rules`]),
//!    and query-only checks (build) are done.
//! 2. By [`Action`]:
//!    - `Forward`: forward.
//!    - `ForwardRedacted(r)`: forward, then `r.apply(&mut answer)`.
//!    - `Owner { kind, id, op }`: inspect the object on Docker (as the
//!      proxy), build [`control::ObjectView::of`], resolve it with
//!      [`control::governing`] and allow if [`control::can_use`]; else 403
//!      [`DenyRule::ResourceAccess`]. Execs resolve through their container
//!      ([`control::exec_container`]). With `OwnerOp::WithBody(k)`, the
//!      body goes through step 3 too (for a network connect, the path's
//!      network also passes [`control::check_network_use`]); `Read`
//!      decorates the answer with [`control::decorate`]; `Delete` removes
//!      the control on success; `ServiceRollback` checks the inspected
//!      service's `PreviousSpec` with [`body::inspect_value`].
//!    - `InspectBody(k)`: step 3; on a 201 create, store
//!      [`control::ControlDraft::control`] for [`control::created_id`]
//!      (volumes: [`control::volume_resource_id`]) before answering, so the
//!      object is never seen without its control.
//!    - `FilterList(kind)`: forward, then rewrite the answer with
//!      [`list::ListRewriter`] (shape [`list::Shape::of`]) calling
//!      [`list::filter_item`] per item, storing the controls it returns.
//!    - `CheckReferences(refs)`: check each like step 3's references.
//! 3. Bodies: read at most [`MAX_INSPECTED_BODY`] bytes (more, an unknown
//!    length, a `Content-Encoding`: [`Denial::too_large`] or refuse), then
//!    [`body::inspect`] → [`body::Findings`]: check every reference's
//!    visibility (a missing volume is fine; networks also pass
//!    [`control::check_network_use`]), and for creates call
//!    [`control::draft_for_create`] before forwarding.
//!
//! Every [`Denial`] has a stable rule name for `details`, logs and
//! `berth_access_denied_total{endpoint,rule}`: answer with
//! `denial.status()`, `denial.message()`, `denial.details()`.
//!
//! Admins' list answers can be decorated too: [`rules::lookup`] gives the
//! row without any check, and [`list::filter_item`] keeps every item for
//! an admin caller.

pub mod body;
pub mod control;
pub mod deny;
pub mod gojson;
pub mod list;
pub mod path;
pub mod rules;
pub mod scope;

pub use body::{BodyKind, Findings, Reference};
pub use deny::{Denial, DenyRule, Verdict};
pub use path::ApiVersion;
pub use rules::{IdFrom, OwnerOp, QueryKind, Redaction, Rule};

use crate::store::model::{
    SecuritySettings, RESOURCE_CONTROL_CONFIG, RESOURCE_CONTROL_CONTAINER, RESOURCE_CONTROL_NETWORK,
    RESOURCE_CONTROL_SECRET, RESOURCE_CONTROL_SERVICE, RESOURCE_CONTROL_VOLUME,
};

/// The cap on a body Berth must read before forwarding (413 beyond).
pub const MAX_INSPECTED_BODY: usize = 1 << 20;

/// The Docker objects the policy knows. `Task`, `Exec` and `Event` have no
/// controls of their own: tasks inherit their service's, execs their
/// container's, events their actor's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    Container,
    Service,
    Volume,
    Network,
    Secret,
    Config,
    Task,
    Exec,
    Event,
}

impl ResourceKind {
    /// Portainer's resource control type.
    pub fn control_type(self) -> Option<u8> {
        match self {
            ResourceKind::Container => Some(RESOURCE_CONTROL_CONTAINER),
            ResourceKind::Service => Some(RESOURCE_CONTROL_SERVICE),
            ResourceKind::Volume => Some(RESOURCE_CONTROL_VOLUME),
            ResourceKind::Network => Some(RESOURCE_CONTROL_NETWORK),
            ResourceKind::Secret => Some(RESOURCE_CONTROL_SECRET),
            ResourceKind::Config => Some(RESOURCE_CONTROL_CONFIG),
            ResourceKind::Task | ResourceKind::Exec | ResourceKind::Event => None,
        }
    }
}

/// What the proxy does with an allowed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Forward,
    ForwardRedacted(Redaction),
    FilterList(ResourceKind),
    /// `id` as the client wrote it (name, id or id prefix): resolve it by
    /// inspecting the object.
    Owner {
        kind: ResourceKind,
        id: String,
        op: OwnerOp,
    },
    InspectBody(BodyKind),
    /// Objects a query names (build `networkmode=container:<id>`).
    CheckReferences(Vec<Reference>),
}

/// An allowed standard-user request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The route template (`POST /containers/{id}/start`), for logs and metrics.
    pub route: &'static str,
    pub version: Option<ApiVersion>,
    pub action: Action,
}

/// Decides a standard user's Docker request from its head. `raw_path` is
/// what follows `/api/endpoints/{id}/docker`, undecoded; `raw_query` the
/// query without `?`.
pub fn authorize(
    method: &http::Method,
    raw_path: &str,
    raw_query: Option<&str>,
    settings: &SecuritySettings,
) -> Verdict<Decision> {
    let p = path::normalize(raw_path)?;
    let Some(m) = rules::lookup(method.as_str(), &p.path) else {
        return Err(Denial::new(
            DenyRule::AdminOnly,
            format!("no rule for {method} {} (reserved to administrators)", p.path),
        ));
    };
    let action = match m.rule {
        Rule::Allow => Action::Forward,
        Rule::AllowRedacted(r) => Action::ForwardRedacted(r),
        Rule::AdminOnly => {
            return Err(Denial::new(DenyRule::AdminOnly, format!("{} is reserved to administrators", m.template)))
        }
        Rule::FilterList { kind } => Action::FilterList(kind),
        Rule::InspectBody { kind } => Action::InspectBody(kind),
        Rule::OwnerOnly { kind, id, op } => {
            let id = match id {
                IdFrom::Path => m.id.unwrap_or_default(),
                IdFrom::Query(key) => path::Query::parse(raw_query)?.unique(key)?.unwrap_or_default().to_string(),
            };
            if id.is_empty() {
                return Err(Denial::new(DenyRule::Query, format!("{} names no object", m.template)));
            }
            let op = match op {
                OwnerOp::WithBody(BodyKind::ServiceUpdate)
                    if path::Query::parse(raw_query)?.unique("rollback")?.is_some_and(|r| !r.is_empty()) =>
                {
                    OwnerOp::ServiceRollback
                }
                op => op,
            };
            Action::Owner { kind, id, op }
        }
        Rule::InspectQuery { kind: QueryKind::Build } => {
            let refs = build_query(&path::Query::parse(raw_query)?, settings)?;
            if refs.is_empty() {
                Action::Forward
            } else {
                Action::CheckReferences(refs)
            }
        }
    };
    Ok(Decision { route: m.template, version: p.version, action })
}

/// `POST /build`: the classic builder's RUN containers take their network
/// and cgroup from the query; BuildKit (`version=2`) lets a Dockerfile ask
/// for `RUN --network=host`, which dockerd allows by default, so it needs
/// the host-namespace setting.
fn build_query(q: &path::Query, s: &SecuritySettings) -> Verdict<Vec<Reference>> {
    let host = |what: &str| {
        if s.allow_host_namespace_for_regular_users {
            Ok(())
        } else {
            Err(Denial::new(DenyRule::HostNamespace, what.to_string()))
        }
    };
    let mut refs = Vec::new();
    let net = q.unique("networkmode")?.unwrap_or("");
    match net.to_ascii_lowercase().as_str() {
        "" | "default" | "bridge" | "none" => {}
        "host" => host("networkmode=host")?,
        _ => {
            let (kind, id) = match net.split_once(':') {
                Some((k, id)) if k.eq_ignore_ascii_case("container") => (ResourceKind::Container, id),
                _ => (ResourceKind::Network, net),
            };
            refs.push(Reference { kind, id: id.to_string(), at: "networkmode".into() });
        }
    }
    match q.unique("version")?.unwrap_or("") {
        "" | "1" => {}
        "2" => host("version=2 (BuildKit steps may use the host network)")?,
        v => return Err(Denial::new(DenyRule::Query, format!("unknown builder version {v:?}"))),
    }
    let loosened = !q.unique("cgroupparent")?.unwrap_or("").is_empty()
        || !matches!(q.unique("isolation")?.unwrap_or(""), "" | "default");
    if loosened && !s.allow_security_options_for_regular_users {
        return Err(Denial::new(DenyRule::SecurityOptions, "cgroupparent / isolation"));
    }
    Ok(refs)
}

#[cfg(test)]
mod tests;
