//! The daemon as an operator meets it: flags and configuration, HTTPS,
//! connection and request limits, the durable store, logs, metrics and
//! graceful shutdown. Every test runs the real `berth` binary.

// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_testkit::harness::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// bcrypt cost for tests not about bcrypt.
const FAST: [&str; 2] = ["--bcrypt-cost", "4"];

async fn fast_daemon() -> Daemon {
    Daemon::builder().args(FAST).start().await
}

/// What a run of the binary that is expected to exit by itself produced.
struct Exit {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `berth args...` to completion (killed after 20 s), with no
/// inherited `BERTH_*` variables.
fn run_berth<I, S>(args: I, envs: &[(&str, &str)]) -> Exit
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("BERTH_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(envs.iter().copied());
    let mut child = cmd.spawn().expect("spawn berth");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("collect output");
    Exit {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn loopback_args(data: &Path) -> Vec<String> {
    let (http, https) = free_ports();
    vec![
        "--bind".into(),
        format!("127.0.0.1:{http}"),
        "--bind-https".into(),
        format!("127.0.0.1:{https}"),
        "--data".into(),
        data.display().to_string(),
        "--bcrypt-cost".into(),
        "4".into(),
    ]
}

/// Writes `request` on a fresh connection while reading whatever comes
/// back until the server closes (or `limit` passes). Writing runs beside
/// reading so that an answer sent before the request is fully written is
/// still seen.
async fn raw_exchange(addr: SocketAddr, request: Vec<u8>, limit: Duration) -> String {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&request).await;
        wr
    });
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(limit, rd.read_to_end(&mut buf)).await;
    writer.abort();
    String::from_utf8_lossy(&buf).into_owned()
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

/// A JSON body of exactly `size` bytes for admin init whose password is too
/// short: 400 once read, 413 if refused for size. Nothing is stored.
fn padded_init_body(size: usize) -> Vec<u8> {
    let base = json!({"Username": "admin", "Password": "x", "Pad": ""}).to_string();
    assert!(size >= base.len());
    let body = json!({"Username": "admin", "Password": "x", "Pad": "p".repeat(size - base.len())}).to_string();
    assert_eq!(body.len(), size);
    body.into_bytes()
}

async fn init_with_body_of(d: &Daemon, size: usize) -> StatusCode {
    let r = d
        .http()
        .post(d.url("/api/users/admin/init"))
        .header("content-type", "application/json")
        .body(padded_init_body(size))
        .send()
        .await
        .expect("POST admin/init");
    let (s, v) = read_json(r).await;
    assert!(s == StatusCode::BAD_REQUEST || s == StatusCode::PAYLOAD_TOO_LARGE, "{size} bytes: {s} {v}");
    s
}

// ------------------------------------------------------------ CLI and config

#[test]
fn help_lists_every_portainer_flag() {
    let out = run_berth(["--help"], &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    for flag in [
        "--bind ",
        "--bind-https",
        "--data",
        "--sslcert",
        "--sslkey",
        "--admin-password-file",
        "--log-level",
        "--log-format",
        "--config",
        "--header-read-timeout",
        "--max-connections",
        "--metrics-bind",
        "--metrics-auth",
        "--trusted-proxies",
        "--admin-init-window",
        "--setup-token",
    ] {
        assert!(out.stdout.contains(flag), "--help does not mention {flag}:\n{}", out.stdout);
    }
    let v = run_berth(["--version"], &[]);
    assert_eq!(v.code, Some(0));
    assert!(v.stdout.contains(env!("CARGO_PKG_VERSION")), "{}", v.stdout);
}

#[tokio::test]
async fn config_precedence_is_defaults_file_env_flags() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("berth.toml");
    // The file's bind is overridden by the harness's --bind flag: the daemon
    // being reachable at all proves flags beat the file.
    std::fs::write(&cfg, "[server]\nbind = \"127.0.0.1:1\"\nmax_json_body = 2000\n[auth]\nbcrypt_cost = 4\n").unwrap();

    // Default: 1 MiB.
    let d = fast_daemon().await;
    assert_eq!(init_with_body_of(&d, 4500).await, StatusCode::BAD_REQUEST);
    drop(d);

    // File.
    let d = Daemon::builder().arg("--config").arg(&cfg).start().await;
    assert_eq!(init_with_body_of(&d, 1900).await, StatusCode::BAD_REQUEST);
    assert_eq!(init_with_body_of(&d, 2001).await, StatusCode::PAYLOAD_TOO_LARGE);
    drop(d);

    // Environment beats the file.
    let d = Daemon::builder().arg("--config").arg(&cfg).env("BERTH_MAX_JSON_BODY", "3000").start().await;
    assert_eq!(init_with_body_of(&d, 2500).await, StatusCode::BAD_REQUEST);
    assert_eq!(init_with_body_of(&d, 3001).await, StatusCode::PAYLOAD_TOO_LARGE);
    drop(d);

    // A flag beats both.
    let d = Daemon::builder()
        .arg("--config")
        .arg(&cfg)
        .env("BERTH_MAX_JSON_BODY", "3000")
        .args(["--max-json-body", "4000"])
        .start()
        .await;
    assert_eq!(init_with_body_of(&d, 3500).await, StatusCode::BAD_REQUEST);
    assert_eq!(init_with_body_of(&d, 4001).await, StatusCode::PAYLOAD_TOO_LARGE);
    drop(d);

    // The config file itself may come from the environment.
    let d = Daemon::builder().env("BERTH_CONFIG", &cfg).start().await;
    assert_eq!(init_with_body_of(&d, 2001).await, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn bind_address_can_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let (port, _) = free_ports();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["--bind-https", "off", "--bcrypt-cost", "4", "--data"])
        .arg(dir.path())
        .env("BERTH_BIND", &addr)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = http_client();
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut ok = false;
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("http://{addr}/api/status")).send().await {
            ok = r.status() == StatusCode::OK;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(ok, "no answer on BERTH_BIND={addr}");
}

#[test]
fn bad_configuration_reports_every_problem_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[server]\nbind = \"nope\"\nmax_headers = 0\ndrain_timeout = \"forever\"\n\
         [auth]\nbcrypt_cost = 99\nadmin_init_window = \"soon\"\n[log]\nformat = \"xml\"\n",
    )
    .unwrap();
    let mut args = vec!["--config".to_owned(), cfg.display().to_string(), "--data".into(), data.display().to_string()];
    args.extend(["--header-read-timeout".into(), "whenever".into(), "--max-connections".into(), "0".into()]);
    // Values of the wrong type, by flag and by environment, are reported
    // with the rest rather than one at a time.
    args.extend(["--workers".into(), "none".into(), "--metrics-auth".into(), "maybe".into()]);
    let out = run_berth(&args, &[("BERTH_TRUSTED_PROXIES", "not-an-ip"), ("BERTH_MAX_JSON_BODY", "big")]);
    assert_eq!(out.code, Some(64), "{}", out.stderr);
    for field in [
        "bind:",
        "max_headers:",
        "drain_timeout:",
        "bcrypt_cost:",
        "admin_init_window:",
        "log_format:",
        "header_read_timeout:",
        "max_connections:",
        "trusted_proxies:",
        "workers:",
        "metrics_auth:",
        "max_json_body:",
    ] {
        assert!(out.stderr.contains(field), "the error report does not name {field}:\n{}", out.stderr);
    }
    assert!(!data.join("berth.redb").exists(), "a refused configuration created a store");

    // A typo in a key is an error, not a silent default.
    std::fs::write(&cfg, "[server]\nmax_conections = 5\n").unwrap();
    let out = run_berth([OsStr::new("--config"), cfg.as_os_str()], &[]);
    assert_eq!(out.code, Some(64), "{}", out.stderr);
    assert!(out.stderr.contains("max_conections"), "{}", out.stderr);

    // So is a missing file.
    let out = run_berth([OsStr::new("--config"), dir.path().join("absent.toml").as_os_str()], &[]);
    assert_eq!(out.code, Some(64), "{}", out.stderr);
    assert!(out.stderr.contains("absent.toml"), "{}", out.stderr);
}

