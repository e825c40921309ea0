//! Issue 19 (items 8 and 9), the management API's part, against the real
//! daemon: ambiguous or malformed input is a 400 that names the problem
//! (repeated JSON keys, repeated form fields, non-canonical ids, malformed
//! `Authorization`, PEM files with trailing data, `unix://` paths that are
//! not sockets), and what standard users may learn or try is bounded
//! (endpoint URLs and TLS paths, other teams' memberships, tags of
//! endpoints they were not granted, password guesses through
//! `PUT /api/users/{id}`, API keys surviving a password reset, the login
//! limiter per IPv6 /64).

// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use berth_testkit::endpoints::*;
use berth_testkit::harness::*;
use berth_testkit::{FailMode, MockDocker, Pki};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A daemon with cheap bcrypt, its admin's token and a mock engine
/// registered as endpoint `local`.
struct Setup {
    d: Daemon,
    admin: String,
    endpoint: u64,
    mock: MockDocker,
    dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockDocker::start_unix(dir.path().join("docker.sock")).await.expect("mock engine");
    let d = Daemon::builder().args(["--bcrypt-cost", "4"]).start().await;
    let admin = d.admin_token().await;
    let endpoint = d.create_endpoint(&admin, "local", &mock.unix_url().unwrap()).await;
    Setup { d, admin, endpoint, mock, dir }
}

/// Sends `body` verbatim as JSON.
async fn raw_json(d: &Daemon, method: Method, path: &str, token: Option<&str>, body: &str) -> (StatusCode, Value) {
    let r = d
        .request(method, path, token)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    read_json(r).await
}

async fn with_authorization(d: &Daemon, path: &str, value: &str) -> (StatusCode, Value) {
    let r = d.http().get(d.url(path)).header("Authorization", value).send().await.unwrap();
    read_json(r).await
}

// ------------------------------------------------------------------ item 9

