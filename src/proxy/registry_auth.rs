//! Registry credentials on the Docker proxy.
//!
//! `X-Registry-Auth: {"registryId":N}` (what Portainer's UI sends) becomes
//! registry N's username and password, but only on the routes that pull or
//! push an image (image pull and push, service create and update, plugin
//! pull and upgrade, distribution inspect) and only when the image the
//! request names lives on registry N's host: Docker sends the credentials to
//! whatever host the image reference names, so translating for
//! `fromImage=attacker.example/x` would hand the password to that host (and
//! to the caller who runs it). Anything else is a 403 before Docker sees the
//! request.
//!
//! Without the header, when the image's host is the host of a registry the
//! caller may use on this endpoint, that registry's credentials are added
//! (Portainer users ask for this: Portainer #2785).
//!
//! A real Docker auth object (`{"username":...}`) is the client's own and
//! passes untouched, as does a header that does not decode.

use base64::Engine;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{header, HeaderMap, HeaderValue, Method, Request};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::image_ref::{query_param, registry_host, unescape, url_host};
use crate::access::gojson;
use crate::auth::Principal;
use crate::body::BodyTimeout;
use crate::error::ApiError;
use crate::registries::may_use;
use crate::state::AppState;
use crate::store::model::{Id, Registry};

pub const HEADER: &str = "x-registry-auth";

/// Largest service spec read to find its image (413 beyond).
pub const MAX_SERVICE_BODY: usize = 1024 * 1024;

/// Where a route names its image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// A query parameter (`fromImage` of a pull, `remote` of a plugin pull).
    Query(&'static str),
    /// The `{name}` of `/images/{name}/push` or `/distribution/{name}/json`.
    Path,
    /// `TaskTemplate.ContainerSpec.Image` of a service spec.
    ServiceBody,
}

/// The routes on which Docker uses `X-Registry-Auth`, and where each names
/// its image. `None` for every other route.
fn source(method: &Method, docker_path: &str) -> Option<(Source, String)> {
    let path = strip_version(docker_path);
    let post = method == Method::POST;
    if post && path == "/images/create" {
        return Some((Source::Query("fromImage"), String::new()));
    }
    if post && path == "/plugins/pull" {
        return Some((Source::Query("remote"), String::new()));
    }
    if post && path == "/services/create" {
        return Some((Source::ServiceBody, String::new()));
    }
    if post && path.strip_prefix("/services/").and_then(|r| r.strip_suffix("/update")).is_some_and(one_segment) {
        return Some((Source::ServiceBody, String::new()));
    }
    if post && path.strip_prefix("/plugins/").and_then(|r| r.strip_suffix("/upgrade")).is_some_and(|n| !n.is_empty()) {
        return Some((Source::Query("remote"), String::new()));
    }
    if post {
        if let Some(name) = path.strip_prefix("/images/").and_then(|r| r.strip_suffix("/push")) {
            return Some((Source::Path, name.to_owned()));
        }
    }
    if method == Method::GET || method == Method::HEAD {
        if let Some(name) = path.strip_prefix("/distribution/").and_then(|r| r.strip_suffix("/json")) {
            return Some((Source::Path, name.to_owned()));
        }
    }
    None
}

fn one_segment(s: &str) -> bool {
    !s.is_empty() && !s.contains('/')
}

/// `/v1.41/images/create` → `/images/create`.
fn strip_version(path: &str) -> &str {
    let Some(rest) = path.strip_prefix("/v") else { return path };
    let end = rest.find('/').unwrap_or(rest.len());
    let version = &rest[..end];
    if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        &rest[end..]
    } else {
        path
    }
}

/// What the client's `X-Registry-Auth` asks for.
enum Asked {
    /// No header, or `{}`: Berth may add credentials by host.
    Nothing,
    /// `{"registryId":0}`: anonymous Docker Hub.
    Anonymous,
    /// `{"registryId":N}`.
    Registry(Id),
    /// The client's own credentials, or something that is not ours to read.
    Untouched,
}

