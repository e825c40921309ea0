//! Helpers shared by the endpoint test binaries (`api_endpoints.rs`,
//! `endpoints_tls.rs`): form posts, HTTPie runs, TCP and mutual-TLS relays
//! in front of a unix-socket Docker engine (real or mock), and a throwaway
//! PKI.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::net::{TcpListener, UnixStream};

use crate::harness::{read_json, Daemon};

/// `POST /api/endpoints` as multipart: text fields and file parts.
pub async fn create_multipart(
    d: &Daemon,
    token: &str,
    fields: &[(&str, &str)],
    files: &[(&str, Vec<u8>)],
) -> (StatusCode, Value) {
    let mut form = reqwest::multipart::Form::new();
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    for (k, bytes) in files {
        let part = reqwest::multipart::Part::bytes(bytes.clone()).file_name(format!("{k}.pem"));
        form = form.part(k.to_string(), part);
    }
    let resp = d
        .request(Method::POST, "/api/endpoints", Some(token))
        .multipart(form)
        .send()
        .await
        .expect("POST /api/endpoints");
    read_json(resp).await
}

/// Registers `tcp://127.0.0.1:{port}` with mutual TLS (the PKI's CA and
/// client files uploaded, as Portainer's UI does) and returns its id.
///
/// # Panics
/// Unless the daemon answers 200.
pub async fn create_tls_endpoint(d: &Daemon, token: &str, name: &str, port: u16, pki: &Pki) -> u64 {
    let url = format!("tcp://127.0.0.1:{port}");
    let (s, v) = create_multipart(
        d,
        token,
        &[("Name", name), ("URL", &url), ("EndpointCreationType", "1"), ("TLS", "true")],
        &[
            ("TLSCACertFile", pki.ca_pem.clone().into_bytes()),
            ("TLSCertFile", pki.client_cert_pem.clone().into_bytes()),
            ("TLSKeyFile", pki.client_key_pem.clone().into_bytes()),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "TLS endpoint {name}: {v}");
    v["Id"].as_u64().expect("an endpoint id")
}

/// A daemon with its admin and one endpoint on a fresh mock engine (on a
/// unix socket in the daemon's scratch directory, so both go together):
/// the mock, the daemon, the admin's token, the endpoint id.
pub async fn with_mock_engine() -> (crate::MockDocker, Daemon, String, u64) {
    let env = MockEnv::start(&[]).await;
    (env.mock, env.daemon, env.token, env.id)
}

/// A daemon started with `args`, its admin's token, and a mock engine
/// registered as endpoint `id` (its recorded requests cleared): what the
/// proxy's test binaries start from.
pub struct MockEnv {
    pub daemon: Daemon,
    pub token: String,
    pub mock: crate::MockDocker,
    pub id: u64,
}

impl MockEnv {
    pub async fn start(args: &[&str]) -> MockEnv {
        let daemon = Daemon::builder().args(args).start().await;
        let sock = daemon.scratch_dir().join("docker.sock");
        let mock = crate::MockDocker::start_unix(sock).await.expect("start the mock engine");
        let token = daemon.admin_token().await;
        let id = daemon.create_endpoint(&token, "mock-engine", &mock.unix_url().expect("a unix mock")).await;
        mock.clear_requests();
        MockEnv { daemon, token, mock, id }
    }

    /// `rest` (a Docker API path) under this endpoint's proxy prefix.
    pub fn path(&self, rest: &str) -> String {
        format!("/api/endpoints/{}/docker{rest}", self.id)
    }
}

/// Runs `f`, failing the test if it takes longer than `limit`: a hang is a
/// failure, not a stuck run.
/// `struct $name(MockEnv)` that derefs to [`MockEnv`], for a test binary
/// that adds helpers of its own (`impl $name { ... }`) to the shared set-up.
#[macro_export]
macro_rules! mock_env_newtype {
    ($name:ident) => {
        struct $name($crate::endpoints::MockEnv);

        impl std::ops::Deref for $name {
            type Target = $crate::endpoints::MockEnv;
            fn deref(&self) -> &$crate::endpoints::MockEnv {
                &self.0
            }
        }

        impl std::ops::DerefMut for $name {
            fn deref_mut(&mut self) -> &mut $crate::endpoints::MockEnv {
                &mut self.0
            }
        }
    };
}

pub async fn bounded<F: std::future::Future>(limit: Duration, f: F) -> F::Output {
    tokio::time::timeout(limit, f).await.expect("test timed out")
}

/// A daemon with its admin and one endpoint on the local engine
/// ([`crate::harness::DOCKER_SOCKET`]): the daemon, the admin's token, the
/// endpoint id. Call [`crate::harness::require_docker`] first.
pub async fn with_local_engine() -> (Daemon, String, u64) {
    let d = Daemon::start().await;
    let admin = d.admin_token().await;
    let eid = d.create_endpoint(&admin, "local", &format!("unix://{}", crate::harness::DOCKER_SOCKET)).await;
    (d, admin, eid)
}

/// `POST /api/endpoints` as `application/x-www-form-urlencoded`.
pub async fn create_urlencoded(d: &Daemon, token: &str, fields: &[(&str, &str)]) -> (StatusCode, Value) {
    let body = serde_urlencoded::to_string(fields).unwrap();
    let resp = d
        .request(Method::POST, "/api/endpoints", Some(token))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("POST /api/endpoints");
    read_json(resp).await
}

/// Runs `http --ignore-stdin --print=b --check-status <args>` and returns
/// the exit code and parsed JSON body. `--ignore-stdin` is needed only
/// because tests have no terminal; the arguments are the seeds' own.
pub async fn httpie(args: Vec<String>) -> (i32, Value) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new("http")
            .arg("--ignore-stdin")
            .arg("--print=b")
            .arg("--check-status")
            .arg("--timeout=60")
            .args(&args)
            .env("HTTPIE_CONFIG_DIR", std::env::temp_dir().join("berth-tests-httpie"))
            .stdin(Stdio::null())
            .output()
            .expect("run http");
        let body = String::from_utf8_lossy(&out.stdout).into_owned();
        let v = serde_json::from_str(&body).unwrap_or_else(|_| {
            panic!("http {args:?}: not JSON: {body}\n--- stderr ---\n{}", String::from_utf8_lossy(&out.stderr))
        });
        (out.status.code().unwrap_or(-1), v)
    })
    .await
    .unwrap()
}

