use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use super::routes::strip_version;
use super::*;
use crate::checksum::fnv1a64;

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap()
}

fn unix_client(path: &Path) -> reqwest::Client {
    reqwest::Client::builder().unix_socket(path).timeout(Duration::from_secs(10)).build().unwrap()
}

async fn tcp_mock() -> MockDocker {
    MockDocker::start_tcp("127.0.0.1:0").await.unwrap()
}

/// Sends a raw HTTP/1.1 request head and returns the stream positioned
/// after the response head, plus that head.
async fn raw_request<S>(mut s: S, head: &str) -> (S, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    s.write_all(head.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    let mut byte = [0u8; 1];
    while !resp.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).await.unwrap();
        assert_eq!(n, 1, "EOF inside response head: {:?}", String::from_utf8_lossy(&resp));
        resp.push(byte[0]);
    }
    (s, String::from_utf8(resp).unwrap())
}

#[test]
fn version_prefix_is_stripped_only_when_it_is_a_version() {
    assert_eq!(strip_version("/v1.41/containers/json"), "/containers/json");
    assert_eq!(strip_version("/v1.24/_ping"), "/_ping");
    assert_eq!(strip_version("/v1.41"), "/");
    assert_eq!(strip_version("/volumes"), "/volumes");
    assert_eq!(strip_version("/v1/x"), "/v1/x");
    assert_eq!(strip_version("/vx.y/x"), "/vx.y/x");
    assert_eq!(strip_version("/containers/json"), "/containers/json");
}

#[test]
fn fail_modes_round_trip_through_text_and_atomic_encoding() {
    for m in [
        FailMode::None,
        FailMode::Refuse,
        FailMode::DropConnection,
        FailMode::CloseAfter(12345),
        FailMode::Hang,
        FailMode::Status(502),
    ] {
        assert_eq!(m.to_string().parse::<FailMode>().unwrap(), m);
        assert_eq!(FailMode::decode(m.encode()), m);
    }
    assert!("close-after".parse::<FailMode>().is_err());
    assert!("status:42".parse::<FailMode>().is_err());
    assert!("explode".parse::<FailMode>().is_err());
}

#[test]
fn fixtures_are_valid_json_of_docker_shape() {
    let containers: Value = serde_json::from_slice(&fixtures::containers()).unwrap();
    let list = containers.as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert!(list.iter().all(|c| c["Id"].as_str().unwrap().len() == 64));
    let size = fixtures::containers().len();
    assert!((1500..=4096).contains(&size), "containers fixture is {size} bytes");
    let version: Value = serde_json::from_slice(&fixtures::version()).unwrap();
    assert_eq!(version["ApiVersion"], API_VERSION);
    for swarm in [false, true] {
        let info: Value = serde_json::from_slice(&fixtures::info(swarm)).unwrap();
        assert_eq!(info["Swarm"]["ControlAvailable"], swarm);
    }
    for b in [fixtures::images(), fixtures::volumes(), fixtures::networks(), fixtures::swarm()] {
        serde_json::from_slice::<Value>(&b).unwrap();
    }
}

#[tokio::test]
async fn ping_over_unix_and_tcp_with_docker_headers() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    let mock = MockDocker::builder().unix(&sock).tcp("127.0.0.1:0").start().await.unwrap();
    assert_eq!(mock.unix_path(), Some(sock.as_path()));
    let port = mock.tcp_addr().unwrap().port();
    assert_ne!(port, 0);
    assert_eq!(mock.tcp_url().unwrap(), format!("tcp://127.0.0.1:{port}"));

    for (c, url) in [(unix_client(&sock), "http://docker/_ping".to_owned()), (client(), mock.http_url("/v1.41/_ping"))]
    {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["api-version"], "1.41");
        assert_eq!(r.headers()["docker-experimental"], "false");
        assert_eq!(r.headers()["ostype"], "linux");
        assert_eq!(r.text().await.unwrap(), "OK");
    }
    let head = client().head(mock.http_url("/_ping")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "0");
    assert_eq!(mock.requests_total(), 3);
    assert_eq!(mock.requests()[2].method, Method::HEAD);
}

/// One engine on many sockets (a benchmark's many hosts): each answers,
/// they share the engine's counters, and all files go with the handle.
#[tokio::test]
async fn one_engine_serves_many_unix_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<PathBuf> = (0..4).map(|k| dir.path().join(format!("docker.sock.{k}"))).collect();
    let mut b = MockDocker::builder().unix(&paths[0]);
    for p in &paths[1..] {
        b = b.also_unix(p);
    }
    let mock = b.start().await.unwrap();
    assert_eq!(mock.unix_paths().collect::<Vec<_>>(), paths.iter().map(PathBuf::as_path).collect::<Vec<_>>());
    for p in &paths {
        let r = unix_client(p).get("http://docker/_ping").send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", p.display());
    }
    assert_eq!(mock.requests_total(), 4);
    drop(mock);
    for p in &paths {
        assert!(!p.exists(), "{} left behind", p.display());
    }

    let err =
        MockDocker::builder().tcp("127.0.0.1:0").also_unix(dir.path().join("x.sock")).start().await.err().unwrap();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[tokio::test]
