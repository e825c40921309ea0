//! Requests refused on their request line and `Host` alone, before any
//! route, credential or body is looked at.

use http::{header, HeaderValue, Method, Request, StatusCode, Version};

use crate::error::ApiError;

/// The methods Berth serves (Docker's API uses the first five; `PATCH` and
/// `OPTIONS` reach the router, which answers them per route).
const ALLOWED: &str = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS";

/// `Some(error)` for a request that must not go further:
/// - `CONNECT` and `TRACE`: 405 (Berth is no forward proxy, and `TRACE`
///   would echo credentials back);
/// - any other method outside the list above: 501, as RFC 9110 §9.1 says
///   for a method the server does not know;
/// - an HTTP/1.1 request without `Host`, any request with more than one, or
///   a `Host` that is not a valid authority: 400 (RFC 9112 §3.2).
pub fn reject<B>(req: &Request<B>) -> Option<ApiError> {
    let m = req.method();
    let known = matches!(
        *m,
        Method::GET | Method::HEAD | Method::POST | Method::PUT | Method::DELETE | Method::PATCH | Method::OPTIONS
    );
    if !known {
        if *m == Method::CONNECT || *m == Method::TRACE {
            return Some(
                ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed", format!("Allowed: {ALLOWED}"))
                    .with_header(header::ALLOW, HeaderValue::from_static(ALLOWED)),
            );
        }
        return Some(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "Method not implemented",
            format!("Berth serves {ALLOWED}"),
        ));
    }
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let bad = |details: &str| {
        Some(
            ApiError::bad_request("Invalid Host header", details)
                .with_header(header::CONNECTION, HeaderValue::from_static("close")),
        )
    };
    match (hosts.next(), hosts.next()) {
        (_, Some(_)) => bad("the request carries more than one Host header"),
        (None, None) if req.version() == Version::HTTP_11 => bad("an HTTP/1.1 request must carry a Host header"),
        (Some(h), None) if !valid_host(h.as_bytes()) => bad("the Host header is not a valid host[:port]"),
        _ => None,
    }
}

/// `uri-host [ ":" port ]` (RFC 3986 reg-name, IPv4 or bracketed IPv6):
/// the characters those may hold. Empty is allowed (RFC 9112 §3.2).
fn valid_host(v: &[u8]) -> bool {
    v.iter().all(|&b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'['
                    | b']'
                    | b'%'
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, version: Version, hosts: &[&str]) -> Request<()> {
        let mut b = Request::builder().method(method).uri("/api/status").version(version);
        for h in hosts {
            b = b.header(header::HOST, *h);
        }
        b.body(()).unwrap()
    }

    fn status(r: Option<ApiError>) -> Option<u16> {
        r.map(|e| e.status().as_u16())
    }

    #[test]
    fn methods() {
        for m in ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            assert_eq!(status(reject(&req(m, Version::HTTP_11, &["x"]))), None, "{m}");
        }
        assert_eq!(status(reject(&req("CONNECT", Version::HTTP_11, &["x"]))), Some(405));
        assert_eq!(status(reject(&req("TRACE", Version::HTTP_11, &["x"]))), Some(405));
        assert_eq!(status(reject(&req("PROPFIND", Version::HTTP_11, &["x"]))), Some(501));
        assert_eq!(status(reject(&req("get", Version::HTTP_11, &["x"]))), Some(501), "methods are case-sensitive");
    }

    #[test]
    fn host_header() {
        assert_eq!(status(reject(&req("GET", Version::HTTP_11, &[]))), Some(400));
        assert_eq!(status(reject(&req("GET", Version::HTTP_10, &[]))), None, "optional in HTTP/1.0");
        assert_eq!(status(reject(&req("GET", Version::HTTP_11, &["a", "a"]))), Some(400));
        assert_eq!(status(reject(&req("GET", Version::HTTP_10, &["a", "b"]))), Some(400));
        for ok in ["localhost", "127.0.0.1:9000", "[::1]:9443", "berth.example.com", ""] {
            assert_eq!(status(reject(&req("GET", Version::HTTP_11, &[ok]))), None, "{ok}");
        }
        for bad in ["a b", "a/b", "user@host", "a?b"] {
            assert_eq!(status(reject(&req("GET", Version::HTTP_11, &[bad]))), Some(400), "{bad}");
        }
    }
}
