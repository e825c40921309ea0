//! The transport layer to Docker hosts, shared by endpoint registration pings,
//! the health checker and the proxy.
//!
//! One [`Upstream`] per endpoint owns that endpoint's keep-alive pool. The pool
//! is our own (see `pool.rs`) on top of hyper's HTTP/1 client connections
//! rather than hyper-util's legacy `Client`, because plugging a custom
//! connector into the legacy client requires implementing
//! `tower_service::Service`, and `tower-service` is not a direct dependency.
//! Driving `hyper::client::conn::http1` ourselves also makes the two things
//! the proxy depends on explicit: every connection runs `with_upgrades()` (so
//! attach/exec `101` responses can be hijacked) and requests carry no total
//! timeout (a `logs -f` may last days).

mod breaker;
mod pool;
mod tls;
mod transport;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, Uri, Version};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::body::{BodyTimeout, BoxError, ConnectionHome, Relayed, SentFlag, UpstreamBody};
use breaker::{Admit, Breaker};
use pool::{Pool, Sender};
use transport::Transport;

pub use crate::docker_url::DockerUrl;
pub use breaker::BreakerState;
pub use tls::{accept_any_server_cert, parse_certs, validate_tls_files, TlsFiles, TlsOptions};
pub use transport::PlainSocket;

/// Upper bound on a JSON document read by [`Upstream::get_json`]. Large
/// enough for `/containers/json?all=1` on a host with tens of thousands of
/// containers, small enough that a misbehaving host cannot exhaust memory.
pub const MAX_JSON_BODY: usize = 64 * 1024 * 1024;

/// Bodies of pings are a few bytes ("OK"); reading them lets the connection
/// go back to the pool, but nothing bigger is worth waiting for.
const MAX_PING_BODY: usize = 64 * 1024;

#[derive(Clone, Debug)]
pub struct ConnectorSettings {
    /// Covers DNS, the TCP handshake and the TLS handshake.
    pub connect_timeout: Duration,
    /// Zero disables keep-alive pooling.
    pub pool_idle_timeout: Duration,
    /// Zero disables keep-alive pooling. Per runtime shard.
    pub pool_max_idle_per_host: usize,
    /// Runtime shards (one per core in the per-core shape, else 1): each
    /// keeps its own idle connections.
    pub pool_shards: usize,
    /// Time the host has to send response headers once the request (body
    /// included) is sent; streams send theirs at once.
    pub response_header_timeout: Duration,
    /// Consecutive connect failures that open the circuit breaker; zero
    /// disables it.
    pub breaker_failures: u32,
    /// Time an open breaker waits before one trial dial.
    pub breaker_cooldown: Duration,
}

impl Default for ConnectorSettings {
    fn default() -> Self {
        ConnectorSettings {
            connect_timeout: Duration::from_secs(10),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 32,
            pool_shards: 1,
            response_header_timeout: Duration::from_secs(300),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(10),
        }
    }
}

