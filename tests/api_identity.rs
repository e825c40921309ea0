//! End-to-end tests of Berth's identity API against the real binary: the
//! first admin, logins and JWTs, credentials and their order, rate limits,
//! users, teams, memberships, API keys, settings and status, and how bad
//! input is answered. Portainer's behaviour is the reference
//! (shared/reference/portainer-api.md §1–5, §12.1–12.2), except where
//! Berth deliberately differs (berth-vs-portainer.md).

// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use base64::Engine;
use berth::auth::jwt::{Claims, JwtKeys};
use berth_testkit::harness::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// bcrypt cost for tests not about bcrypt: ~1 ms per hash instead of ~70.
const FAST: [&str; 2] = ["--bcrypt-cost", "4"];

async fn fast_daemon() -> Daemon {
    Daemon::builder().args(FAST).start().await
}

/// A daemon with its admin logged in, the login limiter opened wide so
/// that tests which log in often are not throttled.
async fn ready() -> (Daemon, String) {
    let d = fast_daemon().await;
    let admin = d.admin_token().await;
    relax_rate_limit(&d, &admin).await;
    (d, admin)
}

async fn relax_rate_limit(d: &Daemon, admin: &str) {
    let (s, v) =
        d.put_json("/api/settings", Some(admin), &json!({"LoginRateLimit": {"Burst": 10000, "PerSecond": 1000}})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

/// Creates a user as `admin` and returns its id.
async fn create_user(d: &Daemon, admin: &str, name: &str, password: &str, role: u8) -> u64 {
    let (s, v) =
        d.post_json("/api/users", Some(admin), &json!({"Username": name, "Password": password, "Role": role})).await;
    assert_eq!(s, StatusCode::OK, "create user {name}: {v}");
    v["Id"].as_u64().unwrap_or_else(|| panic!("no Id in {v}"))
}

/// A standard user `bob` with a session.
async fn bob(d: &Daemon, admin: &str) -> (u64, String) {
    let id = create_user(d, admin, "bob", "bobpassword12", 2).await;
    (id, d.login("bob", "bobpassword12").await)
}

/// The claims of a JWT, decoded without verification.
fn jwt_part(jwt: &str, i: usize) -> Value {
    let part = jwt.split('.').nth(i).unwrap_or_else(|| panic!("not a JWT: {jwt}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).expect("base64url JWT part");
    serde_json::from_slice(&bytes).expect("JSON JWT part")
}

fn claims_of(jwt: &str) -> Value {
    jwt_part(jwt, 1)
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The daemon's real signing key (`<data>/jwt.secret`, or the store's).
fn real_keys(d: &Daemon) -> JwtKeys {
    JwtKeys::from_secret(&d.jwt_secret())
}

fn claims(id: u64, username: &str, role: u8, iat: u64, exp: u64) -> Claims {
    Claims {
        id,
        username: username.into(),
        role,
        scope: "default".into(),
        force_change_password: false,
        jti: uuid::Uuid::new_v4().to_string(),
        iat,
        exp,
        gen: 0,
    }
}

fn now() -> u64 {
    berth::auth::now_secs()
}

/// Sends a request with extra headers and returns status, headers and JSON.
async fn send(
    d: &Daemon,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut rb = d.http().request(method, d.url(path));
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    if let Some(b) = body {
        rb = rb.json(b);
    }
    let resp = rb.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
    let headers = resp.headers().clone();
    let (s, v) = read_json(resp).await;
    (s, headers, v)
}

async fn get_with(d: &Daemon, path: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let (s, _, v) = send(d, Method::GET, path, headers, None).await;
    (s, v)
}

fn unauthorized_missing() -> Value {
    json!({"message": "A valid authorization token is missing", "details": "Unauthorized"})
}

fn invalid_jwt() -> Value {
    json!({"message": "Invalid JWT token", "details": "Unauthorized"})
}

fn access_denied() -> Value {
    json!({"message": "Access denied", "details": "Unauthorized"})
}

async fn me(d: &Daemon, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    get_with(d, "/api/users/me", headers).await
}

async fn create_api_key(d: &Daemon, user_id: u64, jwt: &str, password: &str) -> (StatusCode, Value) {
    d.post_json(&format!("/api/users/{user_id}/tokens"), Some(jwt), &json!({"password": password, "description": "ci"}))
        .await
}

// ------------------------------------------------------------ status, settings

#[tokio::test]
async fn status_routes_are_public_and_instance_id_survives_restart() {
    let mut d = fast_daemon().await;
    let (s, a) = d.get_json("/api/status", None).await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(a["Version"], "2.23.0");
    let id = a["InstanceID"].as_str().expect("InstanceID").to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "InstanceID is not a UUID: {id}");
    let (s, b) = d.get_json("/api/system/status", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["Version"], "2.23.0");
    assert_eq!(b["InstanceID"], id.as_str());

    d.restart().await;
    let (_, c) = d.get_json("/api/system/status", None).await;
    assert_eq!(c["InstanceID"], id.as_str(), "InstanceID changed across a restart");
}

#[tokio::test]
async fn public_settings_are_public_and_full_settings_are_admin_only() {
    let (d, admin) = ready().await;
    let (s, p) = d.get_json("/api/settings/public", None).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["RequiredPasswordLength"], 12);
    assert_eq!(p["AuthenticationMethod"], 1);
    for key in ["LogoURL", "GlobalDeploymentOptions", "Features", "OAuthLoginURI", "EnableTelemetry"] {
        assert!(p.get(key).is_some(), "public settings lack {key}: {p}");
    }

    assert_eq!(d.get_json("/api/settings", None).await, (StatusCode::UNAUTHORIZED, unauthorized_missing()));
    let (_, bob) = bob(&d, &admin).await;
    assert_eq!(d.get_json("/api/settings", Some(&bob)).await, (StatusCode::FORBIDDEN, access_denied()));
    let (s, v) = d.put_json("/api/settings", Some(&bob), &json!({"UserSessionTimeout": "99h"})).await;
    assert_eq!((s, v), (StatusCode::FORBIDDEN, access_denied()));

    let (s, full) = d.get_json("/api/settings", Some(&admin)).await;
    assert_eq!(s, StatusCode::OK, "{full}");
    assert_eq!(full["UserSessionTimeout"], "8h");
    assert_eq!(full["InternalAuthSettings"]["RequiredPasswordLength"], 12);
}

#[tokio::test]
async fn session_lifetime_setting_sets_exp_of_new_tokens_and_is_validated() {
    let (mut d, admin) = ready().await;
    let c = claims_of(&admin);
    assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 8 * 3600, "default lifetime is 8h: {c}");

    for bad in [json!("forever"), json!(""), json!("0s"), json!(5)] {
        let (s, v) = d.put_json("/api/settings", Some(&admin), &json!({"UserSessionTimeout": bad})).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "UserSessionTimeout {bad}: {v}");
        assert_eq!(v["message"], "Invalid request payload", "{v}");
    }
    let (_, v) = d.get_json("/api/settings", Some(&admin)).await;
    assert_eq!(v["UserSessionTimeout"], "8h", "a refused update changed the setting");

    let (s, v) = d.put_json("/api/settings", Some(&admin), &json!({"UserSessionTimeout": "1h30m"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["UserSessionTimeout"], "1h30m");
    let t = d.login(ADMIN_USER, ADMIN_PASSWORD).await;
    let c = claims_of(&t);
    assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 5400, "{c}");
    // The older token keeps working with its own expiry.
    assert_eq!(d.get_json("/api/users/me", Some(&admin)).await.0, StatusCode::OK);

    // The setting is durable.
    d.restart().await;
    let t = d.login(ADMIN_USER, ADMIN_PASSWORD).await;
    let c = claims_of(&t);
    assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 5400, "after restart: {c}");
}

