//! The Docker proxy (`/api/endpoints/{id}/docker/*`) is transparent: what a
//! client sends reaches the engine unchanged except for Berth's own
//! credentials, hop-by-hop headers and `X-Registry-Auth` references, and what
//! the engine answers comes back unchanged and unbuffered. Proven against the
//! in-process mock engine, whose request log shows exactly what "Docker" saw.

// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use berth_testkit::endpoints::MockEnv;
use berth_testkit::harness::*;
use berth_testkit::{mock_docker, Fnv1a64, MockDocker, RecordedRequest};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Every test is bounded: a hang is a failure, not a stuck run.
const LIMIT: Duration = Duration::from_secs(90);

fn bounded<F: std::future::Future>(f: F) -> impl std::future::Future<Output = F::Output> {
    berth_testkit::endpoints::bounded(LIMIT, f)
}

// The shared set-up ([`MockEnv`]) with this binary's helpers.
berth_testkit::mock_env_newtype!(Env);

impl Env {
    async fn start() -> Env {
        Env(MockEnv::start(&[]).await)
    }

    fn url(&self, rest: &str) -> String {
        self.daemon.url(&self.path(rest))
    }

    /// The single logged request whose URI is `uri`, waiting briefly for it.
    async fn logged(&self, uri: &str) -> RecordedRequest {
        let want = uri.to_owned();
        self.mock
            .wait_for_request(|r| r.uri == want, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("the mock never saw {uri}; it saw {:?}", uris(&self.mock)))
    }
}

fn uris(mock: &MockDocker) -> Vec<String> {
    mock.requests().iter().map(|r| format!("{} {}", r.method, r.uri)).collect()
}

// ------------------------------------------------------------ raw HTTP/1.1

/// A response head read off a raw socket, and the stream to go on with.
struct RawResponse {
    status: u16,
    head: String,
    /// Bytes read past the head.
    rest: Vec<u8>,
    stream: TcpStream,
}

impl RawResponse {
    /// Every value of header `name` (case-insensitive).
    fn header_values(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.header_values(name).into_iter().next()
    }

    /// Reads a `Content-Length` JSON body.
    async fn read_body_json(mut self) -> Value {
        let len: usize = self.header("content-length").expect("content-length").parse().unwrap();
        while self.rest.len() < len {
            let mut b = [0u8; 4096];
            let n = self.stream.read(&mut b).await.unwrap();
            assert!(n > 0, "closed before the body ended");
            self.rest.extend_from_slice(&b[..n]);
        }
        serde_json::from_slice(&self.rest[..len]).expect("JSON body")
    }

    /// Reads until the server closes the connection.
    async fn read_to_end(mut self) -> Vec<u8> {
        let mut out = self.rest;
        tokio::time::timeout(Duration::from_secs(20), self.stream.read_to_end(&mut out))
            .await
            .expect("server did not close the connection")
            .expect("read");
        out
    }
}

/// Sends `request` (a complete HTTP/1.1 request head, plus body if any) on
/// a fresh connection to `port` and reads the response head.
async fn raw_request(port: u16, request: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect to berth");
    stream.write_all(request).await.unwrap();
    read_head(stream).await
}

async fn read_head(mut stream: TcpStream) -> RawResponse {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut chunk))
            .await
            .expect("no response head within 20 s")
            .expect("read response head");
        assert!(n > 0, "connection closed before a response head; got {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status code");
    RawResponse { status, head, rest: buf[end..].to_vec(), stream }
}

// ------------------------------------------------------------ metrics

async fn metrics_text(d: &Daemon, token: &str) -> String {
    let resp = d.request(Method::GET, "/metrics", Some(token)).send().await.expect("GET /metrics");
    assert_eq!(resp.status(), StatusCode::OK);
    resp.text().await.unwrap()
}

/// The value of an unlabelled metric line `name value`.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn wait_metric(d: &Daemon, token: &str, name: &str, want: f64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v = metric(&metrics_text(d, token).await, name);
        if v == Some(want) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{name} stayed at {v:?}, expected {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ------------------------------------------------------------ users

/// A regular user (role 2) and its JWT.
async fn standard_user(d: &Daemon, admin: &str, name: &str) -> (u64, String) {
    let password = "a-long-enough-password";
    let (s, v) =
        d.post_json("/api/users", Some(admin), &json!({"Username": name, "Password": password, "Role": 2})).await;
    assert!(s.is_success(), "create user {name}: {s} {v}");
    let id = v["Id"].as_u64().unwrap();
    (id, d.login(name, password).await)
}

async fn grant_endpoint(d: &Daemon, admin: &str, endpoint: u64, user: u64) {
    let body = json!({"UserAccessPolicies": {user.to_string(): {"RoleId": 0}}});
    let (s, v) = d.put_json(&format!("/api/endpoints/{endpoint}"), Some(admin), &body).await;
    assert!(s.is_success(), "grant endpoint {endpoint} to user {user}: {s} {v}");
}

// ============================================================ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_and_query_reach_docker_byte_for_byte() {
    bounded(async {
        let env = Env::start().await;
        let q = "?filters=%7B%22label%22%3A%5B%22a%3Db%22%5D%7D&all=1";
        for prefix in ["", "/v1.41"] {
            let rest = format!("{prefix}/containers/json{q}");
            let resp = env.daemon.http().get(env.url(&rest)).bearer_auth(&env.token).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(resp.headers()["api-version"], mock_docker::API_VERSION, "Docker's headers come back");
            let body: Value = resp.json().await.unwrap();
            let fixture: Value = serde_json::from_slice(&mock_docker::fixtures::containers()).unwrap();
            assert_eq!(body, fixture, "Docker's body comes back unchanged");
            let r = env.logged(&rest).await;
            assert_eq!(r.method, Method::GET);
        }

        // Spellings an HTTP library might "normalise": sent raw so that only
        // Berth could change them.
        let odd = "/v1.41/images/json?a=%2f%2F&b=+x+&c&d=&e=%E2%9C%93&f=a%26b&filters=%7b%7d&token2=x";
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            env.path(odd),
            env.token
        );
        let resp = raw_request(env.daemon.port(), req.as_bytes()).await;
        assert_eq!(resp.status, 200, "{}", resp.head);
        env.logged(odd).await;

        // The API root and a path that is only a version.
        let resp = env.daemon.http().get(env.url("/")).bearer_auth(&env.token).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "the mock's own 404 for /");
        env.logged("/").await;
    })
    .await
}

