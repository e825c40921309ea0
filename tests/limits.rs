//! Limits and timeouts against the running daemon (issue 19, items 5, 8
//! and 9): stalled request bodies, clients that stop reading, engines that
//! never answer or cannot be reached, connection caps per client address,
//! protocol violations, the store's lock and modes, and a second signal
//! during the drain. Every wait is bounded; faults stay on loopback.

// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::large_futures)]

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_testkit::endpoints::MockEnv;
use berth_testkit::harness::*;
use berth_testkit::FailMode;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const LIMIT: Duration = Duration::from_secs(120);

fn bounded<F: std::future::Future>(f: F) -> impl std::future::Future<Output = F::Output> {
    berth_testkit::endpoints::bounded(LIMIT, f)
}

// The shared set-up ([`MockEnv`]) with this binary's helpers.
berth_testkit::mock_env_newtype!(Env);

impl Env {
    async fn start(args: &[&str]) -> Env {
        Env(MockEnv::start(args).await)
    }

    fn get(&self, rest: &str) -> reqwest::RequestBuilder {
        unpooled().get(self.daemon.url(&self.path(rest))).bearer_auth(&self.token)
    }

    async fn metrics(&self) -> String {
        let resp = unpooled().get(self.daemon.url("/metrics")).bearer_auth(&self.token).send().await.unwrap();
        resp.text().await.unwrap()
    }

    /// The value of the first series of `/metrics` whose line starts with
    /// `prefix` and contains every one of `labels`.
    async fn metric(&self, prefix: &str, labels: &[&str]) -> Option<f64> {
        let text = self.metrics().await;
        text.lines()
            .filter(|l| l.starts_with(prefix) && labels.iter().all(|x| l.contains(x)))
            .find_map(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// Waits until the mock has at most `n` connections open.
    async fn mock_connections_at_most(&self, n: u64, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.mock.connections_open() > n {
            assert!(Instant::now() < deadline, "{what}: the engine connection stays open");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// No idle connections kept, so the daemon's counts are not the test's.
fn unpooled() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(PathBuf::from(format!("/proc/{pid}/fd"))).map(|d| d.count()).unwrap_or(0)
}

async fn connect_from(local: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(local, 0))?;
    s.connect(to).await
}

async fn send_raw(port: u16, request: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(request).await.unwrap();
    s
}

/// Reads until the server closes (bounded); a reset counts as a close.
async fn read_to_close(s: &mut TcpStream, within: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!("still open after {within:?}; got {:?}", String::from_utf8_lossy(&out)),
        }
    }
}

/// Status and JSON body of a complete raw response.
fn parse(raw: &[u8]) -> (u16, String, Value) {
    let text = String::from_utf8_lossy(raw).into_owned();
    let end = text.find("\r\n\r\n").unwrap_or_else(|| panic!("no response head in {text:?}"));
    let status = text[9..12].parse().unwrap_or_else(|_| panic!("bad status line in {text:?}"));
    let body = serde_json::from_str(&text[end + 4..]).unwrap_or(Value::Null);
    (status, text[..end].to_ascii_lowercase(), body)
}

// ============================================================ item 5

/// `Content-Length: 1000`, then ten bytes, then one byte every 1.5 s (or
/// nothing): cut at the body read timeout with a 408 in Portainer's shape,
/// and the connection closes. Once an admin exists, the admin-init route
/// answers 409 without waiting for a body it no longer needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_api_body_is_a_408_and_admin_init_answers_before_its_body() {
    bounded(async {
        let daemon = Daemon::builder().args(["--body-read-timeout", "700ms"]).start().await;
        daemon.init_admin().await;
        for drip in [false, true] {
            let head = "POST /api/auth HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"Username\"";
            let mut s = send_raw(daemon.port(), head.as_bytes()).await;
            if drip {
                for _ in 0..3 {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    if s.write_all(b" ").await.is_err() {
                        break;
                    }
                }
            }
            let raw = read_to_close(&mut s, Duration::from_secs(20)).await;
            let (status, head, body) = parse(&raw);
            assert_eq!(status, 408, "drip={drip}: {head} {body}");
            assert!(head.contains("connection: close"), "{head}");
            assert!(body["message"].is_string() && body["details"].is_string(), "{body}");
        }

        // The daemon still serves.
        let (s, _) = daemon.get_json("/api/status", None).await;
        assert_eq!(s, StatusCode::OK);

        // Admin init with an announced body that never comes: 409, not 408.
        let head = "POST /api/users/admin/init HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n";
        let mut s = send_raw(daemon.port(), head.as_bytes()).await;
        let raw = read_to_close(&mut s, Duration::from_secs(20)).await;
        let (status, head, body) = parse(&raw);
        assert_eq!(status, 409, "{head} {body}");
    })
    .await
}

