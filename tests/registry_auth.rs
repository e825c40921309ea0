//! Registry credentials on the Docker proxy (issue 19, item 3): a
//! registry's credentials reach only that registry's host.
//!
//! With the real engine: two fake registries on loopback (dockerd treats
//! 127.0.0.0/8 as insecure, so plain HTTP works) record the `Authorization`
//! dockerd sends them after their Basic challenge. With the mock engine:
//! every refusal happens before anything reaches Docker.

// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use berth_testkit::harness::*;
use berth_testkit::MockDocker;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LIMIT: Duration = Duration::from_secs(180);

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.expect("test timed out")
}

fn b64(json: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(json)
}

fn registry_id(id: u64) -> String {
    b64(&format!(r#"{{"registryId":{id}}}"#))
}

fn decode_auth(v: &str) -> Value {
    let bytes = base64::engine::general_purpose::URL_SAFE.decode(v).expect("URL-safe base64");
    serde_json::from_slice(&bytes).expect("JSON")
}

async fn create_registry(d: &Daemon, token: &str, name: &str, url: &str, user: &str, password: &str) -> u64 {
    let (s, v) = d
        .post_json(
            "/api/registries",
            Some(token),
            &json!({"Name": name, "Type": 3, "URL": url, "Authentication": true, "Username": user, "Password": password}),
        )
        .await;
    assert!(s.is_success(), "{s} {v}");
    v["Id"].as_u64().unwrap()
}

// ------------------------------------------------------------ fake registry

/// One request a fake registry received: method, path, `Authorization`.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    authorization: Option<String>,
}

/// A registry v2 speaker on loopback: `/v2/` and everything else answer
/// 401 with a Basic challenge until credentials come; with credentials,
/// `/v2/` is 200 and the rest 404 (`MANIFEST_UNKNOWN`, `BLOB_UNKNOWN`), so
/// a pull or push ends right after dockerd has shown what it sends.
struct FakeRegistry {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeRegistry {
    async fn start() -> FakeRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_registry(stream, log.clone()));
            }
        });
        FakeRegistry { port, seen }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Decoded `user:password` of every Basic credential received on `repo`'s paths.
    fn credentials_for(&self, repo: &str) -> Vec<String> {
        let prefix = format!("/v2/{repo}/");
        self.seen()
            .into_iter()
            .filter(|s| s.path.starts_with(&prefix))
            .filter_map(|s| s.authorization)
            .map(|a| {
                let b = a.strip_prefix("Basic ").unwrap_or_else(|| panic!("not Basic: {a}"));
                String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).unwrap()).unwrap()
            })
            .collect()
    }

    /// Waits until a request on `repo` arrived (dockerd answered first).
    async fn wait_for_repo(&self, repo: &str) -> bool {
        let prefix = format!("/v2/{repo}/");
        for _ in 0..100 {
            if self.seen().iter().any(|s| s.path.starts_with(&prefix)) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

async fn serve_registry(mut s: TcpStream, log: Arc<Mutex<Vec<Seen>>>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if buf.first() == Some(&0x16) {
            // A TLS ClientHello: dockerd tries HTTPS first, then falls back.
            s.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\nplain HTTP here\n").await?;
            return s.shutdown().await;
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let mut lines = head.lines();
            let mut first = lines.next().unwrap_or("").split(' ');
            let method = first.next().unwrap_or("").to_owned();
            let path = first.next().unwrap_or("").split('?').next().unwrap_or("").to_owned();
            let mut authorization = None;
            let mut length = 0usize;
            for l in lines {
                if let Some((k, v)) = l.split_once(':') {
                    if k.trim().eq_ignore_ascii_case("authorization") {
                        authorization = Some(v.trim().to_owned());
                    }
                    if k.trim().eq_ignore_ascii_case("content-length") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
            }
            // Bodies (push uploads) are read and dropped.
            while buf.len() < length {
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.drain(..length);
            let authed = authorization.is_some();
            log.lock().unwrap().push(Seen { method, path: path.clone(), authorization });
            let (status, body) = match (authed, path.as_str()) {
                (false, _) => {
                    ("401 Unauthorized", r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#)
                }
                (true, "/v2/") => ("200 OK", "{}"),
                (true, p) if p.contains("/blobs/") => {
                    ("404 Not Found", r#"{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN","message":"no"}]}"#)
                }
                (true, _) => {
                    ("404 Not Found", r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#)
                }
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nDocker-Distribution-API-Version: registry/2.0\r\n\
                 WWW-Authenticate: Basic realm=\"fake\"\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            s.write_all(resp.as_bytes()).await?;
            continue;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

// ------------------------------------------------------------ real engine

/// Sends a request through Berth and reads the answer to its end (a pull's
/// progress stream ends when dockerd gives up).
async fn through_berth(
    d: &Daemon,
    token: &str,
    method: reqwest::Method,
    path: &str,
    auth: Option<&str>,
) -> (StatusCode, String) {
    let mut rb = d.request(method, path, Some(token));
    if let Some(a) = auth {
        rb = rb.header("x-registry-auth", a);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status();
    (status, resp.text().await.unwrap_or_default())
}

fn pull_path(endpoint: u64, image: &str) -> String {
    let q: String = url_encode(image);
    format!("/api/endpoints/{endpoint}/docker/v1.41/images/create?fromImage={q}&tag=latest")
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_reach_only_their_registry_with_the_real_engine() {
    if !require_docker() {
        return;
    }
    bounded(async {
        let reg_a = FakeRegistry::start().await;
        let reg_b = FakeRegistry::start().await;
        let d = Daemon::start().await;
        let token = d.admin_token().await;
        let eid = d.create_endpoint(&token, "local", &format!("unix://{DOCKER_SOCKET}")).await;
        let a = create_registry(&d, &token, "a", &reg_a.host(), "alice", "alice-secret").await;
        let b = create_registry(&d, &token, "b", &reg_b.host(), "bob", "bob-secret").await;
        let get = reqwest::Method::GET;
        let post = reqwest::Method::POST;

        // Registry A's credentials for an image on B's host: refused by
        // Berth, so dockerd never even contacts B.
        let (s, body) = through_berth(
            &d,
            &token,
            post.clone(),
            &pull_path(eid, &format!("{}/app1", reg_b.host())),
            Some(&registry_id(a)),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["message"], "Registry credentials refused", "{v}");
        assert!(v["details"].as_str().unwrap().contains(&reg_b.host()), "{v}");

        // B's own credentials for B's image: dockerd sends them to B.
        let (s, body) = through_berth(
            &d,
            &token,
            post.clone(),
            &pull_path(eid, &format!("{}/app2", reg_b.host())),
            Some(&registry_id(b)),
        )
        .await;
        assert_ne!(s, StatusCode::FORBIDDEN, "{body}");
        assert!(reg_b.wait_for_repo("app2").await, "dockerd never asked B for app2: {:?}", reg_b.seen());
        assert_eq!(
            reg_b.credentials_for("app2").first().map(String::as_str),
            Some("bob:bob-secret"),
            "{:?}",
            reg_b.seen()
        );

        // No header, and the image's host is registry A's: A's credentials
        // are added (Portainer #2785).
        let (s, body) =
            through_berth(&d, &token, post.clone(), &pull_path(eid, &format!("{}/app3", reg_a.host())), None).await;
        assert_ne!(s, StatusCode::FORBIDDEN, "{body}");
        assert!(reg_a.wait_for_repo("app3").await, "dockerd never asked A for app3: {:?}", reg_a.seen());
        assert_eq!(reg_a.credentials_for("app3").first().map(String::as_str), Some("alice:alice-secret"));

        // A standard user who may use the environment but not registry A:
        // nothing is added, dockerd asks A without credentials.
        let (s, v) = d
            .post_json(
                "/api/users",
                Some(&token),
                &json!({"Username": "carol", "Password": "carol-password-1", "Role": 2}),
            )
            .await;
        assert!(s.is_success(), "{v}");
        let carol = v["Id"].as_u64().unwrap();
        let (s, v) = d
            .put_json(
                &format!("/api/endpoints/{eid}"),
                Some(&token),
                &json!({"UserAccessPolicies": {carol.to_string(): {"RoleId": 0}}}),
            )
            .await;
        assert!(s.is_success(), "{v}");
        let carol_token = d.login("carol", "carol-password-1").await;
        let (s, body) =
            through_berth(&d, &carol_token, post.clone(), &pull_path(eid, &format!("{}/app4", reg_a.host())), None)
                .await;
        assert_ne!(s, StatusCode::FORBIDDEN, "{body}");
        assert!(
            reg_a.wait_for_repo("app4").await || reg_a.seen().iter().any(|s| s.path == "/v2/"),
            "{:?}",
            reg_a.seen()
        );
        assert!(reg_a.credentials_for("app4").is_empty(), "carol got A's credentials: {:?}", reg_a.seen());
        let (s, body) = through_berth(
            &d,
            &carol_token,
            post.clone(),
            &pull_path(eid, &format!("{}/app5", reg_a.host())),
            Some(&registry_id(a)),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{body}");

        // Distribution inspect: the same rule.
        let dist = |img: String| format!("/api/endpoints/{eid}/docker/v1.41/distribution/{img}/json");
        let (s, body) =
            through_berth(&d, &token, get.clone(), &dist(format!("{}/app6", reg_b.host())), Some(&registry_id(a)))
                .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
        let (_, body) =
            through_berth(&d, &token, get.clone(), &dist(format!("{}/app7", reg_b.host())), Some(&registry_id(b)))
                .await;
        assert!(reg_b.wait_for_repo("app7").await, "{body}: {:?}", reg_b.seen());
        assert_eq!(reg_b.credentials_for("app7").first().map(String::as_str), Some("bob:bob-secret"));

        // Push: tag the local test image for B, then push with A's id
        // (refused) and with B's (B gets B's credentials).
        let docker = unix_http_client(DOCKER_SOCKET);
        let target = format!("{}/pushed", reg_b.host());
        let tag = format!("http://docker/v1.41/images/{}/tag?repo={}&tag=latest", test_image(), url_encode(&target));
        let resp = docker.post(tag).send().await.unwrap();
        assert!(resp.status().is_success(), "tag: {}", resp.status());
        let push = format!("/api/endpoints/{eid}/docker/v1.41/images/{target}/push?tag=latest");
        let (s, body) = through_berth(&d, &token, post.clone(), &push, Some(&registry_id(a))).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
        let (_, body) = through_berth(&d, &token, post.clone(), &push, Some(&registry_id(b))).await;
        let _ = docker
            .delete(format!("http://docker/v1.41/images/{}", url_encode(&format!("{target}:latest"))))
            .send()
            .await;
        assert!(reg_b.wait_for_repo("pushed").await, "{body}: {:?}", reg_b.seen());
        assert!(reg_b.credentials_for("pushed").iter().all(|c| c == "bob:bob-secret"), "{:?}", reg_b.seen());
        assert!(!reg_b.credentials_for("pushed").is_empty(), "{:?}", reg_b.seen());

        // Nothing of A's ever reached B, and B's paths for refused requests
        // were never asked for.
        for seen in reg_b.seen() {
            if let Some(a) = &seen.authorization {
                assert!(
                    !String::from_utf8_lossy(
                        &base64::engine::general_purpose::STANDARD
                            .decode(a.trim_start_matches("Basic "))
                            .unwrap_or_default()
                    )
                    .contains("alice"),
                    "{seen:?}"
                );
            }
            assert!(!seen.path.contains("app1") && !seen.path.contains("app6"), "{} {}", seen.method, seen.path);
        }
    })
    .await
}

// ------------------------------------------------------------ mock engine

struct MockEnv {
    daemon: Daemon,
    token: String,
    mock: MockDocker,
    id: u64,
    rid: u64,
    _dir: tempfile::TempDir,
}

impl MockEnv {
    async fn start() -> MockEnv {
        let dir = tempfile::tempdir().unwrap();
        let mock = MockDocker::start_unix(dir.path().join("docker.sock")).await.unwrap();
        let daemon = Daemon::start().await;
        let token = daemon.admin_token().await;
        let id = daemon.create_endpoint(&token, "mock", &mock.unix_url().unwrap()).await;
        let rid = create_registry(&daemon, &token, "private", "reg.example:5000", "robot", "robot-secret").await;
        mock.clear_requests();
        MockEnv { daemon, token, mock, id, rid, _dir: dir }
    }

    fn url(&self, rest: &str) -> String {
        self.daemon.url(&format!("/api/endpoints/{}/docker{rest}", self.id))
    }

    /// Sends, returns Berth's status and JSON answer, and what reached the
    /// mock (`None`: nothing did).
    async fn send(
        &self,
        method: reqwest::Method,
        rest: &str,
        auth: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (StatusCode, Value, Option<berth_testkit::RecordedRequest>) {
        self.mock.clear_requests();
        let mut rb = self.daemon.http().request(method, self.url(rest)).bearer_auth(&self.token);
        if let Some(a) = auth {
            rb = rb.header("x-registry-auth", a);
        }
        if let Some(b) = body {
            rb = rb.header("content-type", "application/json").body(b);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        let seen = self.mock.wait_for_request(|_| true, Duration::from_millis(300)).await;
        (status, v, seen)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_ids_for_another_host_are_refused_before_docker() {
    bounded(async {
        let env = MockEnv::start().await;
        let rid = registry_id(env.rid);
        let post = reqwest::Method::POST;
        let service = |image: &str| {
            Some(json!({"Name": "s", "TaskTemplate": {"ContainerSpec": {"Image": image}}}).to_string().into_bytes())
        };
        let refused: Vec<(&str, reqwest::Method, String, Option<Vec<u8>>)> = vec![
            ("another host", post.clone(), "/images/create?fromImage=evil.example%2Fx&tag=1".into(), None),
            ("Docker Hub", post.clone(), "/images/create?fromImage=busybox".into(), None),
            ("another port", post.clone(), "/images/create?fromImage=reg.example%3A5001%2Fx".into(), None),
            ("no port", post.clone(), "/images/create?fromImage=reg.example%2Fx".into(), None),
            (
                "a name that is no reference",
                post.clone(),
                "/images/create?fromImage=reg.example%3A5000%2FX".into(),
                None,
            ),
            ("no image at all", post.clone(), "/images/create?fromSrc=-".into(), None),
            ("push elsewhere", post.clone(), "/v1.41/images/evil.example/x/push?tag=1".into(), None),
            ("plugin from elsewhere", post.clone(), "/plugins/pull?remote=evil.example%2Fp%3A1".into(), None),
            ("plugin upgrade from elsewhere", post.clone(), "/plugins/p/upgrade?remote=evil.example%2Fp".into(), None),
            ("distribution elsewhere", reqwest::Method::GET, "/distribution/evil.example/x/json".into(), None),
            ("service elsewhere", post.clone(), "/services/create".into(), service("evil.example/x:1")),
            ("service update elsewhere", post.clone(), "/services/abc/update?version=3".into(), service("busybox")),
            ("a route without registry use", post.clone(), "/containers/create".into(), Some(b"{}".to_vec())),
        ];
        for (what, method, rest, body) in refused {
            let (s, v, seen) = env.send(method, &rest, Some(&rid), body).await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{what}: {v}");
            assert!(v["details"].as_str().is_some_and(|d| !d.is_empty()), "{what}: a reason: {v}");
            assert!(seen.is_none(), "{what}: reached Docker: {seen:?}");
        }
        let bad: Vec<(&str, String, Option<Vec<u8>>, StatusCode)> = vec![
            (
                "fromImage twice",
                "/images/create?fromImage=reg.example%3A5000%2Fx&fromImage=evil.example%2Fx".into(),
                None,
                StatusCode::BAD_REQUEST,
            ),
            (
                "fromImage after a semicolon",
                "/images/create?a=1;fromImage=evil.example%2Fx&fromImage=reg.example%3A5000%2Fx".into(),
                None,
                StatusCode::BAD_REQUEST,
            ),
            (
                "duplicate key",
                "/services/create".into(),
                Some(
                    br#"{"TaskTemplate":{"ContainerSpec":{"Image":"reg.example:5000/x","Image":"evil.example/x"}}}"#
                        .to_vec(),
                ),
                StatusCode::BAD_REQUEST,
            ),
            (
                "the same field in two cases",
                "/services/create".into(),
                Some(
                    br#"{"TaskTemplate":{"ContainerSpec":{"Image":"reg.example:5000/x","image":"evil.example/x"}}}"#
                        .to_vec(),
                ),
                StatusCode::BAD_REQUEST,
            ),
            (
                "a spec over 1 MiB",
                "/services/create".into(),
                Some(vec![b' '; 1024 * 1024 + 1]),
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
        ];
        for (what, rest, body, want) in bad {
            let (s, v, seen) = env.send(post.clone(), &rest, Some(&rid), body).await;
            assert_eq!(s, want, "{what}: {v}");
            assert!(seen.is_none(), "{what}: reached Docker: {seen:?}");
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matching_hosts_get_credentials_and_bodies_pass_intact() {
    bounded(async {
        let env = MockEnv::start().await;
        let rid = registry_id(env.rid);
        let post = reqwest::Method::POST;
        let want = json!({"username": "robot", "password": "robot-secret", "serveraddress": "reg.example:5000"});
        let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let spec = json!({"Name": "s", "TaskTemplate": {"ContainerSpec": {"Image": "reg.example:5000/team/app:2"}}});
        let translated: Vec<(&str, reqwest::Method, String, Option<Vec<u8>>)> = vec![
            ("pull", post.clone(), "/v1.41/images/create?fromImage=reg.example%3A5000%2Fapp&tag=1".into(), None),
            ("pull, host in capitals", post.clone(), "/images/create?fromImage=REG.example%3A5000%2Fapp".into(), None),
            (
                "pull by digest",
                post.clone(),
                format!("/images/create?fromImage=reg.example%3A5000%2Fapp%40{digest}"),
                None,
            ),
            ("push", post.clone(), "/v1.41/images/reg.example:5000/team/app/push?tag=2".into(), None),
            ("push, escaped name", post.clone(), "/images/reg.example%3A5000%2Fapp/push".into(), None),
            ("plugin pull", post.clone(), "/plugins/pull?remote=reg.example%3A5000%2Fp%3A1&name=p".into(), None),
            ("distribution", reqwest::Method::GET, "/distribution/reg.example:5000/app/json".into(), None),
            ("service create", post.clone(), "/services/create".into(), Some(spec.to_string().into_bytes())),
            (
                "service update",
                post.clone(),
                "/services/abc/update?version=3".into(),
                Some(spec.to_string().into_bytes()),
            ),
        ];
        for (what, method, rest, body) in translated.clone() {
            for auth in [Some(rid.as_str()), None] {
                let (s, v, seen) = env.send(method.clone(), &rest, auth, body.clone()).await;
                assert_ne!(s, StatusCode::FORBIDDEN, "{what} {auth:?}: {v}");
                let seen = seen.unwrap_or_else(|| panic!("{what} {auth:?}: never reached Docker ({s} {v})"));
                let header =
                    seen.header("x-registry-auth").unwrap_or_else(|| panic!("{what} {auth:?}: no credentials"));
                assert_eq!(decode_auth(header), want, "{what} {auth:?}");
            }
        }
        // Without a header, an image of another host gets nothing added.
        for rest in ["/images/create?fromImage=busybox", "/images/create?fromImage=evil.example%2Fx"] {
            let (_, v, seen) = env.send(post.clone(), rest, None, None).await;
            let seen = seen.unwrap_or_else(|| panic!("{rest}: never reached Docker: {v}"));
            assert_eq!(seen.header("x-registry-auth"), None, "{rest}");
        }
        // {"registryId":0} is anonymous Docker Hub anywhere.
        let (_, _, seen) =
            env.send(post.clone(), "/images/create?fromImage=busybox", Some(&registry_id(0)), None).await;
        let v = decode_auth(seen.unwrap().header("x-registry-auth").unwrap());
        assert_eq!(v, json!({"username": "", "password": "", "serveraddress": "docker.io"}));
    })
    .await
}

/// An engine that records each request's head and body and answers `{}`.
async fn spawn_recording_engine() -> (u16, Arc<Mutex<Vec<(String, Vec<u8>)>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 65536];
                loop {
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map(|v| v.trim().parse().unwrap())
                            .unwrap_or(0);
                        while buf.len() < end + 4 + length {
                            let n = s.read(&mut chunk).await.unwrap_or(0);
                            if n == 0 {
                                return;
                            }
                            buf.extend_from_slice(&chunk[..n]);
                        }
                        let body = buf[end + 4..end + 4 + length].to_vec();
                        buf.drain(..end + 4 + length);
                        log.lock().unwrap().push((head, body));
                        let _ = s
                            .write_all(
                                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
                            )
                            .await;
                        continue;
                    }
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
            });
        }
    });
    (port, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_specs_reach_docker_byte_for_byte_and_other_bodies_are_not_read() {
    bounded(async {
        let (port, log) = spawn_recording_engine().await;
        let d = Daemon::start().await;
        let token = d.admin_token().await;
        let id = d.create_endpoint(&token, "rec", &format!("tcp://127.0.0.1:{port}")).await;
        create_registry(&d, &token, "private", "reg.example:5000", "robot", "robot-secret").await;
        // Odd spacing and key order that a re-serialisation would change.
        let spec = "{ \"TaskTemplate\" :{\"ContainerSpec\":{\"Image\":\"reg.example:5000/app\", \"Env\":[\"A=\\u0041\"]}},\n\"Name\":\"s\" }";
        let resp = d
            .request(reqwest::Method::POST, &format!("/api/endpoints/{id}/docker/services/create"), Some(&token))
            .header("content-type", "application/json")
            .body(spec)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let (head, body) = log.lock().unwrap().iter().rfind(|(h, _)| h.starts_with("post /services/create")).cloned().expect("reached the engine");
        assert_eq!(body, spec.as_bytes(), "the spec is forwarded as sent");
        assert!(head.contains("x-registry-auth:"), "credentials added: {head}");

        // Any other route streams its body untouched however large: 3 MiB
        // to containers/create, past the service cap.
        let big = format!("{{\"Image\":\"reg.example:5000/app\",\"Pad\":\"{}\"}}", "x".repeat(3 * 1024 * 1024));
        let resp = d
            .request(reqwest::Method::POST, &format!("/api/endpoints/{id}/docker/containers/create"), Some(&token))
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let (head, body) = log.lock().unwrap().iter().rfind(|(h, _)| h.starts_with("post /containers/create")).cloned().unwrap();
        assert_eq!(body.len(), big.len());
        assert!(!head.contains("x-registry-auth"), "{head}");
    })
    .await
}
