use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use prometheus::IntGauge;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use super::*;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
use crate::connector::{ConnectorSettings, DockerUrl, TlsFiles, TlsOptions};
use berth_testkit::servers::{chan_body, spawn_tcp, ChanBody};

const LIMIT: Duration = Duration::from_secs(15);

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.expect("test timed out")
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

fn settings() -> ConnectorSettings {
    ConnectorSettings {
        connect_timeout: Duration::from_secs(2),
        pool_idle_timeout: Duration::from_secs(30),
        pool_max_idle_per_host: 4,
        ..ConnectorSettings::default()
    }
}

fn upstream_to(addr: SocketAddr) -> Upstream {
    Upstream::new(&DockerUrl::parse(&format!("tcp://{addr}")).unwrap(), &TlsOptions::default(), &settings()).unwrap()
}

const PREFIX: &str = "/api/endpoints/3/docker";

/// Berth in miniature: strips the route prefix and forwards.
async fn front(upstream: Upstream, tunnels: Tunnels) -> SocketAddr {
    spawn_tcp(move |req: Request<Incoming>| {
        let upstream = upstream.clone();
        let tunnels = tunnels.clone();
        async move {
            let pq = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/").to_owned();
            let docker = pq.strip_prefix(PREFIX).unwrap_or(&pq);
            let target = ProxyTarget {
                endpoint_id: 3,
                endpoint_name: "prod",
                upstream: &upstream,
                tunnels: &tunnels,
                bytes_in: None,
                body_read_timeout: Duration::from_secs(30),
                read_body: None,
            };
            let mut resp = forward(target, req, docker).await;
            // Expose the failure kind, which only exists in-process, to the test client.
            if let Some(kind) = resp.extensions().get::<ProxyFailure>().copied() {
                resp.headers_mut().insert("x-test-failure", http::HeaderValue::from_static(kind.label()));
            }
            resp
        }
    })
    .await
}

fn tunnels(max: usize) -> (Tunnels, IntGauge) {
    let gauge = IntGauge::new("berth_tunnels_open", "open tunnels").unwrap();
    (Tunnels::new(max, gauge.clone()), gauge)
}

async fn client<B>(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<B>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (tx, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn.with_upgrades());
    tx
}

async fn body_json(resp: Response<Incoming>) -> serde_json::Value {
    let b = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&b).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&b)))
}

/// Reads up to the end of an HTTP head; returns it and whatever followed.
async fn read_head(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            return (String::from_utf8(buf).unwrap(), rest);
        }
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "EOF before the end of the head: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A Docker host written at the socket level, for behaviour hyper's server
/// would not produce (hijacks, exact half-close).
async fn spawn_raw<F, Fut>(f: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(f(s));
        }
    });
    addr
}

async fn echo_headers(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let mut headers = serde_json::Map::new();
    for (k, v) in req.headers() {
        let entry = headers.entry(k.as_str()).or_insert_with(|| serde_json::json!([]));
        entry.as_array_mut().unwrap().push(String::from_utf8_lossy(v.as_bytes()).into());
    }
    let body = serde_json::json!({
        "method": req.method().as_str(),
        "uri": req.uri().to_string(),
        "headers": headers,
    });
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    let h = r.headers_mut();
    h.insert("content-type", "application/json".parse().unwrap());
    h.insert("connection", "x-resp-hop".parse().unwrap());
    h.insert("x-resp-hop", "1".parse().unwrap());
    h.insert("keep-alive", "timeout=5".parse().unwrap());
    h.insert("proxy-authenticate", "Basic".parse().unwrap());
    h.insert("api-version", "1.41".parse().unwrap());
    r
}