/// A proxied upload that stalls before the engine answers gets a 408 and
/// the engine connection is closed; one that stalls after the engine's
/// answer has begun ends that answer (the connection closes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_proxied_upload_is_cut_and_the_engine_connection_released() {
    bounded(async {
        let env = Env::start(&["--body-read-timeout", "700ms"]).await;
        let _ = env.get("/_ping").send().await.unwrap().bytes().await;
        let idle = env.mock.connections_open();

        let head = format!(
            "POST {} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/x-tar\r\nContent-Length: 1048576\r\n\r\n",
            env.path("/mock/upload"),
            env.token
        );
        let mut s = send_raw(env.daemon.port(), head.as_bytes()).await;
        s.write_all(&vec![0x5a; 64 * 1024]).await.unwrap();
        let raw = read_to_close(&mut s, Duration::from_secs(20)).await;
        let (status, head, body) = parse(&raw);
        assert_eq!(status, 408, "{head} {body}");
        assert!(body["message"].is_string(), "{body}");
        env.mock_connections_at_most(idle, "stalled upload").await;

        // The engine answers at once and echoes the body as it comes (an
        // attach without Upgrade): the stall can only end the stream.
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 1000\r\n\r\nhello",
            env.path("/containers/c1/attach?stream=1&stdin=1"),
            env.token
        );
        let mut s = send_raw(env.daemon.port(), head.as_bytes()).await;
        let raw = read_to_close(&mut s, Duration::from_secs(20)).await;
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        env.mock_connections_at_most(idle, "stalled stream").await;
    })
    .await
}

/// One client address opening many connections keeps only its cap; the
/// others are answered 429 and closed at once, and another address still
/// gets `/api/status` although the global cap is small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_address_cap_keeps_the_daemon_answering_others() {
    bounded(async {
        let daemon = Daemon::builder()
            .args(["--max-connections", "6", "--max-connections-per-ip", "3", "--metrics-auth", "false"])
            .start()
            .await;
        let addr = daemon.addr();
        // Not 127.0.0.1: the harness's own client may hold a connection.
        let greedy: IpAddr = "127.0.0.3".parse().unwrap();
        let mut held = Vec::new();
        let mut refused = 0;
        for _ in 0..10 {
            let mut s = connect_from(greedy, addr).await.unwrap();
            // A slow client: half a request head.
            let _ = s.write_all(b"GET /api/status HTTP/1.1\r\nHost: x\r\n").await;
            let mut b = [0u8; 512];
            match tokio::time::timeout(Duration::from_millis(300), s.read(&mut b)).await {
                Err(_) => held.push(s),
                Ok(Ok(n)) if n > 0 => {
                    let text = String::from_utf8_lossy(&b[..n]);
                    assert!(text.starts_with("HTTP/1.1 429"), "{text}");
                    refused += 1;
                }
                Ok(_) => refused += 1,
            }
        }
        assert_eq!(held.len(), 3, "the cap per address holds");
        assert_eq!(refused, 7);
        let other = reqwest::Client::builder()
            .no_proxy()
            .local_address("127.0.0.2".parse::<IpAddr>().unwrap())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let resp = other.get(daemon.url("/api/status")).send().await.expect("another address is served");
        assert_eq!(resp.status(), StatusCode::OK);
        let (s, v) = daemon.get_json("/metrics", None).await;
        assert_eq!(s, StatusCode::OK);
        let text = v.as_str().unwrap_or_default().to_owned();
        assert!(text.contains("berth_connections_refused_total{limit=\"per_ip\"} 7"), "{text}");
        drop(held);
    })
    .await
}

