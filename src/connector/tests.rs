use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;

use super::*;
use berth_testkit::servers::{spawn_tcp, spawn_tls, spawn_unix};
use berth_testkit::Pki;

/// Every test is bounded: a hang is a failure, not a stuck CI job.
const LIMIT: Duration = Duration::from_secs(10);

fn settings() -> ConnectorSettings {
    ConnectorSettings {
        connect_timeout: Duration::from_secs(2),
        pool_idle_timeout: Duration::from_secs(30),
        pool_max_idle_per_host: 4,
        ..ConnectorSettings::default()
    }
}

fn plain() -> TlsOptions {
    TlsOptions::default()
}

async fn fake_docker(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let host = req.headers().get(http::header::HOST).map(|h| h.to_str().unwrap_or("").to_owned()).unwrap_or_default();
    let (status, body) = match req.uri().path() {
        "/_ping" => (StatusCode::OK, "OK".to_string()),
        "/version" => (StatusCode::OK, r#"{"ApiVersion":"1.41","Version":"fake"}"#.to_string()),
        "/host" => (StatusCode::OK, serde_json::json!({ "host": host }).to_string()),
        "/big" => (StatusCode::OK, format!("[{}]", vec!["1"; 10_000].join(","))),
        "/notjson" => (StatusCode::OK, "this is not json".to_string()),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, r#"{"message":"boom"}"#.to_string()),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

async fn wait_until(mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("condition not reached in time");
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.expect("test timed out")
}

#[tokio::test]
async fn unix_socket_ping_and_json() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("docker.sock");
        spawn_unix(&sock, fake_docker).await;
        let url = DockerUrl::parse(&format!("unix://{}", sock.display())).unwrap();
        let up = Upstream::new(&url, &plain(), &settings()).unwrap();

        up.ping(Duration::from_secs(2)).await.unwrap();
        let v = up.get_json("/version", Duration::from_secs(2)).await.unwrap();
        assert_eq!(v["ApiVersion"], "1.41");
        let v = up.get_json("/host", Duration::from_secs(2)).await.unwrap();
        assert_eq!(v["host"], "docker");
    })
    .await
}

#[tokio::test]
async fn tcp_ping_json_errors_and_connection_reuse() {
    bounded(async {
        let addr = spawn_tcp(fake_docker).await;
        let url = DockerUrl::parse(&format!("tcp://{addr}")).unwrap();
        let up = Upstream::new(&url, &plain(), &settings()).unwrap();

        up.ping(Duration::from_secs(2)).await.unwrap();
        wait_until(|| up.idle_connections() == 1).await;
        up.ping(Duration::from_secs(2)).await.unwrap();
        assert_eq!(up.open_connections(), 1, "the second ping reuses the pooled connection");

        let v = up.get_json("/host", Duration::from_secs(2)).await.unwrap();
        assert_eq!(v["host"], addr.to_string());

        let e = up.get_json("/nope", Duration::from_secs(2)).await.unwrap_err();
        assert!(matches!(e, UpstreamError::BadStatus(500)), "{e:?}");
        let e = up.get_json("/notjson", Duration::from_secs(2)).await.unwrap_err();
        assert!(matches!(e, UpstreamError::BadJson(_)), "{e:?}");
        let e = up.get_json_limited("/big", Duration::from_secs(2), 1000).await.unwrap_err();
        assert!(matches!(e, UpstreamError::TooLarge(1000)), "{e:?}");
        let v = up.get_json("/big", Duration::from_secs(2)).await.unwrap();
        assert_eq!(v.as_array().unwrap().len(), 10_000);
    })
    .await
}

#[tokio::test]
async fn ping_fails_on_non_2xx() {
    bounded(async {
        let addr = spawn_tcp(|_req: Request<Incoming>| async {
            let mut r = Response::new(Full::new(Bytes::from_static(b"down")));
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            r
        })
        .await;
        let up = Upstream::new(&DockerUrl::parse(&format!("tcp://{addr}")).unwrap(), &plain(), &settings()).unwrap();
        let e = up.ping(Duration::from_secs(2)).await.unwrap_err();
        assert!(matches!(e, UpstreamError::BadStatus(503)), "{e:?}");
    })
    .await
}