async fn canned_routes_answer_with_and_without_version_prefix() {
    let mock = tcp_mock().await;
    let c = client();
    for path in ["/version", "/info", "/containers/json", "/images/json", "/volumes", "/networks"] {
        for prefix in ["", "/v1.41", "/v1.24"] {
            let r = c.get(mock.http_url(&format!("{prefix}{path}"))).send().await.unwrap();
            assert_eq!(r.status(), 200, "{prefix}{path}");
            assert_eq!(r.headers()["content-type"], "application/json");
            r.json::<Value>().await.unwrap();
        }
    }
    let body = c.get(mock.http_url("/containers/json")).send().await.unwrap();
    assert_eq!(body.bytes().await.unwrap(), fixtures::containers());

    let r = c.get(mock.http_url("/no/such/route")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().get("api-version").is_none());
    assert_eq!(r.json::<Value>().await.unwrap()["message"], "page not found");
    // Known path, wrong method: dockerd says 404 too.
    let r = c.post(mock.http_url("/_ping")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn swarm_is_refused_until_switched_on() {
    let mock = tcp_mock().await;
    let c = client();
    let r = c.get(mock.http_url("/v1.41/swarm")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let msg = r.json::<Value>().await.unwrap()["message"].as_str().unwrap().to_owned();
    assert!(msg.starts_with("This node is not a swarm manager"), "{msg}");

    mock.set_swarm(true);
    let r = c.get(mock.http_url("/swarm")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.json::<Value>().await.unwrap()["ID"].is_string());
    let info: Value = c.get(mock.http_url("/info")).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["Swarm"]["LocalNodeState"], "active");
}

#[tokio::test]
async fn request_log_keeps_what_reached_the_engine() {
    let mock = tcp_mock().await;
    let c = client();
    c.get(mock.http_url("/v1.41/containers/json?all=1"))
        .header("X-Registry-Auth", "abc")
        .header("Authorization", "Bearer should-be-visible-here")
        .send()
        .await
        .unwrap();
    let r = mock.last_request().unwrap();
    assert_eq!(r.method, Method::GET);
    assert_eq!(r.uri, "/v1.41/containers/json?all=1");
    assert_eq!(r.path(), "/v1.41/containers/json");
    assert_eq!(r.header("x-registry-auth"), Some("abc"));
    assert_eq!(r.header("authorization"), Some("Bearer should-be-visible-here"));

    let found = mock.wait_for_request(|r| r.path() == "/version", Duration::from_millis(50)).await;
    assert!(found.is_none());
    let waiter = mock.wait_for_request(|r| r.path() == "/version", Duration::from_secs(5));
    let sender = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        c.get(mock.http_url("/version")).send().await.unwrap();
    };
    let (found, ()) = tokio::join!(waiter, sender);
    assert_eq!(found.unwrap().path(), "/version");

    mock.clear_requests();
    assert!(mock.requests().is_empty());
    assert_eq!(mock.requests_total(), 2);
}

#[tokio::test]
async fn log_capacity_bounds_the_log() {
    let mock = MockDocker::builder()
        .tcp("127.0.0.1:0")
        .options(MockOptions { log_capacity: 2, ..Default::default() })
        .start()
        .await
        .unwrap();
    let c = client();
    for p in ["/_ping", "/version", "/info"] {
        c.get(mock.http_url(p)).send().await.unwrap();
    }
    let paths: Vec<String> = mock.requests().iter().map(|r| r.uri.clone()).collect();
    assert_eq!(paths, ["/version", "/info"]);
    assert_eq!(mock.requests_total(), 3);
}

#[tokio::test]
async fn headers_are_echoed_as_json() {
    let mock = tcp_mock().await;
    let v: Value = client()
        .get(mock.http_url("/mock/headers"))
        .headers({
            let mut h = http::HeaderMap::new();
            h.insert("x-one", "1".parse().unwrap());
            h.append("x-multi", "a".parse().unwrap());
            h.append("x-multi", "b".parse().unwrap());
            h
        })
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["x-one"], "1");
    assert_eq!(v["x-multi"], "a, b");
    assert!(v["host"].as_str().unwrap().starts_with("127.0.0.1:"));
}