// ============================================================ item 9

/// RFC 9112 §3.2 and RFC 9110 §9.1: JSON refusals before any routing, and
/// nothing reaches Docker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_violations_are_refused_with_json() {
    bounded(async {
        let env = Env::start(&[]).await;
        let auth = format!("Authorization: Bearer {}\r\n", env.token);
        let ping = env.path("/_ping");
        let cases = [
            ("GET /api/status HTTP/1.1\r\n\r\n".to_string(), 400),
            ("GET /api/status HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n".to_string(), 400),
            (format!("GET {ping} HTTP/1.1\r\nHost: a\r\nHost: b\r\n{auth}\r\n"), 400),
            (format!("GET {ping} HTTP/1.1\r\n{auth}\r\n"), 400),
            ("GET /api/status HTTP/1.1\r\nHost: a b\r\n\r\n".to_string(), 400),
            ("CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n".to_string(), 405),
            (format!("TRACE {ping} HTTP/1.1\r\nHost: x\r\n{auth}\r\n"), 405),
            (format!("PROPFIND {ping} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"), 501),
            ("BREW /api/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string(), 501),
        ];
        for (req, want) in cases {
            let mut s = send_raw(env.daemon.port(), req.as_bytes()).await;
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            // One response; it carries Content-Length, so stop at its end.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let n = tokio::time::timeout_at(deadline, s.read(&mut buf)).await.expect("no answer").unwrap_or(0);
                raw.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
                let complete = text.find("\r\n\r\n").is_some_and(|end| {
                    let len = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: ")?.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    raw.len() >= end + 4 + len
                });
                if n == 0 || complete {
                    break;
                }
            }
            let (status, head, body) = parse(&raw);
            assert_eq!(status, want, "{req:?}: {head} {body}");
            assert!(body["message"].is_string(), "{req:?}: JSON body expected: {head} {body}");
            if want == 405 {
                assert!(head.contains("\r\nallow: "), "{head}");
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(env.mock.requests().is_empty(), "nothing may reach Docker: {:?}", env.mock.requests());
    })
    .await
}

/// A chunked JSON body past `--max-json-body` is cut at the cap as it
/// streams: the daemon answers 413 and closes long before the client could
/// push the tens of megabytes it means to send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_is_cut_at_its_cap_as_it_streams() {
    bounded(async {
        let daemon = Daemon::builder().args(["--max-json-body", "65536"]).start().await;
        let s = TcpSocket::new_v4().unwrap();
        // Small buffers on our side, so what the client manages to write is
        // close to what the daemon read.
        s.set_send_buffer_size(64 * 1024).unwrap();
        s.set_recv_buffer_size(64 * 1024).unwrap();
        let s = s.connect(daemon.addr()).await.unwrap();
        let (mut rd, mut wr) = s.into_split();
        let head = "POST /api/auth HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        wr.write_all(head.as_bytes()).await.unwrap();
        let writer = tokio::spawn(async move {
            let chunk = format!("{:x}\r\n{}\r\n", 16 * 1024, " ".repeat(16 * 1024));
            let mut sent = 0usize;
            // Up to 64 MB; stops at the first failed write.
            while sent < 64 << 20 {
                if wr.write_all(chunk.as_bytes()).await.is_err() {
                    break;
                }
                sent += 16 * 1024;
            }
            sent
        });
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(30), rd.read_to_end(&mut raw)).await;
        let sent = tokio::time::timeout(Duration::from_secs(30), writer).await.expect("writer stops").unwrap();
        let (status, _, body) = parse(&raw);
        assert_eq!(status, 413, "{body}");
        // The old code read 16 MiB past the cap before answering.
        assert!(sent < 12 << 20, "the client pushed {sent} bytes before the cut");
    })
    .await
}

