//! What a standard user may learn about where an endpoint is. Their
//! endpoint answers carry no URL or TLS paths (`api::endpoints`), and the
//! answers Berth itself makes when a Docker host fails name the endpoint by
//! id and name only: the underlying error ("cannot connect to
//! tcp://10.0.0.5:2376: connection refused", a TLS name mismatch, a DNS
//! failure) would tell them the host's address, so its details are replaced
//! with a fixed text. Admins keep the full details.

use bytes::Bytes;
use http::Response;
use serde_json::Value;

use super::ProxyFailure;
use crate::body::ResponseBody;

/// The details a standard user gets instead of the cause of a failure.
pub const HIDDEN_CAUSE: &str =
    "The Docker host of this environment could not be used; an administrator can see the cause";

/// Failures whose details say nothing about the host: a bad request path,
/// the tunnel cap, the client's own slow body. Every other failure,
/// including kinds added later, has its details replaced.
fn details_are_safe(f: ProxyFailure) -> bool {
    matches!(f, ProxyFailure::BadPath | ProxyFailure::TunnelLimit | ProxyFailure::ClientBodyTimeout)
}

/// Replaces the details of a failure Berth generated on the proxy path;
/// any other response (including the host's own errors) passes unchanged.
pub fn proxy_failure_for_standard_user(resp: Response<ResponseBody>) -> Response<ResponseBody> {
    match resp.extensions().get::<ProxyFailure>() {
        Some(f) if !details_are_safe(*f) => {}
        _ => return resp,
    }
    let (parts, body) = resp.into_parts();
    let ResponseBody::Full(Some(bytes)) = body else {
        // Berth's failures are always whole JSON bodies; anything else is
        // not one of them and is left alone.
        return Response::from_parts(parts, body);
    };
    Response::from_parts(parts, ResponseBody::full(hide_details(&bytes)))
}

fn hide_details(body: &[u8]) -> Bytes {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "Unable to reach the Docker host of this environment".to_owned());
    Bytes::from(serde_json::json!({"message": message, "details": HIDDEN_CAUSE}).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_of(r: Response<ResponseBody>) -> Value {
        serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap()
    }

    fn failure(kind: Option<ProxyFailure>) -> Response<ResponseBody> {
        let mut r = crate::error::ApiError::new(
            http::StatusCode::BAD_GATEWAY,
            "Unable to reach the Docker host of environment 3 (prod)",
            "cannot connect to tcp://10.0.0.5:2376: connection refused",
        )
        .into_response();
        if let Some(k) = kind {
            r.extensions_mut().insert(k);
        }
        r
    }

    #[tokio::test]
    async fn host_failures_lose_their_details_and_nothing_else_does() {
        for kind in
            [ProxyFailure::Unreachable, ProxyFailure::ConnectTimeout, ProxyFailure::Upstream, ProxyFailure::Protocol]
        {
            let r = proxy_failure_for_standard_user(failure(Some(kind)));
            assert_eq!(r.status(), http::StatusCode::BAD_GATEWAY);
            assert_eq!(r.headers()["content-type"], "application/json");
            let v = body_of(r).await;
            assert_eq!(v["message"], "Unable to reach the Docker host of environment 3 (prod)");
            assert_eq!(v["details"], HIDDEN_CAUSE);
            assert!(!v.to_string().contains("10.0.0.5"), "{v}");
        }
        // Not a failure of Berth's (the host's own 502), or a safe kind.
        for kind in
            [None, Some(ProxyFailure::BadPath), Some(ProxyFailure::TunnelLimit), Some(ProxyFailure::ClientBodyTimeout)]
        {
            let v = body_of(proxy_failure_for_standard_user(failure(kind))).await;
            assert!(v["details"].as_str().unwrap().contains("10.0.0.5"), "{kind:?}");
        }
    }
}
