//! Request handling: failure injection first, then Docker-shaped routing.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::bodies::{EchoBody, PatternBody, TruncatedBody};
use super::{fixtures, FailMode, Shared, API_VERSION, SERVER_HEADER};
use crate::checksum::Fnv1a64;
use crate::BoxError;

pub type MockBody = UnsyncBoxBody<Bytes, BoxError>;

const RAW_STREAM: &str = "application/vnd.docker.raw-stream";

fn full(b: Bytes) -> MockBody {
    Full::new(b).map_err(|never| match never {}).boxed_unsync()
}

fn empty() -> MockBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// The headers dockerd's middleware puts on every routed answer.
fn docker(status: StatusCode) -> http::response::Builder {
    Response::builder()
        .status(status)
        .header("Api-Version", API_VERSION)
        .header("Docker-Experimental", "false")
        .header("Ostype", "linux")
        .header(header::SERVER, SERVER_HEADER)
}

fn json(status: StatusCode, body: Bytes) -> Response<MockBody> {
    docker(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(body))
        .expect("static response parts are valid")
}

fn docker_error(status: StatusCode, message: &str) -> Response<MockBody> {
    let body = serde_json::json!({ "message": message }).to_string();
    json(status, Bytes::from(body + "\n"))
}

/// dockerd's router answers unknown routes before its middleware runs, so
/// this 404 carries none of the `Api-Version`-style headers.
fn page_not_found() -> Response<MockBody> {
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(Bytes::from_static(b"{\"message\":\"page not found\"}\n")))
        .expect("static response parts are valid")
}

pub(super) async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> Response<MockBody> {
    shared.record(&req);
    let fail = shared.fail_mode();
    if fail == FailMode::Hang {
        // The connection task drops this future when the client goes away
        // or the mock shuts down.
        std::future::pending::<()>().await;
    }
    let delay = shared.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let FailMode::Status(code) = fail {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return docker_error(status, "berth-mock-docker: failure injected by FailMode::Status");
    }
    let resp = route(req, &shared).await;
    match fail {
        FailMode::CloseAfter(n) => resp.map(|b| TruncatedBody::new(b, n).boxed_unsync()),
        _ => resp,
    }
}

/// `/v1.41/containers/json` → `/containers/json`; other paths unchanged.
pub(super) fn strip_version(path: &str) -> &str {
    let Some(rest) = path.strip_prefix("/v") else {
        return path;
    };
    let (seg, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let is_version = seg.split_once('.').is_some_and(|(a, b)| all_digits(a) && all_digits(b));
    if !is_version {
        return path;
    }
    if tail.is_empty() {
        "/"
    } else {
        tail
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())
}

/// `/containers/{id}/attach` → `Some(id)`.
fn id_route<'a>(path: &'a str, prefix: &str, suffix: &str) -> Option<&'a str> {
    let id = path.strip_prefix(prefix)?.strip_suffix(suffix)?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').filter_map(|kv| kv.split_once('=').or(Some((kv, "")))).find(|(k, _)| *k == name).map(|(_, v)| v)
}

/// A numeric query parameter; the error is the message for a 400.
fn query_num(query: &str, name: &str, default: u64) -> Result<u64, String> {
    match query_param(query, name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| format!("berth-mock-docker: query parameter {name}={v:?} is not a number")),
    }
}

fn bad_request(message: &str) -> Response<MockBody> {
    docker_error(StatusCode::BAD_REQUEST, message)
}

fn wants_upgrade<B>(req: &Request<B>, proto: &str) -> bool {
    req.headers()
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case(proto))
}

async fn route(req: Request<Incoming>, shared: &Arc<Shared>) -> Response<MockBody> {
    let method = req.method().clone();
    let path = strip_version(req.uri().path()).to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let is_get = method == Method::GET;
    match path.as_str() {
        "/_ping" if is_get || method == Method::HEAD => ping(&method),
        "/version" if is_get => json(StatusCode::OK, fixtures::version()),
        "/info" if is_get => json(StatusCode::OK, fixtures::info(shared.swarm())),
        "/containers/json" if is_get => json(StatusCode::OK, fixtures::containers()),
        "/images/json" if is_get => json(StatusCode::OK, fixtures::images()),
        "/volumes" if is_get => json(StatusCode::OK, fixtures::volumes()),
        "/networks" if is_get => json(StatusCode::OK, fixtures::networks()),
        "/swarm" if is_get => {
            if shared.swarm() {
                json(StatusCode::OK, fixtures::swarm())
            } else {
                // dockerd answers 503 here, not 404.
                docker_error(StatusCode::SERVICE_UNAVAILABLE, fixtures::NOT_SWARM_MANAGER)
            }
        }
        "/session" | "/grpc" => {
            if wants_upgrade(&req, "h2c") {
                hijack(req, shared, "h2c", None, false)
            } else {
                docker_error(StatusCode::BAD_REQUEST, "berth-mock-docker: this route needs Upgrade: h2c")
            }
        }
        "/mock/stream" if is_get => stream(&query),
        "/mock/upload" if method == Method::POST || method == Method::PUT => upload(req, &query).await,
        "/mock/headers" => echo_headers(&req),
        p if method == Method::POST
            && (id_route(p, "/containers/", "/attach").is_some() || id_route(p, "/exec/", "/start").is_some()) =>
        {
            if wants_upgrade(&req, "tcp") {
                hijack(req, shared, "tcp", Some(RAW_STREAM), true)
            } else {
                docker(StatusCode::OK)
                    .header(header::CONTENT_TYPE, RAW_STREAM)
                    .body(EchoBody::new(req.into_body(), b"bye\n").boxed_unsync())
                    .expect("static response parts are valid")
            }
        }
        _ => page_not_found(),
    }
}