fn asked(headers: &mut HeaderMap) -> Result<Asked, ApiError> {
    let mut values = headers.get_all(HEADER).iter();
    let Some(v) = values.next() else { return Ok(Asked::Nothing) };
    if values.next().is_some() {
        return Err(ApiError::bad_request("Invalid X-Registry-Auth header", "the header is given more than once"));
    }
    let Some(json) = decode_header(v) else { return Ok(Asked::Untouched) };
    let Some(obj) = json.as_object() else { return Ok(Asked::Untouched) };
    if obj.is_empty() {
        headers.remove(HEADER);
        return Ok(Asked::Nothing);
    }
    // Portainer decodes the header with Go: the key matches as Go folds it.
    let mut ids = obj.iter().filter(|(k, _)| gojson::names_field(k, "registryId"));
    let Some((_, rid)) = ids.next() else { return Ok(Asked::Untouched) };
    if ids.next().is_some() {
        return Err(ApiError::bad_request("Invalid X-Registry-Auth header", "registryId is given more than once"));
    }
    let rid = rid
        .as_u64()
        .or_else(|| rid.as_str().and_then(|s| s.parse().ok()))
        .ok_or_else(|| ApiError::bad_request("Invalid X-Registry-Auth header", "registryId must be a number"))?;
    Ok(if rid == 0 { Asked::Anonymous } else { Asked::Registry(rid) })
}

fn decode_header(v: &HeaderValue) -> Option<serde_json::Value> {
    let s = v.to_str().ok()?.trim();
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let bytes = engines.iter().find_map(|e| e.decode(s).ok())?;
    serde_json::from_slice(&bytes).ok()
}

/// Rewrites the request's registry credentials (see the module comment).
/// Returns the body when it had to be read (a service spec), to be sent on
/// in place of the consumed stream. Every refusal happens before anything
/// reaches Docker.
pub async fn apply(
    state: &AppState,
    req: &mut Request<Incoming>,
    principal: &Principal,
    endpoint: Id,
    docker_path: &str,
) -> Result<Option<Bytes>, ApiError> {
    let asked = asked(req.headers_mut())?;
    let teams = || state.identity.teams_of(principal.id());
    let Some((source, raw_name)) = source(req.method(), docker_path) else {
        return match asked {
            Asked::Registry(_) => Err(refused("this Docker route takes no registry credentials")),
            Asked::Anonymous => set_credentials(req.headers_mut(), "", "", super::image_ref::DOCKER_HUB),
            Asked::Nothing | Asked::Untouched => Ok(None),
        };
    };
    // Only the registry asked for, or the registries that could be added,
    // are worth reading a body for.
    let (wanted, candidates): (Option<std::sync::Arc<Registry>>, Vec<std::sync::Arc<Registry>>) = match asked {
        Asked::Untouched => return Ok(None),
        Asked::Anonymous => return set_credentials(req.headers_mut(), "", "", super::image_ref::DOCKER_HUB),
        Asked::Registry(rid) => {
            let r = state.registries.get(&rid).ok_or_else(|| ApiError::not_found("a registry"))?;
            if !may_use(&r, principal, endpoint, &teams()) {
                return Err(ApiError::forbidden("Access denied to resource", "Permission denied to use this registry"));
            }
            (Some(r), Vec::new())
        }
        Asked::Nothing => {
            let teams = teams();
            let usable: Vec<_> = state
                .registries
                .all()
                .into_iter()
                .filter(|r| r.authentication && may_use(r, principal, endpoint, &teams))
                .collect();
            if usable.is_empty() {
                return Ok(None);
            }
            (None, usable)
        }
    };
    let (reference, body) = match source {
        Source::Query(name) => (query_param(req.uri().query(), name).map_err(|e| bad_reference(name, e))?, None),
        Source::Path => (Some(unescape(&raw_name, false).ok_or_else(|| bad_reference("name", "bad escape"))?), None),
        Source::ServiceBody => {
            // Boxed: the proxy's future stays small for the requests
            // that never get here.
            let body = Box::pin(read_body(req, state.config.body_read_timeout)).await?;
            (service_image(&body).map_err(|e| bad_reference("TaskTemplate.ContainerSpec.Image", &e))?, Some(body))
        }
    };
    let host = reference.as_deref().and_then(registry_host);
    match wanted {
        Some(r) => {
            let Some(host) = host else {
                return Err(refused(format!(
                    "registry {} is used only for an image reference that names a registry host, and this request has none Berth can read",
                    r.id
                )));
            };
            if url_host(&r.url).as_deref() != Some(host.as_str()) {
                return Err(refused(format!(
                    "registry {} ({}) does not serve images of host {host}: its credentials are not sent there",
                    r.id, r.url
                )));
            }
            let password = password_of(state, &r)?;
            set_credentials(req.headers_mut(), if r.authentication { &r.username } else { "" }, &password, &r.url)?;
        }
        None => {
            // Lowest id first: one deterministic choice among registries
            // of the same host.
            let matching = host.and_then(|h| candidates.into_iter().find(|r| url_host(&r.url).as_deref() == Some(&h)));
            if let Some(r) = matching {
                let password = password_of(state, &r)?;
                set_credentials(req.headers_mut(), &r.username, &password, &r.url)?;
            }
        }
    }
    Ok(body)
}

