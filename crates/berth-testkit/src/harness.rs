//! The daemon harness of Berth's integration tests (`use
//! berth_testkit::harness::*;` in each `tests/*.rs`).
//!
//! Tests run the real `berth` binary as a child process rather than calling
//! into the library, so that flags, startup, signal handling and logging are
//! exercised exactly as an operator would meet them. Every test gets its own
//! ports and data directory so that tests can run in parallel threads and in
//! parallel test binaries.

use std::ffi::{OsStr, OsString};
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder, StatusCode};
use rustix::process::{kill_process, Pid, Signal};
use serde_json::{json, Value};
use tempfile::TempDir;

pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "adminpassword";
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";
pub const TEST_IMAGE: &str = "berth-test/busybox:latest";

/// How long a started daemon has to answer `GET /api/status` with 200.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a dropped daemon has to exit after SIGTERM before SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(5);
/// How long [`Daemon::stop_graceful`] waits for the exit it asserts.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Startup attempts when the child reports that its port was taken (ports
/// are found free and then released, so another process can grab one in
/// between).
const START_ATTEMPTS: usize = 4;

/// A path inside the repository (this crate sits at `crates/berth-testkit`).
pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel)
}

/// The `berth` binary under test. Cargo builds it for the integration tests
/// of the `berth` package and names it in `CARGO_BIN_EXE_berth` at run time
/// (recent cargo; 1.95 does); a test binary started otherwise finds it beside its
/// own `deps/` directory, where cargo puts both.
pub fn berth_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CARGO_BIN_EXE_berth") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("path of the running test binary");
    let candidate = exe.parent().and_then(Path::parent).map(|dir| dir.join("berth"));
    match candidate {
        Some(p) if p.is_file() => p,
        _ => panic!(
            "no berth binary: run the tests through `cargo test` (which builds it), or set CARGO_BIN_EXE_berth \
             (looked beside {})",
            exe.display()
        ),
    }
}

/// The name of the running test, as the test harness names its thread.
pub fn test_name() -> String {
    std::thread::current().name().unwrap_or("<unnamed test>").to_owned()
}

/// Two distinct free loopback ports. Both listeners are held until both
/// ports are known so the two cannot coincide.
pub fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let b = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    (a.local_addr().unwrap().port(), b.local_addr().unwrap().port())
}

/// A plain HTTP client for loopback tests: no proxy from the environment,
/// no overall timeout (streaming tests read for long), a short connect
/// timeout so a dead daemon fails fast.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().connect_timeout(Duration::from_secs(5)).build().expect("build reqwest client")
}

/// An HTTP client whose every connection goes to the unix socket `path`
/// (the host part of request URLs is then ignored), for talking to a Docker
/// engine or a mock directly.
pub fn unix_http_client(path: impl AsRef<Path>) -> reqwest::Client {
    reqwest::Client::builder()
        .unix_socket(path.as_ref())
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("build reqwest unix client")
}

/// Status and body of a response, the body parsed as JSON when it is JSON,
/// `Value::Null` when empty, and a JSON string of the raw text otherwise (so
/// a test asserting on an error page still sees what came back).
pub async fn read_json(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let bytes = resp.bytes().await.expect("read response body");
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    (status, value)
}

// ---------------------------------------------------------------- daemon

/// Options for starting a [`Daemon`]; see [`Daemon::builder`].
#[derive(Clone, Debug)]
pub struct DaemonBuilder {
    program: Option<(PathBuf, Vec<OsString>)>,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    data_dir: Option<PathBuf>,
    log_level: String,
    ready_timeout: Duration,
}

impl Default for DaemonBuilder {
    fn default() -> Self {
        DaemonBuilder {
            program: None,
            args: Vec::new(),
            envs: Vec::new(),
            data_dir: None,
            log_level: "info".to_owned(),
            ready_timeout: READY_TIMEOUT,
        }
    }
}

