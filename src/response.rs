//! Where errors become HTTP answers (Berth's own, and the store's), and the typed values a response carries
//! in its extensions from the layer that knows them to the access log.
//!
//! This sits above the two leaves it joins ([`crate::error`] and
//! [`crate::body`]) so that neither has to import the other: an error type
//! that knows nothing of bodies can be used by every layer below the server.

use http::{header, HeaderValue, Response};

use crate::body::ResponseBody;
use crate::error::ApiError;
use crate::store::StoreError;

/// Set on a response by whoever authenticated the caller, for the access log.
#[derive(Clone, Copy, Debug)]
pub struct AuthedUser(pub u64);

/// Set beside [`AuthedUser`] when a client bundle (its certificate)
/// authenticated the caller: the bundle's id, for the access log.
#[derive(Clone, Copy, Debug)]
pub struct AuthedBundle(pub u64);

/// Set beside [`AuthedUser`] when an API key authenticated the caller.
#[derive(Clone, Copy, Debug)]
pub struct AuthedKey(pub u64);

/// Who made a request, in the few ids the access log and the audit trail
/// read: kept when the principal itself moves into a handler.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    user: u64,
    bundle: Option<u64>,
    key: Option<u64>,
}

impl Caller {
    pub fn of(p: &crate::auth::Principal) -> Caller {
        Caller { user: p.id(), bundle: p.bundle.as_ref().map(|b| b.id), key: p.api_key_id }
    }

    /// Marks a response with these ids.
    pub fn mark<B>(self, resp: &mut http::Response<B>) {
        resp.extensions_mut().insert(AuthedUser(self.user));
        if let Some(b) = self.bundle {
            resp.extensions_mut().insert(AuthedBundle(b));
        }
        if let Some(k) = self.key {
            resp.extensions_mut().insert(AuthedKey(k));
        }
    }
}

/// Marks a response with who made the request, for the access log and
/// the audit trail.
pub fn mark_caller<B>(resp: &mut http::Response<B>, p: &crate::auth::Principal) {
    Caller::of(p).mark(resp);
}

/// Travels in response extensions so the access log can record the cause of
/// a 5xx without it ever reaching the client.
#[derive(Debug, Clone)]
pub struct InternalCause(pub String);

impl ApiError {
    /// Portainer's JSON error answer. Defined here rather than in `error.rs`
    /// so the error type stays a leaf (see the module doc).
    pub fn into_response(self) -> Response<ResponseBody> {
        let mut resp = Response::new(ResponseBody::full(self.body_json()));
        *resp.status_mut() = self.status();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (k, v) in self.headers {
            h.insert(k, v);
        }
        if let Some(internal) = self.internal {
            resp.extensions_mut().insert(InternalCause(internal));
        }
        resp
    }
}

/// Maps store failures to answers: conflicts are 409, the rest 500 with the
/// cause kept for the log only.
pub fn store_err(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict(m) => ApiError::conflict(m.clone(), m),
        StoreError::NotFound => ApiError::not_found("an object"),
        // Nothing was applied (the transaction did not commit); the
        // replica keeps serving reads and the proxy from memory.
        StoreError::Unavailable(why) => {
            tracing::warn!(error = %why, "a write was refused: the store is unavailable");
            ApiError::new(
                http::StatusCode::SERVICE_UNAVAILABLE,
                "The store is unavailable",
                "The database that holds Berth's data cannot be reached; nothing was changed. Retry later",
            )
        }
        other => ApiError::internal("Unable to persist changes inside the database", other),
    }
}