// ------------------------------------------------------------ HTTPS

mod tls {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use rustls::pki_types::{CertificateDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    pub struct Answer {
        pub certs: Vec<CertificateDer<'static>>,
        pub alpn: Option<Vec<u8>>,
        pub version: Option<rustls::ProtocolVersion>,
        pub response: String,
    }

    /// One HTTP/1.1 request over TLS, offering `alpn`.
    pub async fn request(addr: SocketAddr, raw: &str, alpn: &[&[u8]]) -> std::io::Result<Answer> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(berth::connector::accept_any_server_cert())
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let name = ServerName::try_from("localhost").expect("server name");
        let mut s = connector.connect(name, tcp).await?;
        let (_, conn) = s.get_ref();
        let certs = conn.peer_certificates().unwrap_or_default().iter().map(|c| c.clone().into_owned()).collect();
        let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
        let version = conn.protocol_version();
        s.write_all(raw.as_bytes()).await?;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut buf)).await;
        Ok(Answer { certs, alpn, version, response: String::from_utf8_lossy(&buf).into_owned() })
    }
}

const STATUS_OVER_TLS: &str = "GET /api/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

fn pem_certs(path: &Path) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_file_iter(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .collect::<Result<_, _>>()
        .expect("PEM certificates")
}

#[tokio::test]
async fn https_uses_a_self_signed_certificate_generated_into_data_certs() {
    let mut d = fast_daemon().await;
    let cert = d.data_dir().join("certs/cert.pem");
    let key = d.data_dir().join("certs/key.pem");
    assert!(cert.is_file() && key.is_file(), "no certificate generated into <data>/certs");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "key.pem mode {mode:o}");

    let a = tls::request(d.https_addr(), STATUS_OVER_TLS, &[b"http/1.1"]).await.expect("TLS request");
    assert!(a.response.starts_with("HTTP/1.1 200"), "{}", a.response);
    let body: Value = serde_json::from_str(a.response.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["Version"], "2.23.0");
    assert_eq!(a.certs.first(), pem_certs(&cert).first(), "the served certificate is not <data>/certs/cert.pem");
    assert!(
        matches!(a.version, Some(rustls::ProtocolVersion::TLSv1_2 | rustls::ProtocolVersion::TLSv1_3)),
        "{:?}",
        a.version
    );
    assert_eq!(a.alpn.as_deref(), Some(&b"http/1.1"[..]));
    // No HTTP/2, as in Portainer: a client asking only for h2 does not get it.
    if let Ok(a) = tls::request(d.https_addr(), STATUS_OVER_TLS, &[b"h2"]).await {
        assert_ne!(a.alpn.as_deref(), Some(&b"h2"[..]));
    }
    // The same API is served: a login over HTTPS.
    d.init_admin().await;
    let body = json!({"Username": ADMIN_USER, "Password": ADMIN_PASSWORD}).to_string();
    let raw = format!(
        "POST /api/auth HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let a = tls::request(d.https_addr(), &raw, &[]).await.expect("TLS login");
    assert!(a.response.starts_with("HTTP/1.1 200") && a.response.contains("\"jwt\""), "{}", a.response);

    // The certificate is kept across restarts.
    let before = std::fs::read(&cert).unwrap();
    d.restart().await;
    assert_eq!(std::fs::read(&cert).unwrap(), before, "the certificate was regenerated");
    let a = tls::request(d.https_addr(), STATUS_OVER_TLS, &[]).await.expect("TLS after restart");
    assert_eq!(a.certs.first(), pem_certs(&cert).first());
}

