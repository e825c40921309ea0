//! `/api/endpoints/{id}/docker/*`: authenticate, find the endpoint, check
//! the caller may use it, then hand the request to the proxy. Everything
//! here reads memory only: no store access, no global lock.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::access;
use crate::api::doc::{Doc, Reply, ANY_STATUS};
use crate::body::ResponseBody;
use crate::error::ApiError;
use crate::metrics::docker_route_template;
use crate::proxy::restrict::{self, Restricted};
use crate::proxy::{forward, ProxyFailure, ProxyTarget, Tunnels};
use crate::state::AppState;

/// What the API document says of the Docker proxy: a pass-through, as
/// Portainer's documentation describes it. Docker's API is Docker's to
/// document; Berth's part is who may call it and the refusals it adds.
pub const DOC: Doc = Doc::new(
    "Docker Engine API of an endpoint",
    &[Reply::bytes(ANY_STATUS, "Docker's answer, status and body", "*/*")],
)
.describe(
    "Any Docker Engine API call (`path`, e.g. `containers/json` or `v1.41/info`, with its query and \
         body) is passed to the endpoint's Docker host and its answer back, status and all. Standard \
         users' calls are checked against the endpoint's security settings and resource controls, and \
         their lists filtered; attach and exec upgrades are tunnelled.",
)
.errors(&[
    (502, "The Docker host could not be reached or broke the connection"),
    (503, "Too many open tunnels, or the endpoint's circuit breaker is open"),
    (504, "The Docker host did not answer in time"),
]);

/// Splits `/api/endpoints/{id}/docker/rest` without allocating; the id is
/// returned raw so bad ids get a clear 400.
pub fn split_docker_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/api/endpoints/")?;
    let slash = rest.find('/')?;
    let (id, tail) = rest.split_at(slash);
    let docker = tail.strip_prefix("/docker")?;
    if !(docker.is_empty() || docker.starts_with('/')) {
        return None;
    }
    if docker.is_empty() {
        return None;
    }
    Some((id, docker))
}

pub async fn handle(
    state: &Arc<AppState>,
    tunnels: &Tunnels,
    req: Request<Incoming>,
    raw_id: &str,
    docker_path: &str,
) -> Response<ResponseBody> {
    let principal = match state.authenticate(&req) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let mut resp = proxied(state, tunnels, req, raw_id, docker_path, &principal).await;
    crate::response::mark_caller(&mut resp, &principal);
    resp
}

