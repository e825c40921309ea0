//! Fan-out (issue 17): `GET /api/docker/...` against the real daemon. The
//! real engine next to a dead host (a port nobody listens on) and a
//! hanging one (accepts, never answers): the document comes within the
//! timeout, the live host's items first, the two failures listed; a
//! standard user sees only their endpoints and their own containers; a
//! scoped key only its endpoints; Berth's query parameters narrow and are
//! read strictly, Docker's pass through byte for byte (the mock engine's
//! request log shows what reached "Docker").

// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use berth_testkit::harness::*;
use berth_testkit::users::*;
use berth_testkit::MockDocker;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// Tests run at once in one process: each has its own names.
fn named(test: &str, tag: &str) -> String {
    format!("berth-fan-{}-{test}-{tag}", std::process::id())
}

/// Removes one test's containers through the engine's socket.
struct Cleanup(&'static str);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let docker = |args: &[&str]| {
            std::process::Command::new("docker").args(args).stdin(Stdio::null()).output().ok().map(|o| o.stdout)
        };
        let filter = format!("name={}", named(self.0, ""));
        let ids = docker(&["ps", "-aq", "--filter", &filter]).unwrap_or_default();
        let ids: Vec<String> = String::from_utf8_lossy(&ids).split_whitespace().map(str::to_owned).collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.iter().map(String::as_str));
            docker(&args);
        }
    }
}

/// An endpoint whose host is `url`: registered on `live` (registration
/// pings the host), then pointed at `url` (an update does not).
async fn endpoint_at(d: &Daemon, admin: &str, name: &str, live: &str, url: &str) -> u64 {
    let id = d.create_endpoint(admin, name, live).await;
    let (s, v) = d.put_json(&format!("/api/endpoints/{id}"), Some(admin), &json!({"URL": url})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    id
}

/// A port nobody listens on.
async fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// A host that accepts connections and never answers; they stay open.
async fn hanging_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    port
}

async fn create_container(d: &Daemon, token: &str, eid: u64, name: &str) {
    let body = json!({"Image": test_image(), "Cmd": ["sleep", "300"]});
    let (s, v) =
        d.post_json(&format!("/api/endpoints/{eid}/docker/containers/create?name={name}"), Some(token), &body).await;
    assert_eq!(s, StatusCode::CREATED, "create {name}: {v}");
}

fn items(v: &Value) -> &Vec<Value> {
    v["items"].as_array().unwrap_or_else(|| panic!("no items: {v}"))
}

fn errors(v: &Value) -> &Vec<Value> {
    v["errors"].as_array().unwrap_or_else(|| panic!("no errors: {v}"))
}

