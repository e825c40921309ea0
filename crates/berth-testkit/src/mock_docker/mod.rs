//! A fake Docker Engine that answers like Docker 20.10 (API 1.41) on a unix
//! socket and/or a loopback TCP port.
//!
//! It exists so that Berth's proxying can be tested and benchmarked without
//! a real engine (CI machines may have none, and a real engine is slow and
//! noisy to measure against), and so that failure modes a real engine rarely
//! shows on demand (refused connections, bodies cut mid-stream, requests that
//! are never answered) can be switched on and off while a test runs.
//!
//! Routes (each also under a `/vX.Y` prefix):
//!
//! | route | answer |
//! | --- | --- |
//! | `GET`/`HEAD /_ping` | `OK` with `Api-Version`, `Docker-Experimental`, `Ostype` |
//! | `GET /version`, `/info`, `/containers/json`, `/images/json`, `/volumes`, `/networks` | canned JSON from [`fixtures`] |
//! | `GET /swarm` | 503 "not a swarm manager", as Docker does, unless swarm is on |
//! | `POST /containers/{id}/attach`, `/exec/{id}/start` | with `Upgrade: tcp`: 101 then a raw echo; without: 200 and an echo of the request body; both end with `bye\n` once the client's side ends |
//! | `/session`, `/grpc` with `Upgrade: h2c` | 101 then a raw echo |
//! | `GET /mock/stream?bytes=N&chunk=C&interval_ms=I&length=1` | N bytes of [`pattern_bytes`] in C-byte frames, I ms apart; `length=1` sends `Content-Length` instead of chunked |
//! | `POST`/`PUT /mock/upload?read_delay_ms=I&hash=0` | reads the body as it streams; `{"bytes":N,"fnv1a64":"<16 hex>"}` |
//! | any method `/mock/headers` | the request headers as a JSON object (repeated headers joined by `, `) |
//! | anything else | 404 `{"message":"page not found"}`, like Docker |

mod bodies;
pub mod fixtures;
mod routes;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{HeaderMap, Method, Version};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UnixListener, UnixStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use bodies::{pattern_bytes, MAX_CHUNK, PATTERN_PERIOD};

pub const API_VERSION: &str = "1.41";
pub const ENGINE_VERSION: &str = "20.10.24";
pub const SERVER_HEADER: &str = "Docker/20.10.24 (linux)";

/// Requests remembered by default. Bounded so that a benchmark sending
/// millions of requests through the mock does not grow without limit.
pub const DEFAULT_LOG_CAPACITY: usize = 10_000;

/// How the mock misbehaves. Changes apply to requests (and, for `Refuse` and
/// `DropConnection`, connections) from the moment they are set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailMode {
    /// A healthy engine.
    #[default]
    None,
    /// The engine is down: the listening sockets are closed, so connecting
    /// gets `ECONNREFUSED` (the unix socket file stays, as a dead dockerd
    /// leaves it), and open connections are closed. Leaving this mode
    /// listens again on the same address.
    Refuse,
    /// The engine crashes on contact: connections are accepted and closed at
    /// once without reading, and open connections are closed.
    DropConnection,
    /// The response head and the first N body bytes are sent, then the
    /// connection is cut. Bodies of at most N bytes are sent whole.
    CloseAfter(u64),
    /// Requests are read (and logged) and never answered.
    Hang,
    /// Every request gets this status with a Docker-style error body.
    Status(u16),
}

const ARG_BITS: u32 = 56;
const ARG_MASK: u64 = (1 << ARG_BITS) - 1;

impl FailMode {
    /// Packs kind and argument into one word so that a mode change is a
    /// single atomic store and a request never sees one mode's kind with
    /// another's argument.
    fn encode(self) -> u64 {
        let (kind, arg) = match self {
            FailMode::None => (0, 0),
            FailMode::Refuse => (1, 0),
            FailMode::DropConnection => (2, 0),
            FailMode::CloseAfter(n) => (3, n.min(ARG_MASK)),
            FailMode::Hang => (4, 0),
            FailMode::Status(s) => (5, u64::from(s)),
        };
        (kind << ARG_BITS) | arg
    }

    fn decode(v: u64) -> FailMode {
        let arg = v & ARG_MASK;
        match v >> ARG_BITS {
            1 => FailMode::Refuse,
            2 => FailMode::DropConnection,
            3 => FailMode::CloseAfter(arg),
            4 => FailMode::Hang,
            5 => FailMode::Status(arg as u16),
            _ => FailMode::None,
        }
    }