/// The client reads the head of a 1 GiB download and then nothing: at the
/// send timeout its connection is closed, and with it the engine's; the
/// daemon's descriptors and gauges go back while the client still holds
/// its socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_not_reading_a_download_is_cut_at_the_send_timeout() {
    bounded(async {
        let env = Env::start(&["--send-timeout", "1s"]).await;
        let _ = env.get("/_ping").send().await.unwrap().bytes().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let pid = env.daemon.pid().unwrap();
        let fds = fd_count(pid);
        let idle = env.mock.connections_open();
        let open = env.metric("berth_connections_open", &[]).await.unwrap();

        let s = TcpSocket::new_v4().unwrap();
        s.set_recv_buffer_size(64 * 1024).unwrap();
        let mut s = s.connect(env.daemon.addr()).await.unwrap();
        let rest = format!("/mock/stream?bytes={}&chunk=65536", 1u64 << 30);
        let req = format!("GET {} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n", env.path(&rest), env.token);
        s.write_all(req.as_bytes()).await.unwrap();
        let mut b = [0u8; 64];
        let n = s.read(&mut b).await.unwrap();
        assert!(String::from_utf8_lossy(&b[..n]).starts_with("HTTP/1.1 200"));
        // The download took the pooled engine connection, or a new one.
        let during = env.mock.connections_open();
        assert!(during >= 1 && during >= idle);
        env.mock_connections_at_most(during - 1, "client that stopped reading").await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let now_open = env.metric("berth_connections_open", &[]).await.unwrap();
            if now_open <= open && fd_count(pid) <= fds {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "connections {now_open} (was {open}), fds {} (was {fds})",
                fd_count(pid)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(s);
    })
    .await
}

/// An engine that reads the request and never answers: 504 at the
/// response-header timeout. A stream whose head comes at once, an upgrade,
/// and an upload slower than the timeout are not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_engine_is_a_504_and_streams_are_unaffected() {
    bounded(async {
        let env = Env::start(&["--response-header-timeout", "1s"]).await;
        env.mock.set_fail(FailMode::Hang).await;
        let (s, v) = read_json(env.get("/containers/json").send().await.unwrap()).await;
        assert_eq!(s, StatusCode::GATEWAY_TIMEOUT, "{v}");
        assert!(v["message"].as_str().unwrap_or_default().contains("mock-engine"), "{v}");
        let failures = env.metric("berth_upstream_connect_failures_total{", &["kind=\"response_timeout\""]).await;
        assert_eq!(failures, Some(1.0));
        env.mock.set_fail(FailMode::None).await;

        // logs -f / events: the head at once, the body over 2.4 s.
        let resp = env.get("/mock/stream?bytes=4000&chunk=1000&interval_ms=800").send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.bytes().await.unwrap().len(), 4000);

        // attach: idle for longer than the timeout, then used.
        let req = format!(
            "POST {} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
            env.path("/containers/c/attach?stream=1&stdin=1"),
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
        tokio::time::sleep(Duration::from_millis(1500)).await;
        s.write_all(b"ping").await.unwrap();
        let mut echo = [0u8; 4];
        s.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"ping");
        drop(s);

        // An upload spread over 2.5 s: the engine answers after the body.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
        let feeder = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                tx.send(Ok(vec![7u8; 1000])).await.unwrap();
            }
        });
        let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
        let resp = unpooled()
            .post(env.daemon.url(&env.path("/mock/upload")))
            .bearer_auth(&env.token)
            .body(body)
            .send()
            .await
            .unwrap();
        let (s, v) = read_json(resp).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["bytes"], 5000, "{v}");
        feeder.await.unwrap();
    })
    .await
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The engine goes down: after two failed connects the breaker opens and
/// answers 503 without dialling, even once the engine is back; after the
/// cooldown one trial goes through and the endpoint works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_breaker_fails_fast_and_recovers() {
    bounded(async {
        let env = Env::start(&["--breaker-failures", "2", "--breaker-cooldown", "4s"]).await;
        let state = format!("endpoint=\"{}\"", env.id);
        assert_eq!(env.metric("berth_upstream_breaker_state{", &[&state]).await, Some(0.0));
        env.mock.set_fail(FailMode::Refuse).await;
        // Two refused dials (a pooled connection the engine just closed may
        // cost one more 502 first), then the breaker answers.
        let mut failures = 0;
        loop {
            let resp = env.get("/containers/json").send().await.unwrap();
            if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
                break;
            }
            let (s, v) = read_json(resp).await;
            assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
            failures += 1;
            assert!(failures <= 3, "the breaker never opened");
        }
        assert!(failures >= 2, "opened after {failures} failures");
        env.mock.set_fail(FailMode::None).await;
        env.mock.clear_requests();
        let resp = env.get("/containers/json").send().await.unwrap();
        assert_eq!(resp.headers().get("retry-after").map(|v| v.as_bytes()), Some(&b"5"[..]));
        let (s, v) = read_json(resp).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
        assert!(v["message"].as_str().unwrap_or_default().contains("mock-engine"), "{v}");
        assert!(env.mock.requests().is_empty(), "an open breaker does not dial");
        assert_eq!(env.metric("berth_upstream_breaker_state{", &[&state]).await, Some(1.0));
        let fast = env.metric("berth_upstream_connect_failures_total{", &[&state, "kind=\"circuit_open\""]).await;
        assert!(fast >= Some(2.0), "{fast:?}");

        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = env.get("/containers/json").send().await.unwrap().status();
            if s == StatusCode::OK {
                break;
            }
            assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
            assert!(Instant::now() < deadline, "the breaker never let a trial through");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(env.metric("berth_upstream_breaker_state{", &[&state]).await, Some(0.0));
        assert_eq!(env.get("/_ping").send().await.unwrap().status(), StatusCode::OK);
    })
    .await
}

