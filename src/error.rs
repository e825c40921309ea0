//! The one error type every API handler returns, rendered in Portainer's
//! `{"message": ..., "details": ...}` shape so that clients written against
//! Portainer parse Berth's errors unchanged.
//!
//! An error's [`ErrorKind`] decides its HTTP status, in one exhaustive
//! match ([`ErrorKind::status`]): a new kind cannot be added without saying
//! which status it answers with. Call sites build errors with the named
//! constructors (`ApiError::bad_request`, `not_found`, ...). Turning an
//! error into a response lives in `response.rs`, so this module imports
//! nothing of Berth's.

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};

/// What went wrong, as far as the client's answer is concerned. A new kind
/// goes into [`ErrorKind::ALL`] and gets a `kind_test!` line in the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// The answer is a redirect (the admin-initialisation timeout).
    #[error("redirect")]
    Redirect,
    #[error("bad request")]
    BadRequest,
    #[error("unauthorized")]
    Unauthorized,
    #[error("forbidden")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The client stopped sending its request body.
    #[error("request timeout")]
    RequestTimeout,
    #[error("conflict")]
    Conflict,
    #[error("payload too large")]
    PayloadTooLarge,
    /// Portainer's answer to a wrong password on login.
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("too many requests")]
    TooManyRequests,
    #[error("request header fields too large")]
    HeaderFieldsTooLarge,
    /// A failure of Berth itself.
    #[error("internal error")]
    Internal,
    /// A request feature Berth does not support (an unknown method).
    #[error("not implemented")]
    NotImplemented,
    /// A Docker host could not be reached or broke the connection.
    #[error("bad gateway")]
    BadGateway,
    /// Berth is at a limit or shutting down.
    #[error("service unavailable")]
    Unavailable,
    /// A Docker host did not answer in time.
    #[error("gateway timeout")]
    GatewayTimeout,
}