impl DaemonBuilder {
    /// An extra command-line argument, after the harness's own flags.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Use this data directory instead of a fresh one. The caller owns it,
    /// so it outlives the daemon: start a second daemon on it to test what
    /// survives a restart from scratch.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_owned();
        self
    }

    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Run `program leading_args... <harness flags> <extra args>` instead of
    /// the `berth` binary: for testing this harness with a stand-in.
    pub fn program<I, S>(mut self, program: impl Into<PathBuf>, leading_args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let lead = leading_args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        self.program = Some((program.into(), lead));
        self
    }

    /// Starts the daemon and waits until `GET /api/status` answers 200.
    ///
    /// # Panics
    /// If it exits or is not ready within the ready timeout; the message
    /// includes what the child wrote to stderr.
    pub async fn start(self) -> Daemon {
        let scratch = tempfile::Builder::new().prefix("berth-test-").tempdir().expect("create scratch dir");
        let data_dir = match &self.data_dir {
            Some(d) => d.clone(),
            None => scratch.path().join("data"),
        };
        std::fs::create_dir_all(&data_dir).expect("create data dir");
        let mut daemon =
            Daemon { child: None, http_port: 0, https_port: 0, data_dir, scratch, spec: self, client: http_client() };
        daemon.launch(None).await;
        daemon
    }
}

enum Startup {
    Ready,
    Exited(ExitStatus),
    TimedOut,
}

/// A running `berth` process. Dropping it stops the process (SIGTERM, then
/// SIGKILL after [`TERM_GRACE`]) and removes its temporary directories.
pub struct Daemon {
    child: Option<Child>,
    http_port: u16,
    https_port: u16,
    data_dir: PathBuf,
    /// Logs, and the data directory unless one was given.
    scratch: TempDir,
    spec: DaemonBuilder,
    client: reqwest::Client,
}

impl Daemon {
    pub fn builder() -> DaemonBuilder {
        DaemonBuilder::default()
    }

    /// A daemon with default settings.
    pub async fn start() -> Daemon {
        DaemonBuilder::default().start().await
    }

    pub fn port(&self) -> u16 {
        self.http_port
    }