#[tokio::test]
async fn request_is_rewritten_and_query_kept_byte_for_byte() {
    bounded(async {
        let backend = spawn_tcp(echo_headers).await;
        let (t, _) = tunnels(4);
        let addr = front(upstream_to(backend), t).await;
        let mut c = client::<Full<Bytes>>(addr).await;

        let docker_pq = "/v1.41/images/reg.io%2Fteam%2Fimg/json?filters=%7B%22a%22%3A1%7D&x=1";
        let req = Request::builder()
            .method("GET")
            .uri(format!("{PREFIX}{docker_pq}"))
            .header("host", "berth.example")
            .header("authorization", "Bearer berth-jwt")
            .header("x-api-key", "ptr_secret")
            .header("cookie", "a=1; portainer_api_key=secret; b=2")
            .header("connection", "keep-alive, X-Custom-Hop")
            .header("x-custom-hop", "1")
            .header("keep-alive", "timeout=5")
            .header("te", "trailers")
            .header("proxy-authorization", "Basic Zm9v")
            .header("proxy-connection", "keep-alive")
            .header("x-registry-auth", "eyJ1c2VybmFtZSI6ImEifQ==")
            .header("user-agent", "Docker-Client/24.0.7 (linux)")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = c.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers().get("x-test-failure").is_none());
        for gone in ["connection", "x-resp-hop", "keep-alive", "proxy-authenticate"] {
            assert!(resp.headers().get(gone).is_none(), "response header {gone} leaked");
        }
        assert_eq!(resp.headers()["api-version"], "1.41");

        let seen = body_json(resp).await;
        assert_eq!(seen["uri"], docker_pq);
        let h = &seen["headers"];
        for gone in [
            "authorization",
            "x-api-key",
            "connection",
            "x-custom-hop",
            "keep-alive",
            "te",
            "proxy-authorization",
            "proxy-connection",
            "cookie",
        ] {
            assert!(h.get(gone).is_none(), "request header {gone} leaked: {h}");
        }
        assert_eq!(h["x-registry-auth"], serde_json::json!(["eyJ1c2VybmFtZSI6ImEifQ=="]));
        assert_eq!(h["user-agent"], serde_json::json!(["Docker-Client/24.0.7 (linux)"]));
        assert_eq!(h["host"], serde_json::json!([backend.to_string()]));

        // The client connection stays usable, and the upstream one is pooled.
        let req = Request::get(format!("{PREFIX}/_ping")).header("host", "b").body(Full::new(Bytes::new())).unwrap();
        let resp = c.send_request(req).await.unwrap();
        assert_eq!(body_json(resp).await["uri"], "/_ping");
    })
    .await
}

#[tokio::test]
async fn response_chunks_are_relayed_as_they_arrive() {
    bounded(async {
        let go_on = Arc::new(Notify::new());
        let backend = {
            let go_on = go_on.clone();
            spawn_tcp(move |_req: Request<Incoming>| {
                let go_on = go_on.clone();
                async move {
                    let (tx, body) = chan_body(1);
                    tokio::spawn(async move {
                        tx.send(Bytes::from_static(b"first\n")).await.unwrap();
                        // Only a client that already holds the first chunk can
                        // release the second one.
                        let released = tokio::time::timeout(Duration::from_secs(5), go_on.notified()).await;
                        let second: &'static [u8] = if released.is_ok() { b"second\n" } else { b"TIMEOUT\n" };
                        tx.send(Bytes::from_static(second)).await.unwrap();
                    });
                    let mut r = Response::new(body);
                    r.headers_mut().insert("content-type", "application/json".parse().unwrap());
                    r
                }
            })
            .await
        };
        let (t, _) = tunnels(4);
        let addr = front(upstream_to(backend), t).await;
        let mut c = client::<Full<Bytes>>(addr).await;
        let req = Request::get(format!("{PREFIX}/v1.41/containers/x/logs?follow=1&stdout=1"))
            .header("host", "b")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = c.send_request(req).await.unwrap();
        let mut body = resp.into_body();

        let first = tokio::time::timeout(Duration::from_secs(3), body.frame())
            .await
            .expect("first chunk was held back")
            .unwrap()
            .unwrap()
            .into_data()
            .unwrap();
        assert_eq!(first, "first\n");
        go_on.notify_one();
        let rest = body.collect().await.unwrap().to_bytes();
        assert_eq!(rest, "second\n");
    })
    .await
}

async fn hash_body(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let mut body = req.into_body();
    let mut hasher = Sha256::new();
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            len += data.len();
            hasher.update(&data);
        }
    }
    let out = serde_json::json!({ "len": len, "sha256": hex(&hasher.finalize()) });
    Response::new(Full::new(Bytes::from(out.to_string())))
}