fn ping(method: &Method) -> Response<MockBody> {
    // dockerd sends `Content-Length: 0` to HEAD rather than the length a GET
    // would have.
    let (body, len) = if method == Method::HEAD { (empty(), "0") } else { (full(Bytes::from_static(b"OK")), "2") };
    docker(StatusCode::OK)
        .header(header::CONTENT_LENGTH, len)
        .header(header::CACHE_CONTROL, "no-cache, no-store, must-revalidate")
        .header(header::PRAGMA, "no-cache")
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(body)
        .expect("static response parts are valid")
}

fn stream(query: &str) -> Response<MockBody> {
    let parsed = (|| {
        Ok::<_, String>((
            query_num(query, "bytes", 1 << 20)?,
            query_num(query, "chunk", 16 * 1024)?,
            query_num(query, "interval_ms", 0)?,
        ))
    })();
    let (total, chunk, interval_ms) = match parsed {
        Ok(v) => v,
        Err(msg) => return bad_request(&msg),
    };
    let exact = query_param(query, "length") == Some("1");
    let body =
        PatternBody::new(total, chunk.min(usize::MAX as u64) as usize, Duration::from_millis(interval_ms), exact);
    docker(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(body.boxed_unsync())
        .expect("static response parts are valid")
}

async fn upload(req: Request<Incoming>, query: &str) -> Response<MockBody> {
    let read_delay = match query_num(query, "read_delay_ms", 0) {
        Ok(ms) => Duration::from_millis(ms),
        Err(msg) => return bad_request(&msg),
    };
    // Hashing costs about a nanosecond a byte; throughput benchmarks can
    // skip it so the mock is not what they measure.
    let hash = query_param(query, "hash") != Some("0");
    let mut body = req.into_body();
    let mut sum = Fnv1a64::new();
    let mut bytes = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                return docker_error(StatusCode::BAD_REQUEST, &format!("berth-mock-docker: reading request body: {e}"))
            }
        };
        if let Ok(data) = frame.into_data() {
            bytes += data.len() as u64;
            if hash {
                sum.update(&data);
            }
            if !read_delay.is_zero() {
                tokio::time::sleep(read_delay).await;
            }
        }
    }
    let body = serde_json::json!({
        "bytes": bytes,
        "fnv1a64": if hash { serde_json::Value::from(sum.hex()) } else { serde_json::Value::Null },
    });
    json(StatusCode::OK, Bytes::from(body.to_string()))
}

fn echo_headers<B>(req: &Request<B>) -> Response<MockBody> {
    let mut map = serde_json::Map::new();
    for name in req.headers().keys() {
        let joined = req
            .headers()
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        map.insert(name.as_str().to_owned(), serde_json::Value::String(joined));
    }
    json(StatusCode::OK, Bytes::from(serde_json::Value::Object(map).to_string()))
}

/// Answers 101 and, once hyper hands over the connection, echoes it.
fn hijack(
    mut req: Request<Incoming>,
    shared: &Arc<Shared>,
    proto: &'static str,
    content_type: Option<&'static str>,
    bye: bool,
) -> Response<MockBody> {
    let on_upgrade = hyper::upgrade::on(&mut req);
    let shutdown = shared.shutdown.clone();
    // A hijacked stream dies with the engine, like every other connection.
    let mut mode = shared.mode_tx.subscribe();
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "mock docker: upgrade failed");
                return;
            }
        };
        tokio::select! {
            r = echo(TokioIo::new(upgraded), bye) => if let Err(e) = r {
                tracing::debug!(error = %e, "mock docker: hijacked echo ended with error");
            },
            _ = shutdown.cancelled() => {}
            _ = mode.wait_for(|m| m.kills_connections()) => {}
        }
    });
    let mut b = docker(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, HeaderValue::from_static(proto));
    if let Some(ct) = content_type {
        b = b.header(header::CONTENT_TYPE, ct);
    }
    b.body(empty()).expect("static response parts are valid")
}

/// Echoes until the client half-closes, then (for Docker's hijack) says
/// `bye\n` and closes: a client that sees the `bye` knows its half-close
/// travelled all the way to the engine, and the final close shows the
/// engine's end travelled back.
pub(super) async fn echo<T>(mut io: T, bye: bool) -> std::io::Result<u64>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    let mut total = 0u64;
    loop {
        let n = io.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        io.write_all(&buf[..n]).await?;
        total += n as u64;
    }
    if bye {
        io.write_all(b"bye\n").await?;
    }
    io.shutdown().await?;
    Ok(total)
}
