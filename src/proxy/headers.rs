//! Header rewriting for the transparent Docker proxy. Everything is done in
//! place on the client's own `HeaderMap`: the common request (no Connection
//! header) costs a handful of hash lookups and no allocation.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Berth's session cookie (named after Portainer's, which clients already send).
pub const SESSION_COOKIE: &str = "portainer_api_key";

/// RFC 9110 §7.6.1, plus the pre-standard Keep-Alive and Proxy-Connection
/// still sent by some clients. Connection itself and the headers it names are
/// handled separately.
const HOP_BY_HOP: [HeaderName; 8] = [
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers. With `keep_upgrade`, the handshake of a
/// protocol switch is kept, normalised to `Connection: Upgrade` plus the
/// original `Upgrade` value, because that handshake is exactly what must
/// reach the other side; an h2c upgrade's `HTTP2-Settings` belongs to it too.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let (upgrade, settings) = if keep_upgrade {
        (headers.get(header::UPGRADE).cloned(), headers.get(HTTP2_SETTINGS).cloned())
    } else {
        (None, None)
    };
    remove_connection_listed(headers);
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    let Some(upgrade) = upgrade else { return };
    match settings {
        Some(settings) => {
            headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade, HTTP2-Settings"));
            headers.insert(HTTP2_SETTINGS, settings);
        }
        None => {
            headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        }
    }
    headers.insert(header::UPGRADE, upgrade);
}

/// Removes `Connection` and every header it names.
fn remove_connection_listed(headers: &mut HeaderMap) {
    let several = {
        let mut values = headers.get_all(header::CONNECTION).iter();
        if values.next().is_none() {
            return;
        }
        values.next().is_some()
    };
    if several {
        // Rare: only reachable with repeated Connection lines.
        let values: Vec<HeaderValue> = headers.get_all(header::CONNECTION).iter().cloned().collect();
        headers.remove(header::CONNECTION);
        for v in &values {
            remove_tokens(headers, v);
        }
    } else if let Some(v) = headers.remove(header::CONNECTION) {
        remove_tokens(headers, &v);
    }
}

fn remove_tokens(headers: &mut HeaderMap, value: &HeaderValue) {
    let Ok(value) = value.to_str() else { return };
    for token in value.split(',') {
        let token = token.trim();
        // The usual tokens name nothing or a header removed anyway.
        if token.is_empty()
            || token.eq_ignore_ascii_case("close")
            || token.eq_ignore_ascii_case("keep-alive")
            || token.eq_ignore_ascii_case("upgrade")
        {
            continue;
        }
        // `&str` lookups are case-insensitive; a token that is not a valid
        // header name simply matches nothing.
        headers.remove(token);
    }
}

/// Request headers that never reach a Docker host:
/// - Berth's own credentials (`Authorization`, `X-API-Key`): Berth
///   authenticated the client itself, and the host may be shared with, or
///   operated by, someone else;
/// - `Cookie`, all of it: the session cookie is a Berth credential, and no
///   other cookie has a meaning for the Docker API, so none is passed on
///   (a block list of cookie names would miss the next one);
/// - the method-override headers some frameworks honour: the method Berth
///   checked (and counted, and logged) is the method the host must run.
const NEVER_FORWARDED: [HeaderName; 6] = [
    header::AUTHORIZATION,
    X_API_KEY,
    header::COOKIE,
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];

/// Removes what must not leave Berth towards a Docker host (see
/// [`NEVER_FORWARDED`]).
pub(crate) fn strip_credentials(headers: &mut HeaderMap) {
    for name in NEVER_FORWARDED {
        headers.remove(name);
    }
}

/// Removes every `Access-Control-*` header from a Docker host's answer. A
/// host started with `--api-cors-header` would otherwise let any web page
/// read (through a victim's browser and cookie) what Berth serves; Berth's
/// own API sends no CORS headers, so the proxied part must not either.
pub(crate) fn strip_response(headers: &mut HeaderMap) {
    // The common answer has none: look before allocating the name list.
    if !headers.keys().any(is_cors) {
        return;
    }
    let names: Vec<HeaderName> = headers.keys().filter(|k| is_cors(k)).cloned().collect();
    for name in names {
        headers.remove(name);
    }
}

fn is_cors(name: &HeaderName) -> bool {
    // Header names are stored lower-case.
    name.as_str().starts_with("access-control-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn hop_by_hop_and_connection_listed_headers_go() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Custom-Hop"),
            ("connection", "x-other"),
            ("x-custom-hop", "1"),
            ("x-other", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic Zm9v"),
            ("te", "trailers"),
            ("trailer", "x-foo"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "tcp"),
            ("x-registry-auth", "abc"),
            ("content-type", "application/json"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "x-registry-auth"]);
    }

    #[test]
    fn upgrade_handshake_is_kept_when_asked() {
        let mut h = map(&[("connection", "Upgrade, x-hop"), ("upgrade", "tcp"), ("x-hop", "1"), ("te", "x")]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["connection"], "Upgrade");
        assert_eq!(h["upgrade"], "tcp");
        assert_eq!(h.len(), 2);

        let mut h = map(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAAQAAP__"),
        ]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["connection"], "Upgrade, HTTP2-Settings");
        assert_eq!(h["upgrade"], "h2c");
        assert_eq!(h["http2-settings"], "AAMAAABkAAQAAP__");

        let mut h = map(&[("connection", "Upgrade, HTTP2-Settings"), ("upgrade", "h2c"), ("http2-settings", "AAMA")]);
        strip_hop_by_hop(&mut h, false);
        assert!(h.is_empty());
    }

    #[test]
    fn credentials_cookies_and_method_overrides_go() {
        let mut h = map(&[
            ("authorization", "Bearer x"),
            ("x-api-key", "ptr_x"),
            ("cookie", "a=1; portainer_api_key=secret;b=2"),
            ("cookie", "other=3"),
            ("X-HTTP-Method-Override", "DELETE"),
            ("x-http-method", "DELETE"),
            ("x-method-override", "DELETE"),
            ("content-type", "application/json"),
            ("x-registry-auth", "abc"),
        ]);
        strip_credentials(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "x-registry-auth"]);
    }

    #[test]
    fn cors_headers_of_the_host_go() {
        let mut h = map(&[
            ("access-control-allow-origin", "*"),
            ("Access-Control-Allow-Credentials", "true"),
            ("access-control-allow-headers", "a"),
            ("access-control-allow-headers", "b"),
            ("access-control-expose-headers", "x"),
            ("api-version", "1.41"),
            ("x-access-control", "kept: not a CORS header"),
        ]);
        strip_response(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["api-version", "x-access-control"]);
    }
}