    /// Whether open connections must be closed in this mode.
    fn kills_connections(self) -> bool {
        matches!(self, FailMode::Refuse | FailMode::DropConnection)
    }
}

impl fmt::Display for FailMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailMode::None => f.write_str("none"),
            FailMode::Refuse => f.write_str("refuse"),
            FailMode::DropConnection => f.write_str("drop"),
            FailMode::CloseAfter(n) => write!(f, "close-after:{n}"),
            FailMode::Hang => f.write_str("hang"),
            FailMode::Status(s) => write!(f, "status:{s}"),
        }
    }
}

/// Parses the forms [`Display`](fmt::Display) prints: `none`, `refuse`,
/// `drop`, `close-after:N`, `hang`, `status:N`.
impl FromStr for FailMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, arg) = match s.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (s, None),
        };
        let num = |a: Option<&str>| -> Result<u64, String> {
            a.ok_or_else(|| format!("fail mode {kind:?} needs a number: {kind}:N"))?
                .parse::<u64>()
                .map_err(|e| format!("fail mode {s:?}: {e}"))
        };
        Ok(match kind {
            "none" => FailMode::None,
            "refuse" => FailMode::Refuse,
            "drop" => FailMode::DropConnection,
            "close-after" => FailMode::CloseAfter(num(arg)?),
            "hang" => FailMode::Hang,
            "status" => {
                let code = num(arg)?;
                if !(100..=999).contains(&code) {
                    return Err(format!("fail mode {s:?}: status must be 100..=999"));
                }
                FailMode::Status(code as u16)
            }
            _ => return Err(format!("unknown fail mode {s:?} (none, refuse, drop, close-after:N, hang, status:N)")),
        })
    }
}

/// Settings at start; all but `log_capacity` can be changed on the handle.
#[derive(Clone, Debug)]
pub struct MockOptions {
    /// Added before every response head (not before upgrades' echo data).
    pub delay: Duration,
    pub fail: FailMode,
    /// Whether the node claims to be a swarm manager (`/swarm`, `/info`).
    pub swarm: bool,
    /// Requests kept for [`MockDocker::requests`]; 0 keeps none, which is what
    /// load tests want.
    pub log_capacity: usize,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions { delay: Duration::ZERO, fail: FailMode::None, swarm: false, log_capacity: DEFAULT_LOG_CAPACITY }
    }
}

/// A request as it reached the mock: what "Docker" actually saw, after any
/// rewriting by the proxy in front of it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: Method,
    /// Path and query, exactly as sent (including any `/vX.Y` prefix).
    pub uri: String,
    pub version: Version,
    pub headers: HeaderMap,
    pub received_at: Instant,
}

impl RecordedRequest {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }

    /// The first value of header `name`, if it is valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

struct Shared {
    delay_us: AtomicU64,
    fail: AtomicU64,
    /// Mirrors `fail` for tasks that must react to a change, not just read it.
    mode_tx: watch::Sender<FailMode>,
    swarm: AtomicBool,
    log_capacity: AtomicUsize,
    log: Mutex<VecDeque<RecordedRequest>>,
    log_changed: Notify,
    requests_total: AtomicU64,
    connections_total: AtomicU64,
    connections_open: AtomicU64,
    shutdown: CancellationToken,
}

impl Shared {
    fn new(opts: &MockOptions) -> Self {
        Shared {
            delay_us: AtomicU64::new(opts.delay.as_micros().min(u128::from(u64::MAX)) as u64),
            fail: AtomicU64::new(opts.fail.encode()),
            mode_tx: watch::Sender::new(opts.fail),
            swarm: AtomicBool::new(opts.swarm),
            log_capacity: AtomicUsize::new(opts.log_capacity),
            log: Mutex::new(VecDeque::new()),
            log_changed: Notify::new(),
            requests_total: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
        }
    }

    fn fail_mode(&self) -> FailMode {
        FailMode::decode(self.fail.load(Ordering::Relaxed))
    }

    fn delay(&self) -> Duration {
        Duration::from_micros(self.delay_us.load(Ordering::Relaxed))
    }

    fn swarm(&self) -> bool {
        self.swarm.load(Ordering::Relaxed)
    }