/// Display strings are user-facing: the proxy puts them in the `details` of
/// its 502/504 answers, the API in its 400s when a registration ping fails.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Any failure to establish the connection other than a timeout: refused,
    /// no such socket, permission denied, unreachable, DNS failure.
    #[error("{0}")]
    ConnectRefused(#[source] Cause),
    #[error("timed out connecting to the Docker host")]
    ConnectTimeout,
    /// The circuit breaker is open: recent connection attempts all failed.
    #[error("the last {0} attempts to connect failed; the next attempt is made after a pause")]
    CircuitOpen(u32),
    /// The request was sent but no response headers came in time.
    #[error("the Docker host sent no answer within {}", humantime::format_duration(*.0))]
    ResponseTimeout(Duration),
    /// The client's request body stalled while it was being forwarded.
    #[error("{0}")]
    ClientBody(BodyTimeout),
    /// TLS configuration or handshake failure.
    #[error("{0}")]
    Tls(#[source] Cause),
    /// The connection failed after it was established.
    #[error("{0}")]
    Io(#[source] Cause),
    /// The total timeout of `ping`/`get_json` elapsed.
    #[error("the Docker host did not answer in time")]
    Timeout,
    #[error("the Docker host answered with HTTP status {0}")]
    BadStatus(u16),
    #[error("the Docker host answered with invalid JSON: {0}")]
    BadJson(#[source] serde_json::Error),
    #[error("the Docker host's answer exceeds {0} bytes")]
    TooLarge(usize),
    /// A request we were asked to build is not valid HTTP (bad path).
    #[error("{0}")]
    InvalidRequest(String),
}

impl UpstreamError {
    /// The proxy answers 504 for these and 502 for every other failure.
    pub fn is_timeout(&self) -> bool {
        matches!(self, UpstreamError::ConnectTimeout | UpstreamError::Timeout | UpstreamError::ResponseTimeout(_))
    }

    /// True when nothing could be sent because no connection was made.
    pub fn is_connect(&self) -> bool {
        matches!(
            self,
            UpstreamError::ConnectRefused(_)
                | UpstreamError::ConnectTimeout
                | UpstreamError::Tls(_)
                | UpstreamError::CircuitOpen(_)
        )
    }
}

/// A failure in Berth's words (shown to users as is), with the error that
/// caused it when there is one: callers and logs can still reach the
/// underlying `io::Error` or `hyper::Error` through `source()`.
#[derive(Debug)]
pub struct Cause {
    message: String,
    source: Option<BoxError>,
}

impl Cause {
    pub fn new(message: impl Into<String>) -> Cause {
        Cause { message: message.into(), source: None }
    }

    pub fn with(message: impl Into<String>, source: impl Into<BoxError>) -> Cause {
        Cause { message: message.into(), source: Some(source.into()) }
    }
}

impl From<String> for Cause {
    fn from(message: String) -> Cause {
        Cause::new(message)
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// hyper's own messages are terse ("connection error"); the cause chain is
/// what tells a user that the peer reset the connection.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        source = cause.source();
    }
    s
}

struct Inner {
    url: DockerUrl,
    host: HeaderValue,
    transport: Transport,
    pool: Arc<Pool>,
    /// `pool` as where relayed bodies return their connections, made once
    /// so that a request clones one `Weak`.
    home: Weak<dyn ConnectionHome>,
    /// Connections whose task is alive (idle or busy); upgraded ones leave
    /// the count when hyper hands their socket to a tunnel.
    open: Arc<AtomicUsize>,
    breaker: Breaker,
    response_header_timeout: Duration,
}

/// One per endpoint; owns the endpoint's connection pool. Cheap to clone.
/// Dropping every clone drops the pool and closes its idle connections
/// (busy ones finish their current exchange first). Rebuild it when the URL
/// or the TLS material changes.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("url", &self.inner.url.to_string()).finish_non_exhaustive()
    }
}

/// Keeps the open-connection count honest however the connection task ends.
struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Upstream {
    /// Fails only on unusable TLS material; nothing is dialled here.
    pub fn new(url: &DockerUrl, tls: &TlsOptions, settings: &ConnectorSettings) -> Result<Upstream, UpstreamError> {
        let transport = Transport::new(url, tls, settings.connect_timeout)?;
        let pool =
            Arc::new(Pool::new(settings.pool_idle_timeout, settings.pool_max_idle_per_host, settings.pool_shards));
        let home: Arc<dyn ConnectionHome> = pool.clone();
        Ok(Upstream {
            inner: Arc::new(Inner {
                url: url.clone(),
                host: url.host_header(),
                transport,
                home: Arc::downgrade(&home),
                pool,
                open: Arc::new(AtomicUsize::new(0)),
                breaker: Breaker::new(settings.breaker_failures, settings.breaker_cooldown),
                response_header_timeout: settings.response_header_timeout,
            }),
        })
    }

    pub fn url(&self) -> &DockerUrl {
        &self.inner.url
    }

    /// Whether connections to the host are plain sockets (no TLS).
    pub fn is_plain(&self) -> bool {
        self.inner.transport.is_plain()
    }

    /// Keep-alive connections waiting in the pool (for a gauge).
    pub fn idle_connections(&self) -> usize {
        self.inner.pool.idle_count()
    }

    /// Connections currently open to the host, idle or busy, excluding ones
    /// handed over to upgrade tunnels (for a gauge).
    pub fn open_connections(&self) -> usize {
        self.inner.open.load(Ordering::Relaxed)
    }

    /// The circuit breaker's state (for a gauge).
    pub fn breaker_state(&self) -> BreakerState {
        self.inner.breaker.state()
    }

    /// Sends one request. `req.uri()` is origin-form (`/v1.41/containers/json?all=1`);
    /// the Host header and HTTP version are set here. No total timeout is
    /// applied: the response body may legitimately stream for days. Dropping
    /// the returned future (or the response body) closes the connection,
    /// which is how a client disconnect propagates to the Docker host.
    pub async fn request(&self, req: Request<UpstreamBody>) -> Result<Response<Incoming>, UpstreamError> {
        let (resp, tx, _) = self.send(self.prepare(req), None).await?;
        self.recycle(tx);
        Ok(resp)
    }

    /// As [`Upstream::request`], with the connection handed to the caller
    /// instead of a task that waits for the body's end: [`Lease::relay`]
    /// puts it in the answer's body, which returns it to the pool when it is
    /// dropped after its last frame. The proxy's path: one task spawn, and
    /// that task's wake-up, fewer for every proxied request.
    pub async fn request_leased(
        &self,
        req: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, Lease), UpstreamError> {
        let (resp, tx, _) = self.send(self.prepare(req), None).await?;
        let lease = self.inner.pool.enabled().then(|| (tx, self.inner.home.clone()));
        Ok((resp, Lease(lease)))
    }

    fn prepare(&self, mut req: Request<UpstreamBody>) -> Request<UpstreamBody> {
        req.headers_mut().insert(header::HOST, self.inner.host.clone());
        // Upgrades (attach, exec) only exist in HTTP/1.1, and HTTP/1.0 would
        // also forfeit keep-alive.
        *req.version_mut() = Version::HTTP_11;
        if req.uri().scheme().is_some() || req.uri().authority().is_some() {
            let pq = req.uri().path_and_query().cloned();
            *req.uri_mut() = pq.map(Uri::from).unwrap_or_else(|| Uri::from_static("/"));
        }
        req
    }

    /// Sends on `held` when given (a connection a [`Series`] kept from its
    /// previous request), else on a pooled connection, else on a new one.
    /// Returns the connection the answer came on, and where it came from.
    async fn send(
        &self,
        mut req: Request<UpstreamBody>,
        mut held: Option<Sender>,
    ) -> Result<(Response<Incoming>, Sender, Source), UpstreamError> {
        let sent = req.body_mut().sent_flag();
        loop {
            let (mut tx, source) = match held.take() {
                Some(tx) => (tx, Source::Held),
                None => match self.inner.pool.checkout() {
                    Some(tx) => (tx, Source::Pool),
                    // Boxed: dialling (TCP, TLS handshake) is the rare
                    // case, and its state would otherwise make every
                    // request's future kilobytes larger.
                    None => (Box::pin(self.dial()).await?, Source::Dialled),
                },
            };
            let reused = source != Source::Dialled;
            let answer = match self.await_head(tx.try_send_request(req), sent.as_ref()).await {
                Some(answer) => answer,
                // Dropping the exchange closes that connection.
                None => return Err(UpstreamError::ResponseTimeout(self.inner.response_header_timeout)),
            };
            match answer {
                Ok(resp) => return Ok((resp, tx, source)),
                Err(mut err) => match err.take_message() {
                    // A kept connection the host closed while it sat idle;
                    // the request was never written, so retrying is safe. A
                    // fresh connection is not retried: the host is failing.
                    Some(back) if reused => req = back,
                    _ => {
                        let e = err.into_error();
                        if let Some(t) = BodyTimeout::find(&e) {
                            return Err(UpstreamError::ClientBody(t));
                        }
                        return Err(UpstreamError::Io(Cause::with(describe(&e), e)));
                    }
                },
            }
        }
    }

    /// Waits for the response head, for at most the response-header timeout
    /// counted from when the request body has been sent: while the client's
    /// upload is still flowing (its own idle timeout guards it), the wait
    /// is extended, and once more after it ended, so a host always gets at
    /// least the full timeout after the last byte. `None` on timeout.
    async fn await_head<F: std::future::Future>(&self, exchange: F, sent: Option<&SentFlag>) -> Option<F::Output> {
        let period = self.inner.response_header_timeout;
        let deadline = tokio::time::sleep(period);
        tokio::pin!(exchange, deadline);
        let mut was_uploading = false;
        loop {
            tokio::select! {
                biased;
                r = &mut exchange => return Some(r),
                () = &mut deadline => {
                    let uploading = sent.is_some_and(|f| !f.is_set());
                    if !uploading && !was_uploading {
                        return None;
                    }
                    was_uploading = uploading;
                    deadline.as_mut().reset(tokio::time::Instant::now() + period);
                }
            }
        }
    }

    /// A new connection, unless the circuit breaker says the host is down.
    async fn dial(&self) -> Result<Sender, UpstreamError> {
        let breaker = &self.inner.breaker;
        let admitted = breaker.admit();
        if admitted == Admit::Refuse {
            return Err(UpstreamError::CircuitOpen(breaker.threshold()));
        }
        // A trial whose request is dropped mid-dial must not keep the
        // breaker half-open with nobody trying.
        struct Abandon<'a>(&'a Breaker, Admit, bool);
        impl Drop for Abandon<'_> {
            fn drop(&mut self) {
                if !self.2 {
                    self.0.abandon(self.1);
                }
            }
        }
        let mut guard = Abandon(breaker, admitted, false);
        let r = self.connect().await;
        guard.2 = true;
        match &r {
            Ok(_) => breaker.success(admitted),
            Err(e) if e.is_connect() => breaker.failure(admitted),
            Err(_) => breaker.abandon(admitted),
        }
        r
    }

    async fn connect(&self) -> Result<Sender, UpstreamError> {
        let stream = self.inner.transport.connect().await?;
        let (tx, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| UpstreamError::Io(Cause::with(describe(&e), e)))?;
        self.inner.open.fetch_add(1, Ordering::Relaxed);
        let guard = OpenGuard(self.inner.open.clone());
        tokio::spawn(async move {
            let _guard = guard;
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %describe(&e), "upstream connection ended with an error");
            }
        });
        Ok(tx)
    }

    /// Returns `tx` to the pool once the answer on it has been read to the
    /// end, which happens elsewhere (by the client of the proxy, possibly
    /// for days): see `Pool::take_back_or_wait`.
    fn recycle(&self, tx: Sender) {
        if self.inner.pool.enabled() {
            self.inner.pool.clone().take_back(tx);
        }
    }

    /// `GET /_ping` bounded by `timeout` in total; Ok only for a 2xx.
    pub async fn ping(&self, timeout: Duration) -> Result<(), UpstreamError> {
        Exchange::Pool(self).ping(timeout).await
    }

    /// `GET` a JSON document (snapshots: `/info`, `/version`, `/containers/json?all=1`,
    /// `/images/json`, `/volumes`) bounded by `timeout` in total and by
    /// [`MAX_JSON_BODY`] in size.
    pub async fn get_json(&self, path_and_query: &str, timeout: Duration) -> Result<serde_json::Value, UpstreamError> {
        self.get_json_limited(path_and_query, timeout, MAX_JSON_BODY).await
    }

    pub async fn get_json_limited(
        &self,
        path_and_query: &str,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<serde_json::Value, UpstreamError> {
        Exchange::Pool(self).get_json(path_and_query, timeout, max_bytes).await
    }

    /// Requests made one after the other on one connection of their own;
    /// see [`Series`].
    pub fn series(&self) -> Series<'_> {
        Series { upstream: self, conn: None, pooled: false }
    }
}

