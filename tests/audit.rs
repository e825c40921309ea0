//! The audit trail (issue 15): every kind of change appears with the
//! right user and outcome, no secret ever appears in it (API, CSV, file
//! sink), it is admin-only, its queries filter and page, pruning follows
//! the settings, and it survives a restart. Against the real engine: a
//! container created and removed through the proxy.

// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use berth_testkit::endpoints::{eventually, with_local_engine};
use berth_testkit::harness::*;
use berth_testkit::users::*;
use berth_testkit::MockDocker;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const REGISTRY_PASSWORD: &str = "registry-secret-password-7";

async fn logs(d: &Daemon, token: &str, which: &str, query: &str) -> Value {
    let (s, v) = d.get_json(&format!("/api/useractivity/{which}?{query}"), Some(token)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

fn find<'a>(v: &'a Value, action: &str) -> Vec<&'a Value> {
    v["logs"].as_array().unwrap().iter().filter(|e| e["action"] == action).collect()
}

#[tokio::test]
async fn every_kind_of_change_is_recorded_with_its_user_outcome_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockDocker::start_unix(dir.path().join("docker.sock")).await.unwrap();
    let audit_file = dir.path().join("audit.jsonl");
    let d = Daemon::builder().arg("--audit-file").arg(&audit_file).start().await;
    let admin = d.admin_token().await;
    let eid = d.create_endpoint(&admin, "mock", &mock.unix_url().unwrap()).await;
    let bob_id = create_user(&d, &admin, "bob").await;
    grant(&d, &admin, eid, &[bob_id]).await;
    create_team(&d, &admin, "blue", &[bob_id]).await;
    let reg = json!({"Name": "r", "Type": 3, "URL": "reg.example:5000", "Authentication": true,
                     "Username": "ci", "Password": REGISTRY_PASSWORD});
    let (s, v) = d.post_json("/api/registries", Some(&admin), &reg).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = d.put_json("/api/settings", Some(&admin), &json!({"AuditLogRetentionDays": 30})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["AuditLogRetentionDays"], 30);
    let (s, v) = d.put_json("/api/settings", Some(&admin), &json!({"AuditLogMaxEntries": 0})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let body = json!({"password": ADMIN_PASSWORD, "description": "ci"});
    let (s, v) = d.post_json("/api/users/1/tokens", Some(&admin), &body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let raw_key = v["rawAPIKey"].as_str().unwrap().to_string();
    let key_id = v["apiKey"]["id"].as_u64().unwrap();
    let (s, v) = d.post_json("/api/resource_controls", Some(&admin), &json!({"ResourceID": "", "Type": 1})).await;
    assert!(s.is_client_error(), "{s} {v}");

    // Logins: a failure (with the name tried) and a success; then bob's
    // refused admin call, a call by API key, proxied Docker calls, a logout.
    let (s, _) = d.post_json("/api/auth", None, &json!({"Username": "bob", "Password": "wrong-password-1"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let bob = d.login("bob", &password("bob")).await;
    let (s, _) = d.post_json("/api/teams", Some(&bob), &json!({"Name": "red"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let resp =
        d.http().post(d.url("/api/tags")).header("X-API-Key", &raw_key).json(&json!({"Name": "t1"})).send().await;
    assert_eq!(resp.unwrap().status(), StatusCode::OK);
    let start = format!("/api/endpoints/{eid}/docker/v1.41/containers/abc123/start");
    let _ = d.request(Method::POST, &start, Some(&admin)).send().await.unwrap();
    let _ = d.request(Method::GET, &format!("/api/endpoints/{eid}/docker/containers/json"), Some(&admin)).send().await;
    let (s, _) = read_json(d.request(Method::POST, "/api/auth/logout", Some(&bob)).send().await.unwrap()).await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // The queued Docker call arrives shortly after its answer.
    let v = eventually(Duration::from_secs(10), "the proxied call in the trail", || {
        let d = &d;
        let admin = admin.clone();
        async move {
            let v = logs(d, &admin, "logs", "limit=1000").await;
            (!find(&v, "POST /containers/{id}/start").is_empty()).then_some(v)
        }
    })
    .await;
    let one = |action: &str| -> Value {
        let hits = find(&v, action);
        assert!(!hits.is_empty(), "{action} missing from {v:#}");
        hits[0].clone()
    };
    for action in ["POST /api/users", "POST /api/teams", "POST /api/team_memberships", "POST /api/registries"] {
        let by_admin = find(&v, action).into_iter().find(|e| e["username"] == "admin" && e["status"] == 200);
        let e = by_admin.unwrap_or_else(|| panic!("{action} by admin missing from {v:#}"));
        assert_eq!((e["kind"].as_str(), e["origin"].as_str()), (Some("api"), Some("127.0.0.1")), "{e}");
    }
    assert_eq!(one("PUT /api/endpoints/{id}")["payload"]["id"], eid.to_string());
    let settings: Vec<&Value> = find(&v, "PUT /api/settings");
    assert_eq!(settings.len(), 2);
    assert!(settings.iter().any(|e| e["status"] == 400 && e["succeeded"] == false), "{settings:?}");
    assert_eq!(one("POST /api/users/{id}/tokens")["status"], 201);
    assert!(one("POST /api/resource_controls")["status"].as_u64().unwrap() >= 400);
    let refused: Vec<&Value> = find(&v, "POST /api/teams").into_iter().filter(|e| e["username"] == "bob").collect();
    assert_eq!(refused.len(), 1, "bob's refused call");
    assert_eq!(refused[0]["status"], 403);
    let by_key = one("POST /api/tags");
    assert_eq!((by_key["username"].as_str(), by_key["apiKeyId"].as_u64()), (Some("admin"), Some(key_id)));
    let docker = one("POST /containers/{id}/start");
    assert_eq!(docker["kind"], "docker");
    assert_eq!(docker["object"], "abc123");
    assert_eq!(docker["endpointId"], eid);
    assert_eq!(docker["context"], "mock");
    assert!(
        v["logs"].as_array().unwrap().iter().all(|e| e["action"].as_str().unwrap().starts_with("POST")
            || e["action"].as_str().unwrap().starts_with("PUT")
            || e["action"].as_str().unwrap().starts_with("DELETE")),
        "a read was recorded: {v:#}"
    );

    let auth = logs(&d, &admin, "authlogs", "").await;
    let entries = auth["logs"].as_array().unwrap();
    let of_type = |t: u64, user: &str| entries.iter().any(|e| e["type"] == t && e["username"] == user);
    assert!(of_type(2, "bob") && of_type(1, "bob") && of_type(1, "admin") && of_type(3, "bob"), "{auth:#}");
    assert!(entries.iter().all(|e| e["origin"] == "127.0.0.1"));

    // No secret anywhere: JSON, CSV, the file sink.
    let csv = d
        .request(Method::GET, "/api/useractivity/logs?limit=1000", Some(&admin))
        .header("Accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await.unwrap();
    assert!(csv.starts_with("id,timestamp,username,context,action"));
    assert_eq!(csv.lines().count(), v["totalCount"].as_u64().unwrap() as usize + 1, "{csv}");
    let file = std::fs::read_to_string(&audit_file).unwrap();
    assert!(file.lines().count() >= v["totalCount"].as_u64().unwrap() as usize);
    assert!(file.lines().all(|l| serde_json::from_str::<Value>(l).is_ok()));
    let everything = format!("{v}{auth}{csv}{file}");
    for secret in [ADMIN_PASSWORD, &password("bob"), "wrong-password-1", REGISTRY_PASSWORD, &raw_key, &admin, &bob] {
        assert!(!everything.contains(secret), "a secret reached the audit trail");
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&audit_file).unwrap().permissions().mode() & 0o777, 0o600);

    // Admins only.
    let bob = d.login("bob", &password("bob")).await;
    let (s, _) = d.get_json("/api/useractivity/logs", Some(&bob)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = d.get_json("/api/useractivity/authlogs", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn queries_page_filter_and_pruning_follows_the_settings_across_restarts() {
    let (_mock, mut d, admin, _) = berth_testkit::endpoints::with_mock_engine().await;
    for name in ["alpha", "beta", "gamma", "delta"] {
        create_user(&d, &admin, name).await;
    }
    let all = logs(&d, &admin, "logs", "").await;
    let total = all["totalCount"].as_u64().unwrap();
    assert!(total >= 5, "{all}");
    let ids: Vec<u64> = all["logs"].as_array().unwrap().iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let page = logs(&d, &admin, "logs", "offset=1&limit=2&sortDesc=false").await;
    let page_ids: Vec<u64> = page["logs"].as_array().unwrap().iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(page_ids.len(), 2);
    assert_eq!(page["totalCount"], total);
    let first = all["logs"].as_array().unwrap().last().unwrap()["timestamp"].as_u64().unwrap();
    assert_eq!(logs(&d, &admin, "logs", &format!("before={}", first - 1)).await["totalCount"], 0);
    assert_eq!(logs(&d, &admin, "logs", &format!("after={first}")).await["totalCount"], total);
    for bad in ["limit=0", "limit=5000", "sortBy=password", "offset=x"] {
        let (s, v) = d.get_json(&format!("/api/useractivity/logs?{bad}"), Some(&admin)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
    }

    d.restart().await;
    let admin = d.login(ADMIN_USER, ADMIN_PASSWORD).await;
    assert_eq!(logs(&d, &admin, "logs", "").await["totalCount"], total, "the trail survives a restart");

    let (s, v) = d.put_json("/api/settings", Some(&admin), &json!({"AuditLogMaxEntries": 2})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let after = logs(&d, &admin, "logs", "").await;
    // The two newest before the change, plus the settings change itself.
    assert!(after["totalCount"].as_u64().unwrap() <= 3, "{after}");
    assert!(!find(&after, "PUT /api/settings").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_created_and_removed_through_the_proxy_are_in_the_trail() {
    if !require_docker() {
        return;
    }
    let image = test_image();
    let (d, admin, eid) = with_local_engine().await;
    let name = format!("berth-audit-{}", std::process::id());
    let bob_id = create_user(&d, &admin, "bob").await;
    grant(&d, &admin, eid, &[bob_id]).await;
    let bob = d.login("bob", &password("bob")).await;
    let create = format!("/api/endpoints/{eid}/docker/containers/create?name={name}");
    let resp =
        d.request(Method::POST, &create, Some(&bob)).json(&json!({"Image": image, "Cmd": ["true"]})).send().await;
    let (s, v) = read_json(resp.unwrap()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["Id"].as_str().unwrap().to_string();
    let resp = d.request(Method::DELETE, &format!("/api/endpoints/{eid}/docker/containers/{id}"), Some(&bob)).send();
    assert_eq!(resp.await.unwrap().status(), StatusCode::NO_CONTENT);
    let v = eventually(Duration::from_secs(10), "both calls in the trail", || {
        let (d, admin) = (&d, admin.clone());
        async move {
            let v = logs(d, &admin, "logs", "keyword=bob").await;
            (!find(&v, "DELETE /containers/{id}").is_empty() && !find(&v, "POST /containers/create").is_empty())
                .then_some(v)
        }
    })
    .await;
    let created = find(&v, "POST /containers/create")[0].clone();
    assert_eq!((created["username"].as_str(), created["status"].as_u64()), (Some("bob"), Some(201)));
    let removed = find(&v, "DELETE /containers/{id}")[0].clone();
    assert_eq!((removed["status"].as_u64(), removed["object"].as_str()), (Some(204), Some(id.as_str())));
}

#[tokio::test]
async fn a_full_queue_drops_are_counted_and_every_call_is_accounted_for() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockDocker::start_unix(dir.path().join("docker.sock")).await.unwrap();
    let d = Daemon::builder().args(["--audit-queue", "1"]).start().await;
    let admin = d.admin_token().await;
    let eid = d.create_endpoint(&admin, "mock", &mock.unix_url().unwrap()).await;
    let url = d.url(&format!("/api/endpoints/{eid}/docker/v1.41/containers/c1/attach"));
    let (tasks, each) = (16, 40);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let (c, url, admin) = (d.http().clone(), url.clone(), admin.clone());
        set.spawn(async move {
            for _ in 0..each {
                let r = c.post(&url).bearer_auth(&admin).send().await.unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                r.bytes().await.unwrap();
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    // Every call is either in the trail or counted as dropped, once the
    // writer has caught up.
    let (written, lost) = eventually(Duration::from_secs(15), "written + dropped = calls", || {
        let (d, admin) = (&d, admin.clone());
        async move {
            let n = logs(d, &admin, "logs", "keyword=attach&limit=1").await["totalCount"].as_u64().unwrap();
            let text = d.request(Method::GET, "/metrics", Some(&admin)).send().await.unwrap().text().await.unwrap();
            let dropped = metric(&text, "berth_audit_dropped_total").unwrap_or(0.0) as u64;
            (n + dropped == (tasks * each) as u64).then_some((n, dropped))
        }
    })
    .await;
    assert!(lost > 0, "a queue of 1 under 16 concurrent clients drops ({written} written)");
    assert!(written > 0);
    assert!(d.logs().contains("audit queue full"), "the drops are logged");
}

#[tokio::test]
async fn proxied_calls_are_not_audited_with_audit_proxy_false() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockDocker::start_unix(dir.path().join("docker.sock")).await.unwrap();
    let d = Daemon::builder().args(["--audit-proxy", "false"]).start().await;
    let admin = d.admin_token().await;
    let eid = d.create_endpoint(&admin, "mock", &mock.unix_url().unwrap()).await;
    let url = format!("/api/endpoints/{eid}/docker/v1.41/containers/c1/attach");
    let r = d.request(Method::POST, &url, Some(&admin)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A management change after it is written before its answer; a queued
    // proxied entry would have had its chance by then.
    let (s, _) = d.post_json("/api/tags", Some(&admin), &json!({"Name": "after"})).await;
    assert!(s.is_success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let v = logs(&d, &admin, "logs", "limit=1000").await;
    assert!(!find(&v, "POST /api/tags").is_empty());
    assert!(!v["logs"].as_array().unwrap().iter().any(|e| e["kind"] == "docker"), "{v:#}");
}
