//! The load generator behind `scripts/bench/{stream,hijack,login-storm}.sh`:
//! what `wrk` cannot do (multi-GB streamed downloads and uploads, hijacked
//! attach sessions, a paced stream of logins), over TCP or a unix socket so
//! that the same client measures Berth and the backend direct.
//!
//! A binary of the `berth-testkit` crate (`cargo build --release -p
//! berth-testkit --bin loadgen`), built with the workspace's release
//! settings. Every subcommand is bounded in count and in time and ends by
//! itself.
//!
//! ```text
//! loadgen download --tcp 127.0.0.1:9000 --path /api/endpoints/1/docker/mock/stream?bytes=N --token JWT
//! loadgen upload   --unix /tmp/docker.sock --path /mock/upload?hash=0 --bytes N
//! loadgen hijack-idle --tcp ADDR --path /api/endpoints/1/docker/containers/x/attach --sessions 10000 --hold 20
//! loadgen hijack-rate --unix SOCK --path /containers/x/attach --bytes N
//! loadgen logins   --tcp ADDR --rate 20 --seconds 10 --user admin --password PW
//! loadgen requests --tcp ADDR --path /api/endpoints/1/docker/_ping --tls-ca ca.pem [--tls-cert c --tls-key k] --seconds 5
//! ```
//! Each prints one line of `key=value` pairs on stdout (`hijack-idle` also
//! prints `READY ...` once every session is open, for the script to measure).

// Load generator: setup failures stop it loudly.
#![allow(clippy::unwrap_used, clippy::needless_pass_by_value, clippy::too_many_arguments)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use berth_testkit::BoxError;
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use http::{header, Method, Request};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