/// A few requests in a row on one connection (a health check: `_ping`, then
/// the snapshot's documents), which is closed at the end unless it came
/// from the pool. Checking an endpoint nobody uses must not leave
/// keep-alive connections behind: each is a hyper connection task with its
/// read and write buffers and request channel (about 28 KiB) plus a
/// descriptor, and a check made five requests at once, so an idle
/// endpoint held six of them for the pool's idle timeout
/// (docs/PERFORMANCE.md, "Memory per endpoint"). One connection in turn
/// also costs one dial (one TLS handshake) per check instead of six. An
/// endpoint in use lends the check a pooled connection and gets it back.
pub struct Series<'a> {
    upstream: &'a Upstream,
    conn: Option<Sender>,
    /// `conn` was taken from the pool and goes back there at the end.
    pooled: bool,
}

impl Series<'_> {
    pub fn url(&self) -> &DockerUrl {
        self.upstream.url()
    }

    /// `GET /_ping` bounded by `timeout` in total; Ok only for a 2xx.
    pub async fn ping(&mut self, timeout: Duration) -> Result<(), UpstreamError> {
        Exchange::Series(self).ping(timeout).await
    }

    /// As [`Upstream::get_json`], on this series' connection.
    pub async fn get_json(
        &mut self,
        path_and_query: &str,
        timeout: Duration,
    ) -> Result<serde_json::Value, UpstreamError> {
        Exchange::Series(self).get_json(path_and_query, timeout, MAX_JSON_BODY).await
    }

    /// The connection once the previous answer has been read to the end;
    /// `None` when there is none or the host closed it.
    async fn take_ready(&mut self) -> Option<Sender> {
        let mut tx = self.conn.take()?;
        tx.ready().await.ok().map(|()| tx)
    }

    async fn send(&mut self, req: Request<UpstreamBody>) -> Result<Response<Incoming>, UpstreamError> {
        let held = self.take_ready().await;
        let (resp, tx, source) = self.upstream.send(self.upstream.prepare(req), held).await?;
        match source {
            Source::Held => {}
            Source::Pool => self.pooled = true,
            Source::Dialled => self.pooled = false,
        }
        self.conn = Some(tx);
        Ok(resp)
    }

    /// Ends the series: a pooled connection goes back to the pool once its
    /// last answer has been read, a dialled one is closed. Dropping a series
    /// without calling this closes its connection.
    pub fn finish(mut self) {
        if let Some(tx) = self.conn.take() {
            if self.pooled {
                self.upstream.recycle(tx);
            }
        }
    }
}