    fn record<B>(&self, req: &http::Request<B>) {
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        let cap = self.log_capacity.load(Ordering::Relaxed);
        if cap == 0 {
            return;
        }
        let entry = RecordedRequest {
            method: req.method().clone(),
            uri: req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| req.uri().to_string()),
            version: req.version(),
            headers: req.headers().clone(),
            received_at: Instant::now(),
        };
        {
            let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            while log.len() >= cap {
                log.pop_front();
            }
            log.push_back(entry);
        }
        self.log_changed.notify_waiters();
    }

    fn find<F: Fn(&RecordedRequest) -> bool>(&self, pred: &F) -> Option<RecordedRequest> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter().find(|r| pred(r)).cloned()
    }
}

/// Where to listen, resolved to something that can be bound again after
/// [`FailMode::Refuse`] closed it.
#[derive(Clone, Debug)]
enum BindAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // Rebinding the same port after `Refuse` must not fail on sockets of
    // the previous incarnation lingering in TIME_WAIT.
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(1024)
}

fn bind_unix(path: &Path) -> io::Result<UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    UnixListener::bind(path)
}

impl BindAddr {
    fn bind(&self) -> io::Result<Listener> {
        match self {
            BindAddr::Tcp(a) => bind_tcp(*a).map(Listener::Tcp),
            BindAddr::Unix(p) => bind_unix(p).map(Listener::Unix),
        }
    }
}

impl Listener {
    async fn accept(&self) -> io::Result<ConnIo> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                // Latency benchmarks measure Berth, not Nagle's algorithm.
                let _ = s.set_nodelay(true);
                Ok(ConnIo::Tcp(s))
            }
            Listener::Unix(l) => Ok(ConnIo::Unix(l.accept().await?.0)),
        }
    }
}

enum ConnIo {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// An accepted connection that counts itself open until dropped, including
/// while it lives on inside an upgraded (hijacked) stream, so that
/// [`MockDocker::connections_open`] tells how many sockets the proxy holds.
struct Conn {
    io: ConnIo,
    shared: Arc<Shared>,
}

impl Conn {
    fn new(io: ConnIo, shared: Arc<Shared>) -> Self {
        shared.connections_total.fetch_add(1, Ordering::Relaxed);
        shared.connections_open.fetch_add(1, Ordering::Relaxed);
        Conn { io, shared }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.shared.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match &mut $self.get_mut().io {
            ConnIo::Tcp($s) => $e,
            ConnIo::Unix($s) => $e,
        }
    };
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        dispatch!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        dispatch!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        dispatch!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        dispatch!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        dispatch!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

async fn serve_conn(conn: Conn, shared: Arc<Shared>) {
    if shared.fail_mode() == FailMode::DropConnection {
        return;
    }
    let svc_shared = shared.clone();
    let service = service_fn(move |req: http::Request<Incoming>| {
        let shared = svc_shared.clone();
        async move { Ok::<_, std::convert::Infallible>(routes::handle(req, shared).await) }
    });
    let mut builder = http1::Builder::new();
    // dockerd keeps idle connections open indefinitely; so does the mock,
    // so that connection-pool behaviour is Berth's, not the mock's.
    builder.header_read_timeout(None);
    let conn = builder.serve_connection(TokioIo::new(conn), service).with_upgrades();
    let mut mode = shared.mode_tx.subscribe();
    tokio::select! {
        r = conn => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "mock docker: connection ended with error");
            }
        }
        _ = shared.shutdown.cancelled() => {}
        _ = mode.wait_for(|m| m.kills_connections()) => {}
    }
}