fn refused(details: impl AsRef<str>) -> ApiError {
    ApiError::forbidden("Registry credentials refused", details)
}

fn bad_reference(what: &str, why: &str) -> ApiError {
    ApiError::bad_request("Invalid image reference", format!("{what}: {why}"))
}

fn password_of(state: &AppState, r: &Registry) -> Result<String, ApiError> {
    if !r.authentication {
        return Ok(String::new());
    }
    state
        .sealer
        .open(&r.sealed_password)
        .ok_or_else(|| ApiError::internal("Unable to read registry credentials", "sealed password unreadable"))
}

/// Writes Docker's auth object, URL-safe base64 as Portainer does. The
/// value is marked sensitive so that no debug output prints it.
fn set_credentials(
    headers: &mut HeaderMap,
    username: &str,
    password: &str,
    server: &str,
) -> Result<Option<Bytes>, ApiError> {
    let auth = serde_json::json!({"username": username, "password": password, "serveraddress": server});
    let encoded = base64::engine::general_purpose::URL_SAFE.encode(serde_json::to_vec(&auth).unwrap_or_default());
    let mut hv =
        HeaderValue::from_str(&encoded).map_err(|e| ApiError::internal("Unable to encode registry credentials", e))?;
    hv.set_sensitive(true);
    headers.insert(HEADER, hv);
    Ok(None)
}

/// Reads a service spec, up to [`MAX_SERVICE_BODY`] (413 beyond), with the
/// same idle limit between reads as every other body (408 beyond).
async fn read_body(req: &mut Request<Incoming>, idle: Duration) -> Result<Bytes, ApiError> {
    type BoxError = Box<dyn std::error::Error + Send + Sync>;
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let body = req.body_mut().into_data_stream();
    // Each read gets `idle`; a `BodyTimeout` is the API's 408.
    let timed = futures_util::stream::unfold(Some(body), move |state| async move {
        let mut body = state?;
        match tokio::time::timeout(idle, body.next()).await {
            Ok(Some(item)) => Some((item.map_err(BoxError::from), Some(body))),
            Ok(None) => None,
            Err(_) => Some((Err(BoxError::from(BodyTimeout(idle))), None)),
        }
    });
    crate::api::form::read_body(timed, declared, MAX_SERVICE_BODY).await
}

