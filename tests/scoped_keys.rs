//! Scoped API keys (issue 17) against the real daemon: `expiresAt`,
//! `endpointIds` / `groupIds` and `access` on `POST /api/users/{id}/tokens`,
//! enforced on the Docker proxy (the mock engine's request log proves what
//! reached "Docker"), the management API, the endpoint list and the
//! terminals; expiry answers 401 and is counted; a demoted user's keys
//! shrink with them; keys without restrictions are unchanged. The last
//! test drives the real Docker CLI against the real engine.

// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_testkit::endpoints::create_urlencoded;
use berth_testkit::harness::*;
use berth_testkit::terminal::{open, read_to_end, read_until, type_text};
use berth_testkit::users::*;
use berth_testkit::MockDocker;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

struct Env {
    d: Daemon,
    admin: String,
    mock: MockDocker,
    /// Two endpoints on the same mock engine.
    e1: u64,
    e2: u64,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockDocker::start_unix(dir.path().join("docker.sock")).await.unwrap();
    let d = Daemon::builder().args(["--bcrypt-cost", "4"]).start().await;
    let admin = d.admin_token().await;
    // Key creation is rate limited per client like logins; these tests make many.
    let (s, v) = d
        .put_json("/api/settings", Some(&admin), &json!({"LoginRateLimit": {"Burst": 10000, "PerSecond": 1000}}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let url = mock.unix_url().unwrap();
    let e1 = d.create_endpoint(&admin, "one", &url).await;
    let e2 = d.create_endpoint(&admin, "two", &url).await;
    Env { d, admin, mock, e1, e2, _dir: dir }
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

impl Env {
    /// Creates a key for the admin (user 1) with these restrictions; returns
    /// the raw key.
    async fn admin_key(&self, restrictions: Value) -> String {
        create_key(&self.d, &self.admin, 1, ADMIN_PASSWORD, restrictions).await
    }

    /// Sends a request authenticated by `key` and reads the JSON answer
    /// (`Value::Null` when the body is not JSON).
    async fn call(&self, key: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut rb = self.d.http().request(method, self.d.url(path)).header("X-API-Key", key);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        read_json(rb.send().await.unwrap()).await
    }

    fn docker(&self, eid: u64, rest: &str) -> String {
        format!("/api/endpoints/{eid}/docker{rest}")
    }

    /// Whether a request for `path` reached the mock engine since the last clear.
    fn docker_saw(&self, method: &str, path: &str) -> bool {
        self.mock.requests().iter().any(|r| r.method.as_str() == method && r.path() == path)
    }
}

async fn create_key(d: &Daemon, token: &str, uid: u64, password: &str, restrictions: Value) -> String {
    let (s, v) = post_key(d, token, uid, password, restrictions).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["rawAPIKey"].as_str().unwrap().to_owned()
}

async fn post_key(d: &Daemon, token: &str, uid: u64, password: &str, restrictions: Value) -> (StatusCode, Value) {
    let mut body = json!({"password": password, "description": "scoped"});
    for (k, v) in restrictions.as_object().unwrap() {
        body[k] = v.clone();
    }
    d.post_json(&format!("/api/users/{uid}/tokens"), Some(token), &body).await
}

/// A 403 from a key's scope, with Portainer's shape and the scope named.
#[track_caller]
fn refused_by(s: StatusCode, v: &Value, scope: &str) {
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["message"], format!("Access denied by the API key's scope ({scope})"), "{v}");
    // ApiError capitalises details: "Scope <name>: <why>".
    assert!(v["details"].as_str().unwrap().starts_with(&format!("Scope {scope}: ")), "{v}");
}

#[tokio::test]
async fn a_read_key_lists_and_inspects_but_cannot_stop_or_change() {
    let e = env().await;
    let key = e.admin_key(json!({"access": "read"})).await;
    e.mock.clear_requests();
    let (s, v) = e.call(&key, Method::GET, &e.docker(e.e1, "/v1.41/containers/json?all=1"), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v.as_array().is_some_and(|a| !a.is_empty()), "{v}");
    // An inspect goes through to the engine (the mock knows no such container).
    e.call(&key, Method::GET, &e.docker(e.e1, "/v1.41/containers/abc/json"), None).await;
    assert!(e.docker_saw("GET", "/v1.41/containers/abc/json"));

    for (m, path) in [
        (Method::POST, "/v1.41/containers/abc/stop"),
        (Method::POST, "/containers/abc/restart"),
        (Method::POST, "/v1.41/containers/create"),
        (Method::DELETE, "/v1.41/containers/abc"),
        (Method::GET, "/v1.41/containers/abc/attach/ws"),
    ] {
        let (s, v) = e.call(&key, m.clone(), &e.docker(e.e1, path), None).await;
        refused_by(s, &v, "access read");
        assert!(!e.docker_saw(m.as_str(), path), "{m} {path} reached the engine");
    }

    // The management API: reads only.
    let (s, _) = e.call(&key, Method::GET, "/api/settings", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = e.call(&key, Method::PUT, &format!("/api/endpoints/{}", e.e1), Some(json!({"Name": "x"}))).await;
    refused_by(s, &v, "access read");
    let (s, v) = e.call(&key, Method::POST, "/api/users", Some(json!({"Username": "z", "Password": "zz"}))).await;
    refused_by(s, &v, "access read");
    let (_, v) = e.d.get_json(&format!("/api/endpoints/{}", e.e1), Some(&e.admin)).await;
    assert_eq!(v["Name"], "one", "nothing was changed");

    // Terminals write into containers: not for read keys.
    let path = format!("/api/websocket/exec?endpointId={}&id=abc123", e.e1);
    let (s, body) = open(&e.d, &path, &[("X-API-Key", &key)]).await.err().unwrap();
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("Scope access read"), "{body}");
}

#[tokio::test]
async fn an_operate_key_restarts_but_cannot_create_or_delete() {
    let e = env().await;
    let key = e.admin_key(json!({"access": "operate"})).await;
    e.mock.clear_requests();
    for path in [
        "/v1.41/containers/abc/restart",
        "/containers/abc/stop",
        "/v1.41/containers/abc/start",
        "/v1.41/containers/abc/kill",
        "/v1.41/containers/abc/exec",
        "/v1.41/exec/e1/resize",
    ] {
        let (s, v) = e.call(&key, Method::POST, &e.docker(e.e1, path), Some(json!({}))).await;
        assert_ne!(s, StatusCode::FORBIDDEN, "{path}: {v}");
        assert!(e.docker_saw("POST", path), "{path} did not reach the engine");
    }
    let (s, _) = e.call(&key, Method::GET, &e.docker(e.e1, "/containers/json"), None).await;
    assert_eq!(s, StatusCode::OK);
    for (m, path) in [
        (Method::POST, "/v1.41/containers/create"),
        (Method::DELETE, "/v1.41/containers/abc"),
        (Method::POST, "/v1.41/containers/abc/update"),
        (Method::POST, "/v1.41/images/create"),
        (Method::POST, "/v1.41/containers/prune"),
        (Method::POST, "/v1.41/containers/abc/restart/x"),
    ] {
        let (s, v) = e.call(&key, m.clone(), &e.docker(e.e1, path), Some(json!({}))).await;
        refused_by(s, &v, "access operate");
        assert!(!e.docker_saw(m.as_str(), path), "{m} {path} reached the engine");
    }
    // Operate is read on the management API.
    let (s, v) = e.call(&key, Method::DELETE, &format!("/api/endpoints/{}", e.e2), None).await;
    refused_by(s, &v, "access operate");

    // Terminals need exec: an operate key opens one.
    let path = format!("/api/websocket/exec?endpointId={}&id=abc123", e.e1);
    let opened = open(&e.d, &path, &[("X-API-Key", &key)]).await;
    assert!(opened.is_ok(), "{:?}", opened.err());
}

#[tokio::test]
async fn an_endpoint_scope_hides_and_refuses_other_endpoints() {
    let e = env().await;
    let key = e.admin_key(json!({"endpointIds": [e.e1]})).await;
    let (s, _) = e.call(&key, Method::GET, &e.docker(e.e1, "/containers/json"), None).await;
    assert_eq!(s, StatusCode::OK);
    // Full access inside the scope: a create reaches the engine.
    e.mock.clear_requests();
    e.call(&key, Method::POST, &e.docker(e.e1, "/v1.41/containers/create"), Some(json!({"Image": "x"}))).await;
    assert!(e.docker_saw("POST", "/v1.41/containers/create"));

    e.mock.clear_requests();
    for path in ["/containers/json", "/_ping"] {
        let (s, v) = e.call(&key, Method::GET, &e.docker(e.e2, path), None).await;
        refused_by(s, &v, "endpoints");
    }
    assert!(!e.docker_saw("GET", "/containers/json"));
    // An endpoint that does not exist is refused the same way, not a 404.
    let (s, v) = e.call(&key, Method::GET, &e.docker(99, "/_ping"), None).await;
    refused_by(s, &v, "endpoints");

    let (s, v) = e.call(&key, Method::GET, "/api/endpoints", None).await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<u64> = v.as_array().unwrap().iter().map(|x| x["Id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [e.e1]);
    let (s, v) = e.call(&key, Method::GET, &format!("/api/endpoints/{}", e.e2), None).await;
    refused_by(s, &v, "endpoints");
    let (s, _) = e.call(&key, Method::GET, &format!("/api/endpoints/{}", e.e1), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = e.call(&key, Method::PUT, &format!("/api/endpoints/{}", e.e2), Some(json!({"Name": "x"}))).await;
    refused_by(s, &v, "endpoints");
    // Routes about no one endpoint are closed to an endpoint-limited key,
    // even an admin's.
    for (m, path) in [
        (Method::DELETE, "/api/endpoints"),
        (Method::GET, "/api/settings"),
        (Method::GET, "/api/registries"),
        (Method::GET, "/metrics"),
    ] {
        let (s, v) = e.call(&key, m, path, Some(json!({"endpoints": [{"id": e.e2}]}))).await;
        refused_by(s, &v, "endpoints");
    }
    let (s, v) = e.call(&key, Method::GET, &format!("/api/stacks?endpointId={}", e.e2), None).await;
    refused_by(s, &v, "endpoints");
    let path = format!("/api/websocket/exec?endpointId={}&id=abc123", e.e2);
    let (s, body) = open(&e.d, &path, &[("X-API-Key", &key)]).await.err().unwrap();
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("Scope endpoints"), "{body}");
    // Endpoint 2 is untouched.
    let (_, v) = e.d.get_json(&format!("/api/endpoints/{}", e.e2), Some(&e.admin)).await;
    assert_eq!(v["Name"], "two");

    // By group: a key for a group sees the endpoints in it, and only those.
    let (s, g) = e.d.post_json("/api/endpoint_groups", Some(&e.admin), &json!({"Name": "ci"})).await;
    assert_eq!(s, StatusCode::OK, "{g}");
    let gid = g["Id"].as_u64().unwrap();
    let gs = gid.to_string();
    let url = e.mock.unix_url().unwrap();
    let (s, v) = create_urlencoded(&e.d, &e.admin, &[("Name", "three"), ("URL", &url), ("GroupID", &gs)]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let e3 = v["Id"].as_u64().unwrap();
    let by_group = e.admin_key(json!({"groupIds": [gid]})).await;
    let (_, v) = e.call(&by_group, Method::GET, "/api/endpoints", None).await;
    let ids: Vec<u64> = v.as_array().unwrap().iter().map(|x| x["Id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [e3]);
    let (s, _) = e.call(&by_group, Method::GET, &e.docker(e3, "/_ping"), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = e.call(&by_group, Method::GET, &e.docker(e.e1, "/_ping"), None).await;
    refused_by(s, &v, "endpoints");
}

#[tokio::test]
async fn an_expired_key_answers_401_and_is_counted() {
    let e = env().await;
    let expires = now() + 2;
    let key = e.admin_key(json!({"expiresAt": expires})).await;
    let (s, _) = e.call(&key, Method::GET, "/api/users/me", None).await;
    assert_eq!(s, StatusCode::OK, "valid until its expiry");
    while now() < expires {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for path in ["/api/users/me".to_string(), e.docker(e.e1, "/_ping")] {
        let (s, v) = e.call(&key, Method::GET, &path, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}: {v}");
        assert_eq!(v["message"], "API key expired", "{v}");
        assert!(v["details"].as_str().unwrap().contains("expiresAt"), "{v}");
    }
    let text = e.d.http().get(e.d.url("/metrics")).bearer_auth(&e.admin).send().await.unwrap().text().await.unwrap();
    assert_eq!(metric(&text, r#"berth_auth_failures_total{reason="expired_api_key"}"#), Some(2.0), "{text}");
}

#[tokio::test]
async fn an_open_terminal_closes_when_its_key_expires() {
    let e = env().await;
    let expires = now() + 2;
    let key = e.admin_key(json!({"access": "operate", "expiresAt": expires})).await;
    let path = format!("/api/websocket/exec?endpointId={}&id=abc123", e.e1);
    let mut ws = open(&e.d, &path, &[("X-API-Key", &key)]).await.unwrap();
    type_text(&mut ws, "still here\n").await;
    let t = read_until(&mut ws, Duration::from_secs(10), |s| s.contains("still here")).await;
    assert!(t.text.contains("still here"), "{t:?}");
    let t = read_to_end(&mut ws, Duration::from_secs(10)).await;
    assert!(t.ended, "the session outlived its key: {t:?}");
    let closed_at = now();
    assert!((expires..=expires + 2).contains(&closed_at), "closed at {closed_at}, the key expired at {expires}");
}

#[tokio::test]
async fn a_demoted_users_keys_lose_what_the_user_lost() {
    let e = env().await;
    let (s, v) =
        e.d.post_json(
            "/api/users",
            Some(&e.admin),
            &json!({"Username": "carol", "Password": password("carol"), "Role": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let carol = v["Id"].as_u64().unwrap();
    let jwt = e.d.login("carol", &password("carol")).await;
    let read = create_key(&e.d, &jwt, carol, &password("carol"), json!({"access": "read"})).await;
    let scoped = create_key(&e.d, &jwt, carol, &password("carol"), json!({"endpointIds": [e.e1]})).await;
    let (s, _) = e.call(&read, Method::GET, "/api/settings", None).await;
    assert_eq!(s, StatusCode::OK, "an admin's read key reads admin routes");
    for k in [&read, &scoped] {
        let (s, _) = e.call(k, Method::GET, &e.docker(e.e1, "/containers/json"), None).await;
        assert_eq!(s, StatusCode::OK);
    }

    let (s, v) = e.d.put_json(&format!("/api/users/{carol}"), Some(&e.admin), &json!({"Role": 2})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = e.call(&read, Method::GET, "/api/settings", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["message"], "Access denied", "the user's own refusal, not the scope's: {v}");
    for k in [&read, &scoped] {
        let (s, v) = e.call(k, Method::GET, &e.docker(e.e1, "/containers/json"), None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        assert_eq!(v["message"], "Permission denied to access environment", "{v}");
        let (_, v) = e.call(k, Method::GET, "/api/endpoints", None).await;
        assert_eq!(v, json!([]), "a standard user without grants sees no endpoint");
    }
    // Granted endpoint 1 again as a standard user: the read key works as
    // that user would, read-only.
    grant(&e.d, &e.admin, e.e1, &[carol]).await;
    let (s, _) = e.call(&read, Method::GET, &e.docker(e.e1, "/containers/json"), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = e.call(&read, Method::POST, &e.docker(e.e1, "/v1.41/containers/abc/stop"), None).await;
    refused_by(s, &v, "access read");
}

#[tokio::test]
async fn restrictions_are_validated_and_listed() {
    let e = env().await;
    for (restrictions, why) in [
        (json!({"access": "admin"}), "is not one of"),
        (json!({"access": 3}), "invalid type"),
        (json!({"expiresAt": now() - 10}), "not in the future"),
        (json!({"expiresAt": -5}), "negative"),
        (json!({"expiresAt": now() + 11 * 365 * 24 * 3600}), "ten years"),
        (json!({"endpointIds": [1, -1]}), "not a positive id"),
        (json!({"endpointIds": [1, 1]}), "listed twice"),
        (json!({"endpointIds": []}), "at least one"),
        (json!({"groupIds": [0]}), "not a positive id"),
        (json!({"groupIds": "1"}), "invalid type"),
    ] {
        let (s, v) = post_key(&e.d, &e.admin, 1, ADMIN_PASSWORD, restrictions.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{restrictions}: {v}");
        assert_eq!(v["message"], "Invalid request payload", "{v}");
        assert!(v["details"].as_str().unwrap().to_lowercase().contains(why), "{restrictions}: {v}");
    }
    let (_, v) = e.d.get_json("/api/users/1/tokens", Some(&e.admin)).await;
    assert_eq!(v, json!([]), "no key was stored");

    let expires = now() + 3600;
    let (s, v) = post_key(
        &e.d,
        &e.admin,
        1,
        ADMIN_PASSWORD,
        json!({"expiresAt": expires, "endpointIds": [e.e1, e.e2], "groupIds": [1], "access": "operate"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["apiKey"]["access"], "operate");
    let scoped = v["rawAPIKey"].as_str().unwrap().to_owned();
    e.admin_key(json!({})).await;
    // Last use shows up in the list.
    e.call(&scoped, Method::GET, "/api/users/me", None).await;

    let (s, v) = e.d.get_json("/api/users/1/tokens", Some(&e.admin)).await;
    assert_eq!(s, StatusCode::OK);
    let keys = v.as_array().unwrap();
    assert_eq!(keys.len(), 2, "{v}");
    let k = &keys[0];
    assert_eq!(k["access"], "operate");
    assert_eq!(k["endpointIds"], json!([e.e1, e.e2]));
    assert_eq!(k["groupIds"], json!([1]));
    assert_eq!(k["expiresAt"], expires);
    assert!(k["lastUsed"].as_u64().unwrap() > 0, "{k}");
    // A key without restrictions keeps Portainer's exact shape.
    let mut fields: Vec<&str> = keys[1].as_object().unwrap().keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["dateCreated", "description", "id", "lastUsed", "prefix", "userId"], "{}", keys[1]);
    // A scoped key cannot mint a wider key: an operate key may not POST
    // there at all, and no key may create keys (Portainer's rule).
    let wider = json!({"password": ADMIN_PASSWORD, "description": "wider"});
    let (s, v) = e.call(&scoped, Method::POST, "/api/users/1/tokens", Some(wider.clone())).await;
    refused_by(s, &v, "access operate");
    let expiring = e.admin_key(json!({"expiresAt": now() + 600})).await;
    let (s, _) = e.call(&expiring, Method::POST, "/api/users/1/tokens", Some(wider)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (_, v) = e.d.get_json("/api/users/1/tokens", Some(&e.admin)).await;
    assert_eq!(v.as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn keys_without_restrictions_are_unchanged() {
    let e = env().await;
    let plain = e.admin_key(json!({})).await;
    let explicit_full = e.admin_key(json!({"access": "full", "expiresAt": null, "endpointIds": null})).await;
    for key in [&plain, &explicit_full] {
        e.mock.clear_requests();
        for (m, path) in [(Method::POST, "/v1.41/containers/create"), (Method::DELETE, "/v1.41/containers/abc")] {
            e.call(key, m.clone(), &e.docker(e.e2, path), Some(json!({"Image": "x"}))).await;
            assert!(e.docker_saw(m.as_str(), path), "{m} {path}");
        }
        let (s, _) = e.call(key, Method::GET, "/api/settings", None).await;
        assert_eq!(s, StatusCode::OK);
        let (_, v) = e.call(key, Method::GET, "/api/endpoints", None).await;
        assert_eq!(v.as_array().unwrap().len(), 2);
    }
    let (_, v) = e.d.get_json("/api/users/1/tokens", Some(&e.admin)).await;
    for k in v.as_array().unwrap() {
        assert!(k.get("access").is_none() && k.get("expiresAt").is_none(), "{k}");
    }
}

/// The real Docker CLI with scoped keys in its config's `HttpHeaders`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docker_cli_with_scoped_keys() {
    if !require_docker() {
        return;
    }
    let image = test_image();
    let d = Daemon::builder().args(["--bcrypt-cost", "4"]).start().await;
    let admin = d.admin_token().await;
    let eid = d.create_endpoint(&admin, "local", &format!("unix://{DOCKER_SOCKET}")).await;
    let admin_cli = DockerCli::new(&d, eid, &admin).timeout(Duration::from_secs(120));
    let name = format!("berth-scoped-{}", std::process::id());
    let _ = admin_cli.run(&["rm", "-f", &name]).await;
    admin_cli.run(&["run", "-d", "--name", &name, image, "sleep", "300"]).await.assert_success();

    let cli_for = |key: &str| {
        let cli = DockerCli::with_host(format!("tcp://127.0.0.1:{}/api/endpoints/{eid}/docker", d.port()), None)
            .timeout(Duration::from_secs(120));
        std::fs::write(cli.config_dir().join("config.json"), json!({"HttpHeaders": {"X-API-Key": key}}).to_string())
            .unwrap();
        cli
    };

    let operate = create_key(&d, &admin, 1, ADMIN_PASSWORD, json!({"access": "operate", "endpointIds": [eid]})).await;
    let cli = cli_for(&operate);
    let out = cli.run(&["ps", "-a", "--format", "{{.Names}}"]).await;
    out.assert_success();
    assert!(out.stdout.lines().any(|l| l == name), "{out}");
    cli.run(&["restart", "-t", "0", &name]).await.assert_success();
    let out = cli.run(&["inspect", "--format", "{{.State.Running}} {{.RestartCount}}", &name]).await;
    out.assert_success();
    assert!(out.stdout.starts_with("true"), "{out}");
    for args in [vec!["rm", "-f", name.as_str()], vec!["run", "--rm", image, "true"]] {
        let out = cli.run(&args).await;
        assert!(!out.success(), "{out}");
        assert!(out.stderr.contains("Access denied by the API key's scope (access operate)"), "{out}");
    }

    let read = create_key(&d, &admin, 1, ADMIN_PASSWORD, json!({"access": "read"})).await;
    let cli = cli_for(&read);
    let out = cli.run(&["inspect", "--format", "{{.Name}}", &name]).await;
    out.assert_success();
    assert_eq!(out.stdout.trim(), format!("/{name}"));
    let out = cli.run(&["stop", "-t", "0", &name]).await;
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("Access denied by the API key's scope (access read)"), "{out}");
    let out = admin_cli.run(&["inspect", "--format", "{{.State.Running}}", &name]).await;
    assert_eq!(out.stdout.trim(), "true", "the read key stopped nothing: {out}");

    admin_cli.run(&["rm", "-f", &name]).await.assert_success();
}