#[tokio::test]
async fn stream_sends_the_pattern_in_paced_chunks() {
    let mock = tcp_mock().await;
    let c = client();
    let r = c.get(mock.http_url("/mock/stream?bytes=100000&chunk=7000")).send().await.unwrap();
    assert!(r.headers().get("content-length").is_none());
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), 100_000);
    assert_eq!(&body[..], &pattern_bytes(0, 100_000)[..]);

    let r = c.get(mock.http_url("/mock/stream?bytes=5000&length=1")).send().await.unwrap();
    assert_eq!(r.headers()["content-length"], "5000");
    assert_eq!(&r.bytes().await.unwrap()[..], &pattern_bytes(0, 5000)[..]);

    // The first chunk must arrive while the second is still being held.
    let start = Instant::now();
    let r = c.get(mock.http_url("/mock/stream?bytes=20&chunk=10&interval_ms=400")).send().await.unwrap();
    let mut s = r.bytes_stream();
    let first = s.next().await.unwrap().unwrap();
    let first_at = start.elapsed();
    assert_eq!(&first[..], &pattern_bytes(0, 10)[..]);
    assert!(first_at < Duration::from_millis(300), "first chunk took {first_at:?}");
    let second = s.next().await.unwrap().unwrap();
    assert_eq!(&second[..], &pattern_bytes(10, 10)[..]);
    assert!(start.elapsed() >= Duration::from_millis(400));
    assert!(s.next().await.is_none());

    let r = c.get(mock.http_url("/mock/stream?bytes=lots")).send().await.unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn upload_counts_and_checksums_a_streamed_body() {
    let mock = tcp_mock().await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = data.chunks(10_000).map(|c| Ok(c.to_vec())).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let v: Value = client().post(mock.http_url("/mock/upload")).body(body).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["bytes"], 300_000);
    assert_eq!(v["fnv1a64"], format!("{:016x}", fnv1a64(&data)));

    let v: Value = client()
        .put(mock.http_url("/mock/upload?hash=0"))
        .body(vec![1u8; 1234])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["bytes"], 1234);
    assert!(v["fnv1a64"].is_null());
}

async fn check_tcp_hijack<S>(s: S, path: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
    );
    let (mut s, head) = raw_request(s, &head).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("upgrade: tcp\r\n"), "{head}");
    assert!(lower.contains("connection: upgrade\r\n"), "{head}");
    assert!(lower.contains("content-type: application/vnd.docker.raw-stream\r\n"), "{head}");

    s.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello");
    // Half-close: the engine must see EOF, answer `bye`, then close.
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("mock did not close after bye")
        .unwrap();
    assert_eq!(rest, b"bye\n");
}

#[tokio::test]
async fn attach_and_exec_hijack_echo_then_bye_after_half_close() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("d.sock");
    let mock = MockDocker::builder().unix(&sock).tcp("127.0.0.1:0").start().await.unwrap();
    let tcp = TcpStream::connect(mock.tcp_addr().unwrap()).await.unwrap();
    check_tcp_hijack(tcp, "/v1.41/containers/abc123/attach?stream=1&stdin=1&stdout=1").await;
    let unix = UnixStream::connect(&sock).await.unwrap();
    check_tcp_hijack(unix, "/exec/e1/start").await;
    // Both sockets are closed once the echo ends.
    let deadline = Instant::now() + Duration::from_secs(5);
    while mock.connections_open() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(mock.connections_open(), 0);
    assert_eq!(mock.connections_total(), 2);
}

#[tokio::test]
async fn attach_without_upgrade_echoes_the_body() {
    let mock = tcp_mock().await;
    let r = client().post(mock.http_url("/containers/abc/attach?stream=1")).body("ping pong").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/vnd.docker.raw-stream");
    assert_eq!(r.text().await.unwrap(), "ping pongbye\n");
}