/// Accepts until shutdown; closes the listener while the mode is `Refuse`
/// and binds the same address again afterwards. `open` reports the
/// listener's state so that [`MockDocker::set_fail`] can wait for it.
async fn accept_loop(first: Listener, addr: BindAddr, shared: Arc<Shared>, open: watch::Sender<bool>) {
    let mut listener = Some(first);
    let mut mode = shared.mode_tx.subscribe();
    loop {
        let refuse = *mode.borrow_and_update() == FailMode::Refuse;
        match &listener {
            Some(_) if refuse => {
                listener = None;
                open.send_replace(false);
                continue;
            }
            Some(l) => {
                tokio::select! {
                    _ = shared.shutdown.cancelled() => return,
                    r = mode.changed() => if r.is_err() { return },
                    r = l.accept() => match r {
                        Ok(io) => {
                            let conn = Conn::new(io, shared.clone());
                            tokio::spawn(serve_conn(conn, shared.clone()));
                        }
                        Err(e) => {
                            // Out of file descriptors and the like: back off
                            // instead of spinning.
                            tracing::debug!(error = %e, "mock docker: accept failed");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    },
                }
            }
            None if !refuse => match addr.bind() {
                Ok(l) => {
                    listener = Some(l);
                    open.send_replace(true);
                }
                Err(e) => {
                    tracing::debug!(error = %e, ?addr, "mock docker: rebind failed, retrying");
                    tokio::select! {
                        _ = shared.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
            },
            None => {
                tokio::select! {
                    _ = shared.shutdown.cancelled() => return,
                    r = mode.changed() => if r.is_err() { return },
                }
            }
        }
    }
}

/// Configures a mock listening on a unix socket, a TCP address, or both.
#[derive(Default)]
pub struct MockBuilder {
    options: MockOptions,
    tcp: Option<String>,
    unix: Option<PathBuf>,
    more_unix: Vec<PathBuf>,
}

impl MockBuilder {
    pub fn options(mut self, options: MockOptions) -> Self {
        self.options = options;
        self
    }

    /// A TCP address such as `127.0.0.1:0` (port 0 picks a free one).
    pub fn tcp(mut self, addr: impl Into<String>) -> Self {
        self.tcp = Some(addr.into());
        self
    }

    /// A unix socket path; a stale socket file there is replaced.
    pub fn unix(mut self, path: impl Into<PathBuf>) -> Self {
        self.unix = Some(path.into());
        self
    }

    /// One more unix socket served by the same engine, so that one process
    /// can stand for many Docker hosts (a benchmark of many endpoints gives
    /// each its own socket, as distinct hosts would be). Needs
    /// [`MockBuilder::unix`] too; the engine's state (fail mode, request
    /// log, counters) is shared by all its sockets.
    pub fn also_unix(mut self, path: impl Into<PathBuf>) -> Self {
        self.more_unix.push(path.into());
        self
    }

    pub async fn start(self) -> io::Result<MockDocker> {
        if self.tcp.is_none() && self.unix.is_none() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "mock docker needs a unix path or a TCP address"));
        }
        if self.unix.is_none() && !self.more_unix.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "more unix sockets need a first one (unix)"));
        }
        let shared = Arc::new(Shared::new(&self.options));
        let mut mock = MockDocker {
            shared: shared.clone(),
            tcp_addr: None,
            unix_path: None,
            more_unix: Vec::new(),
            listener_open: Vec::new(),
            tasks: Vec::new(),
        };
        let mut bound = Vec::new();
        if let Some(tcp) = &self.tcp {
            let addr = tokio::net::lookup_host(tcp.as_str())
                .await?
                .next()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))?;
            let l = bind_tcp(addr)?;
            let local = l.local_addr()?;
            mock.tcp_addr = Some(local);
            bound.push((Listener::Tcp(l), BindAddr::Tcp(local)));
        }
        if let Some(path) = &self.unix {
            let l = bind_unix(path)?;
            mock.unix_path = Some(path.clone());
            bound.push((Listener::Unix(l), BindAddr::Unix(path.clone())));
        }
        for path in &self.more_unix {
            // Recorded before the next bind, so a failure part-way removes
            // the files already made (the handle's drop).
            let l = bind_unix(path)?;
            mock.more_unix.push(path.clone());
            bound.push((Listener::Unix(l), BindAddr::Unix(path.clone())));
        }
        for (listener, addr) in bound {
            let (tx, rx) = watch::channel(true);
            mock.listener_open.push(rx);
            mock.tasks.push(tokio::spawn(accept_loop(listener, addr, shared.clone(), tx)));
        }
        // A mock started in `Refuse` mode must refuse from the first connect.
        mock.settle_listeners().await;
        Ok(mock)
    }
}

/// Handle to a running mock engine. Dropping it stops the mock: listeners
/// and all connections close and the unix socket file is removed.
pub struct MockDocker {
    shared: Arc<Shared>,
    tcp_addr: Option<SocketAddr>,
    unix_path: Option<PathBuf>,
    /// From [`MockBuilder::also_unix`], in the order given.
    more_unix: Vec<PathBuf>,
    listener_open: Vec<watch::Receiver<bool>>,
    tasks: Vec<JoinHandle<()>>,
}

impl MockDocker {
    pub fn builder() -> MockBuilder {
        MockBuilder::default()
    }

    pub async fn start_unix(path: impl AsRef<Path>) -> io::Result<MockDocker> {
        MockBuilder::default().unix(path.as_ref().to_path_buf()).start().await
    }

    pub async fn start_tcp(addr: &str) -> io::Result<MockDocker> {
        MockBuilder::default().tcp(addr).start().await
    }

    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    pub fn unix_path(&self) -> Option<&Path> {
        self.unix_path.as_deref()
    }