fn test_payload(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[tokio::test]
async fn large_uploads_stream_through_intact() {
    bounded(async {
        let backend = spawn_tcp(hash_body).await;
        let (t, _) = tunnels(4);
        let addr = front(upstream_to(backend), t).await;
        let payload = Bytes::from(test_payload(8 * 1024 * 1024 + 17));
        let want = hex(&Sha256::digest(&payload));

        // Chunked, as `docker build` and `docker load` send it.
        let mut c = client::<ChanBody>(addr).await;
        let (tx, body) = chan_body(4);
        let req = Request::post(format!("{PREFIX}/v1.41/images/load?quiet=1"))
            .header("host", "b")
            .header("content-type", "application/x-tar")
            .body(body)
            .unwrap();
        let sender = {
            let payload = payload.clone();
            tokio::spawn(async move {
                for chunk in payload.chunks(64 * 1024) {
                    tx.send(payload.slice_ref(chunk)).await.unwrap();
                }
            })
        };
        let resp = c.send_request(req).await.unwrap();
        let got = body_json(resp).await;
        sender.await.unwrap();
        assert_eq!(got["len"], payload.len());
        assert_eq!(got["sha256"], want);

        // With a Content-Length.
        let mut c = client::<Full<Bytes>>(addr).await;
        let req = Request::put(format!("{PREFIX}/v1.41/containers/x/archive?path=%2Ftmp"))
            .header("host", "b")
            .body(Full::new(payload.clone()))
            .unwrap();
        let got = body_json(c.send_request(req).await.unwrap()).await;
        assert_eq!(got["len"], payload.len());
        assert_eq!(got["sha256"], want);
    })
    .await
}

/// Docker's attach: 101, then raw bytes; after the client's stdin EOF the
/// host still writes its reply before closing.
async fn hijacking_host(mut s: TcpStream) {
    let (head, mut input) = read_head(&mut s).await;
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("upgrade: tcp"), "{head}");
    assert!(lower.contains("connection: upgrade"), "{head}");
    assert!(!lower.contains("authorization"), "{head}");
    s.write_all(
        b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n\
          Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
    )
    .await
    .unwrap();
    s.read_to_end(&mut input).await.unwrap();
    s.write_all(b"got:").await.unwrap();
    s.write_all(&input).await.unwrap();
    s.shutdown().await.unwrap();
}

const ATTACH: &str = "POST /api/endpoints/3/docker/v1.41/containers/abc/attach?stream=1&stdin=1&stdout=1 HTTP/1.1\r\n\
    Host: berth\r\nAuthorization: Bearer x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n";

#[tokio::test]
async fn upgrade_is_spliced_with_half_close() {
    bounded(async {
        let backend = spawn_raw(hijacking_host).await;
        let (t, gauge) = tunnels(4);
        let addr = front(upstream_to(backend), t.clone()).await;

        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(ATTACH.as_bytes()).await.unwrap();
        let (head, rest) = read_head(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let lower = head.to_ascii_lowercase();
        assert!(lower.contains("upgrade: tcp") && lower.contains("connection: upgrade"), "{head}");
        assert!(lower.contains("application/vnd.docker.raw-stream"), "{head}");
        assert!(rest.is_empty());
        wait_until(|| gauge.get() == 1).await;

        s.write_all(b"hello stdin").await.unwrap();
        s.shutdown().await.unwrap(); // stdin EOF: our write half only
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&out), "got:hello stdin");

        wait_until(|| gauge.get() == 0 && t.open() == 0).await;
        assert!(t.drain(Duration::from_secs(1)).await);
    })
    .await
}

#[tokio::test]
async fn refused_upgrade_is_an_ordinary_response() {
    bounded(async {
        let backend = spawn_tcp(|req: Request<Incoming>| async move {
            let status = if req.headers().contains_key("upgrade") { StatusCode::NOT_FOUND } else { StatusCode::OK };
            let mut r = Response::new(Full::new(Bytes::from_static(br#"{"message":"No such container: abc"}"#)));
            *r.status_mut() = status;
            r
        })
        .await;
        let (t, gauge) = tunnels(1);
        let addr = front(upstream_to(backend), t.clone()).await;
        let mut c = client::<Full<Bytes>>(addr).await;

        let req = Request::post(format!("{PREFIX}/v1.41/containers/abc/attach?stream=1"))
            .header("host", "b")
            .header("connection", "Upgrade")
            .header("upgrade", "tcp")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = c.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(body_json(resp).await["message"], "No such container: abc");
        assert_eq!(gauge.get(), 0);

        // Same client connection, still plain HTTP; and the slot was released
        // (the cap is 1).
        let req = Request::get(format!("{PREFIX}/_ping")).header("host", "b").body(Full::new(Bytes::new())).unwrap();
        assert_eq!(c.send_request(req).await.unwrap().status(), StatusCode::OK);
        assert!(t.reserve().is_some());
    })
    .await
}

#[tokio::test]
async fn tunnel_cap_answers_503() {
    bounded(async {
        let backend = spawn_raw(hijacking_host).await;
        let (t, gauge) = tunnels(1);
        let addr = front(upstream_to(backend), t.clone()).await;

        let mut first = TcpStream::connect(addr).await.unwrap();
        first.write_all(ATTACH.as_bytes()).await.unwrap();
        let (head, _) = read_head(&mut first).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");

        let mut c = client::<Full<Bytes>>(addr).await;
        let req = Request::post(format!("{PREFIX}/v1.41/containers/abc/attach?stream=1"))
            .header("host", "b")
            .header("connection", "Upgrade")
            .header("upgrade", "tcp")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = c.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert_eq!(resp.headers()["x-test-failure"], "tunnel_limit");
        let v = body_json(resp).await;
        assert!(v["message"].as_str().unwrap().contains("Too many"), "{v}");
        assert_eq!(gauge.get(), 1);

        first.shutdown().await.unwrap();
        let mut out = Vec::new();
        first.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"got:");
        wait_until(|| gauge.get() == 0).await;
    })
    .await
}

#[tokio::test]
async fn unreachable_hosts_are_502_and_504() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = listener.local_addr().unwrap();
        drop(listener);
        let (t, _) = tunnels(4);
        let addr = front(upstream_to(dead), t.clone()).await;
        let mut c = client::<Full<Bytes>>(addr).await;
        let req =
            Request::get(format!("{PREFIX}/v1.41/info")).header("host", "b").body(Full::new(Bytes::new())).unwrap();
        let resp = c.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(resp.headers()["x-test-failure"], "unreachable");
        let v = body_json(resp).await;
        assert_eq!(v["message"], "Unable to reach the Docker host of environment 3 (prod)");
        assert!(v["details"].as_str().unwrap().contains(&dead.to_string()), "{v}");

        // A host that accepts TCP but never completes the TLS handshake.
        let black_hole = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let s = ConnectorSettings { connect_timeout: Duration::from_millis(300), ..settings() };
        let tls = TlsOptions { enabled: true, skip_verify: true, files: TlsFiles::default() };
        let up =
            Upstream::new(&DockerUrl::parse(&format!("tcp://{}", black_hole.local_addr().unwrap())).unwrap(), &tls, &s)
                .unwrap();
        let addr = front(up, t).await;
        let mut c = client::<Full<Bytes>>(addr).await;
        let req =
            Request::get(format!("{PREFIX}/v1.41/info")).header("host", "b").body(Full::new(Bytes::new())).unwrap();
        let resp = c.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(resp.headers()["x-test-failure"], "timeout");
        let v = body_json(resp).await;
        assert_eq!(v["message"], "Unable to reach the Docker host of environment 3 (prod)");
        drop(black_hole);
    })
    .await
}