impl ErrorKind {
    /// The one place a kind becomes a status.
    pub const fn status(self) -> StatusCode {
        match self {
            ErrorKind::Redirect => StatusCode::SEE_OTHER,
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::InvalidCredentials => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::HeaderFieldsTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            ErrorKind::BadGateway => StatusCode::BAD_GATEWAY,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The kind answering with `status`, for [`ApiError::new`]. A status no
    /// kind answers with is a Berth bug and becomes a 500, never a success.
    pub fn from_status(status: StatusCode) -> ErrorKind {
        ErrorKind::ALL.iter().copied().find(|k| k.status() == status).unwrap_or(ErrorKind::Internal)
    }

    /// Every kind, for [`ErrorKind::from_status`] and the tests.
    pub const ALL: [ErrorKind; 17] = [
        ErrorKind::Redirect,
        ErrorKind::BadRequest,
        ErrorKind::Unauthorized,
        ErrorKind::Forbidden,
        ErrorKind::NotFound,
        ErrorKind::MethodNotAllowed,
        ErrorKind::RequestTimeout,
        ErrorKind::Conflict,
        ErrorKind::PayloadTooLarge,
        ErrorKind::InvalidCredentials,
        ErrorKind::TooManyRequests,
        ErrorKind::HeaderFieldsTooLarge,
        ErrorKind::Internal,
        ErrorKind::NotImplemented,
        ErrorKind::BadGateway,
        ErrorKind::Unavailable,
        ErrorKind::GatewayTimeout,
    ];
}

/// An error that becomes an HTTP answer. `details` carries the underlying
/// cause for the client (never a secret); `internal` carries what only the
/// log may see.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} {message}: {details}", .kind.status().as_u16())]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    pub details: String,
    /// Logged by the access log, never sent to the client.
    pub internal: Option<String>,
    /// Extra response headers (for example `Retry-After` on 429).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

/// Portainer capitalises the first letter of `details`; clients match on it.
fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

impl ApiError {
    /// The constructor every other one goes through. Empty `details` repeat
    /// the message, as Portainer's do.
    pub fn of(kind: ErrorKind, message: impl Into<String>, details: impl AsRef<str>) -> Self {
        let message = message.into();
        let details = details.as_ref();
        let details = if details.is_empty() { message.clone() } else { capitalise(details) };
        ApiError { kind, message, details, internal: None, headers: Vec::new() }
    }

    /// For call sites that hold a status rather than a kind.
    pub fn new(status: StatusCode, message: impl Into<String>, details: impl AsRef<str>) -> Self {
        Self::of(ErrorKind::from_status(status), message, details)
    }

    pub fn status(&self) -> StatusCode {
        self.kind.status()
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
        Self::of(ErrorKind::BadRequest, message, details)
    }

    /// Portainer's answer to any JSON payload that fails to decode or validate.
    pub fn invalid_payload(details: impl AsRef<str>) -> Self {
        Self::bad_request("Invalid request payload", details)
    }

    pub fn not_found(thing: &str) -> Self {
        Self::of(
            ErrorKind::NotFound,
            format!("Unable to find {thing} with the specified identifier inside the database"),
            "Object not found inside the database",
        )
    }

    pub fn conflict(message: impl Into<String>, details: impl AsRef<str>) -> Self {
        Self::of(ErrorKind::Conflict, message, details)
    }

    pub fn forbidden(message: impl Into<String>, details: impl AsRef<str>) -> Self {
        Self::of(ErrorKind::Forbidden, message, details)
    }

    /// The admin-route denial body clients see from Portainer.
    pub fn access_denied() -> Self {
        Self::forbidden("Access denied", "Unauthorized")
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::of(ErrorKind::Unauthorized, message, "Unauthorized")
    }

    /// A failure of Berth itself: the client learns only the summary.
    pub fn internal(message: impl Into<String>, cause: impl std::fmt::Display) -> Self {
        let message = message.into();
        Self::of(ErrorKind::Internal, message.clone(), &message).with_internal(cause)
    }

    pub fn body_json(&self) -> Bytes {
        let body = ErrorBody { message: &self.message, details: &self.details };
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }
}

/// Every error's body on the wire (also the API document's `Error` schema).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody<'a> {
    /// What failed, in Portainer's words.
    pub message: &'a str,
    /// Why; the message again when there is nothing to add.
    pub details: &'a str,
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

    #[test]
    fn display_names_status_message_and_details() {
        assert_eq!(
            ApiError::conflict("Name taken", "a stack named web exists").to_string(),
            "409 Name taken: A stack named web exists"
        );
    }

    #[test]
    fn a_status_no_kind_answers_with_is_a_500() {
        assert_eq!(ErrorKind::from_status(StatusCode::IM_A_TEAPOT), ErrorKind::Internal);
        assert_eq!(ErrorKind::from_status(StatusCode::OK), ErrorKind::Internal);
    }

    /// Kinds and statuses map one to one, so `new(kind.status())` keeps the kind.
    #[test]
    fn every_kind_round_trips_through_its_status() {
        for k in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_status(k.status()), k, "{k:?}");
        }
    }

    /// One test per kind: the constructor call sites use, the status it
    /// answers with, and Portainer's JSON body on the wire.
    macro_rules! kind_test {
        ($name:ident, $kind:ident, $status:expr, $err:expr) => {
            #[test]
            fn $name() {
                let e: ApiError = $err;
                assert_eq!(e.kind, ErrorKind::$kind);
                assert_eq!(e.status().as_u16(), $status);
                let (message, details) = (e.message.clone(), e.details.clone());
                let r = e.into_response();
                assert_eq!(r.status().as_u16(), $status);
                assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
                let body = match r.into_body() {
                    crate::body::ResponseBody::Full(b) => b.unwrap_or_default(),
                    _ => panic!("an error body is built by Berth"),
                };
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(v, serde_json::json!({ "message": message, "details": details }));
            }
        };
    }

    kind_test!(
        redirect_is_303,
        Redirect,
        303,
        ApiError::new(StatusCode::SEE_OTHER, "Administrator initialization timeout", "")
    );
    kind_test!(bad_request_is_400, BadRequest, 400, ApiError::bad_request("Invalid name", "too long"));
    kind_test!(invalid_payload_is_400, BadRequest, 400, ApiError::invalid_payload("EOF"));
    kind_test!(
        unauthorized_is_401,
        Unauthorized,
        401,
        ApiError::unauthorized("A valid authorization token is missing")
    );
    kind_test!(forbidden_is_403, Forbidden, 403, ApiError::access_denied());
    kind_test!(not_found_is_404, NotFound, 404, ApiError::not_found("an environment"));
    kind_test!(
        method_not_allowed_is_405,
        MethodNotAllowed,
        405,
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed", "")
    );
    kind_test!(
        request_timeout_is_408,
        RequestTimeout,
        408,
        ApiError::new(StatusCode::REQUEST_TIMEOUT, "Request body timeout", "no data for 30s")
    );
    kind_test!(conflict_is_409, Conflict, 409, ApiError::conflict("Name taken", "exists"));
    kind_test!(
        payload_too_large_is_413,
        PayloadTooLarge,
        413,
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large", "")
    );
    kind_test!(
        invalid_credentials_is_422,
        InvalidCredentials,
        422,
        ApiError::of(ErrorKind::InvalidCredentials, "Invalid credentials", "Unauthorized")
    );
    kind_test!(
        too_many_requests_is_429,
        TooManyRequests,
        429,
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "Too many requests", "")
    );
    kind_test!(
        header_fields_too_large_is_431,
        HeaderFieldsTooLarge,
        431,
        ApiError::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "Request header fields too large", "")
    );
    kind_test!(internal_is_500, Internal, 500, ApiError::internal("Unable to persist", "disk on fire"));
    kind_test!(
        not_implemented_is_501,
        NotImplemented,
        501,
        ApiError::new(StatusCode::NOT_IMPLEMENTED, "Method not implemented", "")
    );
    kind_test!(
        bad_gateway_is_502,
        BadGateway,
        502,
        ApiError::new(StatusCode::BAD_GATEWAY, "Unable to reach the Docker host", "refused")
    );
    kind_test!(
        unavailable_is_503,
        Unavailable,
        503,
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Too many open streams", "")
    );
    kind_test!(
        gateway_timeout_is_504,
        GatewayTimeout,
        504,
        ApiError::new(StatusCode::GATEWAY_TIMEOUT, "Unable to reach the Docker host", "timed out")
    );
}
