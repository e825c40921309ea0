//! The Docker proxy when things go wrong: engines that die, hang, crawl or
//! refuse, clients that walk away mid-transfer, and requests for endpoints
//! that do not exist or are not the caller's. Every fault test ends by
//! showing that nothing leaked: the daemon's file descriptors, its open
//! connection and tunnel gauges, and the mock's open connections are back to
//! where they were (pooled idle connections allowed).

// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_testkit::harness::*;
use berth_testkit::{FailMode, MockDocker};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LIMIT: Duration = Duration::from_secs(90);

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.expect("test timed out")
}

/// A client that keeps no idle connections, so that the daemon's count of
/// open connections and descriptors is not inflated by the test itself.
fn unpooled() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

struct Env {
    daemon: Daemon,
    token: String,
    mock: MockDocker,
    id: u64,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Env {
    async fn start() -> Env {
        Env::start_with(Daemon::builder()).await
    }

    async fn start_with(builder: DaemonBuilder) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let mock = MockDocker::start_unix(dir.path().join("docker.sock")).await.unwrap();
        let daemon = builder.start().await;
        let token = daemon.admin_token().await;
        let id = daemon.create_endpoint(&token, "mock-engine", &mock.unix_url().unwrap()).await;
        mock.clear_requests();
        Env { daemon, token, mock, id, http: unpooled(), _dir: dir }
    }

    fn path(&self, rest: &str) -> String {
        format!("/api/endpoints/{}/docker{rest}", self.id)
    }

    fn get(&self, rest: &str) -> reqwest::RequestBuilder {
        self.http.get(self.daemon.url(&self.path(rest))).bearer_auth(&self.token)
    }

    async fn wait_logged(&self, path: &str) {
        let p = path.to_owned();
        let seen = self.mock.wait_for_request(|r| r.path() == p, Duration::from_secs(10)).await;
        assert!(seen.is_some(), "the mock never saw {path}");
    }
}

// ------------------------------------------------------------ leak accounting

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(PathBuf::from(format!("/proc/{pid}/fd"))).map(|d| d.count()).unwrap_or(0)
}

