//! What a scoped API key may do (issue 17): the one pure decision on a
//! key's [`KeyScope`] × method × route → allow, or a [`ScopeDenial`] naming
//! the scope that refused. No I/O, no state: callers supply the endpoint's
//! group and the route.
//!
//! A scope only ever narrows: every caller asks it *in addition to* the
//! user's own rights (role, endpoint policies, resource controls), which
//! are evaluated live on every request, so a demoted user's keys shrink
//! with them. Unrestricted keys and JWTs never reach this module: the
//! principal carries no scope for them, and the hot path pays one
//! `is_none` branch.
//!
//! Deny by default:
//! - `read`: GET and HEAD only, on the Docker API and the management API,
//!   except [`INTERACTIVE_GETS`] (a WebSocket attach writes to the
//!   container's stdin although it is a GET).
//! - `operate`: read, plus the Docker route templates of [`OPERATE_POSTS`]
//!   and the interactive GETs (the terminals need exec and attach). On the
//!   management API `operate` is `read`.
//! - `full`: no method restriction.
//! - An endpoint list (`endpointIds`, `groupIds`): the endpoint must be
//!   listed or be in a listed group. It also closes the instance-wide
//!   administration routes (users, teams, settings, registries, endpoint
//!   creation and bulk deletion, ...), which no endpoint list can bound;
//!   management routes about one endpoint are allowed for listed endpoints.

use http::{Method, StatusCode};

use super::path::normalize;
use crate::store::model::{Id, KeyAccess, KeyScope};

/// Docker routes an `operate` key may POST, as templates over the path
/// without its `/v1.N` prefix; `*` is one path segment (an id or a name).
pub const OPERATE_POSTS: &[&str] = &[
    "/containers/*/start",
    "/containers/*/stop",
    "/containers/*/restart",
    "/containers/*/kill",
    "/containers/*/pause",
    "/containers/*/unpause",
    "/containers/*/wait",
    "/containers/*/attach",
    "/containers/*/resize",
    "/containers/*/exec",
    "/exec/*/start",
    "/exec/*/resize",
];

/// GETs that are not reads: they open a stream into a container.
pub const INTERACTIVE_GETS: &[&str] = &["/containers/*/attach/ws"];

/// A refusal by a key's scope. `scope` names the part of the scope that
/// refused (`access read`, `endpoints`), for the answer's details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeDenial {
    pub scope: String,
    pub detail: String,
}

impl ScopeDenial {
    fn access(access: KeyAccess, detail: impl Into<String>) -> ScopeDenial {
        ScopeDenial { scope: format!("access {}", access.name()), detail: detail.into() }
    }

    fn endpoints(detail: impl Into<String>) -> ScopeDenial {
        ScopeDenial { scope: "endpoints".into(), detail: detail.into() }
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::FORBIDDEN
    }

    /// What clients show (the Docker CLI prints only the message, so it
    /// names the scope itself).
    pub fn message(&self) -> String {
        format!("Access denied by the API key's scope ({})", self.scope)
    }

    /// `scope <name>: <why>`, in the style of the restricted policy's details.
    pub fn details(&self) -> String {
        format!("scope {}: {}", self.scope, self.detail)
    }

    /// Portainer's `{"message","details"}` answer.
    pub fn to_error(&self) -> crate::error::ApiError {
        crate::error::ApiError::new(self.status(), self.message(), self.details())
    }
}

/// Whether `template` (segments, `*` for any one) matches `path`.
fn matches(template: &str, path: &str) -> bool {
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some("*"), Some(seg)) if !seg.is_empty() => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// Whether `scope` lets a request through to the Docker API. `raw_path` is
/// the part after `/api/endpoints/{id}/docker`, as sent (no query).
pub fn docker(scope: &KeyScope, method: &Method, raw_path: &str) -> Result<(), ScopeDenial> {
    let access = scope.access;
    if access == KeyAccess::Full {
        return Ok(());
    }
    // Read as Docker routes it, so `/v1.41/containers/x/restart` and
    // `/containers%2Fx/restart` are the templates they are.
    let path = normalize(raw_path).map_err(|d| ScopeDenial::access(access, d.details()))?.path;
    let interactive = INTERACTIVE_GETS.iter().any(|t| matches(t, &path));
    if is_read(method) && !interactive {
        return Ok(());
    }
    if access == KeyAccess::Operate
        && (interactive || (method == Method::POST && OPERATE_POSTS.iter().any(|t| matches(t, &path))))
    {
        return Ok(());
    }
    let allowed = match access {
        KeyAccess::Read => "GET and HEAD requests that only read",
        _ => "reads, and starting, stopping, restarting, killing, pausing, waiting for, attaching to and exec-ing into existing containers",
    };
    Err(ScopeDenial::access(access, format!("{method} {path} is not allowed; this key allows only {allowed}")))
}

/// Management routes open to every user that still act beyond one
/// endpoint: closed to endpoint-limited keys like the admin routes.
const INSTANCE_WIDE: &[&str] = &["/api/resource_controls/{id}"];

/// Whether `scope` lets a request through to the management API route
/// `template`. `admin_route` is whether the route is reserved to
/// administrators. Routes that name an endpoint ([`endpoint_param`]) are
/// allowed here and checked with [`endpoint`] by the caller.
pub fn api(scope: &KeyScope, method: &Method, template: &str, admin_route: bool) -> Result<(), ScopeDenial> {
    if scope.access != KeyAccess::Full && !is_read(method) {
        return Err(ScopeDenial::access(
            scope.access,
            format!("{method} {template} is not allowed; on the management API this key allows only GET and HEAD"),
        ));
    }
    let instance_wide = (admin_route || INSTANCE_WIDE.contains(&template)) && endpoint_param(template).is_none();
    if instance_wide && scope.limits_endpoints() {
        return Err(ScopeDenial::endpoints(format!(
            "{method} {template} acts beyond one endpoint, and this key is limited to some"
        )));
    }
    Ok(())
}

/// Whether the endpoint `id` (in group `group`, when it exists) is inside
/// the scope. An unknown endpoint is inside only when listed by id.
pub fn endpoint(scope: &KeyScope, id: Id, group: Option<Id>) -> Result<(), ScopeDenial> {
    if covers(scope, id, group) {
        return Ok(());
    }
    Err(ScopeDenial::endpoints(format!("environment {id} is not in this key's endpointIds or groupIds")))
}

/// [`endpoint`] as a yes/no, for list filtering.
pub fn covers(scope: &KeyScope, id: Id, group: Option<Id>) -> bool {
    !scope.limits_endpoints() || scope.endpoint_ids.contains(&id) || group.is_some_and(|g| scope.group_ids.contains(&g))
}

/// Terminals (`/api/websocket/exec`, `/attach`) write into a container:
/// they need `operate` or `full`.
pub fn terminal(scope: &KeyScope) -> Result<(), ScopeDenial> {
    match scope.access {
        KeyAccess::Read => Err(ScopeDenial::access(KeyAccess::Read, "terminals need operate or full access")),
        KeyAccess::Operate | KeyAccess::Full => Ok(()),
    }
}

/// The route parameter that names an endpoint in a management route
/// template, if any: such routes are checked with [`endpoint`].
pub fn endpoint_param(template: &str) -> Option<&'static str> {
    if template.contains("{endpointId}") {
        Some("endpointId")
    } else if template.starts_with("/api/endpoints/{id}") {
        Some("id")
    } else {
        None
    }
}

#[cfg(test)]
#[path = "scope_tests.rs"]
mod tests;