#[tokio::test]
async fn https_uses_the_given_sslcert_and_sslkey() {
    let files = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["berth.test".to_owned()]).unwrap();
    let cert = files.path().join("my-cert.pem");
    let key = files.path().join("my-key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let d = Daemon::builder().args(FAST).arg("--sslcert").arg(&cert).arg("--sslkey").arg(&key).start().await;
    let a = tls::request(d.https_addr(), STATUS_OVER_TLS, &[]).await.expect("TLS request");
    assert!(a.response.starts_with("HTTP/1.1 200"), "{}", a.response);
    assert_eq!(a.certs.first().map(|c| c.as_ref()), Some(ck.cert.der().as_ref()), "not the given certificate");
    assert!(!d.data_dir().join("certs").exists(), "a certificate was generated although one was given");

    // Only one of the pair is a configuration error.
    let data = files.path().join("data");
    let mut args = loopback_args(&data);
    args.extend(["--sslcert".into(), cert.display().to_string()]);
    let out = run_berth(&args, &[]);
    assert_eq!(out.code, Some(64), "{}", out.stderr);
    assert!(out.stderr.contains("sslkey"), "{}", out.stderr);
}

// ------------------------------------------------------------ limits

#[tokio::test]
async fn header_count_and_size_limits_answer_431() {
    let d = fast_daemon().await;
    let request = |extra: usize, value_len: usize| {
        let mut r = String::from("GET /api/status HTTP/1.1\r\nHost: berth\r\n");
        for i in 0..extra {
            r.push_str(&format!("X-Extra-{i}: {}\r\n", "v".repeat(value_len)));
        }
        r.push_str("Connection: close\r\n\r\n");
        r.into_bytes()
    };
    let t = Duration::from_secs(10);
    // 100 headers in all (Host, Connection and 98 more) pass; 101 do not.
    let a = raw_exchange(d.addr(), request(98, 1), t).await;
    assert!(status_line(&a).starts_with("HTTP/1.1 200"), "100 headers: {a}");
    let a = raw_exchange(d.addr(), request(99, 1), t).await;
    assert!(status_line(&a).starts_with("HTTP/1.1 431"), "101 headers: {a}");
    let a = raw_exchange(d.addr(), request(150, 1), t).await;
    assert!(status_line(&a).starts_with("HTTP/1.1 431"), "152 headers: {a}");
    // 60 KiB of headers pass; more than 64 KiB do not.
    let a = raw_exchange(d.addr(), request(6, 10_000), t).await;
    assert!(status_line(&a).starts_with("HTTP/1.1 200"), "60 KB of headers: {}", status_line(&a));
    let a = raw_exchange(d.addr(), request(7, 10_000), t).await;
    assert!(status_line(&a).starts_with("HTTP/1.1 431"), "70 KB of headers: {}", status_line(&a));
    let a = raw_exchange(d.addr(), request(1, 200_000), t).await;
    assert!(status_line(&a).starts_with("HTTP/1.1 431"), "one 200 KB header: {}", status_line(&a));
    // Still serving.
    assert_eq!(d.get_json("/api/status", None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn json_bodies_over_one_mib_are_refused_with_413() {
    let d = fast_daemon().await;
    assert_eq!(init_with_body_of(&d, 1024 * 1024).await, StatusCode::BAD_REQUEST, "exactly 1 MiB is allowed");
    assert_eq!(init_with_body_of(&d, 1024 * 1024 + 1).await, StatusCode::PAYLOAD_TOO_LARGE);
    // Nothing was stored and the daemon serves on.
    assert_eq!(d.get_json("/api/users/admin/check", None).await.0, StatusCode::NOT_FOUND);
    d.admin_token().await;
}

#[tokio::test]
async fn slow_header_clients_are_cut_off_while_others_are_served() {
    let d = Daemon::builder().args(FAST).args(["--header-read-timeout", "1s"]).start().await;
    let started = Instant::now();
    // One client stops half-way through its headers, another dribbles a
    // byte every 200 ms and would never finish.
    let mut stalled = TcpStream::connect(d.addr()).await.unwrap();
    stalled.write_all(b"GET /api/status HTTP/1.1\r\nHost: berth\r\nX-Slow: ").await.unwrap();
    let addr = d.addr();
    let dribbler = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let start = Instant::now();
        for b in
            b"GET /api/status HTTP/1.1\r\nHost: berth\r\nX-Dribble: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter()
        {
            if s.write_all(&[*b]).await.is_err() {
                return start.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            if start.elapsed() > Duration::from_secs(8) {
                break;
            }
        }
        // Writes may keep succeeding into the buffer after the close:
        // finish by reading, which sees the close.
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf)).await;
        start.elapsed()
    });

    // Meanwhile the daemon answers everyone else.
    for _ in 0..5 {
        let r = http_client().get(d.url("/api/status")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(6), stalled.read_to_end(&mut buf)).await;
    let elapsed = started.elapsed();
    assert!(read.is_ok(), "a stalled client was still connected after {elapsed:?}");
    assert!(elapsed >= Duration::from_millis(800), "cut off too early: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "cut off too late: {elapsed:?}");
    let answer = String::from_utf8_lossy(&buf);
    assert!(!answer.contains(" 200 "), "a half-sent request was answered: {answer}");

    let dribbled = dribbler.await.unwrap();
    assert!(dribbled < Duration::from_secs(5), "a dribbling client kept its connection for {dribbled:?}");
    assert_eq!(d.get_json("/api/status", None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn max_connections_caps_open_connections_and_queues_the_rest() {
    let d = Daemon::builder().args(FAST).args(["--max-connections", "2", "--header-read-timeout", "1s"]).start().await;
    // Let the harness's idle keep-alive connection time out so that only
    // this test's connections count.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Two clients hold connections open mid-body (no header timeout applies).
    let body = json!({"Username": "admin", "Password": ADMIN_PASSWORD}).to_string();
    let head = format!(
        "POST /api/users/admin/init HTTP/1.1\r\nHost: berth\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(d.addr()).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&body.as_bytes()[..5]).await.unwrap();
        holders.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A third connection is queued, not served.
    let mut third = TcpStream::connect(d.addr()).await.unwrap();
    third.write_all(b"GET /api/status HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 512];
    let early = tokio::time::timeout(Duration::from_millis(1500), third.read(&mut buf)).await;
    assert!(early.is_err(), "a third connection was served beyond --max-connections 2");

    // One holder leaves: the queued connection is served.
    drop(holders.remove(0));
    let mut answer = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut answer)).await;
    assert!(r.is_ok(), "the queued connection was never served\n{}", d.logs());
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // The remaining holder finishes its request normally.
    let mut s = holders.remove(0);
    s.write_all(&body.as_bytes()[5..]).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut answer)).await.unwrap().unwrap();
    assert!(
        String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
}

// ------------------------------------------------------------ store

#[tokio::test]
async fn users_sessions_keys_and_logouts_survive_restarts_and_crashes() {
    let mut d = fast_daemon().await;
    let admin = d.admin_token().await;
    let (s, bob) = d
        .post_json("/api/users", Some(&admin), &json!({"Username": "bob", "Password": "bobpassword12", "Role": 2}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let bob_id = bob["Id"].as_u64().unwrap();
    let bob_jwt = d.login("bob", "bobpassword12").await;
    let logged_out = d.login("bob", "bobpassword12").await;
    let (s, k) = d
        .post_json(
            &format!("/api/users/{bob_id}/tokens"),
            Some(&bob_jwt),
            &json!({"password": "bobpassword12", "description": "k"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{k}");
    let key = k["rawAPIKey"].as_str().unwrap().to_owned();
    let (s, _) = d.post_json("/api/auth/logout", Some(&logged_out), &json!({})).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, t) = d.post_json("/api/teams", Some(&admin), &json!({"Name": "devs", "TeamLeaders": [bob_id]})).await;
    assert_eq!(s, StatusCode::OK, "{t}");

    let secret = d.data_dir().join("jwt.secret");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777, 0o600, "jwt.secret mode");
    assert!(std::fs::metadata(&secret).unwrap().len() >= 32);
    let secret_before = std::fs::read(&secret).unwrap();

    for how in ["graceful restart", "SIGKILL"] {
        if how == "SIGKILL" {
            d.kill();
            d.relaunch().await;
        } else {
            d.restart().await;
        }
        assert_eq!(std::fs::read(&secret).unwrap(), secret_before, "{how}: the signing secret changed");
        let (s, me) = d.get_json("/api/users/me", Some(&bob_jwt)).await;
        assert_eq!((s, me["Username"].as_str()), (StatusCode::OK, Some("bob")), "{how}: session lost");
        assert_eq!(d.get_json("/api/settings", Some(&admin)).await.0, StatusCode::OK, "{how}: admin session lost");
        let (s, v) = d.get_json("/api/users/me", Some(&logged_out)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{how}: a logged-out token came back: {v}");
        let r = d.http().get(d.url("/api/users/me")).header("X-API-Key", &key).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{how}: API key lost");
        let (_, users) = d.get_json("/api/users", Some(&admin)).await;
        assert_eq!(users.as_array().unwrap().len(), 2, "{how}: {users}");
        let (_, teams) = d.get_json("/api/teams", Some(&admin)).await;
        assert_eq!(teams, json!([{"Id": t["Id"], "Name": "devs"}]), "{how}");
        let (_, ms) = d.get_json("/api/team_memberships", Some(&admin)).await;
        assert_eq!(ms.as_array().unwrap().len(), 1, "{how}: {ms}");
        assert_eq!(d.get_json("/api/users/admin/check", None).await.0, StatusCode::NO_CONTENT);
        d.login("bob", "bobpassword12").await;
    }
}

#[tokio::test]
async fn a_second_daemon_on_the_same_data_directory_is_refused() {
    let d = fast_daemon().await;
    d.init_admin().await;
    let out = run_berth(loopback_args(d.data_dir()), &[]);
    assert!(out.code.is_some_and(|c| c != 0), "a second daemon started: {:?}\n{}", out.code, out.stderr);
    assert!(out.stderr.contains("another Berth process"), "unclear message:\n{}", out.stderr);
    assert!(
        out.stderr.contains(&d.data_dir().display().to_string()),
        "the message does not name the directory:\n{}",
        out.stderr
    );
    // The first one is unharmed.
    d.login(ADMIN_USER, ADMIN_PASSWORD).await;
}

#[tokio::test]
async fn a_corrupt_store_is_refused_and_left_untouched() {
    // A store that has been used, then damaged.
    let mut d = fast_daemon().await;
    d.init_admin().await;
    let data = d.data_dir().to_owned();
    d.stop_graceful().await;
    let store = data.join("berth.redb");
    let garbage: Vec<u8> = (0..64 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&store, &garbage).unwrap();
    let out = run_berth(loopback_args(&data), &[]);
    assert!(out.code.is_some_and(|c| c != 0), "started on a corrupt store: {}", out.stderr);
    assert!(out.stderr.contains("corrupt"), "unclear message:\n{}", out.stderr);
    assert!(out.stderr.contains("berth.redb"), "the message does not name the file:\n{}", out.stderr);
    assert_eq!(std::fs::read(&store).unwrap(), garbage, "the corrupt store was modified");

    // A short garbage file in a fresh directory too.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("berth.redb"), b"this is not a database").unwrap();
    let out = run_berth(loopback_args(dir.path()), &[]);
    assert!(out.code.is_some_and(|c| c != 0), "started on a garbage store: {}", out.stderr);
    assert_eq!(std::fs::read(dir.path().join("berth.redb")).unwrap(), b"this is not a database");
}

#[tokio::test]
async fn ids_are_monotonic_and_never_reused() {
    let mut d = fast_daemon().await;
    let admin = d.admin_token().await;
    let create = |name: &'static str| {
        let d = &d;
        let admin = admin.clone();
        async move {
            let (s, v) = d
                .post_json(
                    "/api/users",
                    Some(&admin),
                    &json!({"Username": name, "Password": "password-1234", "Role": 2}),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{v}");
            v["Id"].as_u64().unwrap()
        }
    };
    let a = create("a").await;
    assert_eq!(d.delete(&format!("/api/users/{a}"), Some(&admin)).await.0, StatusCode::NO_CONTENT);
    let b = create("b").await;
    assert!(b > a, "id {a} reused as {b}");
    assert_eq!(d.delete(&format!("/api/users/{b}"), Some(&admin)).await.0, StatusCode::NO_CONTENT);
    // A failed creation does not consume... or reuse: either way ids only grow.
    let (s, _) = d
        .post_json("/api/users", Some(&admin), &json!({"Username": "admin", "Password": "password-1234", "Role": 2}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    d.restart().await;
    let admin = d.login(ADMIN_USER, ADMIN_PASSWORD).await;
    let (s, v) = d
        .post_json("/api/users", Some(&admin), &json!({"Username": "c", "Password": "password-1234", "Role": 2}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let c = v["Id"].as_u64().unwrap();
    assert!(c > b, "after a restart id {b} was reused as {c}");

    // Teams and memberships too.
    let (_, t1) = d.post_json("/api/teams", Some(&admin), &json!({"Name": "t1"})).await;
    let t1 = t1["Id"].as_u64().unwrap();
    assert_eq!(d.delete(&format!("/api/teams/{t1}"), Some(&admin)).await.0, StatusCode::NO_CONTENT);
    let (_, t2) = d.post_json("/api/teams", Some(&admin), &json!({"Name": "t1"})).await;
    let t2 = t2["Id"].as_u64().unwrap();
    assert!(t2 > t1, "team id {t1} reused as {t2}");
    let (_, m1) =
        d.post_json("/api/team_memberships", Some(&admin), &json!({"UserID": c, "TeamID": t2, "Role": 2})).await;
    let m1 = m1["Id"].as_u64().unwrap();
    assert_eq!(d.delete(&format!("/api/team_memberships/{m1}"), Some(&admin)).await.0, StatusCode::NO_CONTENT);
    let (_, m2) =
        d.post_json("/api/team_memberships", Some(&admin), &json!({"UserID": c, "TeamID": t2, "Role": 2})).await;
    assert!(m2["Id"].as_u64().unwrap() > m1, "membership id reused: {m2}");
}

// ------------------------------------------------------------ logs

/// The daemon's log lines without terminal colour codes.
fn plain_logs(d: &Daemon) -> String {
    let raw = d.logs();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test]
async fn every_request_gets_exactly_one_access_log_line() {
    let d = fast_daemon().await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let paths: Vec<String> = vec![
        format!("/api/probe-{tag}-0"),
        format!("/api/probe-{tag}-1"),
        format!("/probe-{tag}-2"),
        format!("/api/endpoints/{tag}/docker/_ping"),
    ];
    for p in &paths {
        let _ = d.get_json(p, None).await;
    }
    let r = d.http().post(d.url(&format!("/api/probe-{tag}-3"))).body("x").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = plain_logs(&d);
    for p in paths.iter().chain(std::iter::once(&format!("/api/probe-{tag}-3"))) {
        let lines: Vec<&str> = logs.lines().filter(|l| l.contains(p.as_str())).collect();
        assert_eq!(lines.len(), 1, "{p}: {lines:#?}");
        assert!(lines[0].contains("berth::access"), "{}", lines[0]);
        assert!(lines[0].contains("status="), "{}", lines[0]);
    }
    let line = logs.lines().find(|l| l.contains(&format!("/api/probe-{tag}-0"))).unwrap();
    assert!(line.contains("method=GET") && line.contains("status=404"), "{line}");
}

#[tokio::test]
async fn json_log_format_writes_json_lines() {
    let d = Daemon::builder().args(FAST).args(["--log-format", "json"]).start().await;
    let token = d.admin_token().await;
    let (s, v) = d.get_json("/api/users/me", Some(&token)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let status_body_len = d.http().get(d.url("/api/status")).send().await.unwrap().bytes().await.unwrap().len();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stderr = d.stderr_log();
    let mut access = Vec::new();
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{line}");
        if v["target"] == "berth::access" {
            access.push(v);
        }
    }
    let me = access.iter().find(|v| v["path"] == "/api/users/me").expect("access line for /api/users/me");
    assert_eq!(me["method"], "GET");
    assert_eq!(me["status"], 200);
    assert_eq!(me["user"], 1);
    assert!(me["duration_us"].is_u64(), "{me}");
    assert_eq!(me["client"], "127.0.0.1");
    let status = access.iter().rev().find(|v| v["path"] == "/api/status").expect("access line for /api/status");
    assert_eq!(status["bytes"].as_u64(), Some(status_body_len as u64), "{status}");
    assert!(access.iter().any(|v| v["path"] == "/api/auth" && v["status"] == 200), "no login line");
}

#[tokio::test]
async fn secrets_never_reach_the_logs() {
    // Debug level: even the chattiest configuration keeps secrets out.
    let d = Daemon::builder().args(FAST).log_level("debug").args(["--setup-token", "setup-token-e8f1c2"]).start().await;
    let init = d
        .http()
        .post(d.url("/api/users/admin/init"))
        .header("X-Berth-Setup-Token", "setup-token-e8f1c2")
        .json(&json!({"Username": "admin", "Password": "admin-secret-pw-4711"}))
        .send()
        .await
        .unwrap();
    assert_eq!(init.status(), StatusCode::OK);
    let admin = d.login("admin", "admin-secret-pw-4711").await;
    let (s, _) =
        d.put_json("/api/settings", Some(&admin), &json!({"LoginRateLimit": {"Burst": 1000, "PerSecond": 100}})).await;
    assert_eq!(s, StatusCode::OK);
    let (s, bob) = d
        .post_json("/api/users", Some(&admin), &json!({"Username": "bob", "Password": "bob-secret-pw-0815", "Role": 2}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let bob_id = bob["Id"].as_u64().unwrap();
    for wrong in ["wrong-secret-pw-1234", "another-wrong-pw-5678"] {
        let (s, _) = d.post_json("/api/auth", None, &json!({"Username": "bob", "Password": wrong})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let (s, _) =
        d.post_json("/api/auth", None, &json!({"Username": "nobody-here", "Password": "ghost-secret-pw-99"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let bob_jwt = d.login("bob", "bob-secret-pw-0815").await;
    let (s, k) = d
        .post_json(
            &format!("/api/users/{bob_id}/tokens"),
            Some(&bob_jwt),
            &json!({"password": "bob-secret-pw-0815", "description": "d"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let key = k["rawAPIKey"].as_str().unwrap().to_owned();
    let r = d.http().get(d.url("/api/users/me")).header("X-API-Key", &key).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = d
        .http()
        .get(d.url("/api/users/me"))
        .header("Cookie", format!("portainer_api_key={bob_jwt}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (s, _) = d.get_json(&format!("/api/users/me?token={bob_jwt}"), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let r = d.http().get(d.url("/api/users/me")).header("X-API-Key", format!("{key}x")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (s, _) = d.get_json("/api/users/me", Some(&format!("{bob_jwt}x"))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = d
        .put_json(
            &format!("/api/users/{bob_id}/passwd"),
            Some(&bob_jwt),
            &json!({"Password": "bob-secret-pw-0815", "NewPassword": "bob-newer-secret-42"}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = d.post_json("/api/auth/logout", Some(&admin), &json!({})).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let logs = d.logs();
    assert!(logs.contains("berth::access"), "no access log at all: the check below would be vacuous");
    let signature = |jwt: &str| jwt.rsplit('.').next().unwrap().to_owned();
    let key_body = key.trim_start_matches("ptr_").to_owned();
    for secret in [
        "admin-secret-pw-4711".to_owned(),
        "bob-secret-pw-0815".to_owned(),
        "bob-newer-secret-42".to_owned(),
        "wrong-secret-pw-1234".to_owned(),
        "another-wrong-pw-5678".to_owned(),
        "ghost-secret-pw-99".to_owned(),
        "setup-token-e8f1c2".to_owned(),
        admin.clone(),
        bob_jwt.clone(),
        signature(&admin),
        signature(&bob_jwt),
        key.clone(),
        key_body[..20].to_owned(),
    ] {
        assert!(!logs.contains(&secret), "a secret reached the logs: {secret}");
    }
    // No bcrypt hash either.
    assert!(!logs.contains("$2b$") && !logs.contains("$2y$"), "a password hash reached the logs");
}

// ------------------------------------------------------------ metrics

fn metric_value(text: &str, prefix: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

async fn scrape(client: &reqwest::Client, url: String, token: Option<&str>) -> (StatusCode, String, String) {
    let mut rb = client.get(url);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let r = rb.send().await.expect("GET /metrics");
    let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (r.status(), ct, r.text().await.unwrap())
}

#[tokio::test]
async fn metrics_are_public_prometheus_text_with_route_templates() {
    let d = fast_daemon().await;
    let admin = d.admin_token().await;
    let (s, bob) = d
        .post_json("/api/users", Some(&admin), &json!({"Username": "bob", "Password": "bobpassword12", "Role": 2}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let bob_id = bob["Id"].as_u64().unwrap();
    for _ in 0..3 {
        assert_eq!(d.get_json(&format!("/api/users/{bob_id}"), Some(&admin)).await.0, StatusCode::OK);
    }
    assert_eq!(d.get_json("/api/users/1", Some(&admin)).await.0, StatusCode::OK);
    assert_eq!(d.get_json("/api/users", None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(d.get_json("/api/users", Some("garbage")).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(d.get_json(&format!("/api/users/me?token={admin}"), None).await.0, StatusCode::UNAUTHORIZED);
    let (s, _) = d.post_json("/api/auth", None, &json!({"Username": "bob", "Password": "wrong-password"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(d.get_json("/api/users/987654321/memberships", Some(&admin)).await.0, StatusCode::OK);
    assert_eq!(d.get_json("/api/no-such-route-123456", None).await.0, StatusCode::NOT_FOUND);
    // Exhaust the login limiter for one rejection.
    let (s, _) =
        d.put_json("/api/settings", Some(&admin), &json!({"LoginRateLimit": {"Burst": 1, "PerSecond": 0.001}})).await;
    assert_eq!(s, StatusCode::OK);
    let mut limited = false;
    for _ in 0..3 {
        let (s, _) = d.post_json("/api/auth", None, &json!({"Username": "bob", "Password": "bobpassword12"})).await;
        limited |= s == StatusCode::TOO_MANY_REQUESTS;
    }
    assert!(limited);

    let (s, ct, text) = scrape(d.http(), d.url("/metrics"), Some(&admin)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(ct.starts_with("text/plain") && ct.contains("version=0.0.4"), "{ct}");
    let user_route =
        format!("berth_http_requests_total{{method=\"GET\",route=\"/api/users/{{id}}\",status=\"200\"}} {}", 3 + 1);
    assert!(text.lines().any(|l| l == user_route), "no {user_route} in:\n{text}");
    assert!(text.contains("route=\"/api/users/{id}/memberships\""), "{text}");
    assert!(text.contains("route=\"unmatched\""), "{text}");
    for raw in [format!("/api/users/{bob_id}\""), "/api/users/987654321".into(), "no-such-route-123456".into()] {
        assert!(!text.contains(&raw), "a raw path {raw} is a label:\n{text}");
    }
    assert!(!text.contains(&admin), "a token in the metrics");
    assert!(
        text.contains("berth_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/users/{id}\""),
        "{text}"
    );
    for reason in ["missing", "invalid_jwt", "query_token", "bad_credentials"] {
        let prefix = format!("berth_auth_failures_total{{reason=\"{reason}\"}}");
        assert!(metric_value(&text, &prefix).is_some_and(|v| v >= 1.0), "no {prefix}:\n{text}");
    }
    assert!(
        metric_value(&text, "berth_rate_limited_total{route=\"/api/auth\"}").is_some_and(|v| v >= 1.0),
        "no rate-limit counter:\n{text}"
    );
    assert!(text.contains("berth_store_write_duration_seconds_bucket{le="), "{text}");
    assert!(metric_value(&text, "berth_store_write_duration_seconds_count").is_some_and(|v| v >= 3.0), "{text}");
    assert!(metric_value(&text, "process_resident_memory_bytes").is_some_and(|v| v > 0.0), "{text}");
    assert!(text.contains("# TYPE berth_http_requests_total counter"), "{text}");
}

#[tokio::test]
async fn metrics_auth_requires_an_admin_and_metrics_bind_serves_only_metrics() {
    let (metrics_port, _) = free_ports();
    let d = Daemon::builder()
        .args(FAST)
        .args(["--metrics-auth", "true", "--metrics-bind", &format!("127.0.0.1:{metrics_port}")])
        .start()
        .await;
    let admin = d.admin_token().await;
    let (s, bob) = d
        .post_json("/api/users", Some(&admin), &json!({"Username": "bob", "Password": "bobpassword12", "Role": 2}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let bob_jwt = d.login("bob", "bobpassword12").await;
    let _ = bob;

    let (s, _, body) = scrape(d.http(), d.url("/metrics"), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["message"], "A valid authorization token is missing");
    let (s, _, body) = scrape(d.http(), d.url("/metrics"), Some(&bob_jwt)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    let (s, _, body) = scrape(d.http(), d.url("/metrics"), Some(&admin)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.contains("berth_http_requests_total"), "{body}");

    // The separate listener: /metrics without credentials, nothing else.
    let m = |p: &str| format!("http://127.0.0.1:{metrics_port}{p}");
    let (s, ct, body) = scrape(d.http(), m("/metrics"), None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(ct.starts_with("text/plain"), "{ct}");
    assert!(body.contains("berth_http_requests_total"), "{body}");
    for path in ["/api/status", "/api/users/admin/check", "/", "/metrics/x"] {
        let r = d.http().get(m(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path} on the metrics listener");
    }
    let r = d
        .http()
        .post(m("/api/auth"))
        .json(&json!({"Username": "admin", "Password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

// ------------------------------------------------------------ shutdown

#[tokio::test]
async fn sigterm_lets_the_request_in_flight_finish_and_exits_0() {
    let mut d = Daemon::builder().args(FAST).args(["--drain-timeout", "5s"]).start().await;
    let addr = d.addr();
    // A request that is in flight when SIGTERM arrives: its body is not all sent yet.
    let body = json!({"Username": "admin", "Password": ADMIN_PASSWORD}).to_string();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "POST /api/users/admin/init HTTP/1.1\r\nHost: berth\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    s.write_all(&body.as_bytes()[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let client_side = async move {
        // Once the signal is handled, new connections are refused...
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut refused = false;
        while Instant::now() < deadline {
            if TcpStream::connect(addr).await.is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // ...while the request in flight completes.
        s.write_all(&body.as_bytes()[10..]).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
        (refused, String::from_utf8_lossy(&answer).into_owned())
    };
    let started = Instant::now();
    let (status, (refused, answer)) = tokio::join!(d.stop_graceful_within(Duration::from_secs(10)), client_side);
    assert!(refused, "new connections were still accepted after SIGTERM");
    assert!(answer.starts_with("HTTP/1.1 200"), "the in-flight request did not complete: {answer:?}");
    assert!(answer.contains("\"Username\":\"admin\""), "{answer}");
    assert!(status.success(), "exit status {status}");
    assert!(started.elapsed() < Duration::from_secs(6), "shutdown took {:?}", started.elapsed());

    // The request completed durably.
    d.relaunch().await;
    assert_eq!(d.get_json("/api/users/admin/check", None).await.0, StatusCode::NO_CONTENT);
    d.login(ADMIN_USER, ADMIN_PASSWORD).await;
}

#[tokio::test]
async fn sigterm_with_idle_connections_exits_0_promptly() {
    let mut d = fast_daemon().await;
    // An idle keep-alive connection and a connection that never sent anything.
    assert_eq!(d.get_json("/api/status", None).await.0, StatusCode::OK);
    let _silent = TcpStream::connect(d.addr()).await.unwrap();
    let started = Instant::now();
    let status = d.stop_graceful_within(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status}");
    assert!(started.elapsed() < Duration::from_secs(3), "idle connections held shutdown for {:?}", started.elapsed());
}

/// Sockets listening on `port` (IPv4 loopback), from /proc/net/tcp.
fn listening_sockets(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| l.split_whitespace().nth(1) == Some(&local) && l.split_whitespace().nth(3) == Some("0A"))
        .count()
}

/// Keep-alive clients on many connections, each answered: a shard whose
/// socket is in the port's group but that does not accept would leave the
/// connections the kernel gives it hanging.
async fn every_connection_is_served(d: &Daemon) {
    let mut clients = Vec::new();
    for i in 0..48 {
        let url = d.url(&format!("/api/status?c={i}"));
        clients.push(tokio::spawn(async move {
            let c = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
            for _ in 0..5 {
                let r = tokio::time::timeout(Duration::from_secs(10), c.get(&url).send()).await;
                assert_eq!(r.expect("a connection was never served").unwrap().status(), StatusCode::OK);
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
}

#[tokio::test]
async fn per_core_runtimes_each_accept_on_the_port_and_drain() {
    let mut d = Daemon::builder().args(FAST).args(["--workers", "3"]).start().await;
    assert_eq!(listening_sockets(d.port()), 3, "one socket per runtime in the port's group");
    assert!(d.logs().contains("shards=3"), "{}", d.logs());
    every_connection_is_served(&d).await;
    // A request in flight on any shard finishes during the drain.
    let token = d.admin_token().await;
    let (s, _) = d.get_json("/api/users/me", Some(&token)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(d.stop_graceful().await.success());
    assert_eq!(listening_sockets(d.port()), 0);

    let d = Daemon::builder().args(FAST).args(["--workers", "3", "--scheduler", "work-stealing"]).start().await;
    assert_eq!(listening_sockets(d.port()), 1, "one socket shared by the work-stealing runtime");
    every_connection_is_served(&d).await;
}

#[test]
fn an_unknown_scheduler_is_a_usage_error() {
    let out = Command::new(berth_bin()).args(["--scheduler", "fast"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("scheduler: must be \"per-core\" or \"work-stealing\""), "{err}");
}
