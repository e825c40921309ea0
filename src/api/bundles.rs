//! `/api/users/{id}/bundles`: client bundles (issue 18). Creating one asks
//! for the caller's password, as API keys do (an admin may create one for
//! another user, with the admin's own password); the answer is the zip,
//! shown once. Listing shows serials and expiry; deleting revokes at once.

use std::sync::Arc;

use http::{header, HeaderValue, Response, StatusCode};
use serde::Deserialize;
use utoipa::ToSchema;

use super::auth::rate_limit;
use super::doc::{json, list as list_of, Body, Doc, Reply};
use super::{json_response, no_content, ApiRequest, ApiResult};
use crate::auth::{now_secs, password};
use crate::body::ResponseBody;
use crate::bundles::{archive, ca, hex};
use crate::error::ApiError;
use crate::response::store_err;
use crate::state::AppState;
use crate::store::model::{Bundle, BundleView};
use crate::store::BUNDLES;

/// Longest lifetime a bundle may ask for.
const MAX_LIFETIME_SECS: u64 = 5 * 365 * 86_400;
/// Largest CSR accepted (a PEM request is well under 4 KiB).
const MAX_CSR: usize = 16 << 10;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
struct CreateBundle {
    #[serde(default)]
    password: String,
    #[serde(default)]
    description: String,
    /// A PEM certificate signing request: only its public key is used.
    #[serde(default)]
    csr: Option<String>,
    /// End of validity (unix seconds); the configured lifetime by default.
    #[serde(default, rename = "expiresat")]
    expires_at: Option<u64>,
    // The same restrictions as API keys (issue 17's scope model).
    #[serde(default)]
    endpointids: Option<Vec<i64>>,
    #[serde(default)]
    groupids: Option<Vec<i64>>,
    #[serde(default)]
    access: Option<String>,
}

fn denied(message: &str) -> ApiError {
    ApiError::forbidden(message, "Unauthorized")
}

/// Who may manage `id`'s bundles: the user, or an admin.
fn may_manage(req: &ApiRequest, id: u64) -> ApiResult<()> {
    let p = req.principal();
    if !p.is_admin() && p.id() != id {
        return Err(denied("Permission denied to manage the user's client bundles"));
    }
    Ok(())
}

pub const CREATE: Doc = Doc::new(
    "Create a client bundle",
    &[Reply::bytes(201, "A zip: client certificate and key, Berth's CA, Docker contexts", "application/zip")
        .with_headers(&[("X-Berth-Bundle-Id", "The new bundle's id")])],
)
.describe("With a session token only, with the user's password; the certificate authenticates on the HTTPS listener.")
.body(Body::Json(json::<CreateBundle>))
.errors(&[(429, "Too many attempts from this address")]);

