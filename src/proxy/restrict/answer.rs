//! Docker answers the restricted proxy reads whole before relaying them:
//! create answers (for the new object's id), inspect answers (decorated
//! with their control) and `GET /swarm` (redacted). Each is small; each is
//! capped anyway.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde_json::Value;

use crate::body::ResponseBody;
use crate::error::ApiError;

/// Cap on one answer read whole (an inspect answer with a large
/// environment stays far below it).
pub const MAX_ANSWER: usize = 16 << 20;

/// A 502 for an answer from the Docker host Berth cannot use.
pub(super) fn bad_answer(e: &dyn std::fmt::Display) -> Response<ResponseBody> {
    ApiError::new(StatusCode::BAD_GATEWAY, "Invalid answer from the Docker host", e.to_string()).into_response()
}

/// Reads a whole answer (at most `cap` bytes).
pub(super) async fn read(
    resp: Response<ResponseBody>,
    cap: usize,
) -> Result<(http::response::Parts, Bytes), Response<ResponseBody>> {
    let (parts, body) = resp.into_parts();
    match Limited::new(body, cap).collect().await {
        Ok(c) => Ok((parts, c.to_bytes())),
        Err(e) => Err(bad_answer(&e)),
    }
}

/// A successful JSON answer, changed by `f`; any other answer untouched.
pub(super) async fn rewrite_json(resp: Response<ResponseBody>, f: impl FnOnce(&mut Value)) -> Response<ResponseBody> {
    if resp.status() != StatusCode::OK {
        return resp;
    }
    let (mut parts, bytes) = match read(resp, MAX_ANSWER).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let mut v: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return bad_answer(&e),
    };
    f(&mut v);
    let out = match serde_json::to_vec(&v) {
        Ok(out) => out,
        Err(e) => return bad_answer(&e),
    };
    // hyper sets the new length from the body.
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, ResponseBody::full(out))
}