async fn metrics(env: &Env) -> String {
    let resp = env.http.get(env.daemon.url("/metrics")).bearer_auth(&env.token).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.text().await.unwrap()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// What "nothing open" looks like for a daemon, taken once it is idle.
#[derive(Debug, Clone, Copy)]
struct Baseline {
    fds: usize,
    connections: f64,
    tunnels: f64,
    mock_connections: u64,
}

impl Baseline {
    async fn take(env: &Env) -> Baseline {
        // One proxied request first, so lazily created things (the pool, its
        // reaper) exist in the baseline too.
        let _ = env.get("/_ping").send().await.unwrap().bytes().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let text = metrics(env).await;
        Baseline {
            fds: fd_count(env.daemon.pid().unwrap()),
            connections: metric(&text, "berth_connections_open"),
            tunnels: metric(&text, "berth_tunnels_open"),
            mock_connections: env.mock.connections_open(),
        }
    }

    /// Waits (up to 15 s) until the daemon is back to the baseline. Extra
    /// descriptors are allowed only for extra connections the mock sees
    /// open, which are idle pooled connections of the daemon's.
    async fn assert_settled(&self, env: &Env, mocks: &[&MockDocker]) {
        let pid = env.daemon.pid().unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = metrics(env).await;
            let now = Baseline {
                fds: fd_count(pid),
                connections: metric(&text, "berth_connections_open"),
                tunnels: metric(&text, "berth_tunnels_open"),
                mock_connections: mocks.iter().map(|m| m.connections_open()).sum(),
            };
            let pooled = now.mock_connections.saturating_sub(self.mock_connections) as usize;
            let settled = now.fds <= self.fds + pooled
                && now.connections <= self.connections
                && now.tunnels <= self.tunnels
                && now.mock_connections <= self.mock_connections + 2;
            if settled {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "leak: baseline {self:?}, now {now:?}\nfds: {:?}",
                std::fs::read_dir(format!("/proc/{pid}/fd"))
                    .map(|d| d
                        .filter_map(|e| e.ok().and_then(|e| std::fs::read_link(e.path()).ok()))
                        .collect::<Vec<_>>())
                    .unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

// ------------------------------------------------------------ raw HTTP

async fn send_raw(port: u16, request: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(request).await.unwrap();
    s
}

/// Reads until the server closes the connection (bounded).
async fn read_all(mut s: TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await;
    match r {
        Ok(Ok(_)) => {}
        // A reset after the cut is a fine way to end, too.
        Ok(Err(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        Err(_) => panic!("the server kept the connection open after a broken upstream; got {} bytes", out.len()),
    }
    out
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

// ============================================================ tests

/// The engine dies after sending 1000 body bytes. The client gets the head
/// and those bytes, then the connection ends without a proper end of body
/// (no last chunk; fewer bytes than Content-Length), and nothing else: no
/// second response appended to the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_dying_mid_stream_aborts_the_response() {
    bounded(async {
        let env = Env::start().await;
        let base = Baseline::take(&env).await;
        env.mock.set_fail(FailMode::CloseAfter(1000)).await;

        for length in ["0", "1"] {
            let rest = format!("/mock/stream?bytes=100000&chunk=500&length={length}");
            let req =
                format!("GET {} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n", env.path(&rest), env.token);
            let s = send_raw(env.daemon.port(), req.as_bytes()).await;
            let all = read_all(s).await;
            let text = String::from_utf8_lossy(&all);
            assert!(text.starts_with("HTTP/1.1 200 "), "length={length}: {text:.200}");
            assert_eq!(count(&all, b"HTTP/1.1 "), 1, "length={length}: exactly one response: {text}");
            let head_end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            let body = &all[head_end..];
            let head = text[..head_end].to_ascii_lowercase();
            if length == "1" {
                assert!(head.contains("content-length: 100000"), "{head}");
                assert!(body.len() < 100000, "the body cannot be complete");
                assert!(body.len() >= 1000, "the bytes sent before the cut arrive: {}", body.len());
            } else {
                assert!(head.contains("transfer-encoding: chunked"), "{head}");
                assert!(!body.ends_with(b"0\r\n\r\n"), "a truncated stream must not look complete");
            }
        }

        // reqwest's view: an error while reading the body, not a short success.
        let resp = env.get("/mock/stream?bytes=100000&chunk=500").send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.bytes().await.is_err(), "a cut stream must surface as an error");

        env.mock.set_fail(FailMode::None).await;
        let resp = env.get("/mock/stream?bytes=100000&chunk=500").send().await.unwrap();
        assert_eq!(resp.bytes().await.unwrap().len(), 100000, "the endpoint works again");
        base.assert_settled(&env, &[&env.mock]).await;
    })
    .await
}

/// The engine reads the request and never answers; the client gives up and
/// disconnects. The daemon must close its engine connection (not keep
/// waiting, not pool it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_never_answering_is_cleaned_up_when_the_client_leaves() {
    bounded(async {
        let env = Env::start().await;
        let base = Baseline::take(&env).await;
        env.mock.set_fail(FailMode::Hang).await;
        let mut clients = Vec::new();
        for i in 0..3 {
            let req = format!(
                "GET {} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
                env.path(&format!("/containers/hang{i}/json")),
                env.token
            );
            clients.push(send_raw(env.daemon.port(), req.as_bytes()).await);
            env.wait_logged(&format!("/containers/hang{i}/json")).await;
        }
        let hung = env.mock.connections_open();
        assert!(hung >= 3, "three requests are held open at the engine: {hung}");
        // Nothing answers within a while.
        let mut b = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_millis(300), clients[0].read(&mut b)).await;
        assert!(r.is_err(), "the client got something from a hung engine: {r:?}");

        drop(clients);
        let deadline = Instant::now() + Duration::from_secs(10);
        while env.mock.connections_open() > hung - 3 {
            assert!(
                Instant::now() < deadline,
                "engine connections of departed clients stay open: {} of {hung}",
                env.mock.connections_open()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        env.mock.set_fail(FailMode::None).await;
        base.assert_settled(&env, &[&env.mock]).await;
    })
    .await
}

/// One endpoint answers after 6 s; meanwhile another endpoint of the same
/// daemon serves twenty requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_engine_does_not_hold_up_another_endpoint() {
    bounded(async {
        let env = Env::start().await;
        let dir = tempfile::tempdir().unwrap();
        let fast = MockDocker::start_unix(dir.path().join("fast.sock")).await.unwrap();
        let fast_id = env.daemon.create_endpoint(&env.token, "fast-engine", &fast.unix_url().unwrap()).await;
        env.mock.set_delay(Duration::from_secs(6));

        let slow_req = env.get("/version");
        let slow = tokio::spawn(async move { slow_req.send().await.map(|r| r.status()) });
        env.wait_logged("/version").await;
        for _ in 0..20 {
            let url = env.daemon.url(&format!("/api/endpoints/{fast_id}/docker/version"));
            let resp = env.http.get(url).bearer_auth(&env.token).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["ApiVersion"], "1.41");
        }
        assert!(!slow.is_finished(), "the slow engine's answer cannot have arrived yet");
        // Another request to the slow endpoint itself is not serialised
        // behind the first either: it is also in flight at the engine.
        env.mock.clear_requests();
        let second = env.get("/info");
        let second = tokio::spawn(async move { second.send().await.map(|r| r.status()) });
        env.wait_logged("/info").await;
        assert_eq!(slow.await.unwrap().unwrap(), StatusCode::OK);
        assert_eq!(second.await.unwrap().unwrap(), StatusCode::OK);
    })
    .await
}

/// The engine is down: a 502 in Portainer's error shape that names the
/// endpoint, counted in the failure metric; back up, requests work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connection_is_a_502_naming_the_endpoint() {
    bounded(async {
        let env = Env::start().await;
        let base = Baseline::take(&env).await;
        env.mock.set_fail(FailMode::Refuse).await;
        let (s, v) = read_json(env.get("/containers/json").send().await.unwrap()).await;
        assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
        let message = v["message"].as_str().unwrap_or_default();
        assert!(message.contains(&env.id.to_string()) && message.contains("mock-engine"), "{v}");
        assert!(v["details"].as_str().is_some_and(|d| !d.is_empty()), "{v}");

        // A hijack request gets the same answer, not a 101.
        let (s, _) = read_json(
            env.http
                .post(env.daemon.url(&env.path("/containers/x/attach?stream=1")))
                .bearer_auth(&env.token)
                .header("connection", "Upgrade")
                .header("upgrade", "tcp")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_GATEWAY);

        // Accepts and drops at once: also a 502, before any header.
        env.mock.set_fail(FailMode::DropConnection).await;
        let (s, v) = read_json(env.get("/containers/json").send().await.unwrap()).await;
        assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
        assert!(v["message"].as_str().unwrap_or_default().contains("mock-engine"), "{v}");

        let text = metrics(&env).await;
        assert!(
            text.lines().any(|l| l.starts_with("berth_upstream_connect_failures_total{")
                && l.contains(&format!("endpoint=\"{}\"", env.id))
                && l.contains("kind=\"unreachable\"")),
            "{text}"
        );

        env.mock.set_fail(FailMode::None).await;
        let resp = env.get("/containers/json").send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "the endpoint recovers");
        base.assert_settled(&env, &[&env.mock]).await;
    })
    .await
}

/// On loopback a TCP connect always completes (the kernel answers the
/// handshake even if nobody accepts), so the "host that never completes the
/// connection" is a TLS endpoint whose listener never answers the
/// ClientHello: the connect timeout covers the TLS handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_is_a_504() {
    bounded(async {
        let env = Env::start_with(Daemon::builder().arg("--connect-timeout").arg("1s")).await;
        let hole = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hole_port = hole.local_addr().unwrap().port();
        // Accepts and holds connections without a word.
        let held = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((s, _)) = hole.accept().await {
                conns.push(s);
            }
        });
        // Created against the mock (creation pings), then pointed at the
        // black hole: an update does not ping.
        let (s, v) = env
            .daemon
            .put_json(
                &format!("/api/endpoints/{}", env.id),
                Some(&env.token),
                &json!({"URL": format!("tcp://127.0.0.1:{hole_port}"), "TLS": true,
                        "TLSSkipVerify": true, "TLSSkipClientVerify": true}),
            )
            .await;
        assert!(s.is_success(), "{s} {v}");

        let started = Instant::now();
        let (s, v) = read_json(env.get("/containers/json").send().await.unwrap()).await;
        let took = started.elapsed();
        assert_eq!(s, StatusCode::GATEWAY_TIMEOUT, "{v}");
        assert!(v["message"].as_str().unwrap_or_default().contains("mock-engine"), "{v}");
        assert!(took >= Duration::from_millis(900), "answered before the timeout could expire: {took:?}");
        let text = metrics(&env).await;
        assert!(
            text.lines()
                .any(|l| l.starts_with("berth_upstream_connect_failures_total{") && l.contains("kind=\"timeout\"")),
            "{text}"
        );
        held.abort();
    })
    .await
}

