//! Checks of what an admin asks to store about endpoints, groups and tags:
//! names, tag ids, access policy keys and Docker host URLs. Each answers a
//! 400 with the offending part named, so a mistake is caught when it is
//! made, not hours later as a dead endpoint.

use std::collections::HashSet;

use super::EndpointMap;
use crate::connector::DockerUrl;
use crate::error::{ApiError, ApiResult};
use crate::store::model::{AccessPolicies, Id};

/// Longest name of an endpoint, group or tag. Names are shown in lists and
/// logs; anything longer is a mistake or an attack.
pub const MAX_NAME: usize = 255;
/// Longest `URL`/`PublicURL` accepted.
pub const MAX_URL: usize = 2048;

/// Checks a display name; `what` is the Portainer word ("environment").
pub fn check_name(name: &str, what: &str) -> ApiResult<()> {
    let invalid = |details: String| ApiError::bad_request(format!("Invalid {what} name"), details);
    if name.trim().is_empty() {
        return Err(invalid(format!("the {what} name is required")));
    }
    let n = name.chars().count();
    if n > MAX_NAME {
        return Err(invalid(format!("the {what} name is {n} characters long; the limit is {MAX_NAME}")));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(format!("the {what} name contains control characters")));
    }
    Ok(())
}

/// Tag ids must name existing tags; duplicates are dropped, order kept.
pub fn check_tags(endpoints: &EndpointMap, ids: &[Id], message: &str) -> ApiResult<Vec<Id>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for &id in ids {
        if endpoints.tag(id).is_none() {
            return Err(ApiError::bad_request(message, format!("tag {id} does not exist")));
        }
        if seen.insert(id) {
            out.push(id);
        }
    }
    Ok(out)
}

/// Policy maps are keyed by user or team id as a string.
pub fn check_policies(p: &AccessPolicies, what: &str) -> ApiResult<()> {
    match p.keys().find(|k| k.parse::<u64>().is_err()) {
        Some(k) => Err(ApiError::invalid_payload(format!("{what} key {k:?} is not a numeric identifier"))),
        None => Ok(()),
    }
}

/// Replaces the policy maps that a change carries, after checking each.
pub fn apply_policies(
    user: Option<AccessPolicies>,
    team: Option<AccessPolicies>,
    user_slot: &mut AccessPolicies,
    team_slot: &mut AccessPolicies,
) -> ApiResult<()> {
    for (new, slot, what) in [(user, user_slot, "UserAccessPolicies"), (team, team_slot, "TeamAccessPolicies")] {
        if let Some(p) = new {
            check_policies(&p, what)?;
            *slot = p;
        }
    }
    Ok(())
}

fn invalid_url(details: String) -> ApiError {
    ApiError::bad_request("Invalid environment URL", details)
}

/// Parses a Docker host URL as it will be stored, and for `unix://` checks
/// that a socket is there: a missing path, a regular file or a directory is
/// refused now rather than stored as an endpoint that can never answer.
/// The check touches the file system, so it runs off the async workers.
pub async fn check_url(raw: &str) -> ApiResult<String> {
    let url = raw.trim();
    if url.len() > MAX_URL {
        return Err(invalid_url(format!("the URL is longer than {MAX_URL} bytes")));
    }
    let parsed = DockerUrl::parse(url).map_err(invalid_url)?;
    tokio::task::spawn_blocking(move || parsed.check_socket())
        .await
        .map_err(|e| ApiError::internal("Unable to check the environment URL", e))?
        .map_err(invalid_url)?;
    Ok(url.to_owned())
}

/// `PublicURL` is only shown to users; it is bounded, not parsed.
pub fn check_public_url(raw: &str, message: &str) -> ApiResult<String> {
    let u = raw.trim();
    if u.len() > MAX_URL {
        return Err(ApiError::bad_request(message, format!("the URL is longer than {MAX_URL} bytes")));
    }
    Ok(u.to_owned())
}