#[tokio::test]
async fn required_password_length_setting_applies_to_new_passwords() {
    let (d, admin) = ready().await;
    let (s, v) = d.put_json("/api/settings", Some(&admin), &json!({"RequiredPasswordLength": 20})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(d.get_json("/api/settings/public", None).await.1["RequiredPasswordLength"], 20);

    let (s, v) = d
        .post_json("/api/users", Some(&admin), &json!({"Username": "carol", "Password": "fifteen-chars!!", "Role": 2}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["message"], "Password does not meet the requirements");
    create_user(&d, &admin, "carol", "twenty-characters!!!", 2).await;

    // A correct password shorter than the rule still logs in, flagged for a change.
    let t = d.login(ADMIN_USER, ADMIN_PASSWORD).await;
    assert_eq!(claims_of(&t)["forceChangePassword"], true);
    let (_, me) = d.get_json("/api/users/me", Some(&t)).await;
    assert_eq!(me["forceChangePassword"], true, "{me}");
    let t = d.login("carol", "twenty-characters!!!").await;
    assert_eq!(claims_of(&t)["forceChangePassword"], false);

    // The nested Portainer form works too.
    let (s, v) = d
        .put_json("/api/settings", Some(&admin), &json!({"InternalAuthSettings": {"RequiredPasswordLength": 12}}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["InternalAuthSettings"]["RequiredPasswordLength"], 12);
}

// ------------------------------------------------------------ first admin

#[tokio::test]
async fn admin_check_and_init_follow_portainer() {
    let d = fast_daemon().await;
    let (s, v) = d.get_json("/api/users/admin/check", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        v,
        json!({"message": "No administrator account found inside the database", "details": "Object not found inside the database"})
    );

    let dr = &d;
    let init = |body: Value| async move { dr.post_json("/api/users/admin/init", None, &body).await };
    let (s, v) = init(json!({"Username": "admin", "Password": "short"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["message"], "Password does not meet the requirements");
    for name in ["ad min", "admin\t", " admin", ""] {
        let (s, v) = init(json!({"Username": name, "Password": ADMIN_PASSWORD})).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "username {name:?}: {v}");
        assert_eq!(v["message"], "Invalid request payload");
    }
    let (s, v) = init(json!({"Username": "admin"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "missing password: {v}");
    assert_eq!(
        d.get_json("/api/users/admin/check", None).await.0,
        StatusCode::NOT_FOUND,
        "a refused init stored a user"
    );

    // The seeds' own credentials.
    let (s, v) = init(json!({"Username": "admin", "Password": "adminpassword"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["Username"], "admin");
    assert_eq!(v["Role"], 1);
    assert_eq!(v["Id"], 1);
    let text = v.to_string();
    assert!(v.get("Password").is_none() && !text.contains("$2"), "init echoes a password or hash: {v}");

    assert_eq!(d.get_json("/api/users/admin/check", None).await, (StatusCode::NO_CONTENT, Value::Null));
    let (s, v) = init(json!({"Username": "admin2", "Password": "adminpassword"})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(
        v,
        json!({"message": "Unable to create administrator user", "details": "An administrator user already exists"})
    );
    d.login("admin", "adminpassword").await;
}

#[tokio::test]
async fn fifty_concurrent_admin_inits_make_exactly_one_admin() {
    let d = fast_daemon().await;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..50 {
        let client = d.http().clone();
        let url = d.url("/api/users/admin/init");
        set.spawn(async move {
            let body = json!({"Username": format!("admin{i}"), "Password": "adminpassword"});
            let r = client.post(url).json(&body).send().await.expect("POST admin/init");
            read_json(r).await
        });
    }
    let mut ok = Vec::new();
    let mut conflicts = 0;
    while let Some(r) = set.join_next().await {
        let (s, v) = r.unwrap();
        match s {
            StatusCode::OK => ok.push(v),
            StatusCode::CONFLICT => conflicts += 1,
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!(ok.len(), 1, "successful inits: {ok:?}");
    assert_eq!(conflicts, 49);
    let winner = ok[0]["Username"].as_str().unwrap().to_owned();
    let t = d.login(&winner, "adminpassword").await;
    let (_, users) = d.get_json("/api/users", Some(&t)).await;
    assert_eq!(users.as_array().map(Vec::len), Some(1), "{users}");
}

#[tokio::test]
async fn admin_init_window_closes_with_303() {
    let d = Daemon::builder().args(FAST).args(["--admin-init-window", "1s"]).start().await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let (s, h, v) = send(
        &d,
        Method::POST,
        "/api/users/admin/init",
        &[],
        Some(&json!({"Username": "admin", "Password": ADMIN_PASSWORD})),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{v}");
    assert_eq!(h.get("redirect-reason").map(|v| v.to_str().unwrap()), Some("AdminInitTimeout"));
    assert_eq!(v["message"], "Administrator initialization timeout");
    assert_eq!(d.get_json("/api/users/admin/check", None).await.0, StatusCode::SEE_OTHER);
    assert_eq!(d.get_json("/api/status", None).await.0, StatusCode::OK);
    assert_eq!(d.get_json("/api/settings/public", None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn setup_token_is_required_for_admin_init() {
    let d = Daemon::builder().args(FAST).args(["--setup-token", "setup-9f8e7d"]).start().await;
    let body = json!({"Username": "admin", "Password": ADMIN_PASSWORD});
    let (s, _, v) = send(&d, Method::POST, "/api/users/admin/init", &[], Some(&body)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, _, v) =
        send(&d, Method::POST, "/api/users/admin/init", &[("X-Berth-Setup-Token", "setup-wrong")], Some(&body)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(d.get_json("/api/users/admin/check", None).await.0, StatusCode::NOT_FOUND);
    let (s, _, v) =
        send(&d, Method::POST, "/api/users/admin/init", &[("X-Berth-Setup-Token", "setup-9f8e7d")], Some(&body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    d.login(ADMIN_USER, ADMIN_PASSWORD).await;
    assert!(!d.logs().contains("setup-9f8e7d"), "the setup token was logged");
}

#[tokio::test]
async fn admin_password_file_creates_admin_on_first_start_only() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    let pw_file = scratch.path().join("admin-pw");
    std::fs::write(&pw_file, "file-password-123\n").unwrap();
    let builder = Daemon::builder().args(FAST).arg("--admin-password-file").arg(&pw_file).data_dir(&data);
    let mut d = builder.clone().start().await;
    assert_eq!(d.get_json("/api/users/admin/check", None).await.0, StatusCode::NO_CONTENT);
    let t = d.login("admin", "file-password-123").await;
    assert_eq!(claims_of(&t)["role"], 1);
    let (s, _) =
        d.post_json("/api/users/admin/init", None, &json!({"Username": "x", "Password": ADMIN_PASSWORD})).await;
    assert_eq!(s, StatusCode::CONFLICT);

    // A later start with another file changes nothing.
    d.stop_graceful().await;
    std::fs::write(&pw_file, "another-password-456\n").unwrap();
    d.relaunch().await;
    d.login("admin", "file-password-123").await;
    let (s, _) =
        d.post_json("/api/auth", None, &json!({"Username": "admin", "Password": "another-password-456"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}

// ------------------------------------------------------------ login and JWT

#[tokio::test]
async fn login_field_names_and_username_ignore_case() {
    let (d, _admin) = ready().await;
    for body in [
        json!({"username": "admin", "password": ADMIN_PASSWORD}),
        json!({"USERNAME": "admin", "PassWord": ADMIN_PASSWORD}),
        json!({"Username": "ADMIN", "Password": ADMIN_PASSWORD}),
        json!({"Username": "Admin", "Password": ADMIN_PASSWORD, "Unknown": [1, 2]}),
    ] {
        let (s, v) = d.post_json("/api/auth", None, &body).await;
        assert_eq!(s, StatusCode::OK, "{body}: {v}");
        let c = claims_of(v["jwt"].as_str().expect("jwt"));
        assert_eq!((c["id"].as_u64(), c["username"].as_str()), (Some(1), Some("admin")), "{c}");
    }
    // The password is not case-insensitive.
    let (s, _) = d.post_json("/api/auth", None, &json!({"Username": "admin", "Password": "ADMINPASSWORD"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn bad_credentials_are_422_for_wrong_password_and_unknown_user() {
    let (d, _admin) = ready().await;
    let expected = json!({"message": "Invalid credentials", "details": "Unauthorized"});
    for body in [
        json!({"Username": "admin", "Password": "not-the-password"}),
        json!({"Username": "nobody", "Password": ADMIN_PASSWORD}),
    ] {
        let (s, v) = d.post_json("/api/auth", None, &body).await;
        assert_eq!((s, v), (StatusCode::UNPROCESSABLE_ENTITY, expected.clone()), "{body}");
    }
    let (s, v) = d.post_json("/api/auth", None, &json!({"Password": ADMIN_PASSWORD})).await;
    assert_eq!((s, v["details"].as_str()), (StatusCode::BAD_REQUEST, Some("Invalid username")));
    let (s, v) = d.post_json("/api/auth", None, &json!({"Username": "admin"})).await;
    assert_eq!((s, v["details"].as_str()), (StatusCode::BAD_REQUEST, Some("Invalid password")));
}

#[tokio::test]
async fn jwt_carries_portainer_claims_and_lasts_8_hours() {
    let d = fast_daemon().await;
    d.init_admin().await;
    let before = now();
    let body = json!({"Username": ADMIN_USER, "Password": ADMIN_PASSWORD});
    let (s, h, v) = send(&d, Method::POST, "/api/auth", &[], Some(&body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let obj = v.as_object().unwrap();
    assert_eq!(obj.keys().collect::<Vec<_>>(), ["jwt"], "{v}");
    let jwt = v["jwt"].as_str().unwrap();
    assert_eq!(jwt_part(jwt, 0)["alg"], "HS256");
    let c = claims_of(jwt);
    for key in ["id", "username", "role", "scope", "forceChangePassword", "jti", "iat", "exp"] {
        assert!(c.get(key).is_some(), "claim {key} missing: {c}");
    }
    assert_eq!(c["id"], 1);
    assert_eq!(c["username"], "admin");
    assert_eq!(c["role"], 1);
    assert_eq!(c["scope"], "default");
    assert_eq!(c["forceChangePassword"], false);
    assert!(uuid::Uuid::parse_str(c["jti"].as_str().unwrap()).is_ok(), "{c}");
    let iat = c["iat"].as_u64().unwrap();
    assert!(iat >= before && iat <= now() + 1, "iat {iat}");
    assert_eq!(c["exp"].as_u64().unwrap() - iat, 8 * 3600);
    // The cookie Portainer sets, holding the same token.
    let cookie = h.get("set-cookie").expect("Set-Cookie").to_str().unwrap();
    assert!(cookie.starts_with(&format!("portainer_api_key={jwt};")), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    // Each login is a distinct session.
    let t2 = d.login(ADMIN_USER, ADMIN_PASSWORD).await;
    assert_ne!(claims_of(&t2)["jti"], c["jti"]);
}

#[tokio::test]
async fn tokens_die_on_user_delete_password_change_role_change_and_logout() {
    let (d, admin) = ready().await;
    let bob_id = create_user(&d, &admin, "bob", "bobpassword12", 2).await;
    let me_ok = |t: String| {
        let d = &d;
        async move { d.get_json("/api/users/me", Some(&t)).await.0 }
    };

    // Logout kills exactly the token it is given.
    let a = d.login("bob", "bobpassword12").await;
    let b = d.login("bob", "bobpassword12").await;
    let (s, _) = d.post_json("/api/auth/logout", Some(&a), &json!({})).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = d.get_json("/api/users/me", Some(&a)).await;
    assert_eq!((s, v), (StatusCode::UNAUTHORIZED, invalid_jwt()));
    assert_eq!(me_ok(b.clone()).await, StatusCode::OK);

    // Password change (by the user, through either route) kills older tokens.
    let (s, v) = d
        .put_json(
            &format!("/api/users/{bob_id}"),
            Some(&b),
            &json!({"Password": "bobpassword12", "NewPassword": "bobpassword34"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(d.get_json("/api/users/me", Some(&b)).await, (StatusCode::UNAUTHORIZED, invalid_jwt()));
    let c = d.login("bob", "bobpassword34").await;
    assert_eq!(me_ok(c.clone()).await, StatusCode::OK);
    let (s, v) = d
        .put_json(
            &format!("/api/users/{bob_id}/passwd"),
            Some(&c),
            &json!({"Password": "bobpassword34", "NewPassword": "bobpassword56"}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    assert_eq!(me_ok(c).await, StatusCode::UNAUTHORIZED);
    let (s, _) = d.post_json("/api/auth", None, &json!({"Username": "bob", "Password": "bobpassword34"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "the old password still works");

    // A role change kills older tokens.
    let e = d.login("bob", "bobpassword56").await;
    let (s, v) = d.put_json(&format!("/api/users/{bob_id}"), Some(&admin), &json!({"Role": 1})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(me_ok(e).await, StatusCode::UNAUTHORIZED);
    let f = d.login("bob", "bobpassword56").await;
    assert_eq!(d.get_json("/api/settings", Some(&f)).await.0, StatusCode::OK, "promoted bob is admin");

    // Deleting the user kills its tokens.
    let (s, _) = d.delete(&format!("/api/users/{bob_id}"), Some(&admin)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = d.get_json("/api/users/me", Some(&f)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["details"], "Unauthorized");
}

#[tokio::test]
async fn demotion_takes_effect_at_once_and_token_role_claims_are_not_trusted() {
    let (d, admin) = ready().await;
    let (bob_id, bob) = bob(&d, &admin).await;
    // A token for bob signed with the real key but claiming role 1 gives no
    // admin rights: the role comes from the store.
    let forged = real_keys(&d).sign(&claims(bob_id, "bob", 1, now(), now() + 600));
    assert_eq!(d.get_json("/api/users/me", Some(&forged)).await.0, StatusCode::OK);
    assert_eq!(d.get_json("/api/settings", Some(&forged)).await, (StatusCode::FORBIDDEN, access_denied()));
    assert_eq!(d.get_json("/api/settings", Some(&bob)).await, (StatusCode::FORBIDDEN, access_denied()));

    // An admin with an API key is demoted: the key loses admin rights at once.
    let carol_id = create_user(&d, &admin, "carol", "carolpassword1", 1).await;
    let carol = d.login("carol", "carolpassword1").await;
    let (s, k) = create_api_key(&d, carol_id, &carol, "carolpassword1").await;
    assert_eq!(s, StatusCode::CREATED, "{k}");
    let key = k["rawAPIKey"].as_str().unwrap();
    assert_eq!(get_with(&d, "/api/settings", &[("X-API-Key", key)]).await.0, StatusCode::OK);
    let (s, _) = d.put_json(&format!("/api/users/{carol_id}"), Some(&admin), &json!({"Role": 2})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(get_with(&d, "/api/settings", &[("X-API-Key", key)]).await, (StatusCode::FORBIDDEN, access_denied()));
}

#[tokio::test]
async fn logout_always_answers_204() {
    let (d, admin) = ready().await;
    for headers in [vec![], vec![("Authorization", "Bearer garbage")], vec![("Cookie", "portainer_api_key=nope")]] {
        let (s, h, v) = send(&d, Method::POST, "/api/auth/logout", &headers, None).await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{headers:?}: {v}");
        let cookie = h.get("set-cookie").map(|c| c.to_str().unwrap().to_owned()).unwrap_or_default();
        assert!(cookie.starts_with("portainer_api_key=;"), "logout must clear the cookie: {cookie}");
    }
    // Logging out through the cookie revokes the cookie's token.
    let cookie = format!("portainer_api_key={admin}");
    let (s, _, _) = send(&d, Method::POST, "/api/auth/logout", &[("Cookie", &cookie)], None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(d.get_json("/api/users/me", Some(&admin)).await, (StatusCode::UNAUTHORIZED, invalid_jwt()));
}

#[tokio::test]
async fn credentials_are_read_in_order_api_key_cookie_bearer() {
    let (d, admin) = ready().await;
    let (bob_id, bob) = bob(&d, &admin).await;
    let (s, k) = create_api_key(&d, bob_id, &bob, "bobpassword12").await;
    assert_eq!(s, StatusCode::CREATED, "{k}");
    let key = k["rawAPIKey"].as_str().unwrap().to_owned();
    let admin_cookie = format!("portainer_api_key={admin}");
    let bob_cookie = format!("portainer_api_key={bob}");
    let admin_bearer = format!("Bearer {admin}");
    let bob_bearer = format!("Bearer {bob}");
    let who = |headers: Vec<(&'static str, String)>| {
        let d = &d;
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (s, v) = me(d, &h).await;
            (s, v["Username"].as_str().map(str::to_owned))
        }
    };
    let ok = |name: &str| (StatusCode::OK, Some(name.to_owned()));

    // Each credential alone.
    assert_eq!(who(vec![("X-API-Key", key.clone())]).await, ok("bob"));
    assert_eq!(who(vec![("x-api-key", key.clone())]).await, ok("bob"));
    assert_eq!(who(vec![("Cookie", admin_cookie.clone())]).await, ok("admin"));
    assert_eq!(who(vec![("Authorization", admin_bearer.clone())]).await, ok("admin"));
    // Portainer also takes the raw JWT without the scheme.
    assert_eq!(who(vec![("Authorization", admin.clone())]).await, ok("admin"));

    // API key beats cookie and bearer; cookie beats bearer.
    assert_eq!(
        who(vec![
            ("X-API-Key", key.clone()),
            ("Cookie", admin_cookie.clone()),
            ("Authorization", admin_bearer.clone())
        ])
        .await,
        ok("bob")
    );
    assert_eq!(who(vec![("X-API-Key", key.clone()), ("Cookie", admin_cookie.clone())]).await, ok("bob"));
    assert_eq!(who(vec![("Cookie", bob_cookie.clone()), ("Authorization", admin_bearer.clone())]).await, ok("bob"));
    assert_eq!(who(vec![("Cookie", admin_cookie.clone()), ("Authorization", bob_bearer.clone())]).await, ok("admin"));

    // A present but invalid credential fails at once; no fall-through.
    let (s, v) = me(&d, &[("X-API-Key", "ptr_invalid"), ("Cookie", &admin_cookie)]).await;
    assert_eq!((s, v), (StatusCode::UNAUTHORIZED, invalid_jwt()));
    let (s, v) = me(&d, &[("Cookie", "portainer_api_key=garbage"), ("Authorization", &admin_bearer)]).await;
    assert_eq!((s, v), (StatusCode::UNAUTHORIZED, invalid_jwt()));
    // Portainer's rule: an API key and an Authorization header without a cookie.
    let (s, v) = me(&d, &[("X-API-Key", &key), ("Authorization", &admin_bearer)]).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
}

#[tokio::test]
async fn query_string_tokens_are_refused() {
    let (d, admin) = ready().await;
    for path in
        [format!("/api/users/me?token={admin}"), format!("/api/users?token={admin}"), "/api/users/me?token=".into()]
    {
        let (s, v) = d.get_json(&path, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}: {v}");
        assert_eq!(v["message"], "A valid authorization token is missing", "{v}");
    }
}

#[tokio::test]
async fn invalid_tokens_get_exact_401_bodies() {
    let (d, admin) = ready().await;
    assert_eq!(d.get_json("/api/users/me", None).await, (StatusCode::UNAUTHORIZED, unauthorized_missing()));
    assert_eq!(d.get_json("/api/users", None).await, (StatusCode::UNAUTHORIZED, unauthorized_missing()));

    let keys = real_keys(&d);
    let expired = keys.sign(&claims(1, "admin", 1, now() - 7200, now() - 3600));
    let other_key = JwtKeys::from_secret(&[0x5au8; 32]).sign(&claims(1, "admin", 1, now(), now() + 3600));
    let payload = b64url(&serde_json::to_vec(&claims(1, "admin", 1, now(), now() + 3600)).unwrap());
    let alg_none = format!("{}.{}.", b64url(br#"{"alg":"none","typ":"JWT"}"#), payload);
    let alg_none_sig = format!("{}.{}", alg_none, admin.rsplit('.').next().unwrap());
    // The admin's real token with its payload swapped: the signature no longer matches.
    let mut parts: Vec<&str> = admin.split('.').collect();
    let tampered_payload = b64url(&serde_json::to_vec(&claims(1, "admin", 1, now(), now() + 99_999)).unwrap());
    parts[1] = &tampered_payload;
    let tampered = parts.join(".");
    let wrong_scope = keys.sign(&Claims { scope: "kubeconfig".into(), ..claims(1, "admin", 1, now(), now() + 600) });
    let no_such_user = keys.sign(&claims(999, "ghost", 1, now(), now() + 600));

    for (what, token) in [
        ("garbage", "garbage".to_owned()),
        ("three dots", "a.b.c".to_owned()),
        ("expired", expired),
        ("other key", other_key),
        ("alg none", alg_none),
        ("alg none with a signature", alg_none_sig),
        ("tampered payload", tampered),
        ("kubeconfig scope", wrong_scope),
    ] {
        let (s, v) = d.get_json("/api/users/me", Some(&token)).await;
        assert_eq!((s, v), (StatusCode::UNAUTHORIZED, invalid_jwt()), "{what}");
    }
    let (s, v) = d.get_json("/api/users/me", Some(&no_such_user)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    // A well-formed value with a bad token is 401; a value that is not
    // `Bearer <token>` at all is 400 (malformed_authorization).
    let (s, v) = me(&d, &[("Authorization", "Bearer ....")]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["details"], "Unauthorized");
    for raw in ["Bearer", "Basic YWRtaW46YWRtaW4=", "Bearer  ", "Bearer  x", "Bearer x y"] {
        let (s, v) = me(&d, &[("Authorization", raw)]).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "Authorization {raw:?}: {v}");
        assert_eq!(v["message"], "Invalid Authorization header");
    }
    // A valid token minted with the real key works: the checks above are real.
    let minted = keys.sign(&claims(1, "admin", 1, now(), now() + 600));
    assert_eq!(d.get_json("/api/users/me", Some(&minted)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn standard_users_get_access_denied_on_admin_routes() {
    let (d, admin) = ready().await;
    let (_, bob) = bob(&d, &admin).await;
    let checks: [(Method, &str, Option<Value>); 8] = [
        (Method::GET, "/api/settings", None),
        (Method::PUT, "/api/settings", Some(json!({}))),
        (Method::POST, "/api/users", Some(json!({"Username": "eve", "Password": "evepassword12", "Role": 1}))),
        (Method::DELETE, "/api/users/1", None),
        (Method::POST, "/api/teams", Some(json!({"Name": "t"}))),
        (Method::GET, "/api/roles", None),
        (Method::GET, "/api/registries", None),
        (Method::GET, "/api/team_memberships", None),
    ];
    for (m, path, body) in checks {
        let mut rb = d.request(m.clone(), path, Some(&bob));
        if let Some(b) = &body {
            rb = rb.json(b);
        }
        let (s, v) = read_json(rb.send().await.unwrap()).await;
        assert_eq!((s, v), (StatusCode::FORBIDDEN, access_denied()), "{m} {path}");
    }
    assert_eq!(d.get_json("/api/users/admin/check", None).await.0, StatusCode::NO_CONTENT);
}

// ------------------------------------------------------------ rate limiting

#[tokio::test]
async fn eleventh_rapid_login_is_429_and_forwarded_for_does_not_bypass() {
    let d = fast_daemon().await;
    let admin = d.admin_token().await; // one token of the bucket
                                       // Keep the default burst (10) but make refills negligible, so the count
                                       // below does not depend on how fast this machine is.
    let (s, v) = d.put_json("/api/settings", Some(&admin), &json!({"LoginRateLimit": {"PerSecond": 0.001}})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["LoginRateLimit"]["Burst"], 10);
    let bad = json!({"Username": "admin", "Password": "wrong-password"});
    for i in 2..=10 {
        let (s, v) = d.post_json("/api/auth", None, &bad).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "login #{i}: {v}");
    }
    // The 11th, even with the right password.
    let good = json!({"Username": ADMIN_USER, "Password": ADMIN_PASSWORD});
    let (s, h, v) = send(&d, Method::POST, "/api/auth", &[], Some(&good)).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    let retry: u64 = h.get("retry-after").expect("Retry-After").to_str().unwrap().parse().expect("numeric Retry-After");
    assert!(retry >= 1, "Retry-After {retry}");
    assert_eq!(h.get("content-type").unwrap(), "application/json");
    assert_eq!(v["message"], "Too many requests");
    assert!(v["details"].is_string());

    // Rotating X-Forwarded-For from an untrusted peer changes nothing.
    for ip in ["10.0.0.1", "10.0.0.2", "192.0.2.7, 10.9.9.9"] {
        let (s, _, _) = send(&d, Method::POST, "/api/auth", &[("X-Forwarded-For", ip)], Some(&good)).await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "X-Forwarded-For {ip}");
    }
    // API-key creation and password changes share the bucket.
    let (s, h, _) = send(
        &d,
        Method::POST,
        "/api/users/1/tokens",
        &[("Authorization", &format!("Bearer {admin}"))],
        Some(&json!({"password": ADMIN_PASSWORD, "description": "x"})),
    )
    .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert!(h.get("retry-after").is_some());
    let (s, v) = d
        .put_json(
            "/api/users/1/passwd",
            Some(&admin),
            &json!({"Password": ADMIN_PASSWORD, "NewPassword": "x-new-password-1"}),
        )
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    // Other routes are not limited.
    assert_eq!(d.get_json("/api/users/me", Some(&admin)).await.0, StatusCode::OK);
    let m = d.http().get(d.url("/metrics")).bearer_auth(&admin).send().await.unwrap().text().await.unwrap();
    assert!(m.lines().any(|l| l.starts_with("berth_rate_limited_total{route=\"/api/auth\"}")), "{m}");
}

#[tokio::test]
async fn api_key_creation_and_password_change_are_rate_limited() {
    let d = fast_daemon().await;
    let admin = d.admin_token().await;
    let (s, _) =
        d.put_json("/api/settings", Some(&admin), &json!({"LoginRateLimit": {"Burst": 3, "PerSecond": 0.001}})).await;
    assert_eq!(s, StatusCode::OK);
    // Wrong passwords still spend tokens: 3 allowed, then 429.
    let body = json!({"password": "wrong-password", "description": "x"});
    for _ in 0..3 {
        let (s, v) = d.post_json("/api/users/1/tokens", Some(&admin), &body).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    }
    let (s, _) = d.post_json("/api/users/1/tokens", Some(&admin), &body).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn trusted_proxy_forwarded_for_gets_separate_buckets() {
    let d = Daemon::builder().args(FAST).args(["--trusted-proxies", "127.0.0.1"]).start().await;
    let admin = d.admin_token().await;
    let (s, _) =
        d.put_json("/api/settings", Some(&admin), &json!({"LoginRateLimit": {"Burst": 2, "PerSecond": 0.001}})).await;
    assert_eq!(s, StatusCode::OK);
    let bad = json!({"Username": "admin", "Password": "wrong-password"});
    let login_from = |ip: &'static str| {
        let d = &d;
        let bad = bad.clone();
        async move { send(d, Method::POST, "/api/auth", &[("X-Forwarded-For", ip)], Some(&bad)).await.0 }
    };
    assert_eq!(login_from("10.0.0.1").await, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(login_from("10.0.0.1").await, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(login_from("10.0.0.1").await, StatusCode::TOO_MANY_REQUESTS);
    // Another client behind the proxy has its own bucket.
    assert_eq!(login_from("10.0.0.2").await, StatusCode::UNPROCESSABLE_ENTITY);
    // The nearest untrusted hop counts, not a spoofed left-most entry.
    assert_eq!(login_from("203.0.113.9, 10.0.0.1").await, StatusCode::TOO_MANY_REQUESTS);
}

// ------------------------------------------------------------ users

#[tokio::test]
async fn users_list_inspect_and_create() {
    let (d, admin) = ready().await;
    let (bob_id, bob) = bob(&d, &admin).await;
    let carol_id = create_user(&d, &admin, "carol", "carolpassword1", 2).await;
    assert!(carol_id > bob_id);

    let (s, list) = d.get_json("/api/users", Some(&admin)).await;
    assert_eq!(s, StatusCode::OK);
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 3, "{list:?}");
    for u in &list {
        let mut keys: Vec<_> = u.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["Id", "Role", "Username"], "list entries carry only Id/Username/Role: {u}");
    }
    assert_eq!(list[0], json!({"Id": 1, "Username": "admin", "Role": 1}));

    // A standard user cannot list, unless a team leader (then sees only standard users).
    let (s, v) = d.get_json("/api/users", Some(&bob)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, team) = d.post_json("/api/teams", Some(&admin), &json!({"Name": "devs", "TeamLeaders": [bob_id]})).await;
    assert_eq!(s, StatusCode::OK, "{team}");
    let (s, v) = d.get_json("/api/users", Some(&bob)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let names: Vec<_> = v.as_array().unwrap().iter().map(|u| u["Username"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names, ["bob", "carol"]);

    // Inspect: self or admin; never a hash.
    let (s, v) = d.get_json(&format!("/api/users/{bob_id}"), Some(&bob)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!((v["Id"].as_u64(), v["Username"].as_str(), v["Role"].as_u64()), (Some(bob_id), Some("bob"), Some(2)));
    assert!(v.get("Password").is_none() && !v.to_string().contains("$2"), "{v}");
    assert_eq!(d.get_json(&format!("/api/users/{carol_id}"), Some(&bob)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(d.get_json(&format!("/api/users/{carol_id}"), Some(&admin)).await.0, StatusCode::OK);
    assert_eq!(d.get_json("/api/users/999", Some(&admin)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(d.get_json("/api/users/abc", Some(&admin)).await.0, StatusCode::BAD_REQUEST);

    // Create: admin only; names unique ignoring case; password rules; role values.
    let (s, v) = d
        .post_json("/api/users", Some(&admin), &json!({"Username": "BOB", "Password": "another-pass-1", "Role": 2}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["message"], "Another user with the same username already exists");
    let (s, v) =
        d.post_json("/api/users", Some(&admin), &json!({"Username": "dave", "Password": "short", "Role": 2})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = d
        .post_json("/api/users", Some(&admin), &json!({"Username": "dave", "Password": "davepassword1", "Role": 3}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = d
        .post_json("/api/users", Some(&admin), &json!({"Username": "da ve", "Password": "davepassword1", "Role": 2}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = d
        .post_json("/api/users", Some(&bob), &json!({"Username": "dave", "Password": "davepassword1", "Role": 2}))
        .await;
    assert_eq!((s, v), (StatusCode::FORBIDDEN, access_denied()));
    let (s, v) = d
        .post_json("/api/users", Some(&admin), &json!({"username": "dave", "password": "davepassword1", "role": 2}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v.get("Password").is_none(), "{v}");
    d.login("DAVE", "davepassword1").await;
}

#[tokio::test]
async fn usernames_are_unique_ignoring_case_beyond_ascii() {
    let (d, admin) = ready().await;
    let anne = create_user(&d, &admin, "Änne", "annepassword1", 2).await;
    // The login lookup folds case for every script, so uniqueness must too:
    // otherwise two accounts share one login name and deleting one locks
    // the other out.
    for dup in ["änne", "ÄNNE"] {
        let (s, v) = d
            .post_json("/api/users", Some(&admin), &json!({"Username": dup, "Password": "otherpassword1", "Role": 2}))
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{dup}: {v}");
    }
    let other = create_user(&d, &admin, "oskar", "oskarpassword", 2).await;
    let (s, v) = d.put_json(&format!("/api/users/{other}"), Some(&admin), &json!({"Username": "äNNE"})).await;
    assert_eq!(s, StatusCode::CONFLICT, "rename onto another user's name: {v}");
    assert_eq!(d.delete(&format!("/api/users/{other}"), Some(&admin)).await.0, StatusCode::NO_CONTENT);
    let t = d.login("äNNE", "annepassword1").await;
    assert_eq!(claims_of(&t)["id"], anne);
    // Renaming oneself to another case of the same name keeps the login.
    let (s, v) = d.put_json(&format!("/api/users/{anne}"), Some(&admin), &json!({"Username": "änne"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    d.login("ÄNNE", "annepassword1").await;
    d.login("änne", "annepassword1").await;
}

#[tokio::test]
async fn user_updates_follow_the_rules() {
    let (d, admin) = ready().await;
    let (bob_id, bob) = bob(&d, &admin).await;
    let carol_id = create_user(&d, &admin, "carol", "carolpassword1", 2).await;
    let bob_path = format!("/api/users/{bob_id}");

    // A standard user may not change roles (not even their own), names, or other users.
    let (s, v) = d.put_json(&bob_path, Some(&bob), &json!({"Role": 1})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = d.put_json(&bob_path, Some(&bob), &json!({"Username": "robert"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = d.put_json(&format!("/api/users/{carol_id}"), Some(&bob), &json!({"UseCache": false})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(d.get_json(&bob_path, Some(&admin)).await.1["Role"], 2);

    // Own password: the current one is required and checked.
    let (s, v) = d.put_json(&bob_path, Some(&bob), &json!({"NewPassword": "bob-new-password"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = d
        .put_json(&bob_path, Some(&bob), &json!({"Password": "wrong-password", "NewPassword": "bob-new-password"}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = d.put_json(&bob_path, Some(&bob), &json!({"Password": "bobpassword12", "NewPassword": "short"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = d.put_json(&bob_path, Some(&bob), &json!({"Password": "bobpassword12"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "Password without NewPassword: {v}");
    let (s, _) = d.post_json("/api/auth", None, &json!({"Username": "bob", "Password": "bobpassword12"})).await;
    assert_eq!(s, StatusCode::OK, "a refused change altered the password");
    let (s, v) = d
        .put_json(
            &bob_path,
            Some(&bob),
            &json!({"Password": "bobpassword12", "NewPassword": "bob-new-password", "Theme": {"color": "dark"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["ThemeSettings"]["color"], "dark");
    let bob2 = d.login("bob", "bob-new-password").await;

    // The admin sets another user's password without the old one, and roles.
    let (s, v) = d.put_json(&bob_path, Some(&admin), &json!({"NewPassword": "set-by-admin-1"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(d.get_json("/api/users/me", Some(&bob2)).await.0, StatusCode::UNAUTHORIZED);
    d.login("bob", "set-by-admin-1").await;
    let (s, v) = d.put_json(&bob_path, Some(&admin), &json!({"Role": 1, "Username": "robert"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!((v["Role"].as_u64(), v["Username"].as_str()), (Some(1), Some("robert")));
    let (s, v) = d.put_json(&bob_path, Some(&admin), &json!({"Username": "CAROL"})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, v) = d.put_json(&bob_path, Some(&admin), &json!({"Role": 7})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    d.login("Robert", "set-by-admin-1").await;
    let (s, _) = d.post_json("/api/auth", None, &json!({"Username": "bob", "Password": "set-by-admin-1"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "the old name still logs in");
}

#[tokio::test]
async fn user_deletion_rules_and_cleanup() {
    let (mut d, admin) = ready().await;
    // User 1 and oneself are protected.
    let (s, v) = d.delete("/api/users/1", Some(&admin)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let admin2_id = create_user(&d, &admin, "admin2", "admin2password", 1).await;
    let admin2 = d.login("admin2", "admin2password").await;
    let (s, v) = d.delete(&format!("/api/users/{admin2_id}"), Some(&admin2)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "deleting oneself: {v}");
    let (s, v) = d.delete("/api/users/1", Some(&admin2)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "user 1: {v}");
    // The last administrator cannot be demoted away.
    let (s, _) = d.delete(&format!("/api/users/{admin2_id}"), Some(&admin)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = d.put_json("/api/users/1", Some(&admin), &json!({"Role": 2})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "demoting the last admin: {v}");
    assert_eq!(d.get_json("/api/settings", Some(&admin)).await.0, StatusCode::OK);
    assert_eq!(d.delete("/api/users/999", Some(&admin)).await.0, StatusCode::NOT_FOUND);

    // Deleting a user removes their API keys and memberships, durably.
    let (bob_id, bob) = bob(&d, &admin).await;
    let (s, k) = create_api_key(&d, bob_id, &bob, "bobpassword12").await;
    assert_eq!(s, StatusCode::CREATED);
    let key = k["rawAPIKey"].as_str().unwrap().to_owned();
    let (s, team) = d.post_json("/api/teams", Some(&admin), &json!({"Name": "devs"})).await;
    assert_eq!(s, StatusCode::OK);
    let (s, m) = d
        .post_json("/api/team_memberships", Some(&admin), &json!({"UserID": bob_id, "TeamID": team["Id"], "Role": 2}))
        .await;
    assert_eq!(s, StatusCode::OK, "{m}");
    assert_eq!(me(&d, &[("X-API-Key", &key)]).await.0, StatusCode::OK);

    let (s, _) = d.delete(&format!("/api/users/{bob_id}"), Some(&admin)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    bob_is_gone(&d, &key).await;
    d.restart().await;
    bob_is_gone(&d, &key).await;
}

async fn bob_is_gone(d: &Daemon, key: &str) {
    let admin = d.login(ADMIN_USER, ADMIN_PASSWORD).await;
    assert_eq!(me(d, &[("X-API-Key", key)]).await.0, StatusCode::UNAUTHORIZED, "key of a deleted user");
    let (_, ms) = d.get_json("/api/team_memberships", Some(&admin)).await;
    assert_eq!(ms, json!([]), "memberships of a deleted user");
    let (_, users) = d.get_json("/api/users", Some(&admin)).await;
    assert_eq!(users.as_array().unwrap().len(), 1, "{users}");
    let (s, _) = d.post_json("/api/auth", None, &json!({"Username": "bob", "Password": "bobpassword12"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}

// ------------------------------------------------------------ teams

#[tokio::test]
async fn teams_and_memberships_crud() {
    let (d, admin) = ready().await;
    let (bob_id, bob) = bob(&d, &admin).await;

    let (s, t) = d.post_json("/api/teams", Some(&admin), &json!({"Name": "devs"})).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let tid = t["Id"].as_u64().unwrap();
    assert_eq!(t, json!({"Id": tid, "Name": "devs"}));
    for dup in ["devs", "DEVS"] {
        let (s, v) = d.post_json("/api/teams", Some(&admin), &json!({"Name": dup})).await;
        assert_eq!(s, StatusCode::CONFLICT, "{dup}: {v}");
    }
    let (s, v) = d.post_json("/api/teams", Some(&admin), &json!({"Name": ""})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, t2) = d.post_json("/api/teams", Some(&admin), &json!({"name": "ops"})).await;
    assert_eq!(s, StatusCode::OK, "{t2}");
    let t2id = t2["Id"].as_u64().unwrap();

    assert_eq!(d.get_json(&format!("/api/teams/{tid}"), Some(&admin)).await, (StatusCode::OK, t.clone()));
    assert_eq!(d.get_json("/api/teams/999", Some(&admin)).await.0, StatusCode::NOT_FOUND);
    let (s, v) = d.put_json(&format!("/api/teams/{tid}"), Some(&admin), &json!({"Name": "OPS"})).await;
    assert_eq!(s, StatusCode::CONFLICT, "rename onto another team: {v}");
    let (s, v) = d.put_json(&format!("/api/teams/{tid}"), Some(&admin), &json!({"Name": "developers"})).await;
    assert_eq!((s, v), (StatusCode::OK, json!({"Id": tid, "Name": "developers"})));

    // Memberships: Portainer's UserID/TeamID/Role spelling, both ways.
    let (s, m) =
        d.post_json("/api/team_memberships", Some(&admin), &json!({"UserID": bob_id, "TeamID": tid, "Role": 2})).await;
    assert_eq!(s, StatusCode::OK, "{m}");
    let mid = m["Id"].as_u64().unwrap();
    assert_eq!(m, json!({"Id": mid, "UserID": bob_id, "TeamID": tid, "Role": 2}));
    let (s, v) =
        d.post_json("/api/team_memberships", Some(&admin), &json!({"UserID": bob_id, "TeamID": tid, "Role": 1})).await;
    assert_eq!(s, StatusCode::CONFLICT, "duplicate membership: {v}");
    for bad in [
        json!({"UserID": bob_id, "TeamID": tid, "Role": 3}),
        json!({"UserID": 999, "TeamID": tid, "Role": 2}),
        json!({"UserID": bob_id, "TeamID": 999, "Role": 2}),
        json!({"TeamID": t2id, "Role": 2}),
    ] {
        let (s, v) = d.post_json("/api/team_memberships", Some(&admin), &bad).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
    }
    // Go decodes field names ignoring case.
    let (s, m2) =
        d.post_json("/api/team_memberships", Some(&admin), &json!({"userid": bob_id, "teamID": t2id, "role": 2})).await;
    assert_eq!(s, StatusCode::OK, "lower-case field names: {m2}");
    assert_eq!((m2["UserID"].as_u64(), m2["TeamID"].as_u64()), (Some(bob_id), Some(t2id)));

    let (_, all) = d.get_json("/api/team_memberships", Some(&admin)).await;
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    let (_, of_team) = d.get_json(&format!("/api/teams/{tid}/memberships"), Some(&admin)).await;
    assert_eq!(of_team, json!([m]));
    let (s, mine) = d.get_json(&format!("/api/users/{bob_id}/memberships"), Some(&bob)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(mine.as_array().unwrap().len(), 2, "{mine}");
    let (s, teams) = d.get_json("/api/teams", Some(&bob)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(teams.as_array().unwrap().len(), 2, "bob sees his teams: {teams}");

    let (s, v) = d
        .put_json(
            &format!("/api/team_memberships/{mid}"),
            Some(&admin),
            &json!({"UserID": bob_id, "TeamID": tid, "Role": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["Role"], 1);
    let (s, _) = d.delete(&format!("/api/team_memberships/{mid}"), Some(&admin)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(d.delete(&format!("/api/team_memberships/{mid}"), Some(&admin)).await.0, StatusCode::NOT_FOUND);

    // Deleting a team removes its memberships.
    let (s, _) = d.delete(&format!("/api/teams/{t2id}"), Some(&admin)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(d.get_json("/api/team_memberships", Some(&admin)).await.1, json!([]));
    assert_eq!(d.get_json(&format!("/api/teams/{t2id}"), Some(&admin)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(d.get_json("/api/teams", Some(&admin)).await.1, json!([{"Id": tid, "Name": "developers"}]));
}

#[tokio::test]
async fn team_leaders_manage_only_their_own_team() {
    let (d, admin) = ready().await;
    let (bob_id, bob) = bob(&d, &admin).await;
    let carol_id = create_user(&d, &admin, "carol", "carolpassword1", 2).await;
    let dave_id = create_user(&d, &admin, "dave", "davepassword12", 2).await;
    let (_, own) = d.post_json("/api/teams", Some(&admin), &json!({"Name": "own", "TeamLeaders": [bob_id]})).await;
    let (_, other) = d.post_json("/api/teams", Some(&admin), &json!({"Name": "other"})).await;
    let (own, other) = (own["Id"].as_u64().unwrap(), other["Id"].as_u64().unwrap());
    let (s, v) = d
        .post_json("/api/team_memberships", Some(&admin), &json!({"UserID": dave_id, "TeamID": other, "Role": 2}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let dave_other = v["Id"].as_u64().unwrap();

    // Own team: add, change, remove members.
    let (s, m) =
        d.post_json("/api/team_memberships", Some(&bob), &json!({"UserID": carol_id, "TeamID": own, "Role": 2})).await;
    assert_eq!(s, StatusCode::OK, "{m}");
    let mid = m["Id"].as_u64().unwrap();
    assert_eq!(d.get_json(&format!("/api/teams/{own}"), Some(&bob)).await.0, StatusCode::OK);
    let (s, ms) = d.get_json(&format!("/api/teams/{own}/memberships"), Some(&bob)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ms.as_array().unwrap().len(), 2, "{ms}");
    let (s, teams) = d.get_json("/api/teams?onlyLedTeams=true", Some(&bob)).await;
    assert_eq!((s, teams), (StatusCode::OK, json!([{"Id": own, "Name": "own"}])));

    // The other team: nothing.
    let (s, v) = d
        .post_json("/api/team_memberships", Some(&bob), &json!({"UserID": carol_id, "TeamID": other, "Role": 2}))
        .await;
    assert_eq!((s, v), (StatusCode::FORBIDDEN, access_denied()));
    assert_eq!(d.get_json(&format!("/api/teams/{other}"), Some(&bob)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(d.get_json(&format!("/api/teams/{other}/memberships"), Some(&bob)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(d.delete(&format!("/api/team_memberships/{dave_other}"), Some(&bob)).await.0, StatusCode::FORBIDDEN);
    let (s, _) = d
        .put_json(
            &format!("/api/team_memberships/{mid}"),
            Some(&bob),
            &json!({"UserID": carol_id, "TeamID": other, "Role": 2}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "moving a member into a team bob does not lead");
    let (s, _) = d
        .put_json(
            &format!("/api/team_memberships/{dave_other}"),
            Some(&bob),
            &json!({"UserID": dave_id, "TeamID": own, "Role": 2}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "pulling a member out of a team bob does not lead");
    // Team administration itself stays admin-only.
    assert_eq!(
        d.put_json(&format!("/api/teams/{own}"), Some(&bob), &json!({"Name": "x"})).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(d.delete(&format!("/api/teams/{own}"), Some(&bob)).await.0, StatusCode::FORBIDDEN);

    // Nobody gets two memberships of one team, by update either.
    let (s, v) = d
        .put_json(
            &format!("/api/team_memberships/{mid}"),
            Some(&bob),
            &json!({"UserID": bob_id, "TeamID": own, "Role": 2}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "a second membership of bob in his team: {v}");
    assert_eq!(d.delete(&format!("/api/team_memberships/{mid}"), Some(&bob)).await.0, StatusCode::NO_CONTENT);
    let (s, t) =
        d.post_json("/api/teams", Some(&admin), &json!({"Name": "twice", "TeamLeaders": [carol_id, carol_id]})).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let (_, ms) = d.get_json(&format!("/api/teams/{}/memberships", t["Id"]), Some(&admin)).await;
    assert_eq!(ms.as_array().unwrap().len(), 1, "a leader listed twice got two memberships: {ms}");
    let (s, _) = d.delete(&format!("/api/teams/{}", t["Id"]), Some(&admin)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // A plain member is no leader at all.
    let carol = d.login("carol", "carolpassword1").await;
    let (s, _) = d
        .post_json("/api/team_memberships", Some(&carol), &json!({"UserID": carol_id, "TeamID": own, "Role": 1}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(d.get_json("/api/team_memberships", Some(&carol)).await.0, StatusCode::FORBIDDEN);
}

// ------------------------------------------------------------ API keys

#[tokio::test]
async fn api_keys_are_created_listed_used_and_deleted() {
    let (d, admin) = ready().await;
    let (bob_id, bob) = bob(&d, &admin).await;
    let (s, h, v) = send(
        &d,
        Method::POST,
        &format!("/api/users/{bob_id}/tokens"),
        &[("Authorization", &format!("Bearer {bob}"))],
        Some(&json!({"password": "bobpassword12", "description": "ci pipeline"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(h.get("content-type").unwrap(), "application/json");
    let raw = v["rawAPIKey"].as_str().expect("rawAPIKey").to_owned();
    let b64 = raw.strip_prefix("ptr_").unwrap_or_else(|| panic!("key without ptr_: {raw}"));
    assert_eq!(b64.len(), 44, "{raw}");
    let decoded = base64::engine::general_purpose::STANDARD.decode(b64).expect("standard base64");
    assert_eq!(decoded.len(), 32);
    let key = &v["apiKey"];
    let kid = key["id"].as_u64().expect("apiKey.id");
    assert_eq!(key["userId"], bob_id);
    assert_eq!(key["description"], "ci pipeline");
    assert_eq!(key["prefix"], raw[..7]);
    assert!(key["dateCreated"].as_u64().unwrap() > 0, "{key}");
    assert!(key.get("lastUsed").is_some(), "{key}");

    // The list never shows a digest (or the key).
    let (s, list) = d.get_json(&format!("/api/users/{bob_id}/tokens"), Some(&bob)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert!(list[0].get("digest").is_none(), "{list}");
    assert!(!list.to_string().contains(b64), "{list}");
    assert_eq!(list[0]["id"], kid);
    // The admin sees a standard user's keys.
    assert_eq!(d.get_json(&format!("/api/users/{bob_id}/tokens"), Some(&admin)).await.1, list);

    // X-API-Key works wherever a JWT does.
    let k = [("X-API-Key", raw.as_str())];
    assert_eq!(me(&d, &k).await.1["Username"], "bob");
    assert_eq!(get_with(&d, &format!("/api/users/{bob_id}"), &k).await.0, StatusCode::OK);
    assert_eq!(get_with(&d, "/api/teams", &k).await.0, StatusCode::OK);
    assert_eq!(get_with(&d, "/api/system/version", &k).await.0, StatusCode::OK);
    assert_eq!(get_with(&d, "/api/settings", &k).await, (StatusCode::FORBIDDEN, access_denied()));
    let (s, _, v) =
        send(&d, Method::PUT, &format!("/api/users/{bob_id}"), &k, Some(&json!({"Theme": {"color": "light"}}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Using the key is recorded as its lastUsed (Portainer's field).
    let (_, list) = d.get_json(&format!("/api/users/{bob_id}/tokens"), Some(&bob)).await;
    assert!(list[0]["lastUsed"].as_u64().unwrap_or(0) > 0, "{list}");
    assert!(list[0]["lastUsed"].as_u64().unwrap() >= list[0]["dateCreated"].as_u64().unwrap(), "{list}");
    // An admin's key has admin rights.
    let (s, ak) = create_api_key(&d, 1, &admin, ADMIN_PASSWORD).await;
    assert_eq!(s, StatusCode::CREATED);
    let admin_key = ak["rawAPIKey"].as_str().unwrap();
    assert_eq!(get_with(&d, "/api/settings", &[("X-API-Key", admin_key)]).await.0, StatusCode::OK);
    // An admin may not list another admin's keys.
    let admin2_id = create_user(&d, &admin, "admin2", "admin2password", 1).await;
    let admin2 = d.login("admin2", "admin2password").await;
    assert_eq!(d.get_json("/api/users/1/tokens", Some(&admin2)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(d.get_json(&format!("/api/users/{admin2_id}/tokens"), Some(&admin2)).await.0, StatusCode::OK);

    // Deletion: unknown id 404, another user's key 403, then the key is dead.
    assert_eq!(d.delete(&format!("/api/users/{bob_id}/tokens/9999"), Some(&bob)).await.0, StatusCode::NOT_FOUND);
    let admin_kid = ak["apiKey"]["id"].as_u64().unwrap();
    assert_eq!(d.delete(&format!("/api/users/{bob_id}/tokens/{admin_kid}"), Some(&bob)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(d.delete(&format!("/api/users/1/tokens/{admin_kid}"), Some(&bob)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(d.delete(&format!("/api/users/{bob_id}/tokens/{kid}"), Some(&bob)).await.0, StatusCode::NO_CONTENT);
    assert_eq!(me(&d, &k).await, (StatusCode::UNAUTHORIZED, invalid_jwt()));
    assert_eq!(d.get_json(&format!("/api/users/{bob_id}/tokens"), Some(&bob)).await.1, json!([]));
    // A near miss of a live key is refused.
    let mut near = admin_key.to_owned().into_bytes();
    near[10] = if near[10] == b'A' { b'B' } else { b'A' };
    let near = String::from_utf8(near).unwrap();
    assert_eq!(me(&d, &[("X-API-Key", admin_key)]).await.0, StatusCode::OK);
    assert_eq!(me(&d, &[("X-API-Key", &near)]).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn api_key_creation_rules() {
    let (d, admin) = ready().await;
    let (bob_id, bob) = bob(&d, &admin).await;
    let path = format!("/api/users/{bob_id}/tokens");
    // Wrong password: 403.
    let (s, v) = d.post_json(&path, Some(&bob), &json!({"password": "wrong-password", "description": "x"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["message"], "Current password doesn't match");
    // Another user's id, even for an admin: 403.
    let (s, v) = d.post_json(&path, Some(&admin), &json!({"password": ADMIN_PASSWORD, "description": "x"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) =
        d.post_json("/api/users/1/tokens", Some(&bob), &json!({"password": "bobpassword12", "description": "x"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    // Description rules.
    for desc in [json!(""), json!("   "), json!("x".repeat(128))] {
        let (s, v) = d.post_json(&path, Some(&bob), &json!({"password": "bobpassword12", "description": desc})).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "description {desc}: {v}");
    }
    let (s, v) = d.post_json(&path, Some(&bob), &json!({"description": "x"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "no password: {v}");
    let (s, v) =
        d.post_json(&path, Some(&bob), &json!({"password": "bobpassword12", "description": "y".repeat(127)})).await;
    assert_eq!(s, StatusCode::CREATED, "127 characters are allowed: {v}");
    let key = v["rawAPIKey"].as_str().unwrap().to_owned();
    // A key cannot mint keys: a JWT is required.
    let (s, _, v) = send(
        &d,
        Method::POST,
        &path,
        &[("X-API-Key", &key)],
        Some(&json!({"password": "bobpassword12", "description": "from a key"})),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    // Unauthenticated: 401.
    let (s, v) = d.post_json(&path, None, &json!({"password": "bobpassword12", "description": "x"})).await;
    assert_eq!((s, v), (StatusCode::UNAUTHORIZED, unauthorized_missing()));
    // A session cookie is a JWT too (from Berth's own pages, as a browser says).
    let cookie = format!("portainer_api_key={bob}");
    let (s, _, v) = send(
        &d,
        Method::POST,
        &path,
        &[("Cookie", &cookie), ("Sec-Fetch-Site", "same-origin")],
        Some(&json!({"password": "bobpassword12", "description": "from the cookie"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(d.get_json(&path, Some(&bob)).await.1.as_array().unwrap().len(), 2);
}

// ------------------------------------------------------------ HTTP surface, bad input

#[tokio::test]
async fn json_content_type_everywhere_and_404_405_as_json() {
    let (d, admin) = ready().await;
    let (bob_id, _) = bob(&d, &admin).await;
    let bearer = format!("Bearer {admin}");
    let cases: Vec<(Method, String, Option<Value>, StatusCode)> = vec![
        (Method::GET, "/api/status".into(), None, StatusCode::OK),
        (Method::GET, "/api/settings/public".into(), None, StatusCode::OK),
        (Method::GET, "/api/settings".into(), None, StatusCode::OK),
        (Method::GET, "/api/users".into(), None, StatusCode::OK),
        (Method::GET, format!("/api/users/{bob_id}"), None, StatusCode::OK),
        (Method::GET, "/api/users/me".into(), None, StatusCode::OK),
        (Method::GET, "/api/teams".into(), None, StatusCode::OK),
        (Method::GET, "/api/system/version".into(), None, StatusCode::OK),
        (Method::GET, "/api/roles".into(), None, StatusCode::OK),
        (Method::POST, "/api/teams".into(), Some(json!({"Name": "t1"})), StatusCode::OK),
        (
            Method::POST,
            "/api/auth".into(),
            Some(json!({"Username": "admin", "Password": "x"})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (Method::GET, "/api/users/424242".into(), None, StatusCode::NOT_FOUND),
        (Method::GET, "/api/no/such/route".into(), None, StatusCode::NOT_FOUND),
        (Method::GET, "/nope".into(), None, StatusCode::NOT_FOUND),
        (Method::GET, "/api".into(), None, StatusCode::NOT_FOUND),
        (Method::DELETE, "/api/status".into(), None, StatusCode::METHOD_NOT_ALLOWED),
        (Method::PATCH, "/api/users".into(), None, StatusCode::METHOD_NOT_ALLOWED),
        (Method::GET, "/api/auth".into(), None, StatusCode::METHOD_NOT_ALLOWED),
        (Method::POST, "/metrics".into(), None, StatusCode::METHOD_NOT_ALLOWED),
    ];
    for (m, path, body, want) in cases {
        let (s, h, v) = send(&d, m.clone(), &path, &[("Authorization", &bearer)], body.as_ref()).await;
        assert_eq!(s, want, "{m} {path}: {v}");
        let ct = h.get("content-type").map(|c| c.to_str().unwrap().to_owned());
        assert_eq!(ct.as_deref(), Some("application/json"), "{m} {path}");
        assert!(v.is_object() || v.is_array(), "{m} {path}: body is not JSON: {v}");
        if !s.is_success() {
            assert!(v["message"].is_string() && v["details"].is_string(), "{m} {path}: {v}");
        }
        assert_eq!(h.get("x-content-type-options").map(|c| c.to_str().unwrap()), Some("nosniff"), "{m} {path}");
    }
    // HEAD is answered like GET.
    let r = d.http().head(d.url("/api/status")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn bad_input_gets_clear_4xx_and_nothing_is_lost() {
    let (d, admin) = ready().await;
    let (bob_id, _) = bob(&d, &admin).await;
    let raw_post = |path: &'static str, body: Vec<u8>| {
        let d = &d;
        let admin = admin.clone();
        async move {
            let r = d
                .http()
                .post(d.url(path))
                .bearer_auth(admin)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            read_json(r).await
        }
    };
    for body in [&b"{\"Username\":"[..], b"not json", b"", b"   ", b"[1,2,3]", b"\"admin\"", b"null", b"\xff\xfe{}"] {
        for path in ["/api/auth", "/api/users", "/api/teams", "/api/users/admin/init", "/api/team_memberships"] {
            let (s, v) = raw_post(path, body.to_vec()).await;
            if path == "/api/users/admin/init" {
                // An admin exists: refused before the body is read (issue 19).
                assert_eq!(s, StatusCode::CONFLICT, "POST {path}: {v}");
                continue;
            }
            assert_eq!(s, StatusCode::BAD_REQUEST, "POST {path} {:?}: {v}", String::from_utf8_lossy(body));
            assert_eq!(v["message"], "Invalid request payload", "POST {path}: {v}");
        }
    }
    // Wrong types.
    for (path, body) in [
        ("/api/auth", json!({"Username": 5, "Password": "x"})),
        ("/api/auth", json!({"Username": "a", "Password": ["x"]})),
        ("/api/users", json!({"Username": "a", "Password": "abcdefghijklmn", "Role": "admin"})),
        ("/api/users", json!({"Username": "a", "Password": "abcdefghijklmn", "Role": -1})),
        ("/api/users", json!({"Username": {"a": 1}, "Password": "abcdefghijklmn", "Role": 2})),
        ("/api/teams", json!({"Name": 5})),
        ("/api/teams", json!({"Name": "x", "TeamLeaders": "all"})),
    ] {
        let (s, v) = raw_post(path, serde_json::to_vec(&body).unwrap()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "POST {path} {body}: {v}");
        assert_eq!(v["message"], "Invalid request payload", "POST {path}: {v}");
    }
    let (s, v) = raw_post("/api/team_memberships", b"{\"UserID\": \"two\"}".to_vec()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = d.put_json("/api/settings", Some(&admin), &json!({"RequiredPasswordLength": "long"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = d.put_json(&format!("/api/users/{bob_id}"), Some(&admin), &json!({"UseCache": "yes"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    // Oversized bodies: 413 whether announced or streamed, and the
    // connection is closed since the rest of the body is never read.
    let bearer = format!("Authorization: Bearer {admin}\r\n");
    for (path, extra, framing) in [
        ("/api/users", bearer.as_str(), Framing::Length),
        ("/api/auth", "", Framing::Chunked),
        ("/api/teams", bearer.as_str(), Framing::Chunked),
    ] {
        let answer = oversized_upload(d.addr(), path, extra, framing, 2 * 1024 * 1024).await;
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("{path}: no answer: {answer:?}"));
        assert!(head.starts_with("HTTP/1.1 413"), "{path} {framing:?}: {head}");
        let head = head.to_ascii_lowercase();
        assert!(head.contains("\r\nconnection: close"), "{path}: {head}");
        assert!(head.contains("\r\ncontent-type: application/json"), "{path}: {head}");
        let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        assert_eq!(v["message"], "Request body too large", "{v}");
    }

    // A 10,000-character username.
    let huge = "u".repeat(10_000);
    let (s, v) = d
        .post_json("/api/users", Some(&admin), &json!({"Username": huge, "Password": "longenough123", "Role": 2}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(!v.to_string().contains(&huge), "the error echoes the whole name");
    let (s, v) = d.post_json("/api/auth", None, &json!({"Username": huge, "Password": "whatever-123"})).await;
    assert!(s == StatusCode::UNPROCESSABLE_ENTITY || s == StatusCode::BAD_REQUEST, "{s}: {v}");
    let (s, v) = d.put_json(&format!("/api/users/{bob_id}"), Some(&admin), &json!({"Username": huge})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = d.post_json("/api/teams", Some(&admin), &json!({"Name": huge})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    // Garbage credentials.
    for (auth, want) in [
        ("Bearer \u{1f4a9}", StatusCode::BAD_REQUEST),
        ("Bearer ....", StatusCode::UNAUTHORIZED),
        ("Bearer a.b", StatusCode::UNAUTHORIZED),
        ("Basic Zm9vOmJhcg==", StatusCode::BAD_REQUEST),
        ("Bearer eyJ.eyJ.sig", StatusCode::UNAUTHORIZED),
    ] {
        let r = d.http().get(d.url("/api/users/me")).header("Authorization", auth).send().await.unwrap();
        let (s, v) = read_json(r).await;
        assert_eq!(s, want, "{auth:?}: {v}");
    }
    let r = d
        .http()
        .get(d.url("/api/users/me"))
        .header("Authorization", reqwest::header::HeaderValue::from_bytes(b"Bearer \xff\xfe\xfd").unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(read_json(r).await.0, StatusCode::BAD_REQUEST);
    let r = d.http().get(d.url("/api/users/me")).header("X-API-Key", "x".repeat(8000)).send().await.unwrap();
    assert_eq!(read_json(r).await.0, StatusCode::UNAUTHORIZED);

    // Still serving, nothing lost.
    let t = d.login(ADMIN_USER, ADMIN_PASSWORD).await;
    let (_, users) = d.get_json("/api/users", Some(&t)).await;
    let names: Vec<_> = users.as_array().unwrap().iter().map(|u| u["Username"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names, ["admin", "bob"]);
    d.login("bob", "bobpassword12").await;
    assert_eq!(d.get_json("/api/teams", Some(&t)).await.1, json!([]));
}

#[derive(Clone, Copy, Debug)]
enum Framing {
    Length,
    Chunked,
}

/// Uploads `total` bytes of JSON whitespace over a raw connection and
/// returns whatever came back. The upload runs beside the read: the server
/// may answer and close before taking it all, and a client library would
/// then report the broken pipe instead of the answer.
async fn oversized_upload(
    addr: std::net::SocketAddr,
    path: &str,
    extra_headers: &str,
    framing: Framing,
    total: usize,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let framing_header = match framing {
        Framing::Length => format!("Content-Length: {total}\r\n"),
        Framing::Chunked => "Transfer-Encoding: chunked\r\n".to_owned(),
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: berth\r\nContent-Type: application/json\r\n{extra_headers}{framing_header}\r\n"
    );
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..total / chunk.len() {
            match framing {
                Framing::Length => wr.write_all(&chunk).await?,
                Framing::Chunked => {
                    wr.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await?;
                    wr.write_all(&chunk).await?;
                    wr.write_all(b"\r\n").await?;
                }
            }
        }
        if let Framing::Chunked = framing {
            wr.write_all(b"0\r\n\r\n").await?;
        }
        Ok::<_, std::io::Error>(wr)
    });
    let mut buf = Vec::new();
    // An error (reset) after the answer still leaves the answer in `buf`.
    let read = tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection stayed open after the answer: {}", String::from_utf8_lossy(&buf));
    writer.abort();
    String::from_utf8_lossy(&buf).into_owned()
}