    /// Every unix socket served: [`MockDocker::unix_path`], then those of
    /// [`MockBuilder::also_unix`].
    pub fn unix_paths(&self) -> impl Iterator<Item = &Path> {
        self.unix_path.iter().chain(&self.more_unix).map(PathBuf::as_path)
    }

    /// The engine URL in Docker's form (`tcp://127.0.0.1:PORT`), which is
    /// what an endpoint's `URL` field takes.
    pub fn tcp_url(&self) -> Option<String> {
        self.tcp_addr.map(|a| format!("tcp://{a}"))
    }

    /// `unix:///path/to.sock`, Docker's form for a socket endpoint.
    pub fn unix_url(&self) -> Option<String> {
        self.unix_path.as_ref().map(|p| format!("unix://{}", p.display()))
    }

    /// `http://127.0.0.1:PORT{path}`, for talking to the mock directly.
    ///
    /// # Panics
    /// If the mock has no TCP listener.
    pub fn http_url(&self, path: &str) -> String {
        let addr = self.tcp_addr.expect("mock docker has no TCP listener");
        format!("http://{addr}{path}")
    }

    /// Requests received so far, oldest first (at most `log_capacity`).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        let log = self.shared.log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter().cloned().collect()
    }

    pub fn last_request(&self) -> Option<RecordedRequest> {
        let log = self.shared.log.lock().unwrap_or_else(|e| e.into_inner());
        log.back().cloned()
    }

    pub fn clear_requests(&self) {
        self.shared.log.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Requests received since start, whether logged or not.
    pub fn requests_total(&self) -> u64 {
        self.shared.requests_total.load(Ordering::Relaxed)
    }

    /// The first logged request matching `pred`, waiting up to `timeout` for
    /// one to arrive: proxies forward asynchronously, so a test that has
    /// just sent something cannot assume the mock has seen it yet.
    pub async fn wait_for_request<F>(&self, pred: F, timeout: Duration) -> Option<RecordedRequest>
    where
        F: Fn(&RecordedRequest) -> bool,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.log_changed.notified();
            tokio::pin!(notified);
            // Register before looking, so a request logged in between still
            // wakes us.
            notified.as_mut().enable();
            if let Some(r) = self.shared.find(&pred) {
                return Some(r);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.shared.find(&pred);
            }
        }
    }

    /// Connections accepted since start.
    pub fn connections_total(&self) -> u64 {
        self.shared.connections_total.load(Ordering::Relaxed)
    }

    /// Connections currently open, hijacked ones included.
    pub fn connections_open(&self) -> u64 {
        self.shared.connections_open.load(Ordering::Relaxed)
    }

    pub fn set_delay(&self, delay: Duration) {
        self.shared.delay_us.store(delay.as_micros().min(u128::from(u64::MAX)) as u64, Ordering::Relaxed);
    }

    pub fn delay(&self) -> Duration {
        self.shared.delay()
    }

    pub fn set_swarm(&self, on: bool) {
        self.shared.swarm.store(on, Ordering::Relaxed);
    }

    pub fn swarm(&self) -> bool {
        self.shared.swarm()
    }

    /// Switches the failure mode. Async because entering or leaving
    /// [`FailMode::Refuse`] closes or reopens sockets, and a test that goes
    /// on to connect right after must find them in the new state.
    pub async fn set_fail(&self, mode: FailMode) {
        self.shared.fail.store(mode.encode(), Ordering::Relaxed);
        self.shared.mode_tx.send_replace(mode);
        self.settle_listeners().await;
    }

    pub fn fail_mode(&self) -> FailMode {
        self.shared.fail_mode()
    }

    /// The current settings.
    pub fn options(&self) -> MockOptions {
        MockOptions {
            delay: self.delay(),
            fail: self.fail_mode(),
            swarm: self.swarm(),
            log_capacity: self.shared.log_capacity.load(Ordering::Relaxed),
        }
    }

    async fn settle_listeners(&self) {
        let want_open = self.fail_mode() != FailMode::Refuse;
        for rx in &self.listener_open {
            let mut rx = rx.clone();
            // Err means the accept loop ended (shutdown): nothing to wait for.
            let _ = rx.wait_for(|open| *open == want_open).await;
        }
    }

    /// Stops the mock and waits until its listeners are closed.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.cancel();
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }
}

impl Drop for MockDocker {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
        for p in self.unix_path.iter().chain(&self.more_unix) {
            let _ = std::fs::remove_file(p);
        }
    }
}