/// The client announces 64 MB, sends 1 MB and disconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_leaving_mid_upload_is_cleaned_up() {
    bounded(async {
        let env = Env::start().await;
        let base = Baseline::take(&env).await;
        for framing in ["Content-Length: 67108864", "Transfer-Encoding: chunked"] {
            let head = format!(
                "POST {} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/x-tar\r\n{framing}\r\n\r\n",
                env.path("/mock/upload?read_delay_ms=1"),
                env.token
            );
            let mut s = send_raw(env.daemon.port(), head.as_bytes()).await;
            let block = vec![0x5au8; 64 * 1024];
            for _ in 0..16 {
                if framing.starts_with("Transfer") {
                    s.write_all(format!("{:x}\r\n", block.len()).as_bytes()).await.unwrap();
                    s.write_all(&block).await.unwrap();
                    s.write_all(b"\r\n").await.unwrap();
                } else {
                    s.write_all(&block).await.unwrap();
                }
            }
            env.wait_logged("/mock/upload").await;
            let during = env.mock.connections_open();
            drop(s);
            let deadline = Instant::now() + Duration::from_secs(10);
            while env.mock.connections_open() >= during {
                assert!(Instant::now() < deadline, "{framing}: the engine connection of an aborted upload stays open");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            env.mock.clear_requests();
        }
        base.assert_settled(&env, &[&env.mock]).await;
    })
    .await
}