#[tokio::test]
async fn idle_connections_expire() {
    bounded(async {
        let addr = spawn_tcp(fake_docker).await;
        let s = ConnectorSettings { pool_idle_timeout: Duration::from_millis(200), ..settings() };
        let up = Upstream::new(&DockerUrl::parse(&format!("tcp://{addr}")).unwrap(), &plain(), &s).unwrap();
        up.ping(Duration::from_secs(2)).await.unwrap();
        wait_until(|| up.idle_connections() == 1).await;
        wait_until(|| up.idle_connections() == 0).await;
        // Dropping the pooled sender makes hyper close the connection.
        wait_until(|| up.open_connections() == 0).await;
    })
    .await
}

/// A health check's requests go one after the other on one connection,
/// which is closed at the end: an endpoint nobody uses keeps no connection
/// (a hyper task, its buffers and a descriptor) between checks.
#[tokio::test]
async fn a_series_uses_one_connection_and_leaves_none_open() {
    bounded(async {
        let addr = spawn_tcp(fake_docker).await;
        let up = Upstream::new(&DockerUrl::parse(&format!("tcp://{addr}")).unwrap(), &plain(), &settings()).unwrap();
        let mut conn = up.series();
        conn.ping(Duration::from_secs(2)).await.unwrap();
        for _ in 0..3 {
            let v = conn.get_json("/version", Duration::from_secs(2)).await.unwrap();
            assert_eq!(v["ApiVersion"], "1.41");
            let v = conn.get_json("/big", Duration::from_secs(2)).await.unwrap();
            assert_eq!(v.as_array().unwrap().len(), 10_000);
            assert_eq!(up.open_connections(), 1, "every request of the series on the same connection");
        }
        let e = conn.get_json("/nope", Duration::from_secs(2)).await.unwrap_err();
        assert!(matches!(e, UpstreamError::BadStatus(500)), "{e:?}");
        conn.finish();
        assert_eq!(up.idle_connections(), 0, "a dialled connection is not pooled");
        wait_until(|| up.open_connections() == 0).await;

        // An endpoint in use lends its pooled connection and gets it back.
        up.ping(Duration::from_secs(2)).await.unwrap();
        wait_until(|| up.idle_connections() == 1).await;
        let mut conn = up.series();
        conn.ping(Duration::from_secs(2)).await.unwrap();
        assert_eq!(up.idle_connections(), 0, "lent to the series");
        conn.get_json("/version", Duration::from_secs(2)).await.unwrap();
        conn.finish();
        wait_until(|| up.idle_connections() == 1).await;
        assert_eq!(up.open_connections(), 1);
    })
    .await
}

#[tokio::test]
async fn pooling_can_be_disabled() {
    bounded(async {
        let addr = spawn_tcp(fake_docker).await;
        let s = ConnectorSettings { pool_max_idle_per_host: 0, ..settings() };
        let up = Upstream::new(&DockerUrl::parse(&format!("tcp://{addr}")).unwrap(), &plain(), &s).unwrap();
        for _ in 0..3 {
            // The sender is dropped while the body is still in flight; the
            // body must still arrive whole.
            let v = up.get_json("/big", Duration::from_secs(2)).await.unwrap();
            assert_eq!(v.as_array().unwrap().len(), 10_000);
        }
        assert_eq!(up.idle_connections(), 0);
        wait_until(|| up.open_connections() == 0).await;
    })
    .await
}

#[tokio::test]
async fn refused_connections() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let up = Upstream::new(&DockerUrl::parse(&format!("tcp://{addr}")).unwrap(), &plain(), &settings()).unwrap();
        let e = up.ping(Duration::from_secs(2)).await.unwrap_err();
        assert!(matches!(e, UpstreamError::ConnectRefused(_)), "{e:?}");
        assert!(!e.is_timeout());
        assert!(e.to_string().contains(&addr.to_string()), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let url = DockerUrl::Unix(dir.path().join("missing.sock"));
        let up = Upstream::new(&url, &plain(), &settings()).unwrap();
        let e = up.ping(Duration::from_secs(2)).await.unwrap_err();
        assert!(matches!(e, UpstreamError::ConnectRefused(_)), "{e:?}");
    })
    .await
}