#[derive(Parser)]
#[command(name = "loadgen", about = "Load generator for Berth's benchmark scripts")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct Target {
    /// Connect over TCP to this address (Berth, or the backend's TCP port).
    #[arg(long)]
    tcp: Option<SocketAddr>,
    /// Connect to this unix socket (the backend direct).
    #[arg(long)]
    unix: Option<PathBuf>,
    /// Request path (and query).
    #[arg(long, default_value = "/_ping")]
    path: String,
    /// Bearer token sent with every request.
    #[arg(long)]
    token: Option<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// One GET, body read to the end and counted.
    Download {
        #[command(flatten)]
        target: Target,
        /// Bytes expected (checked).
        #[arg(long)]
        bytes: u64,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// One POST streaming `bytes` of body in `chunk`-sized frames.
    Upload {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        bytes: u64,
        #[arg(long, default_value_t = 256 * 1024)]
        chunk: usize,
        /// Send Content-Length instead of chunked encoding.
        #[arg(long)]
        length: bool,
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Opens `sessions` hijacked attach sessions, holds them idle, checks
    /// each still echoes, then closes them.
    HijackIdle {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 1000)]
        sessions: usize,
        /// Seconds to hold them open after the last one is up.
        #[arg(long, default_value_t = 10)]
        hold: u64,
        /// Sessions opening at once.
        #[arg(long, default_value_t = 64)]
        parallel: usize,
    },
    /// Pushes `bytes` through one hijacked session and reads the echo.
    HijackRate {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        bytes: u64,
        #[arg(long, default_value_t = 64 * 1024)]
        chunk: usize,
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Small GETs over HTTPS, closed loop on `connections` keep-alive
    /// connections for `seconds` (what wrk does, plus client certificates).
    Requests {
        #[command(flatten)]
        target: Target,
        /// CA of the server's certificate (PEM).
        #[arg(long)]
        tls_ca: PathBuf,
        /// Client certificate and key (PEM) to present.
        #[arg(long)]
        tls_cert: Option<PathBuf>,
        #[arg(long)]
        tls_key: Option<PathBuf>,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// A paced stream of logins (`POST /api/auth`), open loop.
    Logins {
        #[command(flatten)]
        target: Target,
        /// Logins per second.
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        #[arg(long, default_value = "admin")]
        user: String,
        #[arg(long)]
        password: String,
        /// Most logins in flight; ticks beyond are counted as skipped.
        #[arg(long, default_value_t = 64)]
        max_in_flight: u64,
        /// Send a different `X-Forwarded-For` address with each login (a
        /// storm from many clients; Berth must trust 127.0.0.1).
        #[arg(long)]
        spread: bool,
        /// Append one `status milliseconds` line per login to this file
        /// (status 0: no answer), so a script can take percentiles over
        /// several runs rather than a median of per-run percentiles.
        #[arg(long)]
        answers: Option<PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    match rt.block_on(run(cli.cmd)) {
        Ok(line) => {
            println!("{line}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cmd: Cmd) -> Result<String, BoxError> {
    match cmd {
        Cmd::Download { target, bytes, timeout } => {
            within(timeout, "download", async {
                let (got, secs) = match connect(&target).await? {
                    Conn::Tcp(s) => download(s, &target).await?,
                    Conn::Unix(s) => download(s, &target).await?,
                };
                if got != bytes {
                    return Err(format!("expected {bytes} bytes, got {got}").into());
                }
                Ok(rate_line(got, secs))
            })
            .await
        }
        Cmd::Upload { target, bytes, chunk, length, timeout } => {
            within(timeout, "upload", async {
                let body = RepeatBody::new(bytes, chunk, length);
                let (answer, secs) = match connect(&target).await? {
                    Conn::Tcp(s) => upload(s, &target, body).await?,
                    Conn::Unix(s) => upload(s, &target, body).await?,
                };
                let v: serde_json::Value = serde_json::from_slice(&answer)?;
                if v["bytes"].as_u64() != Some(bytes) {
                    return Err(format!("backend counted {} of {bytes} bytes", v["bytes"]).into());
                }
                Ok(rate_line(bytes, secs))
            })
            .await
        }
        Cmd::HijackIdle { target, sessions, hold, parallel } => hijack_idle(target, sessions, hold, parallel).await,
        Cmd::HijackRate { target, bytes, chunk, timeout } => {
            within(timeout, "hijack-rate", async {
                let secs = match connect(&target).await? {
                    Conn::Tcp(s) => hijack_rate(s, &target, bytes, chunk).await?,
                    Conn::Unix(s) => hijack_rate(s, &target, bytes, chunk).await?,
                };
                Ok(rate_line(bytes, secs))
            })
            .await
        }
        Cmd::Requests { target, tls_ca, tls_cert, tls_key, connections, seconds } => {
            let tls = tls_client(&tls_ca, tls_cert.as_deref().zip(tls_key.as_deref()))?;
            requests(Arc::new(target), tls, connections, seconds).await
        }
        Cmd::Logins { target, rate, seconds, user, password, max_in_flight, spread, answers } => {
            logins(target, rate, seconds, user, password, max_in_flight, spread, answers).await
        }
    }
}

async fn within<T>(
    secs: u64,
    what: &str,
    f: impl std::future::Future<Output = Result<T, BoxError>>,
) -> Result<T, BoxError> {
    tokio::time::timeout(Duration::from_secs(secs), f).await.map_err(|_| format!("{what}: timed out after {secs} s"))?
}

fn rate_line(bytes: u64, secs: f64) -> String {
    format!("bytes={bytes} seconds={secs:.3} mib_per_s={:.1}", bytes as f64 / secs / (1024.0 * 1024.0))
}

enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

async fn connect(t: &Target) -> Result<Conn, BoxError> {
    match (&t.tcp, &t.unix) {
        (Some(a), None) => {
            let s = TcpStream::connect(a).await?;
            s.set_nodelay(true)?;
            Ok(Conn::Tcp(s))
        }
        (None, Some(p)) => Ok(Conn::Unix(UnixStream::connect(p).await?)),
        _ => Err("give exactly one of --tcp and --unix".into()),
    }
}

fn request<B>(t: &Target, method: Method, body: B) -> Request<B> {
    let mut b = Request::builder().method(method).uri(&t.path).header(header::HOST, "berth-bench");
    if let Some(tok) = &t.token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {tok}"));
    }
    b.body(body).expect("valid request")
}

async fn handshake<S, B>(s: S) -> Result<hyper::client::conn::http1::SendRequest<B>, BoxError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(tx)
}

async fn download<S>(s: S, t: &Target) -> Result<(u64, f64), BoxError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut tx = handshake::<_, http_body_util::Empty<Bytes>>(s).await?;
    let start = Instant::now();
    let resp = tx.send_request(request(t, Method::GET, http_body_util::Empty::new())).await?;
    if !resp.status().is_success() {
        return Err(format!("GET {} answered {}", t.path, resp.status()).into());
    }
    let mut body = resp.into_body();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame?.into_data() {
            n += d.len() as u64;
        }
    }
    Ok((n, start.elapsed().as_secs_f64()))
}

async fn upload<S>(s: S, t: &Target, body: RepeatBody) -> Result<(Bytes, f64), BoxError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut tx = handshake::<_, RepeatBody>(s).await?;
    let start = Instant::now();
    let resp = tx.send_request(request(t, Method::POST, body)).await?;
    let status = resp.status();
    let answer = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        return Err(format!("POST {} answered {status}: {}", t.path, String::from_utf8_lossy(&answer)).into());
    }
    Ok((answer, start.elapsed().as_secs_f64()))
}

