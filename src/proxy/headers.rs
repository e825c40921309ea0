//! Header rewriting for the transparent Docker proxy. Everything is done in
//! place on the client's own `HeaderMap`: the common request (no Connection
//! header, no Berth cookie) costs a handful of hash lookups and no allocation.

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

/// Berth authenticates the client itself; its credentials must never reach a
/// Docker host (which may be shared with, or operated by, someone else).
pub(crate) fn strip_credentials(headers: &mut HeaderMap) {
    headers.remove(header::AUTHORIZATION);
    headers.remove(X_API_KEY);
    strip_session_cookie(headers);
}

fn strip_session_cookie(headers: &mut HeaderMap) {
    let present = headers.get_all(header::COOKIE).iter().any(|v| contains(v.as_bytes(), SESSION_COOKIE.as_bytes()));
    if !present {
        return;
    }
    let mut kept: Vec<u8> = Vec::new();
    for value in headers.get_all(header::COOKIE) {
        for pair in value.as_bytes().split(|&b| b == b';') {
            let pair = pair.trim_ascii();
            if pair.is_empty() {
                continue;
            }
            let name = pair.split(|&b| b == b'=').next().unwrap_or(pair).trim_ascii();
            if name == SESSION_COOKIE.as_bytes() {
                continue;
            }
            if !kept.is_empty() {
                kept.extend_from_slice(b"; ");
            }
            kept.extend_from_slice(pair);
        }
    }
    headers.remove(header::COOKIE);
    if kept.is_empty() {
        return;
    }
    // Only bytes that were already part of a valid header value, plus "; ".
    if let Ok(v) = HeaderValue::from_bytes(&kept) {
        headers.insert(header::COOKIE, v);
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
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
    fn credentials_go_other_cookies_stay() {
        let mut h = map(&[
            ("authorization", "Bearer x"),
            ("x-api-key", "ptr_x"),
            ("cookie", "a=1; portainer_api_key=secret;b=2"),
            ("cookie", "portainer_api_key_other=3"),
        ]);
        strip_credentials(&mut h);
        assert!(h.get("authorization").is_none());
        assert!(h.get("x-api-key").is_none());
        assert_eq!(h["cookie"], "a=1; b=2; portainer_api_key_other=3");

        let mut h = map(&[("cookie", "portainer_api_key=secret")]);
        strip_credentials(&mut h);
        assert!(h.get("cookie").is_none());

        let mut h = map(&[("cookie", "a=1;b=2")]);
        strip_credentials(&mut h);
        assert_eq!(h["cookie"], "a=1;b=2", "untouched when the session cookie is absent");
    }
}