    pub fn https_port(&self) -> u16 {
        self.https_port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.http_port))
    }

    pub fn https_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.https_port))
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.http_port, path)
    }

    /// `https://127.0.0.1:PORT2{path}`.
    pub fn https_url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{}", self.https_port, path)
    }

    /// The daemon's JWT signing secret: `<data>/jwt.secret` on the
    /// embedded store, the store's entry on PostgreSQL.
    pub fn jwt_secret(&self) -> Vec<u8> {
        if crate::postgres::test_store_for(&self.data_dir).is_some() {
            let hex = crate::postgres::shared_cluster()
                .psql(
                    &crate::postgres::test_db_name(&self.data_dir),
                    "SELECT encode(value, 'hex') FROM berth_meta WHERE key = 'secret:jwt'",
                )
                .expect("read the JWT secret from the store");
            return (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();
        }
        std::fs::read(self.data_dir.join("jwt.secret")).expect("read jwt.secret")
    }

    /// Everything the store holds, as bytes to search for what must not be
    /// there (a password in clear): the redb file, or on PostgreSQL every
    /// record and meta value.
    pub fn stored_bytes(&self) -> Vec<u8> {
        if crate::postgres::test_store_for(&self.data_dir).is_some() {
            let sql = "SELECT coalesce(string_agg(encode(value, 'escape'), E'\\n'), '') FROM \
                       (SELECT value FROM berth_records UNION ALL SELECT value FROM berth_meta) v";
            return crate::postgres::shared_cluster()
                .psql(&crate::postgres::test_db_name(&self.data_dir), sql)
                .expect("read the store")
                .into_bytes();
        }
        std::fs::read(self.data_dir.join("berth.redb")).expect("read berth.redb")
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A directory that lives as long as the daemon handle, for a test's
    /// own files (certificates, configs).
    pub fn scratch_dir(&self) -> &Path {
        self.scratch.path()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running (reaps it if it has exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn stdout_path(&self) -> PathBuf {
        self.scratch.path().join("stdout.log")
    }

    fn stderr_path(&self) -> PathBuf {
        self.scratch.path().join("stderr.log")
    }

    /// Everything the daemon wrote to stdout, over all its runs.
    pub fn stdout_log(&self) -> String {
        read_lossy(&self.stdout_path())
    }

    /// Everything the daemon wrote to stderr, over all its runs.
    pub fn stderr_log(&self) -> String {
        read_lossy(&self.stderr_path())
    }

    /// stdout and stderr together, over all runs: what a test searches to
    /// prove a secret was never logged.
    pub fn logs(&self) -> String {
        let mut s = self.stdout_log();
        s.push_str(&self.stderr_log());
        s
    }

    /// The shared client; its pool is renewed on every (re)start.
    pub fn http(&self) -> &reqwest::Client {
        &self.client
    }

    /// A request to `path` on the plain-HTTP port, with `Authorization:
    /// Bearer` when a token is given.
    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let rb = self.client.request(method, self.url(path));
        match token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    pub async fn get_json(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let resp = self.request(Method::GET, path, token).send().await;
        read_json(resp.unwrap_or_else(|e| panic!("GET {path}: {e}"))).await
    }

    pub async fn post_json(&self, path: &str, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
        let resp = self.request(Method::POST, path, token).json(body).send().await;
        read_json(resp.unwrap_or_else(|e| panic!("POST {path}: {e}"))).await
    }

    pub async fn put_json(&self, path: &str, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
        let resp = self.request(Method::PUT, path, token).json(body).send().await;
        read_json(resp.unwrap_or_else(|e| panic!("PUT {path}: {e}"))).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let resp = self.request(Method::DELETE, path, token).send().await;
        read_json(resp.unwrap_or_else(|e| panic!("DELETE {path}: {e}"))).await
    }

    /// Creates the initial administrator `admin`/`adminpassword`.
    ///
    /// # Panics
    /// Unless the daemon answers 2xx.
    pub async fn init_admin(&self) -> Value {
        let body = json!({"Username": ADMIN_USER, "Password": ADMIN_PASSWORD});
        let (status, v) = self.post_json("/api/users/admin/init", None, &body).await;
        assert!(status.is_success(), "admin init: {status} {v}");
        v
    }

    /// Logs in and returns the JWT.
    ///
    /// # Panics
    /// Unless the daemon answers 2xx with a `jwt` string.
    pub async fn login(&self, user: &str, password: &str) -> String {
        let body = json!({"Username": user, "Password": password});
        let (status, v) = self.post_json("/api/auth", None, &body).await;
        assert!(status.is_success(), "login as {user}: {status} {v}");
        v["jwt"].as_str().unwrap_or_else(|| panic!("login as {user}: no jwt in {v}")).to_owned()
    }

    /// `init_admin` then `login` as that admin.
    pub async fn admin_token(&self) -> String {
        self.init_admin().await;
        self.login(ADMIN_USER, ADMIN_PASSWORD).await
    }

    /// Registers a Docker API environment the way Portainer's UI does
    /// (multipart, `EndpointCreationType=1`) and returns its `Id`. `url` is
    /// Docker's form: `unix:///path.sock` or `tcp://127.0.0.1:PORT`.
    ///
    /// # Panics
    /// Unless the daemon answers 2xx with a numeric `Id`.
    pub async fn create_endpoint(&self, token: &str, name: &str, url: &str) -> u64 {
        let form = reqwest::multipart::Form::new()
            .text("Name", name.to_owned())
            .text("EndpointCreationType", "1")
            .text("URL", url.to_owned());
        let resp = self
            .request(Method::POST, "/api/endpoints", Some(token))
            .multipart(form)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST /api/endpoints: {e}"));
        let (status, v) = read_json(resp).await;
        assert!(status.is_success(), "create endpoint {name}: {status} {v}");
        v["Id"].as_u64().unwrap_or_else(|| panic!("create endpoint {name}: no Id in {v}"))
    }

    /// Sends SIGTERM and waits up to [`STOP_TIMEOUT`] for the process to
    /// exit.
    ///
    /// # Panics
    /// If it is still running then (it is killed first): a daemon that
    /// ignores SIGTERM is a bug worth failing on.
    pub async fn stop_graceful(&mut self) -> ExitStatus {
        self.stop_graceful_within(STOP_TIMEOUT).await
    }

    /// [`stop_graceful`](Self::stop_graceful) with a deadline of your own,
    /// for tests of shutdown draining.
    pub async fn stop_graceful_within(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("daemon is not running");
        signal(&child, Signal::TERM);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait for daemon") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("daemon did not exit within {timeout:?} of SIGTERM\n--- logs ---\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: a crash, for testing what survives one.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the daemon gracefully and starts it again on the same data
    /// directory (and, when still free, the same ports).
    pub async fn restart(&mut self) {
        if self.child.is_some() {
            self.stop_graceful().await;
        }
        self.relaunch().await;
    }

    /// Starts the daemon again after [`stop_graceful`](Self::stop_graceful)
    /// or [`kill`](Self::kill).
    pub async fn relaunch(&mut self) {
        assert!(self.child.is_none(), "daemon is still running");
        self.client = http_client();
        let ports = (self.http_port, self.https_port);
        self.launch(Some(ports)).await;
    }

    async fn launch(&mut self, prefer: Option<(u16, u16)>) {
        for attempt in 0..START_ATTEMPTS {
            let (http, https) = match (attempt, prefer) {
                (0, Some(p)) => p,
                _ => free_ports(),
            };
            self.http_port = http;
            self.https_port = https;
            let stderr_before = std::fs::metadata(self.stderr_path()).map_or(0, |m| m.len());
            self.spawn();
            match self.wait_ready().await {
                Startup::Ready => return,
                Startup::TimedOut => {
                    self.kill();
                    panic!(
                        "daemon not ready within {:?} (GET {} never answered 200)\n--- logs ---\n{}",
                        self.spec.ready_timeout,
                        self.url("/api/status"),
                        self.logs()
                    );
                }
                Startup::Exited(status) => {
                    let stderr = self.stderr_log();
                    let this_run = stderr.get(stderr_before as usize..).unwrap_or(&stderr);
                    let lower = this_run.to_ascii_lowercase();
                    let port_taken = lower.contains("address already in use")
                        || lower.contains("addrinuse")
                        || lower.contains("os error 98");
                    if port_taken && attempt + 1 < START_ATTEMPTS {
                        continue;
                    }
                    panic!(
                        "daemon exited during startup ({status})\n--- stderr ---\n{this_run}\n--- stdout ---\n{}",
                        self.stdout_log()
                    );
                }
            }
        }
        unreachable!("every attempt returns or panics");
    }

    /// `--store <url>` under `BERTH_TEST_STORE=postgres`, unless the test
    /// chose a store itself.
    fn test_store_args(&self) -> Vec<OsString> {
        if self.spec.args.iter().any(|a| a == "--store") {
            return Vec::new();
        }
        match crate::postgres::test_store_for(&self.data_dir) {
            Some(url) => vec!["--store".into(), url.into()],
            None => Vec::new(),
        }
    }

    fn spawn(&mut self) {
        let append = |p: PathBuf| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .unwrap_or_else(|e| panic!("open {}: {e}", p.display()))
        };
        let (program, lead) = match &self.spec.program {
            Some((p, lead)) => (p.clone(), lead.clone()),
            None => (berth_bin(), Vec::new()),
        };
        let mut cmd = Command::new(&program);
        cmd.args(&lead)
            .arg("--bind")
            .arg(format!("127.0.0.1:{}", self.http_port))
            .arg("--bind-https")
            .arg(format!("127.0.0.1:{}", self.https_port))
            .arg("--data")
            .arg(&self.data_dir)
            .arg("--log-level")
            .arg(&self.spec.log_level)
            .args(&self.spec.args)
            .args(self.test_store_args())
            .stdin(Stdio::null())
            .stdout(append(self.stdout_path()))
            .stderr(append(self.stderr_path()));
        // A developer's own BERTH_* settings must not leak into tests; the
        // ones a test wants it passes with `env`.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("BERTH_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(self.spec.envs.iter().map(|(k, v)| (k, v)));
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
        self.child = Some(child);
    }

    async fn wait_ready(&mut self) -> Startup {
        let deadline = Instant::now() + self.spec.ready_timeout;
        let url = self.url("/api/status");
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().expect("wait for daemon")) {
                self.child = None;
                return Startup::Exited(status);
            }
            let probe = self.client.get(&url).timeout(Duration::from_secs(1)).send().await;
            if matches!(probe, Ok(r) if r.status() == StatusCode::OK) {
                return Startup::Ready;
            }
            if Instant::now() >= deadline {
                return Startup::TimedOut;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(&child, Signal::TERM);
        let deadline = Instant::now() + TERM_GRACE;
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Sends `sig` to our own child. The child is not yet reaped
/// (`Child::try_wait` has not returned its status), so its pid cannot name a
/// recycled process.
fn signal(child: &Child, sig: Signal) {
    let pid = i32::try_from(child.id()).ok().and_then(Pid::from_raw).expect("a child's pid is a positive pid_t");
    let _ = kill_process(pid, sig);
}

fn read_lossy(path: &Path) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

// ---------------------------------------------------------------- docker

/// Whether a Docker engine answers `GET /_ping` on [`DOCKER_SOCKET`].
pub fn docker_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| ping_unix(Path::new(DOCKER_SOCKET)))
}

/// Whether the `docker` CLI runs.
pub fn docker_cli_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| command_succeeds("docker", &["--version"]))
}

/// A raw HTTP/1.0 ping, so the check needs neither a runtime nor curl.
fn ping_unix(path: &Path) -> bool {
    use std::os::unix::net::UnixStream;
    let Ok(mut s) = UnixStream::connect(path) else {
        return false;
    };
    let t = Some(Duration::from_secs(3));
    if s.set_read_timeout(t).is_err() || s.set_write_timeout(t).is_err() {
        return false;
    }
    if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n").is_err() {
        return false;
    }
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp);
    resp.starts_with("HTTP/1.") && resp.contains(" 200 ") && resp.ends_with("OK")
}