// ============================================================ item 8

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// A data directory left 0755 with a 0644 store (an older version's) is
/// made 0700/0600 on start, and so are `certs/` and its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_and_certs_are_private() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut daemon = Daemon::builder().data_dir(&data).start().await;
        daemon.stop_graceful().await;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(data.join("berth.redb"), std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(data.join("certs"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(data.join("certs/key.pem"), std::fs::Permissions::from_mode(0o644)).unwrap();
        daemon.relaunch().await;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("berth.redb")), 0o600);
        assert_eq!(mode(&data.join("certs")), 0o700);
        assert_eq!(mode(&data.join("certs/key.pem")), 0o600);
    })
    .await
}

/// A second daemon on the same data directory waits for the store: it
/// starts once the first one exits, and gives up with a clear message when
/// the first one stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_store_is_waited_for() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut first = Daemon::builder().data_dir(&data).start().await;

        // The holder stays: a clear failure after the wait.
        let (http, https) = free_ports();
        let out = tokio::task::spawn_blocking({
            let data = data.clone();
            move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
                    .args(["--bind", &format!("127.0.0.1:{http}"), "--bind-https", &format!("127.0.0.1:{https}")])
                    .arg("--data")
                    .arg(&data)
                    .args(["--store-lock-timeout", "1s"])
                    .env_remove("BERTH_CONFIG")
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains("locked"), "{stderr}");
        assert!(stderr.contains("waiting"), "the wait is logged: {stderr}");

        // The holder exits after a second: the second start succeeds.
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            first.stop_graceful().await;
        });
        let second = Daemon::builder().data_dir(&data).start().await;
        stopper.await.unwrap();
        let (s, _) = second.get_json("/api/status", None).await;
        assert_eq!(s, StatusCode::OK);
        assert!(second.logs().contains("waiting"), "{}", second.logs());
    })
    .await
}

/// SIGTERM starts the drain, which waits for a request whose body is still
/// coming; a second SIGTERM ends the process at once, with 128 + 15.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_ends_the_drain() {
    bounded(async {
        let mut daemon = Daemon::builder().args(["--drain-timeout", "60s"]).start().await;
        daemon.init_admin().await;
        let head =
            "POST /api/auth HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{";
        let _slow = send_raw(daemon.port(), head.as_bytes()).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let pid = daemon.pid().unwrap().to_string();
        let ok = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success();
        assert!(ok);
        // The drain is under way and waits for the request.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !daemon.logs().contains("shutting down") {
            assert!(Instant::now() < deadline, "no drain: {}", daemon.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(daemon.is_running(), "the drain waits for the open request");
        let status = daemon.stop_graceful_within(Duration::from_secs(10)).await;
        assert_eq!(status.code(), Some(128 + 15), "{status}");
    })
    .await
}