/// `remaining` bytes as `chunk`-sized frames of one shared buffer: the
/// client costs no copying, so what is measured is the path under test.
struct RepeatBody {
    remaining: u64,
    buf: Bytes,
    exact: bool,
}

impl RepeatBody {
    fn new(total: u64, chunk: usize, exact: bool) -> Self {
        let chunk = chunk.clamp(1, 16 << 20);
        RepeatBody {
            remaining: total,
            buf: Bytes::from((0..chunk).map(|i| (i % 251) as u8).collect::<Vec<u8>>()),
            exact,
        }
    }
}

impl Body for RepeatBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = (self.buf.len() as u64).min(self.remaining) as usize;
        self.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(self.buf.slice(..n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        if self.exact {
            SizeHint::with_exact(self.remaining)
        } else {
            SizeHint::default()
        }
    }
}

/// Sends Docker's attach handshake on a raw stream and reads the answer's
/// head; Ok once the server switched protocols.
async fn hijack_handshake<S>(s: &mut S, t: &Target) -> Result<(), BoxError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let auth = t.token.as_ref().map(|tok| format!("Authorization: Bearer {tok}\r\n")).unwrap_or_default();
    let req = format!(
        "POST {} HTTP/1.1\r\nHost: berth-bench\r\n{auth}Content-Type: text/plain\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
        t.path
    );
    s.write_all(req.as_bytes()).await?;
    let mut head = Vec::with_capacity(512);
    let mut byte = [0u8; 1];
    // Byte by byte: nothing after the head may be consumed here.
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await? == 0 {
            return Err(format!("connection closed during the handshake: {:?}", String::from_utf8_lossy(&head)).into());
        }
        head.push(byte[0]);
        if head.len() > 16 * 1024 {
            return Err("response head too large".into());
        }
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        let line = head.split(|&b| b == b'\r').next().unwrap_or(&[]);
        return Err(format!("expected 101, got {:?}", String::from_utf8_lossy(line)).into());
    }
    Ok(())
}

/// Half-closes and expects the mock's `bye\n`, then EOF.
async fn hijack_close<S>(mut s: S) -> Result<(), BoxError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    s.shutdown().await?;
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await.map_err(|_| "no EOF after bye")??;
    if !rest.ends_with(b"bye\n") {
        return Err(format!("expected bye, got {:?}", String::from_utf8_lossy(&rest)).into());
    }
    Ok(())
}

async fn echo_check<S>(s: &mut S, probe: &[u8]) -> Result<(), BoxError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    s.write_all(probe).await?;
    let mut back = vec![0u8; probe.len()];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut back)).await.map_err(|_| "echo timed out")??;
    if back != probe {
        return Err("echo differs".into());
    }
    Ok(())
}