fn command_succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// True when a Docker engine and the CLI are present. Otherwise prints
/// `SKIP <test>: ...` and returns false, for `if !require_docker() { return; }`.
///
/// # Panics
/// When `BERTH_REQUIRE_DOCKER=1` (CI sets it when it found an engine): there
/// a missing engine means broken CI, not a machine without Docker.
pub fn require_docker() -> bool {
    let missing = if !docker_available() {
        Some(format!("no Docker engine at {DOCKER_SOCKET}"))
    } else if !docker_cli_available() {
        Some("no docker CLI on PATH".to_owned())
    } else {
        None
    };
    match missing {
        None => true,
        Some(why) if std::env::var("BERTH_REQUIRE_DOCKER").as_deref() == Ok("1") => {
            panic!("{}: {why}, but BERTH_REQUIRE_DOCKER=1", test_name())
        }
        Some(why) => {
            eprintln!("SKIP {}: {why}", test_name());
            false
        }
    }
}

/// The test image, built by `scripts/make-test-image.sh` on first use (the
/// script takes a file lock, so parallel test binaries build it once).
///
/// # Panics
/// If the image cannot be built; call [`require_docker`] first.
pub fn test_image() -> &'static str {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        if command_succeeds("docker", &["image", "inspect", TEST_IMAGE]) {
            return;
        }
        let script = repo_path("scripts/make-test-image.sh");
        let out = Command::new(&script)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
    TEST_IMAGE
}