/// Where [`Upstream::send`] found its connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Held,
    Pool,
    Dialled,
}

/// Where a one-request exchange gets its connection.
enum Exchange<'s, 'a> {
    Pool(&'s Upstream),
    Series(&'s mut Series<'a>),
}

impl Exchange<'_, '_> {
    async fn send(&mut self, req: Request<UpstreamBody>) -> Result<Response<Incoming>, UpstreamError> {
        match self {
            Exchange::Pool(up) => up.request(req).await,
            Exchange::Series(s) => s.send(req).await,
        }
    }

    fn get_request(path_and_query: &str, accept: &'static str) -> Result<Request<UpstreamBody>, UpstreamError> {
        let uri: Uri = path_and_query
            .parse()
            .map_err(|e| UpstreamError::InvalidRequest(format!("invalid path {path_and_query:?}: {e}")))?;
        let mut req = Request::new(UpstreamBody::empty());
        *req.method_mut() = Method::GET;
        *req.uri_mut() = uri;
        req.headers_mut().insert(header::ACCEPT, HeaderValue::from_static(accept));
        Ok(req)
    }

    async fn ping(mut self, timeout: Duration) -> Result<(), UpstreamError> {
        let exchange = async {
            let resp = self.send(Self::get_request("/_ping", "text/plain")?).await?;
            let status = resp.status();
            // Read the tiny body so the connection can be reused; a failure
            // here does not change the host's verdict.
            let _ = Limited::new(resp.into_body(), MAX_PING_BODY).collect().await;
            if status.is_success() {
                Ok(())
            } else {
                Err(UpstreamError::BadStatus(status.as_u16()))
            }
        };
        tokio::time::timeout(timeout, exchange).await.unwrap_or(Err(UpstreamError::Timeout))
    }