/// On loopback a TCP connect never times out (the kernel completes the
/// handshake even if nobody calls accept), so the black hole is a listener
/// that never answers the TLS ClientHello: the connect timeout covers the
/// TLS handshake.
#[tokio::test]
async fn tls_handshake_black_hole_is_a_connect_timeout() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let s = ConnectorSettings { connect_timeout: Duration::from_millis(300), ..settings() };
        let tls = TlsOptions { enabled: true, skip_verify: true, files: TlsFiles::default() };
        let up = Upstream::new(&DockerUrl::parse(&format!("tcp://{addr}")).unwrap(), &tls, &s).unwrap();
        let started = std::time::Instant::now();
        let e = up.ping(Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(e, UpstreamError::ConnectTimeout), "{e:?}");
        assert!(e.is_timeout());
        assert!(started.elapsed() < Duration::from_secs(3));
        drop(listener);
    })
    .await
}

#[tokio::test]
async fn silent_host_hits_the_total_timeout() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                conns.push(s);
            }
        });
        let up = Upstream::new(&DockerUrl::parse(&format!("tcp://{addr}")).unwrap(), &plain(), &settings()).unwrap();
        let e = up.ping(Duration::from_millis(300)).await.unwrap_err();
        assert!(matches!(e, UpstreamError::Timeout), "{e:?}");
        let e = up.get_json("/version", Duration::from_millis(300)).await.unwrap_err();
        assert!(matches!(e, UpstreamError::Timeout), "{e:?}");
        held.abort();
    })
    .await
}

fn files(ca: Option<&str>, cert: Option<&str>, key: Option<&str>) -> TlsFiles {
    TlsFiles {
        ca: ca.map(|s| s.as_bytes().to_vec()),
        cert: cert.map(|s| s.as_bytes().to_vec()),
        key: key.map(|s| s.as_bytes().to_vec()),
    }
}

#[tokio::test]
async fn mutual_tls() {
    bounded(async {
        let pki = Pki::new();
        let addr = spawn_tls(pki.server_config(true), fake_docker).await;
        let url = DockerUrl::parse(&format!("tcp://{addr}")).unwrap();

        let tls = TlsOptions {
            enabled: true,
            skip_verify: false,
            files: files(Some(&pki.ca_pem), Some(&pki.client_cert_pem), Some(&pki.client_key_pem)),
        };
        validate_tls_files(&tls.files, false, false).unwrap();
        let up = Upstream::new(&url, &tls, &settings()).unwrap();
        up.ping(Duration::from_secs(2)).await.unwrap();
        let v = up.get_json("/version", Duration::from_secs(2)).await.unwrap();
        assert_eq!(v["Version"], "fake");

        // Without a client certificate the server refuses us. With TLS 1.3
        // the client finishes its handshake first, so the refusal may only
        // surface when the request is written.
        let no_client = TlsOptions { files: files(Some(&pki.ca_pem), None, None), ..tls.clone() };
        let up = Upstream::new(&url, &no_client, &settings()).unwrap();
        let e = up.ping(Duration::from_secs(2)).await.unwrap_err();
        assert!(!e.is_timeout(), "{e:?}");

        // A server certificate from another CA is rejected during the handshake.
        let other = Pki::new();
        let wrong_ca = TlsOptions {
            files: files(Some(&other.ca_pem), Some(&pki.client_cert_pem), Some(&pki.client_key_pem)),
            ..tls.clone()
        };
        let up = Upstream::new(&url, &wrong_ca, &settings()).unwrap();
        let e = up.ping(Duration::from_secs(2)).await.unwrap_err();
        assert!(matches!(e, UpstreamError::Tls(_)), "{e:?}");
        assert!(e.to_string().contains("certificate"), "{e}");

        // skip_verify accepts the unknown server certificate but still
        // presents the client certificate.
        let skip = TlsOptions { skip_verify: true, ..wrong_ca };
        let up = Upstream::new(&url, &skip, &settings()).unwrap();
        up.ping(Duration::from_secs(2)).await.unwrap();
    })
    .await
}

#[tokio::test]
async fn tls_skip_verify_without_any_files() {
    bounded(async {
        let pki = Pki::new();
        let addr = spawn_tls(pki.server_config(false), fake_docker).await;
        let tls = TlsOptions { enabled: true, skip_verify: true, files: TlsFiles::default() };
        let up = Upstream::new(&DockerUrl::parse(&format!("tcp://{addr}")).unwrap(), &tls, &settings()).unwrap();
        up.ping(Duration::from_secs(2)).await.unwrap();

        // Verification on but no CA: refused up front rather than failing
        // every handshake later.
        let no_ca = TlsOptions { skip_verify: false, ..tls };
        let e = Upstream::new(&DockerUrl::parse(&format!("tcp://{addr}")).unwrap(), &no_ca, &settings()).unwrap_err();
        assert!(matches!(e, UpstreamError::Tls(_)), "{e:?}");
    })
    .await
}