#[tokio::test]
async fn a_json_body_with_a_repeated_key_is_400_on_every_management_route() {
    let s = setup().await;
    let (d, t, e) = (&s.d, Some(s.admin.as_str()), s.endpoint);
    let (st, v) = d.post_json("/api/teams", t, &json!({"Name": "t1"})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let cases: Vec<(Method, String, &str)> = vec![
        (Method::POST, "/api/auth".into(), r#"{"Username":"admin","Username":"nobody","Password":"x"}"#),
        (Method::POST, "/api/users".into(), r#"{"Username":"u1","Password":"longenough123","Role":2,"role":1}"#),
        (Method::PUT, "/api/users/1".into(), r#"{"UseCache":true,"usecache":false}"#),
        (Method::PUT, "/api/users/1".into(), r#"{"Theme":{"color":"dark","color":"light"}}"#),
        (Method::PUT, "/api/users/1/passwd".into(), r#"{"Password":"a","Password":"b","NewPassword":"c"}"#),
        (Method::POST, "/api/teams".into(), r#"{"Name":"t2","NAME":"t3"}"#),
        (Method::POST, "/api/team_memberships".into(), r#"{"UserID":1,"TeamID":1,"Role":2,"Role":1}"#),
        (Method::POST, "/api/tags".into(), r#"{"Name":"a","Name":"b"}"#),
        (Method::POST, "/api/endpoint_groups".into(), r#"{"Name":"g","Description":"x","description":"y"}"#),
        (Method::PUT, format!("/api/endpoints/{e}"), r#"{"Name":"n1","Name":"n2"}"#),
        (Method::PUT, format!("/api/endpoints/{e}"), r#"{"UserAccessPolicies":{"2":{"RoleId":1},"2":{}}}"#),
        (
            Method::PUT,
            format!("/api/endpoints/{e}/settings"),
            r#"{"allowPrivilegedModeForRegularUsers":true,"AllowPrivilegedModeForRegularUsers":false}"#,
        ),
        (Method::DELETE, "/api/endpoints".into(), r#"{"endpoints":[{"id":1,"id":2}]}"#),
        (Method::PUT, "/api/settings".into(), r#"{"SnapshotInterval":"5m","snapshotInterval":"1m"}"#),
        (Method::POST, "/api/registries".into(), r#"{"Name":"r","Type":3,"URL":"a:1","URL":"b:1"}"#),
        (
            Method::POST,
            format!("/api/stacks/create/standalone/string?endpointId={e}"),
            r#"{"Name":"s","StackFileContent":"services: {}","stackFileContent":"x"}"#,
        ),
    ];
    for (method, path, body) in cases {
        let (st, v) = raw_json(d, method.clone(), &path, t, body).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{method} {path} {body}: {v}");
        assert_eq!(v["message"], "Invalid request payload", "{method} {path}: {v}");
        assert!(v["details"].as_str().unwrap().contains("appears twice"), "{method} {path}: {v}");
    }
    // Nothing was changed by any of them.
    let (_, tags) = d.get_json("/api/tags", t).await;
    assert_eq!(tags, json!([]));
    let (_, ep) = d.get_json(&format!("/api/endpoints/{e}"), t).await;
    assert_eq!(ep["Name"], "local");
    let (_, users) = d.get_json("/api/users", t).await;
    assert_eq!(users.as_array().unwrap().len(), 1);
    // The same bodies without the repetition work.
    let (st, v) = raw_json(d, Method::POST, "/api/tags", t, r#"{"Name":"a"}"#).await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // The first admin's creation too (it is 409 unread once an admin exists).
    let fresh = Daemon::builder().args(["--bcrypt-cost", "4"]).start().await;
    let body = r#"{"Username":"admin","username":"root","Password":"long-enough-password"}"#;
    let (st, v) = raw_json(&fresh, Method::POST, "/api/users/admin/init", None, body).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["details"].as_str().unwrap().contains("appears twice"), "{v}");
    assert_eq!(fresh.get_json("/api/users/admin/check", None).await.0, StatusCode::NOT_FOUND, "no admin was made");
}

#[tokio::test]
async fn a_non_canonical_environment_id_is_400_on_the_api_and_the_proxy() {
    let s = setup().await;
    let (d, t) = (&s.d, Some(s.admin.as_str()));
    assert_eq!(s.endpoint, 1);
    for raw in ["01", "+1", "%201", "1%20", "1.0", "0x1", "18446744073709551616"] {
        let (st, v) = d.get_json(&format!("/api/endpoints/{raw}"), t).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{raw}: {v}");
        assert_eq!(v["message"], "Invalid environment identifier route variable", "{raw}: {v}");
        let (st, v) = d.get_json(&format!("/api/endpoints/{raw}/docker/_ping"), t).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "proxy {raw}: {v}");
        assert_eq!(v["message"], "Invalid environment identifier route variable", "proxy {raw}: {v}");
    }
    assert_eq!(d.get_json("/api/endpoints/1", t).await.0, StatusCode::OK);
    let r = d.request(Method::GET, "/api/endpoints/1/docker/_ping", t).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn malformed_authorization_headers_are_400_with_a_reason() {
    let s = setup().await;
    let d = &s.d;
    let bearer = format!("Bearer {}", s.admin);
    assert_eq!(with_authorization(d, "/api/users/me", &bearer).await.0, StatusCode::OK);
    let two_spaces = format!("Bearer  {}", s.admin);
    let trailing_junk = format!("Bearer {} x", s.admin);
    for value in [two_spaces.as_str(), trailing_junk.as_str(), "Bearer", "Basic YWRtaW46eA==", "Token abc"] {
        for path in ["/api/users/me", "/api/endpoints/1/docker/_ping"] {
            let (st, v) = with_authorization(d, path, value).await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{path} {value:?}: {v}");
            assert_eq!(v["message"], "Invalid Authorization header", "{v}");
            assert!(v["details"].as_str().unwrap().contains("Bearer <token>"), "{v}");
        }
    }
}

#[tokio::test]
async fn a_form_field_given_twice_is_400() {
    let s = setup().await;
    let (d, t) = (&s.d, s.admin.as_str());
    let url = s.mock.unix_url().unwrap();
    let (st, v) = create_urlencoded(d, t, &[("Name", "a"), ("Name", "b"), ("URL", &url)]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["details"].as_str().unwrap().contains("\"Name\" has more than one value"), "{v}");
    let (st, v) = create_multipart(d, t, &[("Name", "a"), ("URL", &url), ("URL", &url)], &[]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["details"].as_str().unwrap().contains("\"URL\" has more than one value"), "{v}");
    let resp = d
        .request(Method::POST, "/api/endpoints?Name=from-query", Some(t))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("Name=from-body&URL={}", url.replace('/', "%2F")))
        .send()
        .await
        .unwrap();
    let (st, v) = read_json(resp).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (_, list) = d.get_json("/api/endpoints", Some(t)).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "nothing was registered: {list}");
}

#[tokio::test]
async fn pem_files_with_trailing_data_are_400() {
    let s = setup().await;
    let (d, t) = (&s.d, s.admin.as_str());
    let pki = Pki::new();
    let ca_glued = format!("{}#!/bin/sh\nid\n", pki.ca_pem);
    let fields = [("Name", "tls"), ("URL", "tcp://127.0.0.1:1"), ("TLS", "true")];
    let files = vec![
        ("TLSCACertFile", ca_glued.clone().into_bytes()),
        ("TLSCertFile", pki.client_cert_pem.clone().into_bytes()),
        ("TLSKeyFile", pki.client_key_pem.clone().into_bytes()),
    ];
    let (st, v) = create_multipart(d, t, &fields, &files).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["message"], "Invalid TLS files");
    assert!(v["details"].as_str().unwrap().contains("follow its last END line"), "{v}");

    let upload = |which: &'static str, bytes: Vec<u8>| async move {
        let form = reqwest::multipart::Form::new()
            .text("folder", "1")
            .part("file", reqwest::multipart::Part::bytes(bytes).file_name(format!("{which}.pem")));
        let r = d.request(Method::POST, &format!("/api/upload/tls/{which}"), Some(t)).multipart(form).send().await;
        read_json(r.unwrap()).await
    };
    let (st, v) = upload("ca", ca_glued.into_bytes()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["details"].as_str().unwrap().contains("follow its last END line"), "{v}");
    let (st, v) = upload("key", format!("{}x", pki.client_key_pem).into_bytes()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(!d.data_dir().join("tls/1/ca.pem").exists() && !d.data_dir().join("tls/1/key.pem").exists());
    // Trailing whitespace is fine.
    let (st, v) = upload("ca", format!("{}\n\n", pki.ca_pem).into_bytes()).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
}

#[tokio::test]
async fn a_unix_url_that_is_not_a_socket_is_400_on_update() {
    let s = setup().await;
    let (d, t) = (&s.d, Some(s.admin.as_str()));
    let file = s.dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let path = format!("/api/endpoints/{}", s.endpoint);
    for (url, why) in [
        (format!("unix://{}", file.display()), "a regular file, not a unix socket"),
        (format!("unix://{}", s.dir.path().display()), "a directory, not a unix socket"),
        (format!("unix://{}", s.dir.path().join("gone.sock").display()), "does not exist"),
    ] {
        let (st, v) = d.put_json(&path, t, &json!({"URL": url})).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{url}: {v}");
        assert_eq!(v["message"], "Invalid environment URL");
        assert!(v["details"].as_str().unwrap().contains(why), "{url}: {v}");
    }
    let (_, v) = d.get_json(&path, t).await;
    assert_eq!(v["URL"], s.mock.unix_url().unwrap(), "the URL is unchanged");
}

// ------------------------------------------------------------------ item 8

/// Creates a standard user and logs them in: (id, session token).
async fn user(d: &Daemon, admin: &str, name: &str) -> (u64, String) {
    let body = json!({"Username": name, "Password": format!("{name}-password-12"), "Role": 2});
    let (st, v) = d.post_json("/api/users", Some(admin), &body).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    (v["Id"].as_u64().unwrap(), d.login(name, &format!("{name}-password-12")).await)
}

async fn set_login_limit(d: &Daemon, admin: &str, burst: u32, per_second: f64) {
    let body = json!({"LoginRateLimit": {"Burst": burst, "PerSecond": per_second}});
    let (st, v) = d.put_json("/api/settings", Some(admin), &body).await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines().find(|l| l.starts_with(line_start)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0)
}

async fn scrape(d: &Daemon, admin: &str) -> String {
    d.request(Method::GET, "/metrics", Some(admin)).send().await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn put_user_checks_the_current_password_under_the_login_limit() {
    let s = setup().await;
    let (d, admin) = (&s.d, s.admin.as_str());
    let (bob_id, bob) = user(d, admin, "bob").await;
    set_login_limit(d, admin, 3, 0.001).await;
    let failures = r#"berth_auth_failures_total{reason="bad_credentials"}"#;
    let before = metric(&scrape(d, admin).await, failures);
    let path = format!("/api/users/{bob_id}");
    for _ in 0..3 {
        let body = json!({"Password": "guess-guess-1", "NewPassword": "new-password-123"});
        let (st, v) = d.put_json(&path, Some(&bob), &body).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
        assert_eq!(v["message"], "Current password doesn't match");
    }
    assert_eq!(metric(&scrape(d, admin).await, failures) - before, 3.0, "each wrong guess counts as a failure");
    // The bucket is spent: the right password is refused too, without
    // being checked, and so is a login from the same client.
    let body = json!({"Password": "bob-password-12", "NewPassword": "new-password-123"});
    let r = d.request(Method::PUT, &path, Some(&bob)).json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    let (st, _) = d.post_json("/api/auth", None, &json!({"Username": "bob", "Password": "bob-password-12"})).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    // Changes that check no password are not limited.
    let (st, v) = d.put_json(&path, Some(&bob), &json!({"UseCache": false})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn standard_users_do_not_see_where_an_endpoint_is() {
    let s = setup().await;
    let (bob_id, bob) = user(&s.d, &s.admin, "bob").await;
    let (d, admin, e) = (&s.d, s.admin.as_str(), s.endpoint);
    let grant = json!({"UserAccessPolicies": {bob_id.to_string(): {"RoleId": 0}}});
    let (st, v) = d.put_json(&format!("/api/endpoints/{e}"), Some(admin), &grant).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let sock = s.mock.unix_url().unwrap();

    let (_, v) = d.get_json(&format!("/api/endpoints/{e}"), Some(admin)).await;
    assert_eq!(v["URL"], sock.as_str());
    let (st, v) = d.get_json(&format!("/api/endpoints/{e}"), Some(&bob)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["URL"], "", "{v}");
    assert_eq!(v["TLSConfig"], json!({"TLS": false, "TLSSkipVerify": false}));
    let (_, list) = d.get_json("/api/endpoints", Some(&bob)).await;
    assert_eq!(list[0]["Id"], e);
    assert_eq!(list[0]["URL"], "");
    assert!(!list.to_string().contains("docker.sock"), "{list}");
    // The URL cannot be read out by searching for pieces of it.
    let (_, found) = d.get_json("/api/endpoints?search=docker.sock", Some(&bob)).await;
    assert_eq!(found, json!([]));
    let (_, found) = d.get_json("/api/endpoints?search=docker.sock", Some(admin)).await;
    assert_eq!(found.as_array().unwrap().len(), 1);

    // A failing host: Berth's 502 names the endpoint, and only admins get
    // the cause (which names the socket path).
    s.mock.set_fail(FailMode::Refuse).await;
    // A pooled connection may still fail first with a cause that names
    // nothing; the refused connect that follows names the socket.
    let mut seen = Value::Null;
    for _ in 0..5 {
        let (st, v) = d.get_json(&format!("/api/endpoints/{e}/docker/_ping"), Some(admin)).await;
        assert_eq!(st, StatusCode::BAD_GATEWAY, "{v}");
        seen = v;
        if seen["details"].as_str().unwrap().contains("docker.sock") {
            break;
        }
    }
    assert!(seen["details"].as_str().unwrap().contains("docker.sock"), "admins see the cause: {seen}");
    let (st, v) = d.get_json(&format!("/api/endpoints/{e}/docker/_ping"), Some(&bob)).await;
    assert_eq!(st, StatusCode::BAD_GATEWAY, "{v}");
    assert_eq!(v["message"], format!("Unable to reach the Docker host of environment {e} (local)"));
    assert!(!v.to_string().contains("docker.sock") && !v.to_string().contains("unix://"), "{v}");
}

#[tokio::test]
async fn team_leaders_see_only_the_memberships_of_teams_they_lead() {
    let s = setup().await;
    let (d, admin) = (&s.d, s.admin.as_str());
    let (lead, lead_tok) = user(d, admin, "lead").await;
    let (member, _) = user(d, admin, "member").await;
    let (other, _) = user(d, admin, "other").await;
    let team = |name: &'static str| async move {
        let (st, v) = d.post_json("/api/teams", Some(admin), &json!({"Name": name})).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        v["Id"].as_u64().unwrap()
    };
    let (a, b) = (team("a").await, team("b").await);
    for (u, t, role) in [(lead, a, 1), (member, a, 2), (other, b, 2), (member, b, 1)] {
        let (st, v) =
            d.post_json("/api/team_memberships", Some(admin), &json!({"UserID": u, "TeamID": t, "Role": role})).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let (_, all) = d.get_json("/api/team_memberships", Some(admin)).await;
    assert_eq!(all.as_array().unwrap().len(), 4);
    let (st, mine) = d.get_json("/api/team_memberships", Some(&lead_tok)).await;
    assert_eq!(st, StatusCode::OK, "{mine}");
    let teams: Vec<u64> = mine.as_array().unwrap().iter().map(|m| m["TeamID"].as_u64().unwrap()).collect();
    assert_eq!(teams, [a, a], "only team a's memberships: {mine}");
    let (st, _) = d.get_json(&format!("/api/teams/{b}/memberships"), Some(&lead_tok)).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn tags_show_standard_users_only_the_endpoints_and_groups_granted_to_them() {
    let s = setup().await;
    let (d, admin) = (&s.d, s.admin.as_str());
    let (bob_id, bob) = user(d, admin, "bob").await;
    let policy = json!({bob_id.to_string(): {"RoleId": 0}});
    let (_, tag) = d.post_json("/api/tags", Some(admin), &json!({"Name": "prod"})).await;
    let t = tag["ID"].as_u64().unwrap();
    let granted = s.endpoint;
    let hidden = d.create_endpoint(admin, "hidden", &s.mock.unix_url().unwrap()).await;
    for (id, extra) in [(granted, json!({"UserAccessPolicies": policy})), (hidden, json!({}))] {
        let mut body = json!({"TagIds": [t]});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let (st, v) = d.put_json(&format!("/api/endpoints/{id}"), Some(admin), &body).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let mut groups = Vec::new();
    for name in ["shared", "private"] {
        let (st, g) = d.post_json("/api/endpoint_groups", Some(admin), &json!({"Name": name, "TagIDs": [t]})).await;
        assert_eq!(st, StatusCode::OK, "{g}");
        groups.push(g["Id"].as_u64().unwrap());
    }
    let (st, v) = d
        .put_json(&format!("/api/endpoint_groups/{}", groups[0]), Some(admin), &json!({"UserAccessPolicies": policy}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");

    let (_, all) = d.get_json("/api/tags", Some(admin)).await;
    assert_eq!(all[0]["Endpoints"], json!({granted.to_string(): true, hidden.to_string(): true}));
    assert_eq!(all[0]["EndpointGroups"], json!({groups[0].to_string(): true, groups[1].to_string(): true}));
    let (st, mine) = d.get_json("/api/tags", Some(&bob)).await;
    assert_eq!(st, StatusCode::OK, "{mine}");
    assert_eq!(mine[0]["Name"], "prod");
    assert_eq!(mine[0]["Endpoints"], json!({granted.to_string(): true}), "{mine}");
    assert_eq!(mine[0]["EndpointGroups"], json!({groups[0].to_string(): true}), "{mine}");
}

#[tokio::test]
async fn an_admin_password_reset_revokes_the_users_api_keys_durably() {
    let mut s = setup().await;
    let (bob_id, bob) = user(&s.d, &s.admin, "bob").await;
    let d = &s.d;
    let key_works = |key: String| async move {
        let r = d.http().get(d.url("/api/users/me")).header("X-API-Key", key).send().await.unwrap();
        r.status() == StatusCode::OK
    };
    let create = |jwt: String, password: &'static str| async move {
        let path = format!("/api/users/{bob_id}/tokens");
        let (st, v) = d.post_json(&path, Some(&jwt), &json!({"password": password, "description": "ci"})).await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        v["rawAPIKey"].as_str().unwrap().to_owned()
    };
    // Bob's own password change keeps his keys (as in Portainer).
    let key1 = create(bob.clone(), "bob-password-12").await;
    let body = json!({"Password": "bob-password-12", "NewPassword": "bob-password-34"});
    let (st, v) = d.put_json(&format!("/api/users/{bob_id}"), Some(&bob), &body).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(key_works(key1.clone()).await, "a user's own change keeps the keys");
    // An admin's reset revokes them all.
    let bob = d.login("bob", "bob-password-34").await;
    let key2 = create(bob.clone(), "bob-password-34").await;
    let (st, v) =
        d.put_json(&format!("/api/users/{bob_id}"), Some(&s.admin), &json!({"NewPassword": "reset-by-admin-1"})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(!key_works(key1.clone()).await && !key_works(key2.clone()).await, "the reset revokes every key");
    let (_, keys) = d.get_json(&format!("/api/users/{bob_id}/tokens"), Some(&s.admin)).await;
    assert_eq!(keys, json!([]));
    // Durably.
    s.d.restart().await;
    let d = &s.d;
    for key in [key1, key2] {
        let r = d.http().get(d.url("/api/users/me")).header("X-API-Key", key).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let admin = d.login(ADMIN_USER, ADMIN_PASSWORD).await;
    let (_, keys) = d.get_json(&format!("/api/users/{bob_id}/tokens"), Some(&admin)).await;
    assert_eq!(keys, json!([]));
}

#[tokio::test]
async fn the_login_limit_counts_an_ipv6_64_as_one_client() {
    let d = Daemon::builder().args(["--bcrypt-cost", "4", "--trusted-proxies", "127.0.0.1"]).start().await;
    let admin = d.admin_token().await;
    set_login_limit(&d, &admin, 2, 0.001).await;
    let login_from = |ip: &'static str| {
        let d = &d;
        async move {
            let body = json!({"Username": "admin", "Password": "wrong-password-1"});
            let r = d.http().post(d.url("/api/auth")).header("X-Forwarded-For", ip).json(&body).send().await.unwrap();
            r.status()
        }
    };
    assert_eq!(login_from("2001:db8:0:1::1").await, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(login_from("2001:db8:0:1::2").await, StatusCode::UNPROCESSABLE_ENTITY);
    // A third address of the same /64 is the same client.
    assert_eq!(login_from("2001:db8:0:1:ffff::3").await, StatusCode::TOO_MANY_REQUESTS);
    // The next /64, and an IPv4 client, are others.
    assert_eq!(login_from("2001:db8:0:2::1").await, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(login_from("192.0.2.7").await, StatusCode::UNPROCESSABLE_ENTITY);
}