/// The names of one test's containers in a fan-out answer, with the id of
/// the endpoint each is labelled with.
fn ours(test: &str, v: &Value) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = items(v)
        .iter()
        .filter_map(|i| {
            let name = i["Names"][0].as_str()?.trim_start_matches('/');
            name.starts_with(&named(test, "")).then(|| (name.to_owned(), i["BerthEndpoint"]["Id"].as_u64().unwrap()))
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn the_real_engine_a_dead_and_a_hanging_host_answer_within_the_timeout() {
    if !require_docker() {
        return;
    }
    const T: &str = "timeout";
    let _cleanup = Cleanup(T);
    let d = Daemon::builder().args(["--fanout-timeout", "3s"]).start().await;
    let admin = d.admin_token().await;
    let local_url = format!("unix://{DOCKER_SOCKET}");
    let local = d.create_endpoint(&admin, "local", &local_url).await;
    let dead = endpoint_at(&d, &admin, "dead", &local_url, &format!("tcp://127.0.0.1:{}", dead_port().await)).await;
    let hang = endpoint_at(&d, &admin, "hang", &local_url, &format!("tcp://127.0.0.1:{}", hanging_port().await)).await;
    let name = named(T, "created");
    create_container(&d, &admin, local, &name).await;

    let started = Instant::now();
    let mut resp = d.request(Method::GET, "/api/docker/containers/json?all=1", Some(&admin)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/json");
    // Read as it streams: the live host's items come before the hanging
    // host's timeout, not after it.
    let (mut body, mut items_at) = (Vec::new(), None);
    while let Some(chunk) = resp.chunk().await.unwrap() {
        body.extend_from_slice(&chunk);
        if items_at.is_none() && String::from_utf8_lossy(&body).contains(&name) {
            items_at = Some(started.elapsed());
        }
    }
    let total = started.elapsed();
    let items_at = items_at.unwrap_or_else(|| panic!("{name} not in {}", String::from_utf8_lossy(&body)));
    assert!(items_at < Duration::from_millis(2500), "the live host's items came after {items_at:?}");
    assert!(total >= Duration::from_millis(2900), "the hanging host was given up early: {total:?}");
    assert!(total < Duration::from_secs(8), "the answer took {total:?}, the timeout is 3s");

    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(ours(T, &v), vec![(name.clone(), local)], "{v}");
    // Only the live host contributed, every item labelled with it.
    assert!(!items(&v).is_empty());
    for i in items(&v) {
        assert_eq!(i["BerthEndpoint"], json!({"Id": local, "Name": "local"}), "{i}");
    }
    let errs = errors(&v);
    assert_eq!(errs.len(), 2, "{v}");
    assert_eq!((errs[0]["endpointId"].as_u64(), errs[0]["endpointName"].as_str()), (Some(dead), Some("dead")));
    assert_eq!(errs[0]["reason"], "unreachable", "{v}");
    assert!(errs[0]["message"].as_str().unwrap().contains("Unable to reach the Docker host"), "{v}");
    assert_eq!((errs[1]["endpointId"].as_u64(), errs[1]["endpointName"].as_str()), (Some(hang), Some("hang")));
    assert_eq!(errs[1]["reason"], "timeout", "{v}");
    assert!(errs[1]["details"].as_str().unwrap().contains("3s"), "{v}");

    // Docker's own query passed through: without `all`, a created (not
    // running) container is not listed.
    let (s, v) = d.get_json(&format!("/api/docker/containers/json?endpointIds[]={local}"), Some(&admin)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(ours(T, &v).is_empty(), "{v}");
    assert!(errors(&v).is_empty(), "{v}");

    // info and version: one item per host.
    for route in ["info", "v1.41/version"] {
        let (s, v) = d.get_json(&format!("/api/docker/{route}?endpointIds[]={local}"), Some(&admin)).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(items(&v).len(), 1, "{route}: {v}");
        assert_eq!(items(&v)[0]["BerthEndpoint"]["Id"], local, "{v}");
    }

    let text = d.request(Method::GET, "/metrics", Some(&admin)).send().await.unwrap().text().await.unwrap();
    assert_eq!(metric(&text, "berth_fanout_requests_total{kind=\"containers\"}"), Some(2.0), "{text}");
    assert_eq!(metric(&text, "berth_fanout_endpoints_total{kind=\"containers\"}"), Some(4.0), "{text}");
    for reason in ["timeout", "unreachable"] {
        let series = format!("berth_fanout_endpoint_failures_total{{kind=\"containers\",reason=\"{reason}\"}}");
        assert_eq!(metric(&text, &series), Some(1.0), "{text}");
    }
    assert!(text.contains("berth_fanout_duration_seconds_count{kind=\"containers\"} 2"), "{text}");
}

#[tokio::test]
async fn a_standard_user_sees_only_their_endpoints_and_their_own_containers() {
    if !require_docker() {
        return;
    }
    const T: &str = "user";
    let _cleanup = Cleanup(T);
    let d = Daemon::start().await;
    let admin = d.admin_token().await;
    let url = format!("unix://{DOCKER_SOCKET}");
    let mine = d.create_endpoint(&admin, "granted", &url).await;
    let other = d.create_endpoint(&admin, "not-granted", &url).await;
    let dead = endpoint_at(&d, &admin, "dead", &url, &format!("tcp://127.0.0.1:{}", dead_port().await)).await;
    let alice_id = create_user(&d, &admin, "alice").await;
    grant(&d, &admin, mine, &[alice_id]).await;
    grant(&d, &admin, dead, &[alice_id]).await;
    let alice = d.login("alice", &password("alice")).await;
    let (admins, alices) = (named(T, "admins"), named(T, "alices"));
    create_container(&d, &admin, mine, &admins).await;
    create_container(&d, &alice, mine, &alices).await;

    let (s, v) = d.get_json("/api/docker/containers/json?all=1", Some(&alice)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(ours(T, &v), vec![(alices.clone(), mine)], "{v}");
    assert!(items(&v).iter().all(|i| i["BerthEndpoint"]["Id"] == mine), "{v}");
    // A failed host is named, its address is not (as on the proxy).
    let errs = errors(&v);
    assert_eq!(errs.len(), 1, "{v}");
    assert_eq!((errs[0]["endpointId"].as_u64(), errs[0]["reason"].as_str()), (Some(dead), Some("unreachable")));
    assert!(!errs[0].to_string().contains("127.0.0.1"), "{v}");
    // Naming an endpoint she may not use does not widen anything.
    let (s, v) = d.get_json(&format!("/api/docker/containers/json?all=1&endpointIds[]={other}"), Some(&alice)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(items(&v).is_empty() && errors(&v).is_empty(), "{v}");
    let (s, v) = d.get_json(&format!("/api/docker/info?endpointIds[]={mine}"), Some(&alice)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(items(&v).len(), 1, "{v}");
    assert_eq!(items(&v)[0]["BerthEndpoint"], json!({"Id": mine, "Name": "granted"}), "{v}");

    // The admin sees every container on every endpoint, labelled with each.
    let (s, v) = d.get_json("/api/docker/containers/json?all=1", Some(&admin)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut want = vec![(admins.clone(), mine), (admins, other), (alices.clone(), mine), (alices, other)];
    want.sort();
    assert_eq!(ours(T, &v), want, "{v}");
    // The admin's copy of a failure keeps its cause.
    assert!(errors(&v)[0]["details"].as_str().unwrap().contains("127.0.0.1"), "{v}");
}

/// Two endpoints on one mock engine (three containers, one volume each).
struct Mocked {
    d: Daemon,
    admin: String,
    mock: MockDocker,
    e1: u64,
    e2: u64,
}

async fn mocked() -> Mocked {
    let (mock, d, admin, e1) = berth_testkit::endpoints::with_mock_engine().await;
    let e2 = d.create_endpoint(&admin, "two", &mock.unix_url().unwrap()).await;
    Mocked { d, admin, mock, e1, e2 }
}

impl Mocked {
    async fn get(&self, path: &str, key: Option<&str>) -> (StatusCode, Value) {
        let mut rb = self.d.http().get(self.d.url(path));
        rb = match key {
            Some(k) => rb.header("X-API-Key", k),
            None => rb.bearer_auth(&self.admin),
        };
        read_json(rb.send().await.unwrap()).await
    }

    /// How many items came from each endpoint: (e1, e2).
    fn per_endpoint(&self, v: &Value) -> (usize, usize) {
        let from = |e: u64| items(v).iter().filter(|i| i["BerthEndpoint"]["Id"] == e).count();
        assert_eq!(from(self.e1) + from(self.e2), items(v).len(), "{v}");
        (from(self.e1), from(self.e2))
    }
}

#[tokio::test]
async fn a_scoped_key_sees_only_its_endpoints_and_the_query_narrows_strictly() {
    let m = mocked().await;
    let (s, v) = m.get("/api/docker/containers/json", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(m.per_endpoint(&v), (3, 3));

    let body = json!({"password": ADMIN_PASSWORD, "description": "fan", "endpointIds": [m.e1], "access": "read"});
    let (s, v) = m.d.post_json("/api/users/1/tokens", Some(&m.admin), &body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let key = v["rawAPIKey"].as_str().unwrap().to_owned();
    let (s, v) = m.get("/api/docker/containers/json", Some(&key)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(m.per_endpoint(&v), (3, 0));
    let (s, v) = m.get(&format!("/api/docker/containers/json?endpointIds[]={}", m.e2), Some(&key)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(m.per_endpoint(&v), (0, 0));

    // Narrowing by id and group; Docker's parameters reach each host byte
    // for byte, Berth's do not reach it at all.
    m.mock.clear_requests();
    let docker_query = "all=1&filters=%7B%22status%22%3A%5B%22running%22%5D%7D";
    let (s, v) = m.get(&format!("/api/docker/containers/json?{docker_query}&endpointIds%5B%5D={}", m.e2), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(m.per_endpoint(&v), (0, 3));
    let seen: Vec<String> = m.mock.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(seen, vec![format!("/containers/json?{docker_query}")]);
    let (s, v) = m.get("/api/docker/containers/json?groupIds[]=1", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(m.per_endpoint(&v), (3, 3));
    let (s, v) = m.get("/api/docker/containers/json?groupIds[]=99", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(m.per_endpoint(&v), (0, 0));
    let (s, tag) = m.d.post_json("/api/tags", Some(&m.admin), &json!({"Name": "prod"})).await;
    assert_eq!(s, StatusCode::OK, "{tag}");
    let tag = tag["ID"].as_u64().or(tag["Id"].as_u64()).unwrap();
    let (s, v) = m.d.put_json(&format!("/api/endpoints/{}", m.e2), Some(&m.admin), &json!({"TagIds": [tag]})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = m.get(&format!("/api/docker/containers/json?tagIds[]={tag}"), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(m.per_endpoint(&v), (0, 3));

    // Volumes are flattened, a version prefix passes on.
    m.mock.clear_requests();
    let (s, v) = m.get("/api/docker/v1.41/volumes", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(m.per_endpoint(&v), (1, 1));
    assert!(items(&v).iter().all(|i| i["Name"] == "berth-mock-data"), "{v}");
    assert!(m.mock.requests().iter().all(|r| r.uri == "/v1.41/volumes"));

    for bad in ["endpointIds[]=abc", "groupIds[]=0", "tagIds[]=1,2", "endpointIds=-3"] {
        let (s, v) = m.get(&format!("/api/docker/containers/json?{bad}"), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert_eq!(v["message"], "Invalid query parameter", "{v}");
    }
    let (s, v) = read_json(m.d.http().get(m.d.url("/api/docker/containers/json")).send().await.unwrap()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert!(v["message"].is_string(), "{v}");
    let resp = m.d.request(Method::POST, "/api/docker/containers/json", Some(&m.admin)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_host_error_is_listed_with_dockers_message() {
    let m = mocked().await;
    // The mock knows no /services: Docker's own 404 and message.
    let (s, v) = m.get("/api/docker/services", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(items(&v).is_empty(), "{v}");
    let errs = errors(&v);
    assert_eq!(errs.len(), 2, "{v}");
    for (e, id) in errs.iter().zip([m.e1, m.e2]) {
        assert_eq!(e["endpointId"], id, "{v}");
        assert_eq!(e["reason"], "status", "{v}");
        assert_eq!(e["status"], 404, "{v}");
        assert_eq!(e["message"], "page not found", "{v}");
    }
}
