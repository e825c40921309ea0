//! Helpers shared by the stack test binaries (`stacks.rs`,
//! `stacks_swarm.rs`): git servers on loopback (`git daemon`, and a smart
//! HTTP server with basic auth in front of `git http-backend`), Docker
//! queries on the real engine, stack API calls, and a swarm guard.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::harness::{free_ports, read_json, unix_http_client, Daemon, DOCKER_SOCKET};

/// A service that stops at once on SIGTERM (busybox `sleep` as PID 1
/// ignores it, which would make every `down` wait for the grace period).
pub fn compose_file(image: &str, extra_env: &str) -> String {
    format!(
        "services:\n  app:\n    image: {image}\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 3600 & wait\"]\n    \
         environment:\n      - GREETING=${{GREETING:-none}}\n{extra_env}"
    )
}

/// Writes an executable shell script `dir/name` (a stand-in deployer).
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Runs a command to completion, bounded; for setup steps (git, docker).
pub fn run(program: &str, args: &[&str], cwd: Option<&Path>) -> String {
    let mut c = Command::new(program);
    c.args(args).stdin(Stdio::null());
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    for k in ["GIT_DIR", "GIT_WORK_TREE", "GIT_CONFIG_GLOBAL"] {
        c.env_remove(k);
    }
    c.env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid");
    let out = c.output().unwrap_or_else(|e| panic!("{program} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

// ---------------------------------------------------------------- git

/// Repositories under one folder, served by `git daemon` on loopback.
pub struct GitServer {
    pub root: TempDir,
    pub port: u16,
    child: Child,
}

impl GitServer {
    pub fn start() -> GitServer {
        let root = tempfile::Builder::new().prefix("berth-git-").tempdir().unwrap();
        for attempt in 0..4 {
            let (port, _) = free_ports();
            let mut child = Command::new("git")
                .args([
                    "daemon",
                    "--reuseaddr",
                    "--export-all",
                    "--listen=127.0.0.1",
                    &format!("--port={port}"),
                    &format!("--base-path={}", root.path().display()),
                    &root.path().display().to_string(),
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                // `git daemon` runs `git-daemon` as a child: a group of its
                // own lets Drop kill both, so no server outlives the test.
                .process_group(0)
                .spawn()
                .expect("spawn git daemon");
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return GitServer { root, port, child };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            kill_group(&mut child);
            assert!(attempt < 3, "git daemon did not start");
        }
        unreachable!()
    }

    /// A new repository `name` with one commit holding `files`.
    pub fn repo(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        run("git", &["init", "-q", "-b", "main"], Some(&dir));
        self.commit(name, files);
        dir
    }

    /// Writes `files` and commits them; returns the commit hash.
    pub fn commit(&self, name: &str, files: &[(&str, &str)]) -> String {
        let dir = self.root.path().join(name);
        for (path, content) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, content).unwrap();
        }
        run("git", &["add", "-A"], Some(&dir));
        run("git", &["commit", "-q", "-m", "update"], Some(&dir));
        self.head(name)
    }

    pub fn symlink(&self, name: &str, link: &str, target: &str) -> String {
        let dir = self.root.path().join(name);
        std::os::unix::fs::symlink(target, dir.join(link)).unwrap();
        run("git", &["add", "-A"], Some(&dir));
        run("git", &["commit", "-q", "-m", "link"], Some(&dir));
        self.head(name)
    }

    pub fn head(&self, name: &str) -> String {
        run("git", &["rev-parse", "HEAD"], Some(&self.root.path().join(name)))
    }

    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}", self.port)
    }
}

/// SIGKILLs the child's whole process group, then reaps the child.
fn kill_group(child: &mut Child) {
    // The group id is the child's pid (process_group(0)); `kill -KILL -- -PGID`.
    let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for GitServer {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// Request targets a git HTTP server saw, with their Authorization header.
pub type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, Option<String>)>>>;

/// Smart HTTP in front of `git http-backend`, insisting on HTTP basic auth
/// with one user and password: proves Berth hands credentials to git (and
/// only to git). Serves the repositories of a [`GitServer`] folder.
pub struct GitHttp {
    pub port: u16,
    /// Requests seen, with the Authorization header they carried.
    pub seen: Seen,
}

impl GitHttp {
    pub async fn start(root: PathBuf, user: &str, password: &str) -> GitHttp {
        use base64::Engine;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let expected =
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")));
        let seen: Seen = Default::default();
        let seen2 = seen.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (root, expected, seen) = (root.clone(), expected.clone(), seen2.clone());
                tokio::spawn(async move {
                    let _ = serve_cgi(sock, &root, &expected, &seen).await;
                });
            }
        });
        GitHttp { port, seen }
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }
}

