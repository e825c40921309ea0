//! What the router hands to the audit trail after each answer (issue 15):
//! management changes, written before the answer goes out, and mutating
//! Docker calls through the proxy, queued. Logins and logouts are recorded
//! by their handlers (they know the name tried); terminals by their bridge.
//!
//! Only authenticated calls are recorded here: refused credentials are
//! counted in `berth_auth_failures_total`, and recording each one durably
//! would let anyone make Berth write to disk at will.

use std::net::IpAddr;

use http::{Method, Response};

use crate::audit::{path_params, Event, Kind};
use crate::body::ResponseBody;
use crate::response::{AuthedBundle, AuthedKey, AuthedUser};
use crate::state::AppState;

/// The route label of the Docker proxy in the router.
pub const DOCKER_ROUTE: &str = "/api/endpoints/{id}/docker/*";

/// Routes whose events are written elsewhere, or that change nothing.
const NOT_HERE: &[&str] =
    &["/api/auth", "/api/auth/logout", "/api/websocket/exec", "/api/websocket/attach", "unmatched"];

/// Records the call if it changed (or tried to change) something. The
/// caller checks the method first, so reads cost nothing here.
pub async fn record(
    state: &AppState,
    method: &Method,
    path: &str,
    route: &'static str,
    resp: &Response<ResponseBody>,
    client: IpAddr,
) {
    let Some(user) = resp.extensions().get::<AuthedUser>().map(|u| u.0) else { return };
    if NOT_HERE.contains(&route) || !route.starts_with("/api/") {
        return;
    }
    let docker = route == DOCKER_ROUTE;
    if docker && !state.config.audit_proxy {
        return;
    }
    let mut e = if docker {
        let Some((raw_id, docker_path)) = crate::proxy::route::split_docker_path(path) else { return };
        let template = crate::metrics::docker_route_template(docker_path);
        let mut e = Event::new(Kind::Docker, format!("{method} {template}"), client);
        e.endpoint_id = raw_id.parse().ok();
        e.object = object_id(docker_path, &template);
        e
    } else {
        let mut e = Event::new(Kind::Api, format!("{method} {route}"), client);
        e.payload = path_params(route, path);
        e
    };
    e.status = resp.status().as_u16();
    e.user_id = Some(user);
    e.username = state.identity.user(user).map(|u| u.username.clone()).unwrap_or_default();
    e.api_key_id = resp.extensions().get::<AuthedKey>().map(|k| k.0);
    e.bundle_id = resp.extensions().get::<AuthedBundle>().map(|b| b.0);
    if docker {
        state.audit.enqueue(e);
    } else {
        // Boxed: the request's own future stays the size of its hot path.
        Box::pin(state.audit.record(&state.store, e)).await;
    }
}

/// The path segment the template's `{id}` stands for (percent-decoded,
/// at most 256 characters).
fn object_id(docker_path: &str, template: &str) -> Option<String> {
    let segs = docker_path.split('?').next().unwrap_or("").split('/').filter(|s| !s.is_empty());
    let segs = segs.skip_while(|s| {
        s.starts_with('v') && s[1..].split('.').all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    });
    let (_, raw) = template.split('/').filter(|s| !s.is_empty()).zip(segs).find(|(t, _)| *t == "{id}")?;
    let bytes = crate::access::path::unescape(raw, false)?;
    Some(String::from_utf8_lossy(&bytes).chars().take(256).collect())
}

#[cfg(test)]
mod tests {
    use super::object_id;

    #[test]
    fn the_object_is_the_segment_of_the_template_id() {
        assert_eq!(object_id("/v1.41/containers/abc/start", "/containers/{id}/start").as_deref(), Some("abc"));
        assert_eq!(object_id("/containers/my%20app/kill?signal=9", "/containers/{id}/kill").as_deref(), Some("my app"));
        assert_eq!(object_id("/containers/create?name=x", "/containers/create"), None);
    }
}
