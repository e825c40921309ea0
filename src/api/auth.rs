//! `POST /api/auth` (login) and `POST /api/auth/logout`.

use crate::audit::{Event, Kind, AUTH_FAILURE, AUTH_LOGOUT, AUTH_SUCCESS};
use std::sync::Arc;

use http::{header, HeaderValue, Response, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::doc::{json, Body, Doc, Reply};
use super::{json_response, no_content, store_err, ApiRequest};
use crate::auth::extract::COOKIE_NAME;
use crate::auth::jwt::Claims;
use crate::auth::{now_secs, password};
use crate::body::ResponseBody;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::model::User;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
struct Login {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// Takes a token from the caller's bucket (login, API-key creation and
/// password change share one per client address).
pub fn rate_limit(state: &AppState, req: &ApiRequest, route: &str) -> ApiResult<()> {
    let s = state.settings();
    match state.limiter.check(req.client_ip, s.login_rate_burst, s.login_rate_per_second) {
        Ok(()) => Ok(()),
        Err(wait) => {
            state.metrics.rate_limited.with_label_values(&[route]).inc();
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests",
                format!("Too many attempts from this address; retry in {secs} s"),
            )
            .with_header(header::RETRY_AFTER, HeaderValue::from(secs)))
        }
    }
}

/// Signs a session token for `user` with the configured lifetime.
pub fn issue_token(state: &AppState, user: &User, force_change_password: bool) -> (String, u64) {
    let now = now_secs();
    let exp = now + state.session_lifetime().as_secs();
    let claims = Claims {
        id: user.id,
        username: user.username.clone(),
        role: user.role,
        scope: "default".into(),
        force_change_password,
        jti: uuid::Uuid::new_v4().to_string(),
        iat: now,
        exp,
        gen: user.token_generation,
    };
    (state.jwt.sign(&claims), exp)
}

/// A session token, also set as the `portainer_api_key` cookie.
#[derive(Serialize, ToSchema)]
pub struct LoginReply {
    jwt: String,
}

pub const LOGIN: Doc = Doc::new(
    "Log in",
    &[Reply::json(200, "A session token (also set as the portainer_api_key cookie)", json::<LoginReply>)
        .with_headers(&[("Set-Cookie", "portainer_api_key=<JWT>; HttpOnly; SameSite=Strict")])],
)
.body(Body::Json(json::<Login>))
.errors(&[
    (422, "Invalid credentials"),
    (429, "Too many attempts from this address (Retry-After)"),
    (503, "Too many password checks in progress (Retry-After)"),
]);

pub async fn login(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    rate_limit(&state, &req, "/api/auth")?;
    let body: Login = req.json().await?;
    if body.username.is_empty() {
        return Err(ApiError::invalid_payload("Invalid username"));
    }
    if body.password.is_empty() {
        return Err(ApiError::invalid_payload("Invalid password"));
    }
    let user = state.identity.user_by_name(&body.username);
    // Unknown users are checked against a dummy hash: same cost, same answer.
    let hash = user.as_ref().map(|u| u.password_hash.clone()).unwrap_or_else(|| state.dummy_hash.clone());
    let pw_len = body.password.len();
    let ok = match password::verify(body.password, hash).await {
        Ok(ok) => ok,
        Err(e) => {
            // The hashing pool is full (503): neither a success nor a
            // failure of these credentials, so no audit event.
            state.metrics.auth_failures.with_label_values(&["busy"]).inc();
            return Err(e);
        }
    };
    let mut event = Event::new(Kind::Auth, "login", req.client_ip);
    // The name tried, bounded: a failed login's "username" may be anything.
    event.username = body.username.chars().take(128).collect();
    let Some(user) = user.filter(|_| ok) else {
        state.metrics.auth_failures.with_label_values(&["bad_credentials"]).inc();
        event.auth_type = Some(AUTH_FAILURE);
        event.status = StatusCode::UNPROCESSABLE_ENTITY.as_u16();
        state.audit.record(&state.store, event).await;
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid credentials", "Unauthorized"));
    };
    event.auth_type = Some(AUTH_SUCCESS);
    event.status = 200;
    event.user_id = Some(user.id);
    event.username = user.username.clone();
    state.audit.record(&state.store, event).await;
    let force = pw_len < state.settings().required_password_length;
    let (jwt, exp) = issue_token(&state, &user, force);
    let max_age = exp.saturating_sub(now_secs());
    let cookie =
        HeaderValue::from_str(&format!("{COOKIE_NAME}={jwt}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict"));
    let mut resp = json_response(StatusCode::OK, &LoginReply { jwt });
    if let Ok(v) = cookie {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp.extensions_mut().insert(crate::response::AuthedUser(user.id));
    Ok(resp)
}

pub const LOGOUT: Doc = Doc::new("Log out", &[Reply::empty(204, "Logged out; the session cookie is cleared")])
    .describe("Always 204. A valid session token (cookie or bearer) is revoked until it would have expired.");

/// Always 204. A valid token (cookie or bearer) is revoked durably so it
/// stays dead across restarts until it would have expired anyway.
pub async fn logout(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    if let Ok(p) = crate::auth::extract::authenticate(&req.parts.headers, None, &state.identity, &state.jwt) {
        if let Some((jti, exp)) = p.jti.clone() {
            let j = jti.clone();
            state.write(move |tx| tx.revoke(&j, exp)).await.map_err(store_err)?;
            state.identity.revoke(jti, exp);
            let mut event = Event::new(Kind::Auth, "logout", req.client_ip).by(&p);
            event.auth_type = Some(AUTH_LOGOUT);
            event.status = 204;
            state.audit.record(&state.store, event).await;
        }
    }
    let mut r = no_content()?;
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("portainer_api_key=; Path=/; Max-Age=-1; HttpOnly; SameSite=Strict"),
    );
    Ok(r)
}