async fn serve_cgi(
    sock: tokio::net::TcpStream,
    root: &Path,
    expected_auth: &str,
    seen: &std::sync::Mutex<Vec<(String, Option<String>)>>,
) -> std::io::Result<()> {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    r.read_line(&mut line).await?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).await? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let auth = header("authorization");
    seen.lock().unwrap().push((target.clone(), auth.clone()));
    if auth.as_deref() != Some(expected_auth) {
        w.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await?;
        return Ok(());
    }
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).await?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
            let mut chunk = vec![0u8; n + 2];
            r.read_exact(&mut chunk).await?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(n, 0);
        r.read_exact(&mut body).await?;
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut cgi = tokio::process::Command::new("git");
    cgi.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("REMOTE_USER", "user")
        .env("CONTENT_TYPE", header("content-type").unwrap_or_default())
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    if let Some(enc) = header("content-encoding") {
        cgi.env("HTTP_CONTENT_ENCODING", enc);
    }
    if let Some(p) = header("git-protocol") {
        cgi.env("GIT_PROTOCOL", p);
    }
    let mut child = cgi.spawn()?;
    let mut stdin = child.stdin.take().unwrap();
    tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let out = child.wait_with_output().await?;
    let text = out.stdout;
    let split = text.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    let split = split.or_else(|| text.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let (head, payload) = match split {
        Some((i, n)) => (String::from_utf8_lossy(&text[..i]).into_owned(), &text[i + n..]),
        None => (String::new(), &text[..]),
    };
    let mut status = "200 OK".to_string();
    let mut out_headers = String::new();
    for l in head.lines() {
        match l.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().to_string(),
            Some(_) => {
                out_headers.push_str(l.trim_end());
                out_headers.push_str("\r\n");
            }
            None => {}
        }
    }
    let resp =
        format!("HTTP/1.1 {status}\r\n{out_headers}Content-Length: {}\r\nConnection: close\r\n\r\n", payload.len());
    w.write_all(resp.as_bytes()).await?;
    w.write_all(payload).await?;
    w.shutdown().await
}

// ---------------------------------------------------------------- docker