async fn open_session(t: &Target) -> Result<Conn, BoxError> {
    let mut c = connect(t).await?;
    match &mut c {
        Conn::Tcp(s) => hijack_handshake(s, t).await?,
        Conn::Unix(s) => hijack_handshake(s, t).await?,
    }
    Ok(c)
}

async fn hijack_idle(t: Target, sessions: usize, hold: u64, parallel: usize) -> Result<String, BoxError> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(300);
    let mut open: Vec<Conn> = Vec::with_capacity(sessions);
    let t = Arc::new(t);
    while open.len() < sessions {
        if Instant::now() > deadline {
            return Err(format!("only {} sessions opened in 300 s", open.len()).into());
        }
        let batch = parallel.max(1).min(sessions - open.len());
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..batch {
            let t = t.clone();
            set.spawn(async move { open_session(&t).await });
        }
        while let Some(r) = set.join_next().await {
            match r? {
                Ok(c) => open.push(c),
                Err(e) => return Err(format!("session {} failed: {e}", open.len() + 1).into()),
            }
        }
    }
    let open_secs = start.elapsed().as_secs_f64();
    println!("READY sessions={} open_seconds={open_secs:.2}", open.len());
    let _ = std::io::stdout().flush();
    tokio::time::sleep(Duration::from_secs(hold)).await;
    // Every session must still be a live pipe to the engine.
    let mut alive = 0usize;
    for (i, c) in open.iter_mut().enumerate() {
        let probe = format!("ping {i}\n");
        let r = match c {
            Conn::Tcp(s) => echo_check(s, probe.as_bytes()).await,
            Conn::Unix(s) => echo_check(s, probe.as_bytes()).await,
        };
        if r.is_ok() {
            alive += 1;
        }
    }
    let mut closed = 0usize;
    for c in open.drain(..) {
        let r = match c {
            Conn::Tcp(s) => hijack_close(s).await,
            Conn::Unix(s) => hijack_close(s).await,
        };
        if r.is_ok() {
            closed += 1;
        }
    }
    if alive != sessions || closed != sessions {
        return Err(format!("of {sessions} sessions, {alive} echoed after the hold and {closed} closed cleanly").into());
    }
    Ok(format!("sessions={sessions} open_seconds={open_secs:.2} alive={alive} closed={closed}"))
}

async fn hijack_rate<S>(mut s: S, t: &Target, bytes: u64, chunk: usize) -> Result<f64, BoxError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    hijack_handshake(&mut s, t).await?;
    let (mut rd, mut wr) = tokio::io::split(s);
    let buf = Bytes::from((0..chunk.max(1)).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let start = Instant::now();
    let writer = async {
        let mut left = bytes;
        while left > 0 {
            let n = (buf.len() as u64).min(left) as usize;
            wr.write_all(&buf[..n]).await?;
            left -= n as u64;
        }
        Ok::<_, std::io::Error>(wr)
    };
    let reader = async {
        let mut got = 0u64;
        let mut b = vec![0u8; 256 * 1024];
        while got < bytes {
            let n = rd.read(&mut b).await?;
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        Ok::<_, std::io::Error>((rd, got))
    };
    let (w, r) = tokio::join!(writer, reader);
    let (mut wr, (mut rd, got)) = (w?, r?);
    let secs = start.elapsed().as_secs_f64();
    if got != bytes {
        return Err(format!("echoed {got} of {bytes} bytes").into());
    }
    wr.shutdown().await?;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut rest)).await;
    Ok(secs)
}