/// Pre-upgrade Docker: `200` + raw stream on a connection the host then owns
/// and closes. Relayed as a streamed response read until the host closes.
#[tokio::test]
async fn legacy_raw_stream_response_is_relayed() {
    bounded(async {
        let backend = spawn_raw(|mut s: TcpStream| async move {
            let _ = read_head(&mut s).await;
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n").await.unwrap();
            s.write_all(b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n").await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            s.write_all(b"\x01\x00\x00\x00\x00\x00\x00\x04bye\n").await.unwrap();
        })
        .await;
        let (t, _) = tunnels(4);
        let addr = front(upstream_to(backend), t).await;
        let mut c = client::<Full<Bytes>>(addr).await;
        let req = Request::post(format!("{PREFIX}/v1.41/containers/abc/attach?stream=1&stdout=1"))
            .header("host", "b")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = c.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "application/vnd.docker.raw-stream");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n\x01\x00\x00\x00\x00\x00\x00\x04bye\n");
    })
    .await
}

#[tokio::test]
async fn bad_path_is_400() {
    bounded(async {
        let backend = spawn_tcp(echo_headers).await;
        let (t, _) = tunnels(1);
        let addr = front(upstream_to(backend), t).await;
        let mut c = client::<Full<Bytes>>(addr).await;
        // The route root maps to the Docker API root.
        let req = Request::get(format!("{PREFIX}?x=1")).header("host", "b").body(Full::new(Bytes::new())).unwrap();
        let resp = c.send_request(req).await.unwrap();
        assert_eq!(body_json(resp).await["uri"], "/?x=1");
        assert!(upstream_uri("/a b").is_err());
        // A double slash stays a path, never an authority.
        let u = upstream_uri("//other-host/v1.41/info?x=%2F").unwrap();
        assert!(u.authority().is_none());
        assert_eq!(u.path_and_query().unwrap(), "//other-host/v1.41/info?x=%2F");
    })
    .await
}

/// `len` bytes of a pattern that repeats every `period` bytes, so that a
/// lost or reordered slice shows.
pub(super) fn pattern(len: u32, period: u32) -> Vec<u8> {
    (0..len).map(|i| (i % period) as u8).collect()
}

/// The Docker host's end of a half-close test: reads until the client
/// half-closes, then answers `down` and closes; yields what it read.
pub(super) fn answer_after_eof<S>(mut host: S, down: Vec<u8>) -> tokio::task::JoinHandle<Vec<u8>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut got = Vec::new();
        host.read_to_end(&mut got).await.unwrap();
        host.write_all(&down).await.unwrap();
        host.shutdown().await.unwrap();
        got
    })
}