/// Whether HTTPie's `http` command runs.
pub fn httpie_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| command_succeeds("http", &["--version"]))
}

/// Like [`require_docker`], for tests that shell out to HTTPie.
pub fn require_httpie() -> bool {
    if httpie_available() {
        return true;
    }
    eprintln!("SKIP {}: no HTTPie 'http' command on PATH", test_name());
    false
}

/// What a CLI run produced.
#[derive(Debug)]
pub struct CliOutput {
    pub args: Vec<String>,
    /// `None` when the process was killed (timeout) or could not be waited for.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

impl CliOutput {
    pub fn success(&self) -> bool {
        !self.timed_out && self.status.is_some_and(|s| s.success())
    }

    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// # Panics
    /// Unless the command exited 0 in time; the message shows everything.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(self.success(), "command failed: {self}");
        self
    }
}

impl std::fmt::Display for CliOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args.join(" "),
            match (self.timed_out, self.status) {
                (true, _) => "timed out".to_owned(),
                (false, Some(s)) => s.to_string(),
                (false, None) => "status unknown".to_owned(),
            },
            self.stdout,
            self.stderr
        )
    }
}

/// The real docker CLI pointed at Berth: its own `config.json` carries the
/// JWT as an `Authorization` header, and `-H` points at the environment's
/// proxy path, which is how Portainer documents CLI access.
pub struct DockerCli {
    config: TempDir,
    host: String,
    timeout: Duration,
    envs: Vec<(String, String)>,
}

