//! What protects a browser session: the cross-site request check for the
//! session cookie, and the security headers of every answer.
//!
//! A browser attaches the `portainer_api_key` cookie to any request made to
//! Berth, including one a page of another origin makes it send (a form, a
//! `fetch` without credentials mode tricks, a page on another port of the
//! same host, for which `SameSite` does not help). So a state-changing
//! request authenticated by that cookie must show that it comes from Berth's
//! own origin: an `Origin` equal to the origin the request was sent to (or
//! one the configuration allows), or, without `Origin`, `Sec-Fetch-Site:
//! same-origin` (or `none`: typed by the user). Its body must also have a
//! type that a page of another origin cannot send without a CORS preflight
//! (which Berth never grants): JSON on JSON routes.
//!
//! Requests that carry `Authorization` or `X-API-Key` are left alone: a
//! browser never adds those to a cross-site request without a preflight, and
//! scripts (curl, SDKs, the Docker CLI) keep working without `Origin` or a
//! content type.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response};

use crate::api::{Match, Policy, Routes};
use crate::body::ResponseBody;
use crate::config::normalize_origin;
use crate::error::ApiError;
use crate::state::AppState;

const X_FRAME_OPTIONS: HeaderName = HeaderName::from_static("x-frame-options");
const X_CONTENT_TYPE_OPTIONS: HeaderName = HeaderName::from_static("x-content-type-options");
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Set on every answer: no content sniffing (a JSON error echoing user input
/// must not become HTML), and no framing by any page (clickjacking).
pub fn security_headers(h: &mut HeaderMap) {
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// API routes whose bodies are forms (endpoint creation, TLS file uploads,
/// stack file uploads); every other API route takes JSON.
const FORM_ROUTES: &[&str] = &["/api/endpoints", "/api/upload/tls/{certificate}", "/api/stacks/create/{type}/{method}"];

/// Body types a page of another origin cannot send without a preflight,
/// accepted on the Docker proxy (JSON, and the archives of build, load,
/// import, plugin create and archive uploads).
const DOCKER_BODY_TYPES: &[&str] = &[
    "application/json",
    "application/x-tar",
    "application/tar",
    "application/octet-stream",
    "application/gzip",
    "application/x-gzip",
    "application/x-bzip2",
    "application/x-xz",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyKind {
    Json,
    Form,
    Docker,
}

/// The one check of the router: `Some(refusal, route label)` when a
/// state-changing request authenticated by the session cookie does not come
/// from Berth's own origin, or sends a body of a type a cross-site page can
/// forge. `tls` is whether the request arrived on the HTTPS listener.
pub fn refuse<B>(
    state: &AppState,
    routes: &Routes,
    req: &Request<B>,
    tls: bool,
) -> Option<(Response<ResponseBody>, &'static str)> {
    let path = req.uri().path();
    // A WebSocket handshake is a GET, but what it opens (a root shell in a
    // container) is what cross-site WebSocket hijacking is after: a
    // cookie-authenticated handshake must come from Berth's own origin.
    if let Some(kind) = crate::terminal::route(path) {
        if !cookie_session(req.headers()) {
            return None;
        }
        let refusal = check_origin(req.headers(), tls, &state.config.allowed_origins).err()?;
        return Some((
            ApiError::forbidden("Cross-site WebSocket request refused", refusal).into_response(),
            kind.template(),
        ));
    }
    if is_safe(req.method()) || !cookie_session(req.headers()) {
        return None;
    }
    let (kind, label) = if crate::proxy::route::split_docker_path(path).is_some() {
        (BodyKind::Docker, "/api/endpoints/{id}/docker/*")
    } else {
        match routes.find(req.method(), path) {
            // Public routes do not authenticate: nothing to forge.
            Match::Found { policy: Policy::Public, .. } => return None,
            Match::Found { template, .. } if FORM_ROUTES.contains(&template) => (BodyKind::Form, template),
            Match::Found { template, .. } => (BodyKind::Json, template),
            // 404 and 405 are answered by the router, with nothing done.
            Match::NotFound | Match::MethodNotAllowed(_) => return None,
        }
    };
    let refusal = check(req.headers(), tls, &state.config.allowed_origins, kind).err()?;
    Some((ApiError::forbidden("Cross-site request refused", refusal).into_response(), label))
}

fn is_safe(m: &Method) -> bool {
    m == Method::GET || m == Method::HEAD || m == Method::OPTIONS
}

/// Whether the session cookie would authenticate this request: it is sent,
/// and neither `X-API-Key` nor `Authorization` is (a request with either is
/// not one a browser makes cross-site). Any `Cookie` line naming the
/// session cookie counts, whatever else it holds: the check must cover at
/// least every request the authenticator reads a cookie from.
fn cookie_session(h: &HeaderMap) -> bool {
    if h.contains_key(X_API_KEY) || h.contains_key(header::AUTHORIZATION) {
        return false;
    }
    let name = crate::auth::extract::COOKIE_NAME.as_bytes();
    h.get_all(header::COOKIE)
        .iter()
        .any(|v| v.as_bytes().windows(name.len() + 1).any(|w| &w[..name.len()] == name && w[name.len()] == b'='))
}

fn check(h: &HeaderMap, tls: bool, allowed: &[String], kind: BodyKind) -> Result<(), String> {
    check_origin(h, tls, allowed)?;
    check_body_type(h, kind)
}

fn check_origin(h: &HeaderMap, tls: bool, allowed: &[String]) -> Result<(), String> {
    let mut origins = h.get_all(header::ORIGIN).iter();
    if let Some(origin) = origins.next() {
        if origins.next().is_some() {
            return Err("more than one Origin header".into());
        }
        let shown = String::from_utf8_lossy(origin.as_bytes());
        let Some(origin) = origin.to_str().ok().and_then(normalize_origin) else {
            return Err(format!("the Origin {shown:?} is not this server's origin"));
        };
        if own_origin(h, tls).as_deref() == Some(origin.as_str()) || allowed.contains(&origin) {
            return Ok(());
        }
        return Err(format!(
            "the Origin {shown:?} is not this server's origin; a request authenticated by the session cookie must come from Berth's own pages (or an origin listed in allowed_origins)"
        ));
    }
    match h.get(SEC_FETCH_SITE).map(HeaderValue::as_bytes) {
        Some(b"same-origin") | Some(b"none") => Ok(()),
        Some(other) => Err(format!(
            "Sec-Fetch-Site is {:?}: a request authenticated by the session cookie must come from Berth's own pages",
            String::from_utf8_lossy(other)
        )),
        None => Err("a state-changing request authenticated by the session cookie must carry Origin or Sec-Fetch-Site; scripts authenticate with Authorization: Bearer or X-API-Key instead".into()),
    }
}

/// The origin the client addressed: the listener's scheme and the `Host`
/// header (exactly one, as HTTP/1.1 requires).
fn own_origin(h: &HeaderMap, tls: bool) -> Option<String> {
    let mut hosts = h.get_all(header::HOST).iter();
    let host = hosts.next()?;
    if hosts.next().is_some() {
        return None;
    }
    let scheme = if tls { "https" } else { "http" };
    normalize_origin(&format!("{scheme}://{}", host.to_str().ok()?))
}

/// A body must have a type a cross-site page cannot send without a
/// preflight (`text/plain`, forms), except forms on form routes. A request
/// without a body needs no type.
fn check_body_type(h: &HeaderMap, kind: BodyKind) -> Result<(), String> {
    if !has_body(h) {
        return Ok(());
    }
    let Some(mime) = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(media_type) else {
        return Err("a request body authenticated by the session cookie needs a Content-Type".into());
    };
    let ok = match kind {
        BodyKind::Json => mime == "application/json",
        BodyKind::Form => {
            matches!(mime.as_str(), "application/json" | "multipart/form-data" | "application/x-www-form-urlencoded")
        }
        BodyKind::Docker => DOCKER_BODY_TYPES.contains(&mime.as_str()),
    };
    if ok {
        return Ok(());
    }
    Err(match kind {
        BodyKind::Json => format!("Content-Type {mime:?}: this route takes application/json"),
        BodyKind::Form => format!("Content-Type {mime:?}: this route takes a form or application/json"),
        BodyKind::Docker => {
            format!("Content-Type {mime:?} is refused for a request authenticated by the session cookie")
        }
    })
}

fn has_body(h: &HeaderMap) -> bool {
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get_all(header::CONTENT_LENGTH).iter().any(|v| v.as_bytes().iter().any(|b| *b != b'0'))
}

/// `type/subtype`, lower-case, parameters dropped.
fn media_type(v: &str) -> String {
    v.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn origins_are_normalised() {
        assert_eq!(normalize_origin("http://Berth.Example").as_deref(), Some("http://berth.example:80"));
        assert_eq!(normalize_origin("HTTPS://berth.example:443").as_deref(), Some("https://berth.example:443"));
        assert_eq!(normalize_origin("http://127.0.0.1:9000").as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(normalize_origin("http://[::1]:9000").as_deref(), Some("http://[::1]:9000"));
        for bad in ["null", "http://a/b", "http://u@a", "ftp://a", "http://", "http://a:", "http://a:99999", "a"] {
            assert_eq!(normalize_origin(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_cookie_sessions_are_checked() {
        assert!(cookie_session(&headers(&[("cookie", "a=1; portainer_api_key=x")])));
        assert!(cookie_session(&headers(&[("cookie", "portainer_api_key=x")])));
        assert!(!cookie_session(&headers(&[("cookie", "a=1")])));
        assert!(!cookie_session(&headers(&[("cookie", "portainer_api_key=x"), ("authorization", "Bearer y")])));
        assert!(!cookie_session(&headers(&[("cookie", "portainer_api_key=x"), ("x-api-key", "k")])));
    }

    #[test]
    fn origin_must_be_our_own_or_allowed() {
        let allowed = vec!["https://ui.example:443".to_owned()];
        let ok = |pairs: &[(&str, &str)], tls| check_origin(&headers(pairs), tls, &allowed).is_ok();
        assert!(ok(&[("host", "127.0.0.1:9000"), ("origin", "http://127.0.0.1:9000")], false));
        assert!(ok(&[("host", "berth.example"), ("origin", "http://BERTH.example:80")], false));
        assert!(ok(&[("host", "berth.example:9443"), ("origin", "https://berth.example:9443")], true));
        assert!(!ok(&[("host", "berth.example:9443"), ("origin", "http://berth.example:9443")], true), "scheme");
        assert!(!ok(&[("host", "127.0.0.1:9000"), ("origin", "http://127.0.0.1:8080")], false), "port");
        assert!(!ok(&[("host", "127.0.0.1:9000"), ("origin", "http://evil.example")], false));
        assert!(!ok(&[("host", "127.0.0.1:9000"), ("origin", "null")], false));
        assert!(ok(&[("host", "127.0.0.1:9000"), ("origin", "https://ui.example")], false), "allowed");
        // Origin wins over Sec-Fetch-Site.
        assert!(!ok(&[("host", "a"), ("origin", "http://b"), ("sec-fetch-site", "same-origin")], false));
        assert!(ok(&[("host", "a"), ("sec-fetch-site", "same-origin")], false));
        assert!(ok(&[("host", "a"), ("sec-fetch-site", "none")], false));
        assert!(!ok(&[("host", "a"), ("sec-fetch-site", "same-site")], false));
        assert!(!ok(&[("host", "a"), ("sec-fetch-site", "cross-site")], false));
        assert!(!ok(&[("host", "a")], false), "neither header");
        assert!(!ok(&[("host", "a"), ("host", "b"), ("origin", "http://a")], false), "two Hosts");
        assert!(!ok(&[("host", "a"), ("origin", "http://a"), ("origin", "http://a")], false), "two Origins");
    }

    #[test]
    fn bodies_need_a_type_no_cross_site_page_can_send() {
        let ok = |pairs: &[(&str, &str)], kind| check_body_type(&headers(pairs), kind).is_ok();
        assert!(ok(&[], BodyKind::Json), "no body, no type needed");
        assert!(ok(&[("content-length", "0"), ("content-type", "text/plain")], BodyKind::Json));
        assert!(ok(&[("content-length", "2"), ("content-type", "application/json")], BodyKind::Json));
        assert!(ok(&[("content-length", "2"), ("content-type", "Application/JSON; charset=utf-8")], BodyKind::Json));
        assert!(!ok(&[("content-length", "2"), ("content-type", "text/plain")], BodyKind::Json));
        assert!(!ok(&[("content-length", "2")], BodyKind::Json));
        assert!(!ok(&[("transfer-encoding", "chunked"), ("content-type", "multipart/form-data; b=x")], BodyKind::Json));
        assert!(ok(&[("content-length", "2"), ("content-type", "multipart/form-data; boundary=x")], BodyKind::Form));
        assert!(!ok(&[("content-length", "2"), ("content-type", "text/plain")], BodyKind::Form));
        assert!(ok(&[("content-length", "2"), ("content-type", "application/x-tar")], BodyKind::Docker));
        assert!(!ok(&[("content-length", "2"), ("content-type", "text/plain")], BodyKind::Docker));
        assert!(!ok(
            &[("content-length", "2"), ("content-type", "application/x-www-form-urlencoded")],
            BodyKind::Docker
        ));
    }

    #[test]
    fn every_answer_refuses_framing_and_sniffing() {
        let mut h = HeaderMap::new();
        security_headers(&mut h);
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["x-content-type-options"], "nosniff");
    }
}
