//! The one error type every API handler returns, rendered in Portainer's
//! `{"message": ..., "details": ...}` shape so that clients written against
//! Portainer parse Berth's errors unchanged.

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};

/// An error that becomes an HTTP answer. `details` carries the underlying
/// cause for the client (never a secret); `internal` carries what only the
/// log may see.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub details: String,
    /// Logged by the access log, never sent to the client.
    pub internal: Option<String>,
    /// Extra response headers (for example `Retry-After` on 429).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.message, self.details)
    }
}

impl std::error::Error for ApiError {}

/// Portainer capitalises the first letter of `details`; clients match on it.
fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>, details: impl AsRef<str>) -> Self {
        let message = message.into();
        let details = details.as_ref();
        let details = if details.is_empty() { message.clone() } else { capitalise(details) };
        ApiError { status, message, details, internal: None, headers: Vec::new() }
    }

    /// Keeps a cause for the log without showing it to the client.
    pub fn with_internal(mut self, internal: impl std::fmt::Display) -> Self {
        self.internal = Some(internal.to_string());
        self
    }

    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn bad_request(message: impl Into<String>, details: impl AsRef<str>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message, details)
    }

    /// Portainer's answer to any JSON payload that fails to decode or validate.
    pub fn invalid_payload(details: impl AsRef<str>) -> Self {
        Self::bad_request("Invalid request payload", details)
    }

    pub fn not_found(thing: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("Unable to find {thing} with the specified identifier inside the database"),
            "Object not found inside the database",
        )
    }

    pub fn conflict(message: impl Into<String>, details: impl AsRef<str>) -> Self {
        Self::new(StatusCode::CONFLICT, message, details)
    }

    pub fn forbidden(message: impl Into<String>, details: impl AsRef<str>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message, details)
    }

    /// The admin-route denial body clients see from Portainer.
    pub fn access_denied() -> Self {
        Self::forbidden("Access denied", "Unauthorized")
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message, "Unauthorized")
    }

    /// A failure of Berth itself: the client learns only the summary.
    pub fn internal(message: impl Into<String>, cause: impl std::fmt::Display) -> Self {
        let message = message.into();
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message.clone(), &message).with_internal(cause)
    }

    pub fn body_json(&self) -> Bytes {
        let v = serde_json::json!({ "message": self.message, "details": self.details });
        Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_default_to_message_and_are_capitalised() {
        let e = ApiError::bad_request("Invalid request payload", "");
        assert_eq!(e.details, "Invalid request payload");
        let e = ApiError::bad_request("x", "invalid environment name");
        assert_eq!(e.details, "Invalid environment name");
    }

    #[test]
    fn response_is_json_with_status() {
        let r = ApiError::access_denied().into_response();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn internal_cause_stays_out_of_the_body() {
        let e = ApiError::internal("Unable to persist", "disk on fire");
        let body = e.body_json();
        assert!(!String::from_utf8_lossy(&body).contains("disk on fire"));
    }
}