/// `GET` on the real engine's socket.
pub async fn docker_get(path: &str) -> Value {
    let resp = unix_http_client(DOCKER_SOCKET)
        .get(format!("http://docker{path}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("docker GET {path}: {e}"));
    let (s, v) = read_json(resp).await;
    assert!(s.is_success(), "docker GET {path}: {s} {v}");
    v
}

fn label_filter(label: &str) -> String {
    let f = json!({"label": [label]}).to_string();
    serde_urlencoded::to_string([("filters", f)]).unwrap()
}

/// Containers (running or not) of a Compose project.
pub async fn project_containers(project: &str) -> Vec<Value> {
    let v = docker_get(&format!(
        "/containers/json?all=1&{}",
        label_filter(&format!("com.docker.compose.project={project}"))
    ))
    .await;
    v.as_array().cloned().unwrap_or_default()
}

/// Services of a swarm stack.
pub async fn stack_services(stack: &str) -> Vec<Value> {
    let v = docker_get(&format!("/services?{}", label_filter(&format!("com.docker.stack.namespace={stack}")))).await;
    v.as_array().cloned().unwrap_or_default()
}

/// The `Config.Env` of a container.
pub async fn container_env(id: &str) -> Vec<String> {
    let v = docker_get(&format!("/containers/{id}/json")).await;
    v["Config"]["Env"].as_array().unwrap().iter().map(|e| e.as_str().unwrap().to_string()).collect()
}

/// Removes every container and network of a Compose project.
pub async fn remove_project(project: &str) {
    let client = unix_http_client(DOCKER_SOCKET);
    for c in project_containers(project).await {
        let id = c["Id"].as_str().unwrap();
        let _ = client.delete(format!("http://docker/containers/{id}?force=1&v=1")).send().await;
    }
    let nets =
        docker_get(&format!("/networks?{}", label_filter(&format!("com.docker.compose.project={project}")))).await;
    for n in nets.as_array().cloned().unwrap_or_default() {
        let id = n["Id"].as_str().unwrap();
        let _ = client.delete(format!("http://docker/networks/{id}")).send().await;
    }
}

/// Leaves the engine's swarm state as it was found: a swarm initialised
/// here is left on drop, even when the test fails.
pub struct SwarmGuard {
    leave: bool,
    /// `swarm init` creates the `docker_gwbridge` network and `leave`
    /// keeps it: removed too when it was not there before.
    remove_gwbridge: bool,
}

impl SwarmGuard {
    pub fn init() -> SwarmGuard {
        let state = run("docker", &["info", "--format", "{{.Swarm.LocalNodeState}}"], None);
        if state == "active" {
            return SwarmGuard { leave: false, remove_gwbridge: false };
        }
        let bridge = Command::new("docker")
            .args(["network", "inspect", "docker_gwbridge"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        run("docker", &["swarm", "init", "--advertise-addr", "127.0.0.1"], None);
        SwarmGuard { leave: true, remove_gwbridge: !bridge }
    }

    pub fn cluster_id() -> String {
        run("docker", &["info", "--format", "{{.Swarm.Cluster.ID}}"], None)
    }
}

impl Drop for SwarmGuard {
    fn drop(&mut self) {
        let quiet = |args: &[&str]| {
            let _ = Command::new("docker")
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        if self.leave {
            quiet(&["swarm", "leave", "--force"]);
        }
        if self.remove_gwbridge {
            quiet(&["network", "rm", "docker_gwbridge"]);
        }
    }
}

// ---------------------------------------------------------------- API

/// Portainer's settings for standard users on an endpoint (Berth's new
/// endpoints deny them everything).
pub async fn portainer_defaults(d: &Daemon, admin: &str, endpoint: u64) {
    let all: serde_json::Map<String, Value> = [
        "StackManagement",
        "BindMounts",
        "PrivilegedMode",
        "HostNamespace",
        "DeviceMapping",
        "ContainerCapabilities",
        "SysctlSetting",
    ]
    .iter()
    .map(|f| (format!("allow{f}ForRegularUsers"), json!(true)))
    .collect();
    let (s, v) = d.put_json(&format!("/api/endpoints/{endpoint}/settings"), Some(admin), &Value::Object(all)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

pub async fn create_string(d: &Daemon, token: &str, kind: &str, endpoint: u64, body: &Value) -> (StatusCode, Value) {
    d.post_json(&format!("/api/stacks/create/{kind}/string?endpointId={endpoint}"), Some(token), body).await
}

pub async fn create_file(
    d: &Daemon,
    token: &str,
    path_and_query: &str,
    fields: &[(&str, &str)],
    file: Option<Vec<u8>>,
) -> (StatusCode, Value) {
    let mut form = reqwest::multipart::Form::new();
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    if let Some(bytes) = file {
        form = form.part("file", reqwest::multipart::Part::bytes(bytes).file_name("docker-compose.yml"));
    }
    let resp = d.request(Method::POST, path_and_query, Some(token)).multipart(form).send().await.unwrap();
    read_json(resp).await
}

pub async fn stack_post(d: &Daemon, token: &str, path: &str) -> (StatusCode, Value) {
    let resp = d.request(Method::POST, path, Some(token)).send().await.unwrap();
    read_json(resp).await
}

/// `/api/stacks?filters=<json>`.
pub fn filtered(filters: Value) -> String {
    format!("/api/stacks?{}", serde_urlencoded::to_string([("filters", filters.to_string())]).unwrap())
}

/// What a failed operation must leave: no project folder, no record.
pub async fn assert_nothing_left(d: &Daemon, token: &str) {
    let (s, v) = d.get_json(&filtered(json!({"IncludeOrphanedStacks": true})), Some(token)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v, json!([]), "no stack stored");
    let compose = d.data_dir().join("compose");
    let left: Vec<_> = std::fs::read_dir(&compose).map(|r| r.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "project folders left: {left:?}");
    let tmp = d.data_dir().join("tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp).map(|r| r.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "scratch folders left: {left:?}");
}

/// Polls until `f` holds, for up to `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
