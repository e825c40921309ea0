//! Restricted access through the Docker proxy (issue 14), against the mock
//! engine: every escalation a standard user tries is refused with the rule
//! that refused it, counted, logged, and nothing of it reaches Docker (the
//! mock's request log). Lists are filtered as they stream, 10,000 items
//! included, and admins' lists are decorated once controls exist.

// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use berth_testkit::harness::*;
use berth_testkit::users::*;
use berth_testkit::MockDocker;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Env {
    d: Daemon,
    admin: String,
    bob: String,
    bob_id: u64,
    mock: MockDocker,
    eid: u64,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockDocker::start_unix(dir.path().join("docker.sock")).await.unwrap();
    let d = Daemon::start().await;
    let admin = d.admin_token().await;
    let eid = d.create_endpoint(&admin, "mock-engine", &mock.unix_url().unwrap()).await;
    let bob_id = create_user(&d, &admin, "bob").await;
    grant(&d, &admin, eid, &[bob_id]).await;
    let bob = d.login("bob", &password("bob")).await;
    mock.clear_requests();
    Env { d, admin, bob, bob_id, mock, eid, _dir: dir }
}

/// What Berth's own background work asks (health checks, snapshots).
fn background(method: &str, path: &str) -> bool {
    let path = match path.strip_prefix("/v1.") {
        Some(rest) => rest.find('/').map_or(path, |i| &rest[i..]),
        None => path,
    };
    matches!(method, "GET" | "HEAD")
        && matches!(
            path,
            "/_ping" | "/info" | "/version" | "/containers/json" | "/images/json" | "/volumes" | "/nodes" | "/services"
        )
}

impl Env {
    /// Requests that reached "Docker" other than Berth's background ones.
    fn docker_saw(&self) -> Vec<String> {
        self.mock
            .requests()
            .into_iter()
            .filter(|r| !background(r.method.as_str(), r.path()))
            .map(|r| format!("{} {}", r.method, r.uri))
            .collect()
    }