    async fn get_json(
        mut self,
        path_and_query: &str,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<serde_json::Value, UpstreamError> {
        let exchange = async {
            let resp = self.send(Self::get_request(path_and_query, "application/json")?).await?;
            let status = resp.status();
            if !status.is_success() {
                return Err(UpstreamError::BadStatus(status.as_u16()));
            }
            let body = read_limited(resp.into_body(), max_bytes).await?;
            serde_json::from_slice(&body).map_err(UpstreamError::BadJson)
        };
        tokio::time::timeout(timeout, exchange).await.unwrap_or(Err(UpstreamError::Timeout))
    }
}

/// The connection an answer came on, while its body is unread.
pub struct Lease(Option<(Sender, Weak<dyn ConnectionHome>)>);

impl Lease {
    /// The answer's body, carrying the connection home at its end. Drop the
    /// lease instead when the connection was upgraded (a `101`).
    pub fn relay(self, body: Incoming) -> Relayed {
        Relayed::new(body, self.0)
    }
}

/// The plain socket under a connection to a Docker host that was upgraded
/// (attach, exec), with the bytes hyper had read past the `101`, so that a
/// tunnel can move bytes with splice(2). `None` for a TLS connection (its
/// bytes must go through rustls): ask [`Upstream::is_plain`] first, since
/// the connection cannot be given back once taken apart.
pub fn plain_socket(upgraded: hyper::upgrade::Upgraded) -> Option<(PlainSocket, Bytes)> {
    let parts = upgraded.downcast::<TokioIo<transport::Stream>>().ok()?;
    let socket = parts.io.into_inner().into_plain()?;
    Some((socket, parts.read_buf))
}

async fn read_limited(body: Incoming, max: usize) -> Result<Bytes, UpstreamError> {
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(UpstreamError::TooLarge(max)),
        Err(e) => Err(UpstreamError::Io(Cause::with(describe(&*e), e))),
    }
}