/// Relays 127.0.0.1:PORT to the unix socket `target`, as `socat` would:
/// the way a test exposes an engine "over TCP". Returns the port and the
/// number of connections accepted so far.
pub async fn tcp_relay(target: PathBuf) -> (u16, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut unix) = UnixStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                }
            });
        }
    });
    (port, accepted)
}

/// A TLS relay on 127.0.0.1 in front of the unix socket `target` that
/// insists on a client certificate issued by `pki`'s CA (Docker's
/// `--tlsverify`). Returns the port and the count of completed handshakes.
pub async fn tls_relay(target: PathBuf, pki: &Pki) -> (u16, Arc<AtomicU64>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config(true));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = Arc::new(AtomicU64::new(0));
    let count = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, target, count) = (acceptor.clone(), target.clone(), count.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                count.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut unix) = UnixStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut unix).await;
                }
            });
        }
    });
    (port, handshakes)
}

pub use crate::pki::Pki;

/// Polls `f` every 100 ms until it returns `Some`, for up to `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The canonical data directory, as the daemon reports TLS paths.
pub fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap()
}

/// `GET /api/endpoints/{id}` and its `Status`.
pub async fn status_of(d: &Daemon, token: &str, id: u64) -> u64 {
    let (s, v) = d.get_json(&format!("/api/endpoints/{id}"), Some(token)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["Status"].as_u64().unwrap()
}

/// Runs `http --ignore-stdin --print=hb --timeout=60 <args>` and returns the
/// response's status code and its body as text. Unlike [`httpie`], the body
/// may be empty or not JSON (`204 No Content` from a container start).
pub async fn httpie_response(args: Vec<String>) -> (u16, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new("http")
            .arg("--ignore-stdin")
            .arg("--print=hb")
            .arg("--timeout=60")
            .args(&args)
            .env("HTTPIE_CONFIG_DIR", std::env::temp_dir().join("berth-tests-httpie"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .expect("run http");
        let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
        let status =
            text.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or_else(
                || {
                    panic!(
                        "http {args:?}: no status line in {text:?}\n--- stderr ---\n{}",
                        String::from_utf8_lossy(&out.stderr)
                    )
                },
            );
        let body = text.split_once("\n\n").map(|(_, b)| b.trim().to_owned()).unwrap_or_default();
        (status, body)
    })
    .await
    .unwrap()
}
