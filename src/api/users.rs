//! Users, the first admin, and API keys (`/api/users/*`).

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::rate_limit;
use super::doc::{json, list as list_of, Body, Doc, Reply};
use super::{json_response, no_content, ok_json, store_err, ApiRequest};
use crate::auth::{apikey, now_secs, password};
use crate::body::ResponseBody;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::model::{ApiKey, ApiKeyView, TeamMembership, User, UserView, ROLE_ADMIN, ROLE_USER};
use crate::store::{StoreError, API_KEYS, TEAM_MEMBERSHIPS, USERS};

/// Longest username accepted: anything longer is a mistake or an attack.
const MAX_USERNAME: usize = 128;

fn validate_username(name: &str) -> ApiResult<()> {
    if name.is_empty() || name.chars().any(char::is_whitespace) {
        return Err(ApiError::invalid_payload("Invalid username. Must not contain any whitespace"));
    }
    if name.chars().count() > MAX_USERNAME {
        return Err(ApiError::invalid_payload(format!("Invalid username. Must be at most {MAX_USERNAME} characters")));
    }
    Ok(())
}

/// Whether two usernames are the same login: case is ignored in every
/// script, exactly as the login lookup (lower-cased names) ignores it.
fn same_username(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

fn check_password_length(state: &AppState, pw: &str) -> ApiResult<()> {
    if pw.len() < state.settings().required_password_length {
        return Err(ApiError::bad_request("Password does not meet the requirements", ""));
    }
    Ok(())
}

fn denied(message: &str) -> ApiError {
    ApiError::forbidden(message, "Unauthorized")
}

pub const ADMIN_CHECK: Doc =
    Doc::new("Whether an administrator exists", &[Reply::empty(204, "An administrator exists")])
        .errors(&[(404, "No administrator yet: POST /api/users/admin/init")]);

pub async fn admin_check(state: Arc<AppState>, _req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    if state.identity.admin_count() > 0 {
        no_content()
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "No administrator account found inside the database",
            "Object not found inside the database",
        ))
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
struct Credentials {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

fn admin_exists() -> ApiError {
    ApiError::conflict("Unable to create administrator user", "An administrator user already exists")
}

/// Stores a new user; the uniqueness checks run inside the write
/// transaction, so concurrent creations cannot both win.
async fn insert_user(
    state: &AppState,
    username: String,
    hash: String,
    role: u8,
    only_if_no_admin: bool,
) -> ApiResult<User> {
    let r = state
        .write(move |tx| {
            let users: Vec<User> = tx.all(USERS)?;
            if only_if_no_admin && users.iter().any(|u| u.is_admin()) {
                return Err(StoreError::Conflict("admin".into()));
            }
            if users.iter().any(|u| same_username(&u.username, &username)) {
                return Err(StoreError::Conflict("name".into()));
            }
            let id = tx.next_id(USERS)?;
            let user = User {
                id,
                username,
                password_hash: hash,
                role,
                token_issue_at: 0,
                token_generation: 0,
                theme_color: String::new(),
                use_cache: true,
            };
            tx.put(USERS, id, &user)?;
            Ok(user)
        })
        .await;
    match r {
        Ok(u) => {
            state.identity.put_user(u.clone());
            Ok(u)
        }
        Err(StoreError::Conflict(k)) if k == "admin" => Err(admin_exists()),
        Err(StoreError::Conflict(_)) => {
            Err(ApiError::conflict("Another user with the same username already exists", ""))
        }
        Err(e) => Err(store_err(e)),
    }
}

pub const ADMIN_INIT: Doc =
    Doc::new("Create the first administrator", &[Reply::json(200, "The administrator", json::<UserView>)])
        .body(Body::Json(json::<Credentials>))
        .errors(&[
            (403, "--setup-token is set and the X-Berth-Setup-Token header does not match"),
            (409, "An administrator already exists"),
        ]);

pub async fn admin_init(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    if let Some(expected) = &state.config.setup_token {
        let given = req.parts.headers.get("x-berth-setup-token").map(|v| v.as_bytes()).unwrap_or(b"");
        if !bool::from(subtle::ConstantTimeEq::ct_eq(given, expected.as_bytes())) {
            return Err(ApiError::forbidden("Access denied", "A valid X-Berth-Setup-Token header is required"));
        }
    }
    // Before the body is read: once an admin exists nothing here needs it,
    // and an unauthenticated client must not make Berth wait for it.
    if state.identity.admin_count() > 0 {
        return Err(admin_exists());
    }
    let body: Credentials = req.json().await?;
    validate_username(&body.username)?;
    if body.password.is_empty() {
        return Err(ApiError::invalid_payload("Invalid password"));
    }
    check_password_length(&state, &body.password)?;
    let hash = password::hash(body.password, state.config.bcrypt_cost).await?;
    let user = insert_user(&state, body.username, hash, ROLE_ADMIN, true).await?;
    tracing::info!(user_id = user.id, "first administrator created");
    // Unlike Portainer, the hash is never echoed.
    ok_json(&user.to_api())
}

/// A user in the list: no settings, only who they are.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct UserSummary {
    id: u64,
    username: String,
    role: u8,
}

pub const LIST: Doc = Doc::new("List users", &[Reply::json(200, "Users", list_of::<UserSummary>)])
    .describe("Admins see every user; team leaders the standard users; others are refused (403).");

pub async fn list(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let p = req.principal();
    let leader = state.identity.is_any_leader(p.id());
    if !p.is_admin() && !leader {
        return Err(denied("Permission denied to access users list"));
    }
    let users: Vec<_> = state
        .identity
        .users()
        .into_iter()
        .filter(|u| p.is_admin() || u.role == ROLE_USER)
        .map(|u| UserSummary { id: u.id, username: u.username.clone(), role: u.role })
        .collect();
    ok_json(&users)
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
struct CreateUser {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    /// 1 administrator, 2 standard user.
    #[serde(default)]
    role: u8,
}

pub const CREATE: Doc = Doc::new("Create a user", &[Reply::json(200, "The user", json::<UserView>)])
    .body(Body::Json(json::<CreateUser>))
    .errors(&[(409, "Another user has this name")]);

pub async fn create(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let body: CreateUser = req.json().await?;
    validate_username(&body.username)?;
    if body.role != ROLE_ADMIN && body.role != ROLE_USER {
        return Err(ApiError::invalid_payload(
            "Invalid role value. Value must be one of: 1 (administrator) or 2 (regular user)",
        ));
    }
    if state.identity.user_by_name(&body.username).is_some() {
        return Err(ApiError::conflict("Another user with the same username already exists", ""));
    }
    if body.password.is_empty() {
        return Err(ApiError::invalid_payload("Invalid password"));
    }
    check_password_length(&state, &body.password)?;
    let hash = password::hash(body.password, state.config.bcrypt_cost).await?;
    let user = insert_user(&state, body.username, hash, body.role, false).await?;
    ok_json(&user.to_api())
}

/// The caller, and whether they must change their password.
#[derive(Serialize, ToSchema)]
pub struct Me {
    #[serde(flatten)]
    user: UserView,
    /// The session was opened with a password shorter than the required
    /// length.
    #[serde(rename = "forceChangePassword")]
    force_change_password: bool,
}

pub const ME: Doc = Doc::new("The caller's user", &[Reply::json(200, "The caller", json::<Me>)]);

pub async fn me(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let p = req.principal();
    // Read the record from memory: the principal's copy may predate a change.
    let user = state.identity.user(p.id()).ok_or_else(|| ApiError::not_found("a user"))?;
    ok_json(&Me { user: user.to_api(), force_change_password: p.force_change_password })
}

fn target_user(state: &AppState, req: &ApiRequest) -> ApiResult<Arc<User>> {
    let id = req.id("id", "user")?;
    state.identity.user(id).ok_or_else(|| ApiError::not_found("a user"))
}

pub const INSPECT: Doc = Doc::new("Inspect a user", &[Reply::json(200, "The user", json::<UserView>)])
    .describe("Admins, or the user themselves.");

pub async fn inspect(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let id = req.id("id", "user")?;
    let p = req.principal();
    if !p.is_admin() && p.id() != id {
        return Err(denied("Permission denied inspect user"));
    }
    let u = target_user(&state, &req)?;
    ok_json(&u.to_api())
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(rename_all = "lowercase")]
struct UpdateUser {
    username: Option<String>,
    password: Option<String>,
    newpassword: Option<String>,
    usecache: Option<bool>,
    theme: Option<Theme>,
    #[serde(default)]
    role: u8,
}

#[derive(Deserialize, ToSchema)]
struct Theme {
    #[serde(default)]
    color: String,
}

/// Applies a change to one user inside a write transaction, refusing to
/// leave the instance without an administrator. `revoke_keys` are deleted
/// in the same transaction, so a reset password and the keys it revoked
/// are durable together.
async fn save_user_change(state: &AppState, updated: User, revoke_keys: Vec<u64>) -> ApiResult<User> {
    let u2 = updated.clone();
    let gone = revoke_keys.clone();
    let r = state
        .write(move |tx| {
            let users: Vec<User> = tx.all(USERS)?;
            if users.iter().any(|o| o.id != u2.id && same_username(&o.username, &u2.username)) {
                return Err(StoreError::Conflict("name".into()));
            }
            let admins_after =
                users.iter().filter(|o| if o.id == u2.id { u2.is_admin() } else { o.is_admin() }).count();
            if admins_after == 0 {
                return Err(StoreError::Conflict("last admin".into()));
            }
            if tx.get::<User>(USERS, u2.id)?.is_none() {
                return Err(StoreError::NotFound);
            }
            for k in gone {
                tx.delete(API_KEYS, k)?;
            }
            tx.put(USERS, u2.id, &u2)
        })
        .await;
    match r {
        Ok(()) => {
            state.identity.put_user(updated.clone());
            for k in revoke_keys {
                state.identity.remove_api_key(k);
            }
            Ok(updated)
        }
        Err(StoreError::Conflict(k)) if k == "name" => {
            Err(ApiError::conflict("Another user with the same username already exists", ""))
        }
        Err(StoreError::Conflict(_)) => {
            Err(ApiError::forbidden("Cannot demote the last administrator", "At least one administrator must remain"))
        }
        Err(StoreError::NotFound) => Err(ApiError::not_found("a user")),
        Err(e) => Err(store_err(e)),
    }
}

fn bump_tokens(u: &mut User) {
    u.token_issue_at = now_secs();
    u.token_generation += 1;
}

/// The API keys a password change revokes: all of the user's when someone
/// else (an admin) set the password, since a reset is what is done to an
/// account that is lost or taken over, and keys made by whoever held it
/// must die with the old password. A user changing their own password keeps
/// their keys, as in Portainer (they can delete them one by one).
fn keys_revoked_by_reset(state: &AppState, actor: u64, target: u64) -> Vec<u64> {
    if actor == target {
        return Vec::new();
    }
    state.identity.api_keys_of(target).iter().map(|k| k.id).collect()
}

/// A wrong current password: counted like a failed login, so that guesses
/// through the user routes show on the same metric as guesses at `/api/auth`.
fn wrong_password(state: &AppState) -> ApiError {
    state.metrics.auth_failures.with_label_values(&["bad_credentials"]).inc();
    ApiError::forbidden("Current password doesn't match", "Unauthorized")
}

pub const UPDATE: Doc = Doc::new("Update a user", &[Reply::json(200, "The user", json::<UserView>)])
    .describe(
        "Admins change anyone's name, role and password; users their own theme, cache flag and \
         password (with the current one in Password).",
    )
    .body(Body::Json(json::<UpdateUser>))
    .errors(&[(409, "Another user has this name"), (429, "Too many password attempts from this address")]);

pub async fn update(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let id = req.id("id", "user")?;
    let p = req.principal().clone();
    if !p.is_admin() && p.id() != id {
        return Err(denied("Permission denied to update user"));
    }
    let body: UpdateUser = req.json().await?;
    let checks_password = body.newpassword.as_deref().is_some_and(|s| !s.is_empty()) && (!p.is_admin() || p.id() == id);
    if checks_password {
        // The current password is a guess to be limited like a login: same
        // bucket per client, so the two routes cannot be alternated.
        rate_limit(&state, &req, "/api/users/{id}")?;
    }
    let _guard = state.identity.write_lock.lock().await;
    let current = target_user(&state, &req)?;
    let mut u = (*current).clone();
    if body.role != 0 {
        if !p.is_admin() {
            return Err(denied("Permission denied to update user role"));
        }
        if body.role != ROLE_ADMIN && body.role != ROLE_USER {
            return Err(ApiError::invalid_payload(
                "Invalid role value. Value must be one of: 1 (administrator) or 2 (regular user)",
            ));
        }
        if body.role != u.role {
            u.role = body.role;
            bump_tokens(&mut u);
        }
    }
    if let Some(name) = body.username.filter(|n| !n.is_empty() && *n != u.username) {
        if !p.is_admin() {
            return Err(denied("Permission denied to update username"));
        }
        validate_username(&name)?;
        u.username = name;
    }
    let mut revoke = Vec::new();
    if let Some(newpw) = body.newpassword.filter(|s| !s.is_empty()) {
        if checks_password {
            let Some(old) = body.password.filter(|s| !s.is_empty()) else {
                return Err(ApiError::invalid_payload("Current password is required to set a new password"));
            };
            if !password::verify(old, u.password_hash.clone()).await? {
                return Err(wrong_password(&state));
            }
        }
        check_password_length(&state, &newpw)?;
        u.password_hash = password::hash(newpw, state.config.bcrypt_cost).await?;
        bump_tokens(&mut u);
        revoke = keys_revoked_by_reset(&state, p.id(), id);
    } else if body.password.is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::invalid_payload("NewPassword is required when Password is given"));
    }
    if let Some(c) = body.usecache {
        u.use_cache = c;
    }
    if let Some(t) = body.theme {
        u.theme_color = t.color;
    }
    let saved = save_user_change(&state, u, revoke).await?;
    ok_json(&saved.to_api())
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
struct Passwd {
    #[serde(default)]
    password: String,
    #[serde(default)]
    newpassword: String,
}

pub const UPDATE_PASSWORD: Doc = Doc::new("Change a password", &[Reply::empty(204, "Changed")])
    .body(Body::Json(json::<Passwd>))
    .errors(&[(429, "Too many password attempts from this address")]);

pub async fn update_password(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    rate_limit(&state, &req, "/api/users/{id}/passwd")?;
    let id = req.id("id", "user")?;
    let p = req.principal().clone();
    if !p.is_admin() && p.id() != id {
        return Err(denied("Permission denied to update user"));
    }
    let body: Passwd = req.json().await?;
    if body.password.is_empty() || body.newpassword.is_empty() {
        return Err(ApiError::invalid_payload("Password and NewPassword are required"));
    }
    let _guard = state.identity.write_lock.lock().await;
    let mut u = (*target_user(&state, &req)?).clone();
    if !password::verify(body.password, u.password_hash.clone()).await? {
        return Err(wrong_password(&state));
    }
    check_password_length(&state, &body.newpassword)?;
    u.password_hash = password::hash(body.newpassword, state.config.bcrypt_cost).await?;
    bump_tokens(&mut u);
    let revoke = keys_revoked_by_reset(&state, p.id(), id);
    save_user_change(&state, u, revoke).await?;
    no_content()
}

pub const DELETE: Doc =
    Doc::new("Delete a user", &[Reply::empty(204, "Deleted, with their keys, bundles and memberships")]);

pub async fn delete(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let id = req.id("id", "user")?;
    let p = req.principal().clone();
    if id == 1 {
        return Err(ApiError::forbidden("Cannot remove the initial admin account", ""));
    }
    if p.id() == id {
        return Err(ApiError::forbidden("Cannot remove your own user account. Contact another administrator", ""));
    }
    let _guard = state.identity.write_lock.lock().await;
    target_user(&state, &req)?;
    let keys: Vec<u64> = state.identity.api_keys_of(id).iter().map(|k| k.id).collect();
    let memberships: Vec<u64> = state.identity.memberships().iter().filter(|m| m.user_id == id).map(|m| m.id).collect();
    let bundles: Vec<u64> = state.bundles.of_user(id).iter().map(|b| b.id).collect();
    let gone_bundles = bundles.clone();
    let r = state
        .write(move |tx| {
            let users: Vec<User> = tx.all(USERS)?;
            let target = users.iter().find(|u| u.id == id).ok_or(StoreError::NotFound)?;
            if target.is_admin() && users.iter().filter(|u| u.is_admin()).count() <= 1 {
                return Err(StoreError::Conflict("last admin".into()));
            }
            tx.delete(USERS, id)?;
            for k in keys {
                tx.delete(API_KEYS, k)?;
            }
            for m in memberships {
                tx.delete(TEAM_MEMBERSHIPS, m)?;
            }
            for b in bundles {
                tx.delete(crate::store::BUNDLES, b)?;
            }
            Ok(())
        })
        .await;
    match r {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => return Err(ApiError::forbidden("Cannot remove the last administrator", "")),
        Err(StoreError::NotFound) => return Err(ApiError::not_found("a user")),
        Err(e) => return Err(store_err(e)),
    }
    state.identity.remove_user(id);
    for b in gone_bundles {
        state.bundles.remove(b);
    }
    no_content()
}

pub const MEMBERSHIPS: Doc =
    Doc::new("A user's team memberships", &[Reply::json(200, "Memberships", list_of::<TeamMembership>)]);

pub async fn memberships(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let id = req.id("id", "user")?;
    let p = req.principal();
    if !p.is_admin() && p.id() != id {
        return Err(denied("Permission denied to update user memberships"));
    }
    let v: Vec<_> = state.identity.memberships().into_iter().filter(|m| m.user_id == id).collect();
    ok_json(&v)
}

pub const LIST_TOKENS: Doc = Doc::new("A user's API keys", &[Reply::json(200, "API keys", list_of::<ApiKeyView>)]);

pub async fn list_tokens(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let id = req.id("id", "user")?;
    let p = req.principal();
    let target = target_user(&state, &req)?;
    // Self, or an admin looking at a standard user's keys.
    let admin_on_user = p.is_admin() && !target.is_admin();
    if p.id() != id && !admin_on_user {
        return Err(denied("Permission denied to get user access tokens"));
    }
    let v: Vec<_> = state
        .identity
        .api_keys_of(id)
        .iter()
        .map(|k| {
            let mut v = k.to_api(false);
            v.last_used = state.identity.api_key_last_used(k);
            v
        })
        .collect();
    ok_json(&v)
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
struct CreateToken {
    #[serde(default)]
    password: String,
    #[serde(default)]
    description: String,
    // Berth's restrictions (issue 17); absent means Portainer's key.
    #[serde(default)]
    expiresat: Option<i64>,
    #[serde(default)]
    endpointids: Option<Vec<i64>>,
    #[serde(default)]
    groupids: Option<Vec<i64>>,
    #[serde(default)]
    access: Option<String>,
}

/// A new key: the raw key is shown this once.
#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    #[serde(rename = "rawAPIKey")]
    raw_api_key: String,
    #[serde(rename = "apiKey")]
    api_key: ApiKeyView,
}

pub const CREATE_TOKEN: Doc = Doc::new("Create an API key", &[Reply::json(201, "The key", json::<CreatedKey>)])
    .describe(
        "With a session token only (not a key or a client bundle), for oneself, with one's password. \
         ExpiresAt, EndpointIds, GroupIds and Access (read, operate, full) restrict the key (Berth).",
    )
    .body(Body::Json(json::<CreateToken>))
    .errors(&[(429, "Too many attempts from this address")]);

pub async fn create_token(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    rate_limit(&state, &req, "/api/users/{id}/tokens")?;
    let id = req.id("id", "user")?;
    let p = req.principal().clone();
    // A JWT only, as Portainer: neither a key nor a client bundle (whose
    // scope a new key must not escape) may mint a key.
    if p.via_api_key || p.bundle.is_some() {
        return Err(ApiError::unauthorized("Auth not supported"));
    }
    if p.id() != id {
        return Err(denied("Permission denied to create user access token"));
    }
    let body: CreateToken = req.json().await?;
    let desc = body.description.trim();
    if desc.is_empty() {
        return Err(ApiError::invalid_payload("Invalid description: cannot be empty"));
    }
    if body.description.chars().count() >= 128 {
        return Err(ApiError::invalid_payload("Invalid description: must be fewer than 128 characters"));
    }
    if body.password.is_empty() {
        return Err(ApiError::invalid_payload("Invalid password: cannot be empty"));
    }
    let requested = super::key_scope::Requested {
        expires_at: body.expiresat,
        endpoint_ids: body.endpointids,
        group_ids: body.groupids,
        access: body.access,
    };
    let (expires_at, scope) = super::key_scope::validate(requested, now_secs())?;
    if !password::verify(body.password, p.user.password_hash.clone()).await? {
        return Err(wrong_password(&state));
    }
    let raw = apikey::generate();
    let digest = apikey::digest_b64(&apikey::digest(&raw));
    let prefix = apikey::display_prefix(&raw);
    let description = body.description.clone();
    // Key creation and password resets (which revoke a user's keys) are
    // serialised, so a key created during a reset cannot outlive it.
    let _guard = state.identity.write_lock.lock().await;
    let key = state
        .write(move |tx| {
            tx.insert(API_KEYS, |kid| ApiKey {
                id: kid,
                user_id: id,
                description,
                prefix,
                digest,
                date_created: now_secs(),
                last_used: 0,
                expires_at,
                scope,
            })
        })
        .await
        .map_err(store_err)?;
    state.identity.put_api_key(key.clone());
    Ok(json_response(StatusCode::CREATED, &CreatedKey { raw_api_key: raw, api_key: key.to_api(true) }))
}

pub const DELETE_TOKEN: Doc = Doc::new("Delete an API key", &[Reply::empty(204, "Deleted")]);

pub async fn delete_token(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let id = req.id("id", "user")?;
    let kid = req.id("keyId", "API key")?;
    let p = req.principal();
    if !p.is_admin() && p.id() != id {
        return Err(denied("Permission denied to remove user access token"));
    }
    target_user(&state, &req)?;
    let key = state.identity.api_key(kid).ok_or_else(|| ApiError::not_found("an API key"))?;
    if key.user_id != id {
        return Err(denied("Permission denied to remove user access token"));
    }
    state.write(move |tx| tx.delete(API_KEYS, kid)).await.map_err(store_err)?;
    state.identity.remove_api_key(kid);
    no_content()
}

/// One of Portainer's environment roles (fixed; Berth grants by policy).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct Role {
    id: u64,
    name: &'static str,
    description: &'static str,
    authorizations: BTreeMap<String, bool>,
    priority: u32,
}

pub const ROLES: Doc = Doc::new("Roles", &[Reply::json(200, "Portainer's five environment roles", list_of::<Role>)]);

pub async fn roles(_state: Arc<AppState>, _req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let roles = [
        ("Environment administrator", "Full control of all resources in an environment"),
        ("Operator", "Operational control of all existing resources in an environment"),
        ("Helpdesk", "Read-only access of all resources in an environment"),
        ("Standard user", "Full control of assigned resources in an environment"),
        ("Read-only user", "Read-only access of assigned resources in an environment"),
    ];
    let v: Vec<Role> = (1..)
        .zip(roles)
        .map(|(id, (name, description))| Role {
            id,
            name,
            description,
            authorizations: BTreeMap::new(),
            priority: id as u32,
        })
        .collect();
    ok_json(&v)
}