    /// Sends a request byte for byte (reqwest would resolve dot segments).
    async fn raw(&self, method: &str, target: &str, token: &str, headers: &str, body: &[u8]) -> (u16, String) {
        let mut s = TcpStream::connect(self.d.addr()).await.unwrap();
        let full = format!("/api/endpoints/{}/docker{target}", self.eid);
        let length = if headers.to_ascii_lowercase().contains("transfer-encoding") {
            String::new()
        } else {
            format!("Content-Length: {}\r\n", body.len())
        };
        let head = format!(
            "{method} {full} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n{length}{headers}Connection: close\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        // The server may answer (and close) before reading a refused body.
        let _ = s.write_all(body).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await.expect("no answer");
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    }

    /// Asserts bob is refused with `rule` and that Docker saw nothing.
    async fn refused(&self, method: &str, target: &str, headers: &str, body: &[u8], status: u16, rule: &str) {
        self.mock.clear_requests();
        let (got, answer) = self.raw(method, target, &self.bob, headers, body).await;
        assert_eq!(got, status, "{method} {target}: {answer}");
        let v: Value = serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{method} {target}: {e}: {answer}"));
        let details = v["details"].as_str().unwrap_or_default();
        assert!(details.starts_with(&format!("Rule {rule}:")), "{method} {target}: {v}");
        assert!(v["message"].is_string(), "{v}");
        assert_eq!(self.docker_saw(), Vec::<String>::new(), "{method} {target} reached Docker");
    }
}

const PRIVILEGED: &str = r#"{"Image":"busybox","HostConfig":{"Privileged":true}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_escalation_is_refused_before_docker_sees_it() {
    let e = env().await;
    let post = |t: &'static str, b: &'static str, status: u16, rule: &'static str| ("POST", t, "", b, status, rule);
    let cases: Vec<(&str, &str, &str, &str, u16, &str)> = vec![
        // Host privileges in creates and updates.
        post("/containers/create", PRIVILEGED, 403, "privileged_mode"),
        post("/containers/create", r#"{"Image":"b","HostConfig":{"Binds":["/:/host"]}}"#, 403, "bind_mounts"),
        post(
            "/containers/create",
            r#"{"Image":"b","HostConfig":{"Mounts":[{"Type":"bind","Source":"/","Target":"/host"}]}}"#,
            403,
            "bind_mounts",
        ),
        post(
            "/volumes/create",
            r#"{"Name":"v","Driver":"local","DriverOpts":{"type":"none","o":"bind","device":"/"}}"#,
            403,
            "bind_mounts",
        ),
        post(
            "/services/create",
            r#"{"Name":"s","TaskTemplate":{"ContainerSpec":{"Image":"b","Mounts":[{"Type":"bind","Source":"/","Target":"/h"}]}}}"#,
            403,
            "bind_mounts",
        ),
        post(
            "/services/create",
            r#"{"Name":"s","TaskTemplate":{"ContainerSpec":{"Image":"b","CapabilityAdd":["CAP_SYS_ADMIN"]}}}"#,
            403,
            "capabilities",
        ),
        post(
            "/services/abc/update?version=3",
            r#"{"Name":"s","TaskTemplate":{"ContainerSpec":{"Image":"b","Mounts":[{"Type":"bind","Source":"/","Target":"/h"}]}}}"#,
            403,
            "bind_mounts",
        ),
        post(
            "/services/abc/update?version=3",
            r#"{"Name":"s","TaskTemplate":{"ContainerSpec":{"Image":"b","Privileges":{"SELinuxContext":{"Disable":true}}}}}"#,
            403,
            "security_options",
        ),
        post("/containers/abc/exec", r#"{"Cmd":["sh"],"Privileged":true}"#, 403, "privileged_mode"),
        post("/containers/abc/update", r#"{"Devices":[{"PathOnHost":"/dev/sda"}]}"#, 403, "device_mapping"),
        post("/build?networkmode=host", "", 403, "host_namespace"),
        // Admin-only routes: plugins, prune, swarm and nodes, unlisted ones.
        post("/plugins/pull?remote=evil/plugin", "[]", 403, "admin_only"),
        ("GET", "/plugins", "", "", 403, "admin_only"),
        post("/plugins/evil/enable", "", 403, "admin_only"),
        post("/containers/prune", "", 403, "admin_only"),
        post("/volumes/prune", "", 403, "admin_only"),
        post("/images/prune", "", 403, "admin_only"),
        post("/networks/prune", "", 403, "admin_only"),
        post("/swarm/init", "{}", 403, "admin_only"),
        post("/swarm/join", "{}", 403, "admin_only"),
        post("/swarm/update?version=1", "{}", 403, "admin_only"),
        ("GET", "/swarm/unlockkey", "", "", 403, "admin_only"),
        post("/nodes/n1/update?version=1", r#"{"Role":"manager"}"#, 403, "admin_only"),
        ("DELETE", "/nodes/n1", "", "", 403, "admin_only"),
        ("GET", "/system/df", "", "", 403, "admin_only"),
        post("/containers/abc/checkpoints", "{}", 403, "admin_only"),
        ("GET", "/not/a/docker/route", "", "", 403, "admin_only"),
        ("PATCH", "/containers/abc/json", "", "", 403, "admin_only"),
        // Version prefixes, percent-encoding, dot segments.
        post("/v1.41/containers/create", PRIVILEGED, 403, "privileged_mode"),
        post("/v1.24/containers/create", PRIVILEGED, 403, "privileged_mode"),
        post("/v1.99/containers/create", PRIVILEGED, 403, "api_version"),
        post("/v1.12/containers/create", PRIVILEGED, 403, "api_version"),
        post("/v1.41/plugins/pull?remote=x", "[]", 403, "admin_only"),
        post("/%63ontainers/create", PRIVILEGED, 403, "privileged_mode"),
        post("/containers%2Fcreate", PRIVILEGED, 403, "privileged_mode"),
        post("/v1.41/%70lugins/pull?remote=x", "[]", 403, "admin_only"),
        post("/containers/abc/../create", PRIVILEGED, 400, "path"),
        post("/containers/%2e%2e/create", PRIVILEGED, 400, "path"),
        post("/./plugins/pull", "[]", 400, "path"),
        post("/containers//create", PRIVILEGED, 400, "path"),
        // Go's decoder: case-folded keys and the last duplicate win.
        post("/containers/create", r#"{"Image":"b","hostconfig":{"PRIVILEGED":true}}"#, 403, "privileged_mode"),
        post(
            "/containers/create",
            r#"{"Image":"b","HostConfig":{"Privileged":false,"privileged":true}}"#,
            400,
            "body_ambiguous",
        ),
        post(
            "/containers/create",
            r#"{"Image":"b","HostConfig":{"Privileged":false,"Privileged":true}}"#,
            400,
            "body_ambiguous",
        ),
        post(
            "/containers/create",
            r#"{"Image":"b","HostConfig":{"Binds":[]},"hostConfig":{"Binds":["/:/h"]}}"#,
            400,
            "body_ambiguous",
        ),
        // Query parameters Docker would read another way.
        post("/build?networkmode=bridge&networkmode=host", "", 400, "query"),
    ];
    for (method, target, headers, body, status, rule) in cases {
        e.refused(method, target, headers, body.as_bytes(), status, rule).await;
    }

    // Bodies Berth cannot inspect whole are refused, not forwarded.
    e.refused("POST", "/containers/create", "Content-Encoding: gzip\r\n", b"\x1f\x8b\x08\x00", 400, "body_invalid")
        .await;
    let big = format!(r#"{{"Image":"b","Env":["X={}"]}}"#, "a".repeat(1 << 20));
    e.refused("POST", "/containers/create", "", big.as_bytes(), 413, "body_too_large").await;
    let mut chunked = Vec::new();
    for _ in 0..20 {
        chunked.extend_from_slice(format!("{:x}\r\n", 64 << 10).as_bytes());
        chunked.extend_from_slice(&vec![b' '; 64 << 10]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    e.refused("POST", "/containers/create", "Transfer-Encoding: chunked\r\n", &chunked, 413, "body_too_large").await;

    // Counted by endpoint and rule, and logged with the user and the rule.
    let resp = e.d.request(reqwest::Method::GET, "/metrics", Some(&e.admin)).send().await.unwrap();
    let text = resp.text().await.unwrap();
    let series = format!("berth_access_denied_total{{endpoint=\"{}\",rule=\"privileged_mode\"}}", e.eid);
    assert!(metric(&text, &series).unwrap_or(0.0) >= 7.0, "{series} in\n{text}");
    let series = format!("berth_access_denied_total{{endpoint=\"{}\",rule=\"admin_only\"}}", e.eid);
    assert!(metric(&text, &series).unwrap_or(0.0) >= 15.0, "{series}");
    let logs = e.d.logs();
    let user = format!("user={}", e.bob_id);
    assert!(
        logs.lines().any(|l| l.contains(&user) && l.contains("denied") && l.contains("bind_mounts")),
        "no access-log line names bob and the rule:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_are_filtered_and_swarm_secrets_redacted_for_standard_users() {
    let e = env().await;
    let path = |p: &str| format!("/api/endpoints/{}/docker{p}", e.eid);
    let (s, all) = e.d.get_json(&path("/containers/json?all=1"), Some(&e.admin)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(all.as_array().is_some_and(|a| !a.is_empty()), "{all}");
    // No control grants bob anything the admin made.
    let (s, mine) = e.d.get_json(&path("/containers/json?all=1"), Some(&e.bob)).await;
    assert_eq!((s, mine), (StatusCode::OK, json!([])));
    let (s, v) = e.d.get_json(&path("/volumes"), Some(&e.bob)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["Volumes"], json!([]), "{v}");
    // System networks are everyone's.
    let (_, nets) = e.d.get_json(&path("/networks"), Some(&e.bob)).await;
    let names: Vec<&str> = nets.as_array().unwrap().iter().filter_map(|n| n["Name"].as_str()).collect();
    assert!(names.contains(&"bridge") && names.iter().all(|n| ["bridge", "host", "none"].contains(n)), "{names:?}");
    // Images and the version stay visible.
    assert_eq!(e.d.get_json(&path("/images/json"), Some(&e.bob)).await.0, StatusCode::OK);
    assert_eq!(e.d.get_json(&path("/v1.41/version"), Some(&e.bob)).await.0, StatusCode::OK);

    e.mock.set_swarm(true);
    let (s, admin_view) = e.d.get_json(&path("/swarm"), Some(&e.admin)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(admin_view.get("JoinTokens").is_some(), "{admin_view}");
    let (s, bob_view) = e.d.get_json(&path("/swarm"), Some(&e.bob)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(bob_view.get("JoinTokens").is_none() && bob_view.get("TLSInfo").is_none(), "{bob_view}");
    assert_eq!(bob_view["ID"], admin_view["ID"]);
}

// ------------------------------------------------------ a 10,000-item list

const ITEMS: usize = 10_000;

fn big_list() -> Vec<u8> {
    let items: Vec<Value> = (0..ITEMS)
        .map(|i| {
            let mut labels = json!({"com.example.index": i.to_string()});
            if i % 1000 == 7 {
                labels["io.portainer.accesscontrol.users"] = json!("bob");
            }
            json!({"Id": format!("{i:064x}"), "Names": [format!("/c{i}")], "Image": "busybox", "State": "running", "Labels": labels})
        })
        .collect();
    serde_json::to_vec(&items).unwrap()
}

/// An engine that answers every list with 10,000 containers.
async fn big_engine() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let list = std::sync::Arc::new(big_list());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let list = list.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_string();
                let target = line.split(' ').nth(1).unwrap_or("/");
                let path = target.split('?').next().unwrap_or("/");
                let body: Vec<u8> = match path.trim_start_matches("/v1.41") {
                    "/_ping" => b"OK".to_vec(),
                    "/info" => br#"{"ID":"BIG","Swarm":{}}"#.to_vec(),
                    "/version" => br#"{"ApiVersion":"1.41","Version":"20.10.24","Os":"linux"}"#.to_vec(),
                    "/containers/json" => list.to_vec(),
                    "/volumes" => br#"{"Volumes":[],"Warnings":null}"#.to_vec(),
                    _ => b"[]".to_vec(),
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&body).await;
            });
        }
    });
    format!("tcp://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_thousand_container_list_is_filtered_as_it_streams() {
    let d = Daemon::start().await;
    let admin = d.admin_token().await;
    let eid = d.create_endpoint(&admin, "big", &big_engine().await).await;
    let bob_id = create_user(&d, &admin, "bob").await;
    grant(&d, &admin, eid, &[bob_id]).await;
    let bob = d.login("bob", &password("bob")).await;
    let path = format!("/api/endpoints/{eid}/docker/containers/json?all=1");

    let (s, v) = d.get_json(&path, Some(&admin)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v.as_array().unwrap().len(), ITEMS);

    let (s, v) = d.get_json(&path, Some(&bob)).await;
    assert_eq!(s, StatusCode::OK);
    let kept = v.as_array().unwrap();
    assert_eq!(kept.len(), ITEMS / 1000, "bob sees the containers labelled for him");
    for c in kept {
        assert_eq!(c["Portainer"]["ResourceControl"]["UserAccesses"][0]["UserId"], json!(bob_id), "{c}");
    }

    // The label-built controls are stored; from then on the admin's list
    // carries Portainer's decoration too, on those items only.
    let mut decorated = 0;
    for _ in 0..50 {
        let (_, v) = d.get_json(&path, Some(&admin)).await;
        let items = v.as_array().unwrap();
        assert_eq!(items.len(), ITEMS);
        decorated = items.iter().filter(|c| c.get("Portainer").is_some()).count();
        if decorated == ITEMS / 1000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(decorated, ITEMS / 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_flight_inspect_failures_answer_like_docker_and_the_proxy() {
    let e = env().await;
    let path = format!("/api/endpoints/{}/docker/containers/nope/json", e.eid);
    // The mock knows no container: Docker's 404, in Portainer's shape.
    let (s, v) = e.d.get_json(&path, Some(&e.bob)).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["message"], json!("No such container: nope"), "{v}");
    // The host is down: the proxy's own 502, its cause hidden from a standard user.
    e.mock.set_fail(berth_testkit::FailMode::Refuse).await;
    let (s, v) = e.d.get_json(&path, Some(&e.bob)).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
    assert!(!v["details"].as_str().unwrap_or_default().contains("docker.sock"), "{v}");
    // Nothing was decided without the inspect: no denial was counted.
    let text =
        e.d.request(reqwest::Method::GET, "/metrics", Some(&e.admin)).send().await.unwrap().text().await.unwrap();
    assert!(!text.contains("rule=\"resource_access\""), "{text}");
}