/// The client reads 1 MB of a 1 GB download and disconnects: the daemon
/// stops pulling from the engine and closes that connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_leaving_mid_download_is_cleaned_up() {
    bounded(async {
        let env = Env::start().await;
        let base = Baseline::take(&env).await;
        for length in ["0", "1"] {
            let rest = format!("/mock/stream?bytes={}&chunk=65536&length={length}", 1u64 << 30);
            let req =
                format!("GET {} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n", env.path(&rest), env.token);
            let mut s = send_raw(env.daemon.port(), req.as_bytes()).await;
            let mut got = 0usize;
            let mut buf = vec![0u8; 64 * 1024];
            while got < 1 << 20 {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0);
                got += n;
            }
            let during = env.mock.connections_open();
            drop(s);
            let deadline = Instant::now() + Duration::from_secs(10);
            while env.mock.connections_open() >= during {
                assert!(
                    Instant::now() < deadline,
                    "length={length}: the engine connection of an abandoned download stays open"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        base.assert_settled(&env, &[&env.mock]).await;
    })
    .await
}

/// A hijacked session whose client vanishes: the tunnel closes, the gauge
/// drops, the engine connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_leaving_a_hijacked_session_is_cleaned_up() {
    bounded(async {
        let env = Env::start().await;
        let base = Baseline::take(&env).await;
        let mut sessions = Vec::new();
        for i in 0..3 {
            let req = format!(
                "POST {} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
                env.path(&format!("/v1.41/exec/e{i}/start")),
                env.token
            );
            let mut s = send_raw(env.daemon.port(), req.as_bytes()).await;
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                assert_eq!(s.read(&mut b).await.unwrap(), 1);
                head.push(b[0]);
            }
            assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
            s.write_all(b"x").await.unwrap();
            s.read_exact(&mut b).await.unwrap();
            sessions.push(s);
        }
        let text = metrics(&env).await;
        assert_eq!(metric(&text, "berth_tunnels_open"), base.tunnels + 3.0);
        drop(sessions);
        base.assert_settled(&env, &[&env.mock]).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_bad_and_forbidden_endpoints() {
    bounded(async {
        let env = Env::start().await;
        let (s, v) = read_json(
            env.http
                .get(env.daemon.url("/api/endpoints/999/docker/_ping"))
                .bearer_auth(&env.token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
        assert!(v["message"].is_string(), "{v}");
        for bad in ["abc", "-1", "1.5", "99999999999999999999999"] {
            let url = env.daemon.url(&format!("/api/endpoints/{bad}/docker/_ping"));
            let (s, v) = read_json(env.http.get(url).bearer_auth(&env.token).send().await.unwrap()).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
            assert!(v["message"].is_string(), "{v}");
        }
        // Without credentials: 401 before anything else.
        let (s, _) = read_json(env.http.get(env.daemon.url(&env.path("/_ping"))).send().await.unwrap()).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);

        let (s, v) = env
            .daemon
            .post_json(
                "/api/users",
                Some(&env.token),
                &json!({"Username": "outsider", "Password": "long-enough-password", "Role": 2}),
            )
            .await;
        assert!(s.is_success(), "{v}");
        let user = env.daemon.login("outsider", "long-enough-password").await;
        let (s, v) = read_json(
            env.http.get(env.daemon.url(&env.path("/containers/json"))).bearer_auth(&user).send().await.unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        assert_eq!(v["message"], "Permission denied to access environment", "{v}");
        // Unknown beats forbidden for a regular user too.
        let (s, _) = read_json(
            env.http.get(env.daemon.url("/api/endpoints/999/docker/_ping")).bearer_auth(&user).send().await.unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(env.mock.requests().is_empty(), "nothing may reach Docker: {:?}", env.mock.requests());

        // Granted, the same user gets through.
        let uid = v_user_id(&env, "outsider").await;
        let (s, v) = env
            .daemon
            .put_json(
                &format!("/api/endpoints/{}", env.id),
                Some(&env.token),
                &json!({"UserAccessPolicies": {uid.to_string(): {"RoleId": 0}}}),
            )
            .await;
        assert!(s.is_success(), "{v}");
        let resp = env.http.get(env.daemon.url(&env.path("/containers/json"))).bearer_auth(&user).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    })
    .await
}

async fn v_user_id(env: &Env, name: &str) -> u64 {
    let (s, v) = env.daemon.get_json("/api/users", Some(&env.token)).await;
    assert_eq!(s, StatusCode::OK);
    v.as_array().unwrap().iter().find(|u| u["Username"] == name).and_then(|u| u["Id"].as_u64()).unwrap()
}

/// Requests for an endpoint that is deleted while a stream is open finish
/// or fail cleanly, and later ones get 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_deleted_during_a_stream() {
    bounded(async {
        let env = Env::start().await;
        let mut resp = env.get("/mock/stream?bytes=300000&chunk=100000&interval_ms=300").send().await.unwrap();
        let first = resp.chunk().await.unwrap().unwrap();
        assert!(!first.is_empty());
        let (s, v) = env.daemon.delete(&format!("/api/endpoints/{}", env.id), Some(&env.token)).await;
        assert!(s.is_success(), "{s} {v}");
        let mut total = first.len();
        while let Ok(Some(c)) = resp.chunk().await {
            total += c.len();
        }
        assert!(total <= 300000);
        let resp = env.daemon.request(Method::GET, &env.path("/_ping"), Some(&env.token)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    })
    .await
}

async fn upgrade_request(env: &Env, rest: &str) -> TcpStream {
    let req = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
        env.path(rest),
        env.token
    );
    send_raw(env.daemon.port(), req.as_bytes()).await
}

/// Reads a response head byte by byte (so nothing after it is consumed).
async fn head_of(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut b)).await.expect("no response head").unwrap();
        assert_eq!(n, 1, "closed before a response head: {:?}", String::from_utf8_lossy(&head));
        head.push(b[0]);
    }
    String::from_utf8(head).unwrap()
}

/// Past `--max-tunnels`, upgrades get a 503 with Retry-After and never reach
/// the engine; a closed session frees its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_cap_refuses_with_503_and_frees_slots() {
    bounded(async {
        let env = Env::start_with(Daemon::builder().arg("--max-tunnels").arg("2")).await;
        let mut open = Vec::new();
        for i in 0..2 {
            let mut s = upgrade_request(&env, &format!("/exec/cap{i}/start")).await;
            let head = head_of(&mut s).await;
            assert!(head.starts_with("HTTP/1.1 101"), "{head}");
            open.push(s);
        }
        env.mock.clear_requests();
        let mut s = upgrade_request(&env, "/exec/cap2/start").await;
        let head = head_of(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 503"), "{head}");
        assert!(head.to_ascii_lowercase().contains("\r\nretry-after: 1\r\n"), "{head}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(env.mock.requests().is_empty(), "a refused upgrade reached the engine");
        // Ordinary requests are not capped.
        assert_eq!(env.get("/_ping").send().await.unwrap().status(), StatusCode::OK);

        drop(open.pop());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut s = upgrade_request(&env, "/exec/cap3/start").await;
            let head = head_of(&mut s).await;
            if head.starts_with("HTTP/1.1 101") {
                break;
            }
            assert!(Instant::now() < deadline, "the closed session's slot was never freed: {head}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// An upgrade the engine never answers, abandoned by its client: the
/// reserved tunnel slot and the engine connection are released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_upgrade_to_a_hung_engine_is_released() {
    bounded(async {
        let env = Env::start_with(Daemon::builder().arg("--max-tunnels").arg("1")).await;
        let base = Baseline::take(&env).await;
        env.mock.set_fail(FailMode::Hang).await;
        let s = upgrade_request(&env, "/containers/hung/attach?stream=1").await;
        env.wait_logged("/containers/hung/attach").await;
        let during = env.mock.connections_open();
        drop(s);
        let deadline = Instant::now() + Duration::from_secs(10);
        while env.mock.connections_open() >= during {
            assert!(Instant::now() < deadline, "the engine connection of an abandoned upgrade stays open");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        env.mock.set_fail(FailMode::None).await;
        let mut s = upgrade_request(&env, "/containers/next/attach?stream=1").await;
        let head = head_of(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 101"), "the abandoned upgrade still holds the only slot: {head}");
        drop(s);
        base.assert_settled(&env, &[&env.mock]).await;
    })
    .await
}

/// The engine dies under an open hijacked session: the client's tunnel ends
/// (EOF or reset), and the gauge and descriptors come back down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_dying_under_a_hijacked_session_closes_the_tunnel() {
    bounded(async {
        let env = Env::start().await;
        let base = Baseline::take(&env).await;
        let mut s = upgrade_request(&env, "/containers/c/attach?stream=1&stdin=1").await;
        let head = head_of(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        s.write_all(b"ping").await.unwrap();
        let mut b = [0u8; 4];
        s.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"ping");
        env.mock.set_fail(FailMode::Refuse).await;
        let rest = read_all(s).await;
        assert!(rest.is_empty(), "nothing more after the engine died: {rest:?}");
        env.mock.set_fail(FailMode::None).await;
        base.assert_settled(&env, &[&env.mock]).await;
    })
    .await
}