async fn logins(
    t: Target,
    rate: f64,
    seconds: f64,
    user: String,
    password: String,
    max_in_flight: u64,
    spread: bool,
    answers: Option<PathBuf>,
) -> Result<String, BoxError> {
    let body = Bytes::from(serde_json::json!({"Username": user, "Password": password}).to_string());
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.01));
    let total = (rate * seconds).round().max(1.0) as u64;
    let in_flight = Arc::new(AtomicU64::new(0));
    let statuses = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<u16, u64>::new()));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<f64>::new()));
    // Every answer (any status) with its time, for --answers.
    let answered = Arc::new(std::sync::Mutex::new(Vec::<(u16, f64)>::new()));
    let t = Arc::new(t);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut set = tokio::task::JoinSet::new();
    let mut skipped = 0u64;
    for i in 0..total {
        tick.tick().await;
        if in_flight.load(Ordering::Relaxed) >= max_in_flight {
            skipped += 1;
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (t, body, in_flight, statuses, latencies, answered) =
            (t.clone(), body.clone(), in_flight.clone(), statuses.clone(), latencies.clone(), answered.clone());
        set.spawn(async move {
            let start = Instant::now();
            let r = async {
                let mut req = request(&t, Method::POST, http_body_util::Full::new(body));
                req.headers_mut().insert(header::CONTENT_TYPE, "application/json".parse().expect("static"));
                if spread {
                    let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
                    req.headers_mut().insert("x-forwarded-for", ip.parse().expect("address"));
                }
                let resp = match connect(&t).await? {
                    Conn::Tcp(s) => handshake(s).await?.send_request(req).await?,
                    Conn::Unix(s) => handshake(s).await?.send_request(req).await?,
                };
                let status = resp.status().as_u16();
                let _ = resp.into_body().collect().await;
                Ok::<_, BoxError>(status)
            }
            .await;
            let status = r.unwrap_or(0);
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            answered.lock().unwrap_or_else(|e| e.into_inner()).push((status, ms));
            *statuses.lock().unwrap_or_else(|e| e.into_inner()).entry(status).or_default() += 1;
            if status == 200 {
                latencies.lock().unwrap_or_else(|e| e.into_inner()).push(ms);
            }
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(60), async { while set.join_next().await.is_some() {} }).await;
    set.abort_all();
    if let Some(path) = answers {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        for (status, ms) in answered.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            writeln!(f, "{status} {ms:.1}")?;
        }
    }
    let statuses = statuses.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut lat = latencies.lock().unwrap_or_else(|e| e.into_inner()).clone();
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| if lat.is_empty() { 0.0 } else { lat[((lat.len() - 1) as f64 * p) as usize] };
    let by_status: Vec<String> = statuses.iter().map(|(s, n)| format!("status_{s}={n}")).collect();
    Ok(format!(
        "logins={total} skipped={skipped} {} login_p50_ms={:.1} login_p99_ms={:.1}",
        by_status.join(" "),
        pct(0.5),
        pct(0.99)
    ))
}

/// A TLS client trusting `ca`, presenting `identity` (cert, key) if given.
fn tls_client(
    ca: &std::path::Path,
    identity: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<tokio_rustls::TlsConnector, BoxError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca)? {
        roots.add(c?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let cfg = match identity {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
            b.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key)?)?
        }
        None => b.with_no_client_auth(),
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
}

async fn requests(
    t: Arc<Target>,
    tls: tokio_rustls::TlsConnector,
    connections: usize,
    seconds: f64,
) -> Result<String, BoxError> {
    let addr = t.tcp.ok_or("requests needs --tcp")?;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let done = Arc::new(AtomicU64::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..connections.max(1) {
        let (t, tls, done) = (t.clone(), tls.clone(), done.clone());
        set.spawn(async move {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            let stream = tls.connect(name, tcp).await?;
            let mut tx = handshake::<_, http_body_util::Empty<Bytes>>(stream).await?;
            while Instant::now() < deadline {
                let resp = tx.send_request(request(&t, Method::GET, http_body_util::Empty::new())).await?;
                if !resp.status().is_success() {
                    return Err::<(), BoxError>(format!("GET {} answered {}", t.path, resp.status()).into());
                }
                resp.into_body().collect().await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        });
    }
    let start = Instant::now();
    while let Some(r) = set.join_next().await {
        r??;
    }
    let n = done.load(Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64();
    Ok(format!("requests={n} seconds={secs:.3} rps={:.0}", n as f64 / secs))
}