impl DockerCli {
    /// For environment `endpoint_id` of `daemon`, authenticated by `token`.
    pub fn new(daemon: &Daemon, endpoint_id: u64, token: &str) -> DockerCli {
        DockerCli::with_host(
            format!("tcp://127.0.0.1:{}/api/endpoints/{endpoint_id}/docker", daemon.port()),
            Some(token),
        )
    }

    /// For any `-H` value (`unix:///...`, `tcp://...`), with an optional
    /// bearer token.
    pub fn with_host(host: impl Into<String>, token: Option<&str>) -> DockerCli {
        let config =
            tempfile::Builder::new().prefix("berth-docker-config-").tempdir().expect("create docker config dir");
        let cfg = match token {
            Some(t) => json!({"HttpHeaders": {"Authorization": format!("Bearer {t}")}}),
            None => json!({}),
        };
        std::fs::write(config.path().join("config.json"), cfg.to_string()).expect("write docker config.json");
        DockerCli { config, host: host.into(), timeout: Duration::from_secs(60), envs: Vec::new() }
    }

    /// The run is killed after this long (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn config_dir(&self) -> &Path {
        self.config.path()
    }

    pub async fn run(&self, args: &[&str]) -> CliOutput {
        self.exec(args, None).await
    }

    /// Runs with `input` on stdin, closed after it is written (pass `-i`
    /// yourself where docker needs it).
    pub async fn run_with_stdin(&self, args: &[&str], input: &[u8]) -> CliOutput {
        self.exec(args, Some(input.to_vec())).await
    }

    async fn exec(&self, args: &[&str], input: Option<Vec<u8>>) -> CliOutput {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let mut cmd = tokio::process::Command::new("docker");
        cmd.arg("--config").arg(self.config.path()).arg("-H").arg(&self.host).args(args);
        for var in [
            "DOCKER_HOST",
            "DOCKER_CONTEXT",
            "DOCKER_CONFIG",
            "DOCKER_TLS_VERIFY",
            "DOCKER_CERT_PATH",
            "DOCKER_API_VERSION",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("DOCKER_CLI_HINTS", "false")
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn docker CLI");

        if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
            tokio::spawn(async move {
                // A command that exits without reading its input is not
                // an error of ours.
                let _ = stdin.write_all(&data).await;
            });
        }
        let mut out_pipe = child.stdout.take().expect("piped stdout");
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        let out_task = tokio::spawn(async move {
            let mut v = Vec::new();
            let _ = out_pipe.read_to_end(&mut v).await;
            v
        });
        let err_task = tokio::spawn(async move {
            let mut v = Vec::new();
            let _ = err_pipe.read_to_end(&mut v).await;
            v
        });

        let (status, timed_out) = match tokio::time::timeout(self.timeout, child.wait()).await {
            Ok(s) => (s.ok(), false),
            Err(_) => {
                let _ = child.kill().await;
                (None, true)
            }
        };
        // A grandchild holding the pipes open must not hang the test.
        let collect = |t: tokio::task::JoinHandle<Vec<u8>>| async move {
            match tokio::time::timeout(Duration::from_secs(5), t).await {
                Ok(Ok(v)) => String::from_utf8_lossy(&v).into_owned(),
                _ => String::from("<output not collected>"),
            }
        };
        let mut all_args = vec![
            "docker".to_owned(),
            "--config".to_owned(),
            self.config.path().display().to_string(),
            "-H".to_owned(),
            self.host.clone(),
        ];
        all_args.extend(args.iter().map(|a| (*a).to_owned()));
        CliOutput {
            args: all_args,
            status,
            stdout: collect(out_task).await,
            stderr: collect(err_task).await,
            timed_out,
        }
    }
}