pub async fn create(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    rate_limit(&state, &req, "/api/users/{id}/bundles")?;
    let id = req.id("id", "user")?;
    may_manage(&req, id)?;
    let p = req.principal().clone();
    if p.via_api_key || p.bundle.is_some() {
        return Err(ApiError::unauthorized("Auth not supported"));
    }
    let user = state.identity.user(id).ok_or_else(|| ApiError::not_found("a user"))?;
    let body: CreateBundle = req.json().await?;
    let description = body.description.trim().to_string();
    if description.is_empty() || description.chars().count() >= 128 {
        return Err(ApiError::invalid_payload("Invalid description: from 1 to 127 characters"));
    }
    let now = now_secs();
    let expires_at = match body.expires_at {
        None => now.saturating_add(state.config.bundle_lifetime.as_secs()),
        Some(t) if t > now && t - now <= MAX_LIFETIME_SECS => t,
        Some(_) => {
            return Err(ApiError::invalid_payload(
                "Invalid expiresAt: unix seconds in the future, at most five years ahead",
            ))
        }
    };
    let requested = super::key_scope::Requested {
        expires_at: None,
        endpoint_ids: body.endpointids,
        group_ids: body.groupids,
        access: body.access,
    };
    let (_, scope) = super::key_scope::validate(requested, now)?;
    let scope = (!scope.is_unrestricted()).then_some(scope);
    let csr = match body.csr.as_deref() {
        None => None,
        Some(pem) if pem.len() > MAX_CSR => return Err(ApiError::invalid_payload("Invalid csr: too large")),
        Some(pem) => Some(rcgen::CertificateSigningRequestParams::from_pem(pem).map_err(|e| {
            ApiError::invalid_payload(format!("Invalid csr: a PEM certificate signing request is expected ({e})"))
        })?),
    };
    if body.password.is_empty() {
        return Err(ApiError::invalid_payload("Invalid password: cannot be empty"));
    }
    if !password::verify(body.password, p.user.password_hash.clone()).await? {
        state.metrics.auth_failures.with_label_values(&["bad_credentials"]).inc();
        return Err(ApiError::forbidden("Current password doesn't match", "Unauthorized"));
    }

    let serial = ca::random_serial_bytes();
    let not_after = time::OffsetDateTime::from_unix_timestamp(expires_at as i64)
        .map_err(|e| ApiError::invalid_payload(format!("Invalid expiresAt: {e}")))?;
    let public_key = csr.as_ref().map(|c| &c.public_key as &dyn rcgen::PublicKeyData);
    let signed = state
        .bundles
        .ca
        .sign_client(&user.username, &serial, not_after, public_key)
        .map_err(|e| ApiError::internal("Unable to sign the client certificate", e))?;
    let fingerprint = {
        use sha2::Digest;
        hex(&sha2::Sha256::digest(signed.cert_der.as_ref()))
    };
    let (user_id, serial_hex) = (id, hex(&serial));
    let record = state
        .write(move |tx| {
            tx.insert(BUNDLES, |id| Bundle {
                id,
                user_id,
                description,
                serial: serial_hex,
                fingerprint,
                date_created: now,
                expires_at,
                scope,
            })
        })
        .await
        .map_err(store_err)?;
    state.bundles.put(record.clone());

    let teams = state.identity.teams_of(id);
    let owner = crate::auth::Principal {
        user: user.clone(),
        via_api_key: false,
        jti: None,
        force_change_password: false,
        scoped_key: None,
        bundle: None,
        api_key_id: None,
    };
    let mut endpoints: Vec<archive::Target> = state
        .endpoints
        .all()
        .into_iter()
        .filter(|e| state.endpoints.may_access(&owner, &e.record, &teams))
        .filter(|e| {
            record.scope.as_ref().is_none_or(|s| crate::access::scope::covers(s, e.record.id, Some(e.record.group_id)))
        })
        .map(|e| archive::Target { id: e.record.id, name: e.record.name.clone() })
        .collect();
    endpoints.sort_by_key(|e| e.id);
    let authority = https_authority(&state, &req);
    let zip = archive::build(&archive::Contents {
        bundle_id: record.id,
        username: &user.username,
        ca_pem: &state.bundles.ca.cert_pem,
        cert_pem: &signed.cert_pem,
        key_pem: signed.key_pem.as_deref(),
        https_authority: &authority,
        endpoints: &endpoints,
    })
    .map_err(|e| ApiError::internal("Unable to build the bundle archive", e))?;
    tracing::info!(bundle = record.id, user = id, serial = %record.serial, "client bundle created");

    let mut resp = Response::new(ResponseBody::full(zip));
    *resp.status_mut() = StatusCode::CREATED;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/zip"));
    let file = format!("attachment; filename=\"berth-bundle-{}.zip\"", record.id);
    if let Ok(v) = HeaderValue::from_str(&file) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-berth-bundle-id", HeaderValue::from(record.id));
    Ok(resp)
}

/// `host:port` of the HTTPS listener as this client reaches Berth: the
/// host it addressed, with the HTTPS port.
fn https_authority(state: &AppState, req: &ApiRequest) -> String {
    let host = req.parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let host = match host.rfind(':') {
        // host:port or [v6]:port, not a bare v6 address.
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    };
    let port = state.config.bind_https.map_or(9443, |a| a.port());
    archive::safe_authority(&format!("{host}:{port}"))
}

pub const LIST: Doc = Doc::new("A user's client bundles", &[Reply::json(200, "Bundles", list_of::<BundleView>)]);

pub async fn list(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let id = req.id("id", "user")?;
    may_manage(&req, id)?;
    state.identity.user(id).ok_or_else(|| ApiError::not_found("a user"))?;
    let v: Vec<BundleView> = state.bundles.of_user(id).iter().map(|b| b.to_api()).collect();
    Ok(json_response(StatusCode::OK, &v))
}

pub const DELETE: Doc = Doc::new("Revoke a client bundle", &[Reply::empty(204, "Revoked")]);

pub async fn delete(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let id = req.id("id", "user")?;
    let bid = req.id("bundleId", "client bundle")?;
    may_manage(&req, id)?;
    let b = state.bundles.get(bid).filter(|b| b.user_id == id).ok_or_else(|| ApiError::not_found("a client bundle"))?;
    state.write(move |tx| tx.delete(BUNDLES, bid)).await.map_err(store_err)?;
    state.bundles.remove(bid);
    tracing::info!(bundle = bid, user = id, serial = %b.serial, "client bundle revoked");
    no_content()
}