async fn proxied(
    state: &Arc<AppState>,
    tunnels: &Tunnels,
    mut req: Request<Incoming>,
    raw_id: &str,
    docker_path: &str,
    principal: &crate::auth::Principal,
) -> Response<ResponseBody> {
    let id = match crate::ids::parse_id(raw_id, "environment") {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let entry = state.endpoints.get(id);
    // Scoped API keys only (JWTs and unrestricted keys pay this one
    // branch): the endpoint, then the method and route, before anything
    // else; an unknown endpoint outside the scope is a 403, not a 404.
    if let Some(scope) = principal.scope() {
        let group = entry.as_ref().map(|e| e.record.group_id);
        let verdict = access::scope::endpoint(scope, id, group)
            .and_then(|()| access::scope::docker(scope, req.method(), docker_path));
        if let Err(d) = verdict {
            return d.to_error().into_response();
        }
    }
    let Some(entry) = entry else {
        return ApiError::not_found("an environment").into_response();
    };
    // A standard user's teams: they also mark the request for the
    // restricted proxy below.
    let mut restricted_teams = None;
    if !principal.is_admin() {
        let teams = state.identity.teams_of(principal.id());
        if !state.endpoints.may_access(principal, &entry.record, &teams) {
            return ApiError::forbidden("Permission denied to access environment", "Access denied to environment")
                .into_response();
        }
        restricted_teams = Some(teams);
    }
    let read_body = match crate::proxy::registry_auth::apply(state, &mut req, principal, id, docker_path).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let path_and_query: Cow<'_, str> = match req.uri().query().map(without_token) {
        None => Cow::Borrowed(docker_path),
        // Only `token` was there: no query at all, not a bare '?'.
        Some(Cow::Owned(q)) if q.is_empty() => Cow::Borrowed(docker_path),
        Some(q) => Cow::Owned(format!("{docker_path}?{q}")),
    };
    // Metric handles looked up once per endpoint and template, not
    // re-hashed label by label on every request.
    let series = state.metrics.proxy_series(entry.record.id);
    let route = series.route(&docker_route_template(docker_path));
    let start = Instant::now();
    let target = ProxyTarget {
        endpoint_id: entry.record.id,
        endpoint_name: &entry.record.name,
        upstream: &entry.upstream,
        tunnels,
        bytes_in: Some(series.bytes_in.clone()),
        body_read_timeout: state.config.body_read_timeout,
        read_body,
    };
    let resp = match restricted_teams {
        // Standard users: the access policy decides before Docker sees anything.
        Some(teams) => {
            let r = Restricted { state, entry: &entry, user_id: principal.id(), teams, target };
            Box::pin(r.handle(req, &path_and_query)).await
        }
        None => {
            let is_get = req.method() == http::Method::GET;
            let resp = forward(target, req, &path_and_query).await;
            if is_get {
                restrict::decorate_for_admin(state, &entry, docker_path, resp).await
            } else {
                resp
            }
        }
    };
    let resp = resp.map(|b| b.counted(series.bytes_out.clone()));
    route.requests(resp.status().as_u16()).inc();
    route.duration.observe(start.elapsed().as_secs_f64());
    // Only failures Berth generated count, not a 502 the host itself sent.
    if let Some(f) = resp.extensions().get::<ProxyFailure>() {
        if matches!(
            f,
            ProxyFailure::Unreachable
                | ProxyFailure::ConnectTimeout
                | ProxyFailure::Upstream
                | ProxyFailure::CircuitOpen
                | ProxyFailure::ResponseTimeout
        ) {
            state.metrics.upstream_connect_failures.with_label_values(&[series.label(), f.label()]).inc();
        }
    }
    if principal.is_admin() {
        resp
    } else {
        crate::proxy::redact::proxy_failure_for_standard_user(resp)
    }
}

/// The query without `token` parameters: a `?token=<jwt>` is a Berth
/// credential (refused on its own, but a client may send it next to a
/// header) and must not reach the Docker host, as Portainer strips it too.
/// Every other byte is kept as sent.
fn without_token(query: &str) -> std::borrow::Cow<'_, str> {
    let is_token = |kv: &str| kv == "token" || kv.starts_with("token=");
    if !query.split('&').any(is_token) {
        return std::borrow::Cow::Borrowed(query);
    }
    let kept: Vec<&str> = query.split('&').filter(|kv| !is_token(kv)).collect();
    std::borrow::Cow::Owned(kept.join("&"))
}

#[cfg(test)]
mod tests {
    use super::{split_docker_path, without_token};

    #[test]
    fn docker_paths_split() {
        assert_eq!(split_docker_path("/api/endpoints/1/docker/_ping"), Some(("1", "/_ping")));
        assert_eq!(
            split_docker_path("/api/endpoints/12/docker/v1.41/containers/json"),
            Some(("12", "/v1.41/containers/json"))
        );
        assert_eq!(split_docker_path("/api/endpoints/1/docker"), None);
        assert_eq!(split_docker_path("/api/endpoints/1/dockerx/a"), None);
        assert_eq!(split_docker_path("/api/endpoints/1"), None);
        assert_eq!(split_docker_path("/api/endpoints/abc/docker/x"), Some(("abc", "/x")));
    }

    #[test]
    fn token_parameters_are_dropped_and_the_rest_kept_verbatim() {
        assert_eq!(without_token("all=1&filters=%7B%7D"), "all=1&filters=%7B%7D");
        assert_eq!(without_token("all=1&token=abc&x=%2F"), "all=1&x=%2F");
        assert_eq!(without_token("token=abc"), "");
        assert_eq!(without_token("token&tokens=1&a"), "tokens=1&a");
        assert_eq!(without_token("mytoken=1&token2=2"), "mytoken=1&token2=2");
    }
}