#[tokio::test]
async fn real_docker_engine_over_unix() {
    let sock = PathBuf::from("/var/run/docker.sock");
    if !sock.exists() {
        eprintln!("skipped: /var/run/docker.sock does not exist");
        return;
    }
    let up = Upstream::new(&DockerUrl::Unix(sock), &plain(), &settings()).unwrap();
    match up.ping(Duration::from_secs(5)).await {
        Ok(()) => {}
        Err(UpstreamError::ConnectRefused(e)) => {
            eprintln!("skipped: cannot use /var/run/docker.sock: {e}");
            return;
        }
        Err(e) => panic!("docker ping failed: {e:?}"),
    }
    let v = up.get_json("/version", Duration::from_secs(5)).await.unwrap();
    assert!(v["ApiVersion"].is_string(), "{v}");
}

/// Per-core runtimes: each shard reuses the connections it dialled (their
/// tasks run on its thread) and never another shard's.
#[tokio::test]
async fn each_shard_reuses_its_own_connections() {
    bounded(async {
        let addr = spawn_tcp(fake_docker).await;
        let s = ConnectorSettings { pool_shards: 2, ..settings() };
        let up = Upstream::new(&DockerUrl::parse(&format!("tcp://{addr}")).unwrap(), &plain(), &s).unwrap();
        // A current-thread test runtime: the shard is this thread's.
        crate::runtime::enter_shard(0);
        up.ping(Duration::from_secs(2)).await.unwrap();
        wait_until(|| up.idle_connections() == 1).await;
        crate::runtime::enter_shard(1);
        up.ping(Duration::from_secs(2)).await.unwrap();
        wait_until(|| up.idle_connections() == 2).await;
        assert_eq!(up.open_connections(), 2, "shard 1 dialled its own instead of taking shard 0's");
        for shard in [0, 1, 0, 1] {
            crate::runtime::enter_shard(shard);
            up.ping(Duration::from_secs(2)).await.unwrap();
            wait_until(|| up.idle_connections() == 2).await;
        }
        assert_eq!(up.open_connections(), 2, "each shard reused its connection");
        crate::runtime::enter_shard(0);
    })
    .await
}

/// The proxy's path: a relayed body returns its connection when it is
/// dropped after its end (at once, from the drop, when the connection's
/// task shares the thread), an empty body too, and a body dropped half
/// way closes its connection instead (the host may still be writing).
#[tokio::test]
async fn a_relayed_body_returns_its_connection_at_its_end_and_only_then() {
    bounded(async {
        let addr = spawn_tcp(fake_docker).await;
        let up = Upstream::new(&DockerUrl::parse(&format!("tcp://{addr}")).unwrap(), &plain(), &settings()).unwrap();
        let get = |path: &str| {
            let mut req = Request::new(UpstreamBody::empty());
            *req.uri_mut() = path.parse().unwrap();
            req
        };

        let (resp, lease) = up.request_leased(get("/big")).await.unwrap();
        let mut body = lease.relay(resp.into_body());
        let mut read = 0;
        while let Some(frame) = body.frame().await {
            read += frame.unwrap().into_data().map_or(0, |d| d.len());
        }
        assert!(read > 10_000);
        assert_eq!(up.idle_connections(), 0, "not while the body is held");
        drop(body);
        assert_eq!(up.idle_connections(), 1, "back in the pool as the finished body is dropped");
        assert_eq!(up.open_connections(), 1);

        // The next request reuses it; dropped before its end, it is closed.
        let (resp, lease) = up.request_leased(get("/big")).await.unwrap();
        assert_eq!(up.idle_connections(), 0);
        let mut body = lease.relay(resp.into_body());
        body.frame().await.unwrap().unwrap();
        drop(body);
        wait_until(|| up.open_connections() == 0).await;
        assert_eq!(up.idle_connections(), 0, "a half-read body's connection is not reused");

        // A `HEAD` answer has no body at all: never polled, still returned.
        let mut head = get("/version");
        *head.method_mut() = Method::HEAD;
        let (resp, lease) = up.request_leased(head).await.unwrap();
        let body = lease.relay(resp.into_body());
        assert!(body.is_end_stream());
        drop(body);
        wait_until(|| up.idle_connections() == 1).await;
    })
    .await
}