/// A `token=` parameter is a Berth credential (Portainer strips it too);
/// everything else in the query stays byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_query_parameter_is_not_forwarded() {
    bounded(async {
        let env = Env::start().await;
        let sent = format!("/containers/json?all=1&token={}&x=%2F", env.token);
        let resp = env.daemon.http().get(env.url(&sent)).bearer_auth(&env.token).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        env.logged("/containers/json?all=1&x=%2F").await;
        let resp = env.daemon.http().get(env.url("/_ping?token=abc")).bearer_auth(&env.token).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        env.logged("/_ping").await;
        for r in env.mock.requests() {
            assert!(!r.uri.contains(&env.token), "the JWT reached Docker in {}", r.uri);
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_head_and_get() {
    bounded(async {
        let env = Env::start().await;
        for prefix in ["", "/v1.41"] {
            let rest = format!("{prefix}/_ping");
            let resp = env.daemon.http().head(env.url(&rest)).bearer_auth(&env.token).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(resp.headers()["api-version"], "1.41");
            assert_eq!(resp.headers()["ostype"], "linux");
            assert_eq!(resp.bytes().await.unwrap().len(), 0);
            let r = env.logged(&rest).await;
            assert_eq!(r.method, Method::HEAD, "HEAD stays HEAD");

            env.mock.clear_requests();
            let resp = env.daemon.http().get(env.url(&rest)).bearer_auth(&env.token).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(resp.headers()["api-version"], "1.41");
            assert_eq!(resp.headers()["cache-control"], "no-cache, no-store, must-revalidate");
            assert_eq!(resp.text().await.unwrap(), "OK");
            assert_eq!(env.logged(&rest).await.method, Method::GET);
            env.mock.clear_requests();
        }
        // The same through a raw HEAD: no body bytes may follow the head,
        // or the next response on the connection would be corrupt.
        let req = format!(
            "HEAD {} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\nGET {} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            env.path("/_ping"),
            env.token,
            env.path("/_ping"),
            env.token
        );
        let first = raw_request(env.daemon.port(), req.as_bytes()).await;
        assert_eq!(first.status, 200, "{}", first.head);
        let all = first.read_to_end().await;
        let text = String::from_utf8_lossy(&all);
        assert!(text.starts_with("HTTP/1.1 200"), "second response follows the HEAD's head directly: {text:?}");
        assert!(text.ends_with("\r\n\r\nOK"), "{text:?}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berth_credentials_cookies_and_method_overrides_never_reach_docker() {
    bounded(async {
        let env = Env::start().await;
        let (s, key) = env
            .daemon
            .post_json(
                "/api/users/1/tokens",
                Some(&env.token),
                &json!({"password": ADMIN_PASSWORD, "description": "transparency"}),
            )
            .await;
        assert!(s.is_success(), "{s} {key}");
        let raw_key = key["rawAPIKey"].as_str().expect("rawAPIKey").to_owned();

        let headers_url = env.url("/mock/headers");
        let http = env.daemon.http();
        let sends = [
            ("bearer", http.get(&headers_url).bearer_auth(&env.token).header("cookie", "a=1; b=2")),
            ("api key", http.get(&headers_url).header("x-api-key", &raw_key).header("cookie", "a=1; b=2")),
            ("cookie", http.get(&headers_url).header("cookie", format!("a=1; portainer_api_key={}; b=2", env.token))),
            (
                "cookie and bearer",
                http.get(&headers_url)
                    .bearer_auth(&env.token)
                    .header("cookie", format!("a=1; portainer_api_key={}; b=2", env.token)),
            ),
        ];
        for (what, rb) in sends {
            env.mock.clear_requests();
            let resp = rb.header("x-end-to-end", what).header("x-http-method-override", "DELETE").send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{what}");
            let seen: Value = resp.json().await.unwrap();
            assert!(seen.get("authorization").is_none(), "{what}: Authorization reached Docker: {seen}");
            assert!(seen.get("x-api-key").is_none(), "{what}: X-API-Key reached Docker: {seen}");
            assert!(seen.get("cookie").is_none(), "{what}: no Cookie at all reaches Docker: {seen}");
            assert!(seen.get("x-http-method-override").is_none(), "{what}: method override reached Docker: {seen}");
            assert_eq!(seen["x-end-to-end"], what);
            let logged = env.logged("/mock/headers").await;
            for (name, value) in &logged.headers {
                let v = String::from_utf8_lossy(value.as_bytes());
                assert!(!v.contains(&env.token), "{what}: the JWT reached Docker in {name}");
                assert!(!v.contains(&raw_key), "{what}: the API key reached Docker in {name}");
                assert!(!v.contains("portainer_api_key"), "{what}: the session cookie reached Docker");
            }
        }
        // Only the session cookie: no Cookie header either.
        env.mock.clear_requests();
        let resp =
            http.get(&headers_url).header("cookie", format!("portainer_api_key={}", env.token)).send().await.unwrap();
        let seen: Value = resp.json().await.unwrap();
        assert!(seen.get("cookie").is_none(), "{seen}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_request_headers_are_removed() {
    bounded(async {
        let env = Env::start().await;
        let req = format!(
            "POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
             Connection: keep-alive, X-Hop-A\r\nConnection: X-Hop-B\r\nX-Hop-A: 1\r\nX-Hop-B: 1\r\n\
             Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\n\
             TE: trailers\r\nTrailer: X-Checksum\r\nX-End: kept\r\nX-Registry-Config: e30=\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
             5\r\nhello\r\n0\r\n\r\n",
            // An engine route that reads the body: the mock's /mock/headers
            // answers without reading it and closes at once, which races
            // the body upload (see `early_answer_*` in tests/docker_cli.rs).
            env.path("/mock/upload"),
            env.token
        );
        let resp = raw_request(env.daemon.port(), req.as_bytes()).await;
        assert_eq!(resp.status, 200, "{}", resp.head);
        let r = env.logged("/mock/upload").await;
        for gone in [
            "connection",
            "x-hop-a",
            "x-hop-b",
            "keep-alive",
            "proxy-connection",
            "proxy-authorization",
            "te",
            "trailer",
        ] {
            assert!(r.header(gone).is_none(), "{gone} reached Docker: {:?}", r.headers);
        }
        assert_eq!(r.header("x-end"), Some("kept"));
        assert_eq!(r.header("x-registry-config"), Some("e30="));
        assert_eq!(r.header("content-type"), Some("application/json"));
        // The body is re-framed for the upstream hop, not dropped.
        let body = resp.read_body_json().await;
        assert_eq!(body["bytes"], 5, "{body}");
        assert!(
            r.header("transfer-encoding") == Some("chunked") || r.header("content-length") == Some("5"),
            "{:?}",
            r.headers
        );
    })
    .await
}

// ------------------------------------------------------------ an engine of our own

/// A minimal engine on loopback for what the mock does not do: answer a
/// websocket upgrade, and send hop-by-hop headers in a response. Records
/// every request head it reads.
async fn spawn_raw_engine() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let log = heads.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let _ = serve_raw(stream, log).await;
            });
        }
    });
    (port, heads)
}

async fn serve_raw(mut s: TcpStream, log: Arc<Mutex<Vec<String>>>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    log.lock().unwrap().push(head.clone());
    let lower = head.to_ascii_lowercase();
    if lower.contains("\r\nupgrade: tcp") && lower.contains("/attach/early") {
        // Output sent in the same write as the 101, as dockerd does when
        // the container has already written something.
        s.write_all(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\nengine-first;").await?;
        s.write_all(&buf[end..]).await?;
        let (mut r, mut w) = s.split();
        tokio::io::copy(&mut r, &mut w).await?;
        w.shutdown().await?;
        return Ok(());
    }
    if lower.contains("\r\nupgrade: websocket") {
        s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        )
        .await?;
        s.write_all(&buf[end..]).await?;
        let (mut r, mut w) = s.split();
        tokio::io::copy(&mut r, &mut w).await?;
        w.write_all(b"ws-bye").await?;
        w.shutdown().await?;
        return Ok(());
    }
    if lower.starts_with("post /rawstream ") {
        // dockerd's legacy hijack answer: no length, no chunking, the end
        // of the body is the end of the connection.
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n").await?;
        for part in noise(99, 300_000).chunks(7000) {
            s.write_all(part).await?;
        }
        return s.shutdown().await;
    }
    if lower.contains("/containers/missing/attach") {
        let body = r#"{"message":"No such container: missing"}"#;
        let resp = format!(
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(resp.as_bytes()).await?;
        return s.shutdown().await;
    }
    let body = "OK";
    let extra = if lower.starts_with("get /hop ") {
        "Connection: close, X-Resp-Hop\r\nX-Resp-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\n\
         Trailer: X-Sum\r\nX-Resp-End: kept\r\n"
    } else {
        "Connection: close\r\n"
    };
    let resp =
        format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{extra}\r\n{body}", body.len());
    s.write_all(resp.as_bytes()).await?;
    s.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_response_headers_are_removed() {
    bounded(async {
        let (port, heads) = spawn_raw_engine().await;
        let daemon = Daemon::start().await;
        let token = daemon.admin_token().await;
        let id = daemon.create_endpoint(&token, "raw", &format!("tcp://127.0.0.1:{port}")).await;
        let resp = daemon.request(Method::GET, &format!("/api/endpoints/{id}/docker/hop"), Some(&token)).send().await;
        let resp = resp.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let h = resp.headers();
        for gone in ["x-resp-hop", "keep-alive", "proxy-authenticate", "trailer"] {
            assert!(h.get(gone).is_none(), "{gone} came back to the client: {h:?}");
        }
        assert_eq!(h["x-resp-end"], "kept");
        assert_eq!(resp.text().await.unwrap(), "OK");
        assert!(heads.lock().unwrap().iter().any(|h| h.starts_with("GET /hop ")));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_passes_through() {
    bounded(async {
        let (port, heads) = spawn_raw_engine().await;
        let daemon = Daemon::start().await;
        let token = daemon.admin_token().await;
        let id = daemon.create_endpoint(&token, "raw", &format!("tcp://127.0.0.1:{port}")).await;
        let path = format!("/api/endpoints/{id}/docker/v1.41/containers/abc/attach/ws?stream=1&stdin=1");
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: keep-alive, Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Origin: http://example\r\n\r\n"
        );
        let mut resp = raw_request(daemon.port(), req.as_bytes()).await;
        assert_eq!(resp.status, 101, "{}", resp.head);
        assert_eq!(resp.header("upgrade").as_deref(), Some("websocket"));
        assert_eq!(resp.header("sec-websocket-accept").as_deref(), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        wait_metric(&daemon, &token, "berth_tunnels_open", 1.0).await;
        {
            let heads = heads.lock().unwrap();
            let head = heads.iter().find(|h| h.contains("/attach/ws")).expect("the engine saw the upgrade");
            assert!(head.starts_with("GET /v1.41/containers/abc/attach/ws?stream=1&stdin=1 HTTP/1.1\r\n"), "{head}");
            let lower = head.to_ascii_lowercase();
            assert!(lower.contains("\r\nupgrade: websocket\r\n"), "{head}");
            assert!(lower.contains("\r\nconnection: upgrade\r\n"), "{head}");
            assert!(lower.contains("\r\nsec-websocket-key: dghlihnhbxbszsbub25jzq==\r\n"), "{head}");
            assert!(lower.contains("\r\nsec-websocket-version: 13\r\n"), "{head}");
            assert!(!lower.contains("authorization"), "{head}");
        }
        // Bytes both ways (a masked websocket frame is just bytes here).
        let frame = [0x81u8, 0x85, 1, 2, 3, 4, b'h' ^ 1, b'e' ^ 2, b'l' ^ 3, b'l' ^ 4, b'o' ^ 1];
        resp.stream.write_all(&frame).await.unwrap();
        let mut got = resp.rest.clone();
        while got.len() < frame.len() {
            let mut b = [0u8; 64];
            let n = resp.stream.read(&mut b).await.unwrap();
            assert!(n > 0, "tunnel closed early");
            got.extend_from_slice(&b[..n]);
        }
        assert_eq!(got, frame);
        resp.stream.shutdown().await.unwrap();
        resp.rest = Vec::new();
        assert_eq!(resp.read_to_end().await, b"ws-bye");
        wait_metric(&daemon, &token, "berth_tunnels_open", 0.0).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upgrade_passes_through() {
    bounded(async {
        let env = Env::start().await;
        let req = format!(
            "POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nConnection: Upgrade, HTTP2-Settings\r\n\
             Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nX-Docker-Expose-Session-Uuid: u1\r\n\r\n",
            env.path("/session"),
            env.token
        );
        let mut resp = raw_request(env.daemon.port(), req.as_bytes()).await;
        assert_eq!(resp.status, 101, "{}", resp.head);
        assert_eq!(resp.header("upgrade").as_deref(), Some("h2c"));
        let r = env.logged("/session").await;
        assert_eq!(r.header("upgrade"), Some("h2c"));
        assert_eq!(r.header("http2-settings"), Some("AAMAAABkAAQAAP__"));
        assert_eq!(r.header("x-docker-expose-session-uuid"), Some("u1"));
        assert!(r.header("authorization").is_none());
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        resp.stream.write_all(preface).await.unwrap();
        let mut got = std::mem::take(&mut resp.rest);
        while got.len() < preface.len() {
            let mut b = [0u8; 64];
            let n = resp.stream.read(&mut b).await.unwrap();
            assert!(n > 0, "tunnel closed early");
            got.extend_from_slice(&b[..n]);
        }
        assert_eq!(&got[..], &preface[..]);
        resp.stream.shutdown().await.unwrap();
        assert_eq!(resp.read_to_end().await, b"", "the mock's h2c echo closes without a trailer");
    })
    .await
}

/// Docker's hijack: `Upgrade: tcp`, a 101, then raw bytes both ways; the
/// client's half-close (stdin EOF) reaches the engine while the engine's
/// output still flows back, and the tunnel gauge goes up and down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_upgrade_hijack_with_half_close() {
    bounded(async {
        let env = Env::start().await;
        wait_metric(&env.daemon, &env.token, "berth_tunnels_open", 0.0).await;
        let mock_conns_before = env.mock.connections_open();
        let req = format!(
            "POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: Docker-Client/28.2.2 (linux)\r\nAuthorization: Bearer {}\r\n\
             Content-Type: text/plain\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
            env.path("/v1.41/containers/c0ffee/attach?stderr=1&stdin=1&stdout=1&stream=1"),
            env.token
        );
        let resp = raw_request(env.daemon.port(), req.as_bytes()).await;
        assert_eq!(resp.status, 101, "{}", resp.head);
        assert_eq!(resp.header("upgrade").as_deref(), Some("tcp"));
        assert_eq!(resp.header("content-type").as_deref(), Some("application/vnd.docker.raw-stream"));
        assert!(resp.rest.is_empty());
        wait_metric(&env.daemon, &env.token, "berth_tunnels_open", 1.0).await;
        let r = env.logged("/v1.41/containers/c0ffee/attach?stderr=1&stdin=1&stdout=1&stream=1").await;
        assert_eq!(r.header("upgrade"), Some("tcp"));
        assert_eq!(r.header("connection"), Some("Upgrade"));

        // 4 MB through the tunnel, written and read concurrently.
        let data: Vec<u8> = (0..4u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let (mut rd, mut wr) = resp.stream.into_split();
        let to_send = data.clone();
        let writer = tokio::spawn(async move {
            for c in to_send.chunks(64 * 1024) {
                wr.write_all(c).await.unwrap();
            }
            // Half-close: our write side only.
            wr.shutdown().await.unwrap();
            wr
        });
        let mut got = Vec::with_capacity(data.len() + 4);
        tokio::time::timeout(Duration::from_secs(30), rd.read_to_end(&mut got))
            .await
            .expect("the tunnel never ended: the half-close did not reach the engine, or its close did not come back")
            .unwrap();
        let _wr = writer.await.unwrap();
        assert_eq!(got.len(), data.len() + 4, "echo plus the mock's bye after our half-close");
        assert!(got[..data.len()] == data[..], "echoed bytes differ");
        assert_eq!(&got[data.len()..], b"bye\n", "the half-close reached the engine and its reply came back");
        drop(rd);

        wait_metric(&env.daemon, &env.token, "berth_tunnels_open", 0.0).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while env.mock.connections_open() > mock_conns_before {
            assert!(std::time::Instant::now() < deadline, "the hijacked engine connection was not closed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// A `logs -f`-style stream reaches the client frame by frame: the first
/// chunk arrives while the mock is still holding the second back for 30 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_body_is_not_buffered() {
    bounded(async {
        let env = Env::start().await;
        for length in ["0", "1"] {
            let rest = format!("/mock/stream?bytes=200&chunk=100&interval_ms=30000&length={length}");
            let mut resp = env.daemon.http().get(env.url(&rest)).bearer_auth(&env.token).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            let first = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
                .await
                .unwrap_or_else(|_| panic!("length={length}: first chunk held back (the proxy buffers)"))
                .unwrap()
                .expect("a chunk");
            assert_eq!(first.to_vec(), mock_docker::pattern_bytes(0, first.len()));
            assert!(first.len() <= 100, "only the first frame can have been sent");
            // The second frame is 30 s away: the body must still be open.
            let more = tokio::time::timeout(Duration::from_millis(300), resp.chunk()).await;
            assert!(more.is_err(), "length={length}: body ended or advanced early: {more:?}");
        }
    })
    .await
}

/// Deterministic bytes that are not a short repeating pattern.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_download_and_upload_are_checksummed() {
    const TOTAL: u64 = 64 << 20;
    bounded(async {
        let env = Env::start().await;

        // Download: chunked, then with Content-Length.
        for length in ["0", "1"] {
            let rest = format!("/mock/stream?bytes={TOTAL}&chunk=65536&length={length}");
            let mut resp = env.daemon.http().get(env.url(&rest)).bearer_auth(&env.token).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            if length == "1" {
                assert_eq!(resp.content_length(), Some(TOTAL));
            }
            let mut offset = 0u64;
            while let Some(c) = resp.chunk().await.expect("download aborted") {
                for (i, b) in c.iter().enumerate() {
                    let want = ((offset + i as u64) % mock_docker::PATTERN_PERIOD) as u8;
                    assert_eq!(*b, want, "byte {} differs", offset + i as u64);
                }
                offset += c.len() as u64;
            }
            assert_eq!(offset, TOTAL, "length={length}");
        }

        // Upload: streamed (chunked) and with Content-Length.
        const CHUNK: usize = 256 * 1024;
        let chunks: Vec<bytes::Bytes> =
            (0..TOTAL as usize / CHUNK).map(|i| bytes::Bytes::from(noise(i as u64 + 7, CHUNK))).collect();
        let mut sum = Fnv1a64::new();
        for c in &chunks {
            sum.update(c);
        }
        for sized in [false, true] {
            let body = if sized {
                let mut all = Vec::with_capacity(TOTAL as usize);
                for c in &chunks {
                    all.extend_from_slice(c);
                }
                reqwest::Body::from(all)
            } else {
                let stream = futures_util::stream::iter(chunks.clone().into_iter().map(Ok::<_, std::io::Error>));
                reqwest::Body::wrap_stream(stream)
            };
            let resp = env
                .daemon
                .http()
                .post(env.url("/mock/upload"))
                .bearer_auth(&env.token)
                .header("content-type", "application/x-tar")
                .body(body)
                .send()
                .await
                .unwrap();
            let (s, v) = read_json(resp).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            assert_eq!(v["bytes"], TOTAL, "sized={sized}: {v}");
            assert_eq!(v["fnv1a64"], sum.hex(), "sized={sized}: {v}");
        }

        // The per-endpoint byte counters saw every byte, both ways.
        let text = metrics_text(&env.daemon, &env.token).await;
        let out = metric(&text, &format!("berth_proxy_response_bytes_total{{endpoint=\"{}\"}}", env.id));
        let inn = metric(&text, &format!("berth_proxy_request_bytes_total{{endpoint=\"{}\"}}", env.id));
        assert!(out.unwrap_or(0.0) >= (2 * TOTAL) as f64, "response bytes {out:?}");
        assert!(inn.unwrap_or(0.0) >= (2 * TOTAL) as f64, "request bytes {inn:?}");
    })
    .await
}

// ------------------------------------------------------------ X-Registry-Auth

fn b64(json: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(json)
}

/// The mock's view of `X-Registry-Auth` on the last `/images/create`.
async fn registry_header_seen(env: &Env, header: Option<&str>, token: &str) -> (StatusCode, Option<String>) {
    env.mock.clear_requests();
    let mut rb = env.daemon.http().post(env.url("/v1.41/images/create?fromImage=reg.example%3A5000%2Fapp&tag=1"));
    rb = rb.bearer_auth(token);
    if let Some(h) = header {
        rb = rb.header("x-registry-auth", h);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status();
    let r = env.logged("/v1.41/images/create?fromImage=reg.example%3A5000%2Fapp&tag=1").await;
    (status, r.header("x-registry-auth").map(str::to_owned))
}

fn decode_url_safe(v: &str) -> Value {
    assert!(!v.contains('+') && !v.contains('/'), "not URL-safe base64: {v}");
    let bytes = base64::engine::general_purpose::URL_SAFE.decode(v).expect("URL-safe base64");
    serde_json::from_slice(&bytes).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_auth_is_translated() {
    bounded(async {
        let env = Env::start().await;
        // A password whose JSON encodes to '+' and '/' in standard base64.
        let password = "p>?~~?>?>>???";
        let (s, reg) = env
            .daemon
            .post_json(
                "/api/registries",
                Some(&env.token),
                &json!({"Name": "private", "Type": 3, "URL": "reg.example:5000", "Authentication": true,
                        "Username": "robot", "Password": password}),
            )
            .await;
        assert!(s.is_success(), "{s} {reg}");
        let rid = reg["Id"].as_u64().unwrap();
        assert!(reg.get("Password").is_none_or(|p| p.as_str().is_none_or(str::is_empty)), "{reg}");

        let std_b64 =
            b64(&json!({"username": "robot", "password": password, "serveraddress": "reg.example:5000"}).to_string());
        assert!(std_b64.contains('+') || std_b64.contains('/'), "test data must exercise the alphabet");

        // {"registryId": N} → the registry's credentials, URL-safe base64.
        let (s, h) = registry_header_seen(&env, Some(&b64(&format!(r#"{{"registryId":{rid}}}"#))), &env.token).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "the mock's 404 for images/create: the request went through");
        let v = decode_url_safe(&h.expect("X-Registry-Auth forwarded"));
        assert_eq!(v, json!({"username": "robot", "password": password, "serveraddress": "reg.example:5000"}));

        // {"registryId": 0} → anonymous Docker Hub.
        let (_, h) = registry_header_seen(&env, Some(&b64(r#"{"registryId":0}"#)), &env.token).await;
        let v = decode_url_safe(&h.expect("X-Registry-Auth forwarded"));
        assert_eq!(v, json!({"username": "", "password": "", "serveraddress": "docker.io"}));

        // {} → removed, and then it is as if no header was sent: the
        // image's host is the registry's, so its credentials are added.
        let (_, h) = registry_header_seen(&env, Some(&b64("{}")), &env.token).await;
        assert_eq!(decode_url_safe(&h.expect("credentials added by host"))["username"], "robot");

        // A real auth object (and an undecodable value) pass untouched.
        let real = b64(r#"{"username":"me","password":"pw","serveraddress":"ghcr.io"}"#);
        let (_, h) = registry_header_seen(&env, Some(&real), &env.token).await;
        assert_eq!(h.as_deref(), Some(real.as_str()));
        let (_, h) = registry_header_seen(&env, Some("not base64 at all!"), &env.token).await;
        assert_eq!(h.as_deref(), Some("not base64 at all!"));

        // Unknown registry: 404 from Berth, nothing reaches Docker.
        env.mock.clear_requests();
        let resp = env
            .daemon
            .http()
            .post(env.url("/v1.41/images/create?fromImage=x"))
            .bearer_auth(&env.token)
            .header("x-registry-auth", b64(r#"{"registryId":99}"#))
            .send()
            .await
            .unwrap();
        let (s, v) = read_json(resp).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
        assert!(v["message"].is_string(), "Portainer's error shape: {v}");

        // A standard user with access to the environment but not to the
        // registry: 403, nothing reaches Docker; granted, it works.
        let (uid, user_token) = standard_user(&env.daemon, &env.token, "puller").await;
        grant_endpoint(&env.daemon, &env.token, env.id, uid).await;
        let resp = env
            .daemon
            .http()
            .post(env.url("/v1.41/images/create?fromImage=x"))
            .bearer_auth(&user_token)
            .header("x-registry-auth", b64(&format!(r#"{{"registryId":{rid}}}"#)))
            .send()
            .await
            .unwrap();
        let (s, v) = read_json(resp).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(env.mock.requests().is_empty(), "nothing may reach Docker: {:?}", uris(&env.mock));

        let (s, v) = env
            .daemon
            .put_json(
                &format!("/api/endpoints/{}/registries/{rid}", env.id),
                Some(&env.token),
                &json!({"UserAccessPolicies": {uid.to_string(): {"RoleId": 0}}}),
            )
            .await;
        assert!(s.is_success(), "{s} {v}");
        let (_, h) = registry_header_seen(&env, Some(&b64(&format!(r#"{{"registryId":{rid}}}"#))), &user_token).await;
        assert_eq!(decode_url_safe(&h.expect("forwarded"))["username"], "robot");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_use_route_templates_not_raw_ids() {
    bounded(async {
        let env = Env::start().await;
        let cid = "5fc2a93d7a3d426a1c3937436697fc5e5343cc375226f6110283200bede3b107";
        for rest in [
            format!("/v1.41/containers/{cid}/json"),
            format!("/containers/{cid}/logs?follow=1"),
            "/v1.41/images/sha256:deadbeefcafe0123/json".to_owned(),
            "/v1.41/volumes/my-secret-volume-name".to_owned(),
            "/mock/headers".to_owned(),
            "/v1.41/containers/json?all=1".to_owned(),
        ] {
            let resp = env.daemon.http().get(env.url(&rest)).bearer_auth(&env.token).send().await.unwrap();
            let _ = resp.bytes().await;
        }
        let text = metrics_text(&env.daemon, &env.token).await;
        for raw in [cid, "deadbeefcafe0123", "my-secret-volume-name", "mock/headers", "follow"] {
            assert!(!text.contains(raw), "/metrics contains the raw path part {raw:?}");
        }
        let proxied: Vec<&str> = text.lines().filter(|l| l.starts_with("berth_proxy_requests_total{")).collect();
        let has = |route: &str| {
            proxied
                .iter()
                .any(|l| l.contains(&format!("endpoint=\"{}\"", env.id)) && l.contains(&format!("route=\"{route}\"")))
        };
        assert!(has("/containers/{id}/json"), "{proxied:#?}");
        assert!(has("/containers/json"), "{proxied:#?}");
        assert!(has("/{other}"), "{proxied:#?}");
        assert!(
            text.lines().any(|l| l.starts_with("berth_proxy_request_duration_seconds_count{")),
            "latency is recorded per endpoint and route"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_paths_stay_encoded() {
    bounded(async {
        let env = Env::start().await;
        for rest in [
            "/v1.41/images/reg.example%3A5000%2Fteam%2Fapp%3A1.0/json",
            "/v1.41/containers/a%20b/json",
            "/v1.41/volumes/%E2%9C%93",
            "/v1.41/distribution/docker.io/library/busybox:latest/json",
        ] {
            let req = format!(
                "GET {} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
                env.path(rest),
                env.token
            );
            let resp = raw_request(env.daemon.port(), req.as_bytes()).await;
            assert_eq!(resp.status, 404, "the mock's own 404: {}", resp.head);
            env.logged(rest).await;
        }
    })
    .await
}

/// curl sends `Expect: 100-continue` before large uploads. Berth answers it
/// itself (hyper does, when the body is first read); the engine must not
/// see the header and answer it a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_once() {
    bounded(async {
        let env = Env::start().await;
        let body = noise(3, 100_000);
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/x-tar\r\n\
             Content-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
            env.path("/mock/upload"),
            env.token,
            body.len()
        );
        let mut interim = raw_request(env.daemon.port(), head.as_bytes()).await;
        assert_eq!(interim.status, 100, "{}", interim.head);
        assert!(interim.rest.is_empty());
        interim.stream.write_all(&body).await.unwrap();
        let fin = read_head(interim.stream).await;
        assert_eq!(fin.status, 200, "{}", fin.head);
        let all = fin.read_to_end().await;
        let v: Value = serde_json::from_slice(&all).expect("JSON after the final head");
        let mut sum = Fnv1a64::new();
        sum.update(&body);
        assert_eq!(v["bytes"], 100_000);
        assert_eq!(v["fnv1a64"], sum.hex());
        let r = env.logged("/mock/upload").await;
        assert!(r.header("expect").is_none(), "Expect reached the engine: {:?}", r.headers);
    })
    .await
}

/// An HTTP/1.0 client gets a streamed (chunked upstream) body delimited by
/// the connection's close, byte for byte, with no chunk markers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_0_client_gets_a_close_delimited_body() {
    bounded(async {
        let env = Env::start().await;
        let req = format!(
            "GET {} HTTP/1.0\r\nAuthorization: Bearer {}\r\n\r\n",
            env.path("/mock/stream?bytes=70000&chunk=1000"),
            env.token
        );
        let resp = raw_request(env.daemon.port(), req.as_bytes()).await;
        assert_eq!(resp.status, 200, "{}", resp.head);
        assert!(resp.header("transfer-encoding").is_none(), "no chunked encoding to HTTP/1.0: {}", resp.head);
        let body = resp.read_to_end().await;
        assert_eq!(body, mock_docker::pattern_bytes(0, 70000));
        let r = env.logged("/mock/stream?bytes=70000&chunk=1000").await;
        assert_eq!(r.version, reqwest::Version::HTTP_11, "Berth speaks HTTP/1.1 to the engine");
    })
    .await
}

/// Docker's hijack without `Upgrade` (old clients): the engine answers 200
/// and streams; Berth relays the request body and the response at the same
/// time, so an echo comes back before the client has finished sending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_without_upgrade_streams_both_ways_at_once() {
    bounded(async {
        let env = Env::start().await;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
        let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }));
        let req = env
            .daemon
            .http()
            .post(env.url("/v1.41/containers/c0ffee/attach?stream=1&stdin=1&stdout=1"))
            .bearer_auth(&env.token)
            .body(body)
            .send();
        tx.send(Ok(bytes::Bytes::from_static(b"first "))).await.unwrap();
        let mut resp = tokio::time::timeout(Duration::from_secs(10), req)
            .await
            .expect("response head while the request body is still open")
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "application/vnd.docker.raw-stream");
        let mut got = Vec::new();
        while got.len() < 6 {
            let c = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
                .await
                .expect("echo of the first part while the request body is still open")
                .unwrap()
                .expect("more body");
            got.extend_from_slice(&c);
        }
        assert_eq!(got, b"first ");
        tx.send(Ok(bytes::Bytes::from_static(b"second"))).await.unwrap();
        drop(tx);
        while let Some(c) = resp.chunk().await.unwrap() {
            got.extend_from_slice(&c);
        }
        assert_eq!(got, b"first secondbye\n");
    })
    .await
}

/// An engine that refuses an upgrade (say, attach to a missing container)
/// answers with an ordinary response: it reaches the client as such, no
/// tunnel is counted, and the client connection goes on serving requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_upgrade_is_an_ordinary_response() {
    bounded(async {
        let (port, heads) = spawn_raw_engine().await;
        let daemon = Daemon::start().await;
        let token = daemon.admin_token().await;
        let id = daemon.create_endpoint(&token, "raw", &format!("tcp://127.0.0.1:{port}")).await;
        let path = format!("/api/endpoints/{id}/docker/v1.41/containers/missing/attach?stream=1");
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
        );
        let mut resp = raw_request(daemon.port(), req.as_bytes()).await;
        assert_eq!(resp.status, 404, "{}", resp.head);
        let len: usize = resp.header("content-length").expect("a sized body").parse().unwrap();
        let mut body = std::mem::take(&mut resp.rest);
        while body.len() < len {
            let mut b = [0u8; 256];
            let n = resp.stream.read(&mut b).await.unwrap();
            assert!(n > 0, "closed before the body ended");
            body.extend_from_slice(&b[..n]);
        }
        assert_eq!(body, br#"{"message":"No such container: missing"}"#);
        assert!(heads.lock().unwrap().iter().any(|h| h.contains("/containers/missing/attach")));
        let text = metrics_text(&daemon, &token).await;
        assert_eq!(metric(&text, "berth_tunnels_open"), Some(0.0));
        // The same connection carries another request.
        let again = format!(
            "GET /api/endpoints/{id}/docker/_ping HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        );
        resp.stream.write_all(again.as_bytes()).await.unwrap();
        let second = read_head(resp.stream).await;
        assert_eq!(second.status, 200, "{}", second.head);
    })
    .await
}

/// An engine's close-delimited answer (no length, no chunking: the way
/// dockerd ends a legacy raw stream) reaches an HTTP/1.1 client whole and
/// properly terminated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_delimited_engine_body_is_relayed_whole() {
    bounded(async {
        let (port, _heads) = spawn_raw_engine().await;
        let daemon = Daemon::start().await;
        let token = daemon.admin_token().await;
        let id = daemon.create_endpoint(&token, "raw", &format!("tcp://127.0.0.1:{port}")).await;
        let resp = daemon
            .request(reqwest::Method::POST, &format!("/api/endpoints/{id}/docker/rawstream"), Some(&token))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "application/vnd.docker.raw-stream");
        let body = resp.bytes().await.expect("a complete body");
        assert_eq!(&body[..], &noise(99, 300_000)[..]);
    })
    .await
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A client that stops reading holds the engine back: Berth does not pull
/// a fast 512 MB stream into memory on its behalf.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_applies_backpressure() {
    bounded(async {
        let env = Env::start().await;
        let pid = env.daemon.pid().unwrap();
        let before = vm_rss_kib(pid);
        let mut resp = env
            .daemon
            .http()
            .get(env.url(&format!("/mock/stream?bytes={}&chunk=65536", 512u64 << 20)))
            .bearer_auth(&env.token)
            .send()
            .await
            .unwrap();
        let mut got = 0usize;
        while got < 1 << 20 {
            got += resp.chunk().await.unwrap().unwrap().len();
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = vm_rss_kib(pid);
        assert!(after < before + 64 * 1024, "Berth's memory grew from {before} KiB to {after} KiB: it buffers");
        drop(resp);
    })
    .await
}

/// Bytes that travel in the same packet as the handshake, either way: the
/// client's first stdin right behind its request head, the container's
/// first output right behind the engine's 101.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_sent_with_the_upgrade_handshake_are_not_lost() {
    bounded(async {
        let (port, heads) = spawn_raw_engine().await;
        let daemon = Daemon::start().await;
        let token = daemon.admin_token().await;
        let id = daemon.create_endpoint(&token, "raw", &format!("tcp://127.0.0.1:{port}")).await;
        let req = format!(
            "POST /api/endpoints/{id}/docker/v1.41/containers/x/attach/early?stream=1 HTTP/1.1\r\nHost: x\r\n\
             Authorization: Bearer {token}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\nclient-first;"
        );
        let mut resp = raw_request(daemon.port(), req.as_bytes()).await;
        assert_eq!(resp.status, 101, "{}", resp.head);
        let want = b"engine-first;client-first;";
        let mut got = std::mem::take(&mut resp.rest);
        while got.len() < want.len() {
            let mut b = [0u8; 64];
            let n = tokio::time::timeout(Duration::from_secs(10), resp.stream.read(&mut b))
                .await
                .expect("early bytes lost")
                .unwrap();
            assert!(n > 0, "closed early; got {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&b[..n]);
        }
        assert_eq!(&got[..], &want[..]);
        resp.stream.shutdown().await.unwrap();
        assert_eq!(resp.read_to_end().await, b"");
        assert!(heads.lock().unwrap().iter().any(|h| h.contains("/attach/early")));
    })
    .await
}