#[tokio::test]
async fn session_upgrades_to_h2c_and_echoes() {
    let mock = tcp_mock().await;
    let s = TcpStream::connect(mock.tcp_addr().unwrap()).await.unwrap();
    let (mut s, head) =
        raw_request(s, "POST /session HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.to_ascii_lowercase().contains("upgrade: h2c\r\n"), "{head}");
    s.write_all(b"PRI * HTTP/2.0").await.unwrap();
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"PRI * HTTP/2.0");

    let r = client().post(mock.http_url("/grpc")).send().await.unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn refuse_closes_the_listener_and_recovers_on_the_same_address() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("d.sock");
    let mock = MockDocker::builder().unix(&sock).tcp("127.0.0.1:0").start().await.unwrap();
    let addr = mock.tcp_addr().unwrap();
    let mut kept = TcpStream::connect(addr).await.unwrap();
    let (mut hijacked, head) = raw_request(
        TcpStream::connect(addr).await.unwrap(),
        "POST /exec/x/start HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");

    mock.set_fail(FailMode::Refuse).await;
    let e = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    let e = UnixStream::connect(&sock).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    // A connection opened before the engine "died" dies with it.
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(5), kept.read(&mut buf))
        .await
        .expect("kept connection was not closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
    // So does a hijacked stream, without the `bye` of an orderly end.
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), hijacked.read_to_end(&mut rest))
        .await
        .expect("hijacked stream was not closed")
        .unwrap();
    assert!(rest.is_empty(), "{rest:?}");

    mock.set_fail(FailMode::None).await;
    let r = client().get(mock.http_url("/_ping")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = unix_client(&sock).get("http://d/_ping").send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn drop_connection_and_status_and_hang_modes() {
    let mock = tcp_mock().await;
    let c = client();

    mock.set_fail(FailMode::DropConnection).await;
    assert!(c.get(mock.http_url("/_ping")).send().await.is_err());

    mock.set_fail(FailMode::Status(502)).await;
    let r = c.get(mock.http_url("/_ping")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert!(r.json::<Value>().await.unwrap()["message"].is_string());

    mock.set_fail(FailMode::Hang).await;
    let err = c.get(mock.http_url("/version")).timeout(Duration::from_millis(300)).send().await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(mock.last_request().unwrap().path(), "/version");

    mock.set_fail(FailMode::None).await;
    assert_eq!(c.get(mock.http_url("/_ping")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn close_after_cuts_the_body_at_exactly_n_bytes() {
    let mock = tcp_mock().await;
    mock.set_fail(FailMode::CloseAfter(100)).await;
    let r = client().get(mock.http_url("/containers/json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // The length still promises the whole body, so the cut is detectable.
    assert_eq!(r.headers()["content-length"], fixtures::containers().len().to_string());
    let mut got = Vec::new();
    let mut s = r.bytes_stream();
    let mut failed = false;
    while let Some(chunk) = s.next().await {
        match chunk {
            Ok(b) => got.extend_from_slice(&b),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "body was not cut");
    assert_eq!(got, &fixtures::containers()[..100]);

    // Streams are cut too; bodies under the limit pass whole.
    let r = client().get(mock.http_url("/_ping")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "OK");
    let r = client().get(mock.http_url("/mock/stream?bytes=1000&chunk=64")).send().await.unwrap();
    assert!(r.bytes().await.is_err());
}

#[tokio::test]
async fn delay_holds_back_every_answer() {
    let mock = tcp_mock().await;
    mock.set_delay(Duration::from_millis(200));
    assert_eq!(mock.options().delay, Duration::from_millis(200));
    let start = Instant::now();
    client().get(mock.http_url("/_ping")).send().await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(200));
    mock.set_delay(Duration::ZERO);
    let start = Instant::now();
    client().get(mock.http_url("/_ping")).send().await.unwrap();
    assert!(start.elapsed() < Duration::from_millis(200));
}

#[tokio::test]
async fn starting_in_refuse_mode_refuses_at_once() {
    let mock = MockDocker::builder()
        .tcp("127.0.0.1:0")
        .options(MockOptions { fail: FailMode::Refuse, ..Default::default() })
        .start()
        .await
        .unwrap();
    let e = TcpStream::connect(mock.tcp_addr().unwrap()).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn dropping_the_handle_stops_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("d.sock");
    let mock = MockDocker::builder().unix(&sock).tcp("127.0.0.1:0").start().await.unwrap();
    let addr = mock.tcp_addr().unwrap();
    let mut open = TcpStream::connect(addr).await.unwrap();
    // Make sure the connection was accepted before stopping.
    let (s, _) = raw_request(&mut open, "GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n").await;
    let _ = s;
    mock.shutdown().await;
    assert!(!sock.exists());
    assert!(TcpStream::connect(addr).await.is_err());
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), open.read_to_end(&mut rest))
        .await
        .expect("open connection survived shutdown")
        .unwrap_or(0);
    // At most the 2-byte ping body that followed the head.
    assert!(n <= 2);

    assert!(MockDocker::builder().start().await.is_err());
    // A stale socket file is replaced; any other file is left alone.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let again = MockDocker::start_unix(&stale).await.unwrap();
    let r = unix_client(&stale).get("http://d/_ping").send().await.unwrap();
    assert_eq!(r.status(), 200);
    drop(again);
    std::fs::write(dir.path().join("plain"), b"x").unwrap();
    assert!(MockDocker::start_unix(dir.path().join("plain")).await.is_err());
}