/// `TaskTemplate.ContainerSpec.Image` as dockerd's Go decoder finds it
/// (`access::gojson`: keys folded as Go folds them). A key given twice, or
/// two keys Go would both read as the same field, make the spec ambiguous
/// and are refused: Go would merge them in an order this reading must not
/// have to reproduce.
fn service_image(body: &[u8]) -> Result<Option<String>, String> {
    let spec = gojson::parse(body).map_err(|d| d.detail)?;
    let mut v = &spec;
    let mut at = String::new();
    for name in ["TaskTemplate", "ContainerSpec", "Image"] {
        let Some(obj) = v.as_object() else { return Ok(None) };
        let Some(next) = gojson::field(obj, name, &at).map_err(|d| d.detail)? else { return Ok(None) };
        at = gojson::join(&at, name);
        v = next;
    }
    Ok(v.as_str().map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_that_take_registry_credentials() {
        let post = Method::POST;
        let get = Method::GET;
        let q = |p| Source::Query(p);
        assert_eq!(source(&post, "/v1.41/images/create"), Some((q("fromImage"), String::new())));
        assert_eq!(source(&post, "/images/create"), Some((q("fromImage"), String::new())));
        assert_eq!(source(&post, "/plugins/pull"), Some((q("remote"), String::new())));
        assert_eq!(source(&post, "/plugins/vieux/sshfs:latest/upgrade"), Some((q("remote"), String::new())));
        assert_eq!(source(&post, "/services/create"), Some((Source::ServiceBody, String::new())));
        assert_eq!(source(&post, "/v1.41/services/abc/update"), Some((Source::ServiceBody, String::new())));
        assert_eq!(source(&post, "/images/127.0.0.1:5000/x/push"), Some((Source::Path, "127.0.0.1:5000/x".into())));
        assert_eq!(source(&get, "/distribution/reg.example/a/json"), Some((Source::Path, "reg.example/a".into())));
        assert_eq!(source(&get, "/images/create"), None);
        assert_eq!(source(&post, "/containers/create"), None);
        assert_eq!(source(&post, "/services/a/b/update"), None);
        assert_eq!(source(&post, "/vx/images/create"), None);
        assert_eq!(source(&post, "//images/create"), None);
    }

    #[test]
    fn the_image_of_a_service_spec_as_go_reads_it() {
        let img = |s: &str| service_image(s.as_bytes());
        assert_eq!(
            img(r#"{"TaskTemplate":{"ContainerSpec":{"Image":"reg.example/x"}}}"#),
            Ok(Some("reg.example/x".into()))
        );
        assert_eq!(img(r#"{"tasktemplate":{"CONTAINERSPEC":{"image":"a"}}}"#), Ok(Some("a".into())));
        assert_eq!(img("{\"TaſkTemplate\":{\"ContainerSpec\":{\"Image\":\"a\"}}}"), Ok(Some("a".into())));
        assert_eq!(img(r#"{"Name":"x"}"#), Ok(None));
        assert_eq!(img(r#"{"TaskTemplate":{"ContainerSpec":{"Image":7}}}"#), Ok(None));
        assert!(img(r#"{"TaskTemplate":{"ContainerSpec":{"Image":"a","Image":"b"}}}"#).is_err());
        assert!(img(r#"{"TaskTemplate":{"ContainerSpec":{"Image":"a"}},"taskTemplate":{}}"#).is_err());
        assert!(img(r#"{"TaskTemplate":{"ContainerSpec":{"Image":"a"}}} trailing"#).is_err());
        assert!(img("[1,2").is_err());
    }

    #[test]
    fn versions_are_stripped() {
        assert_eq!(strip_version("/v1.41/images/create"), "/images/create");
        assert_eq!(strip_version("/v1/x"), "/x");
        assert_eq!(strip_version("/volumes"), "/volumes");
        assert_eq!(strip_version("/v/x"), "/v/x");
    }
}
