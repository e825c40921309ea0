//! Child processes (docker, compose, git) run the one way Berth trusts:
//! no shell, arguments as a list, an environment built from nothing,
//! output captured under a cap, and a deadline after which the whole
//! process group is killed.
//!
//! Each child leads a process group of its own (`process_group(0)`), so a
//! timeout also reaches what it started (compose v1 forks, a git fetch
//! runs `git-remote-http`, a test's fake deployer runs `sleep`). The group
//! is killed before the leader is reaped: until then its id cannot be
//! handed to another process, so the kill cannot hit a stranger.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// What is kept of each of stdout and stderr: the end, where deployers
/// print their errors.
pub const OUTPUT_CAP: usize = 64 * 1024;

/// How long readers may still drain the pipes once the child has exited.
/// A grandchild that inherited them and lives on would otherwise hold the
/// operation forever.
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// How often a watched directory's size is measured.
const WATCH_EVERY: Duration = Duration::from_millis(250);

pub struct Command {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// The child's whole environment.
    pub env: Vec<(OsString, OsString)>,
    pub cwd: PathBuf,
    pub timeout: Duration,
    /// Kill the group when this directory grows past this many bytes.
    pub watch: Option<(PathBuf, u64)>,
}

impl Command {
    pub fn new(program: impl Into<PathBuf>, cwd: impl Into<PathBuf>, timeout: Duration) -> Command {
        Command { program: program.into(), args: Vec::new(), env: Vec::new(), cwd: cwd.into(), timeout, watch: None }
    }

    pub fn arg(&mut self, a: impl Into<OsString>) -> &mut Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(&mut self, k: impl Into<OsString>, v: impl Into<OsString>) -> &mut Self {
        self.env.push((k.into(), v.into()));
        self
    }
}

#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// The text a user needs when the run failed: stderr, else stdout,
    /// else the exit status.
    pub fn diagnostic(&self) -> String {
        let err = self.stderr.trim();
        let out = self.stdout.trim();
        if !err.is_empty() {
            err.to_string()
        } else if !out.is_empty() {
            out.to_string()
        } else {
            format!("{} exited with {}", "the command", self.status)
        }
    }
}

#[derive(Debug)]
pub enum Failure {
    Spawn(std::io::Error),
    Exit(Finished),
    TimedOut { timeout: Duration, stderr: String },
    TooLarge { limit: u64 },
}

/// Whether a child may be given this variable: the allow list of what
/// Berth itself sets (see [`super::scratch::Scratch::base_env`], the
/// endpoint transport of Compose v2, git's settings and askpass). A
/// stack's variables are never among them: they reach Compose through an
/// env file.
pub fn allowed_env(name: &str) -> bool {
    matches!(
        name,
        "PATH"
            | "HOME"
            | "TMPDIR"
            | "LANG"
            | "DOCKER_CONFIG"
            | "DOCKER_HOST"
            | "DOCKER_TLS"
            | "DOCKER_TLS_VERIFY"
            | "DOCKER_CERT_PATH"
            | "BERTH_GIT_USERNAME"
            | "BERTH_GIT_PASSWORD"
    ) || name.starts_with("GIT_")
}

/// Runs `cmd` to completion; `Ok` only for exit status 0.
pub async fn run(cmd: Command) -> Result<Finished, Failure> {
    if let Some((k, _)) = cmd.env.iter().find(|(k, _)| !k.to_str().is_some_and(allowed_env)) {
        return Err(Failure::Spawn(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("refusing to give the variable {} to a child process", k.to_string_lossy()),
        )));
    }
    let mut c = tokio::process::Command::new(&cmd.program);
    c.args(&cmd.args)
        .env_clear()
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&cmd.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = c.spawn().map_err(Failure::Spawn)?;
    let mut group = GroupGuard(child.id());
    let stdout = child.stdout.take().map(|p| tokio::spawn(read_capped(p)));
    let stderr = child.stderr.take().map(|p| tokio::spawn(read_capped(p)));

    enum Stop {
        Exited(std::io::Result<ExitStatus>),
        TimedOut,
        TooLarge(u64),
    }
    let watch = async {
        match &cmd.watch {
            Some((dir, limit)) => loop {
                tokio::time::sleep(WATCH_EVERY).await;
                let d = dir.clone();
                let size = tokio::task::spawn_blocking(move || dir_size(&d)).await.unwrap_or(0);
                if size > *limit {
                    return *limit;
                }
            },
            None => std::future::pending().await,
        }
    };
    let stop = tokio::select! {
        s = child.wait() => Stop::Exited(s),
        _ = tokio::time::sleep(cmd.timeout) => Stop::TimedOut,
        l = watch => Stop::TooLarge(l),
    };
    let status = match stop {
        Stop::Exited(s) => {
            // The leader is reaped: from here the group id is only safe to
            // signal while a member still holds the pipes, which is exactly
            // when the readers do not finish.
            let out = collect(stdout, stderr, || group.kill_now()).await;
            group.disarm();
            let status = s.map_err(Failure::Spawn)?;
            let f = Finished { status, stdout: out.0, stderr: out.1 };
            return if status.success() { Ok(f) } else { Err(Failure::Exit(f)) };
        }
        other => other,
    };
    group.kill_now();
    let _ = child.wait().await;
    group.disarm();
    let (_, err) = collect(stdout, stderr, || {}).await;
    match status {
        Stop::TooLarge(limit) => Err(Failure::TooLarge { limit }),
        _ => Err(Failure::TimedOut { timeout: cmd.timeout, stderr: err }),
    }
}

type Reader = Option<tokio::task::JoinHandle<String>>;

async fn collect(out: Reader, err: Reader, on_stuck: impl FnOnce()) -> (String, String) {
    let both = async {
        let o = match out {
            Some(h) => h.await.unwrap_or_default(),
            None => String::new(),
        };
        let e = match err {
            Some(h) => h.await.unwrap_or_default(),
            None => String::new(),
        };
        (o, e)
    };
    tokio::pin!(both);
    match tokio::time::timeout(PIPE_GRACE, &mut both).await {
        Ok(v) => v,
        Err(_) => {
            on_stuck();
            tokio::time::timeout(PIPE_GRACE, both).await.unwrap_or_default()
        }
    }
}

async fn read_capped(mut r: impl AsyncRead + Unpin) -> String {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 8192];
    let mut truncated = false;
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > 2 * OUTPUT_CAP {
                    buf.drain(..buf.len() - OUTPUT_CAP);
                    truncated = true;
                }
            }
        }
    }
    if buf.len() > OUTPUT_CAP {
        buf.drain(..buf.len() - OUTPUT_CAP);
        truncated = true;
    }
    let s = String::from_utf8_lossy(&buf).into_owned();
    if truncated {
        format!("[...]{s}")
    } else {
        s
    }
}

/// Bytes of regular files under `dir`, symlinks not followed.
pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total = total.saturating_add(m.len());
            }
        }
    }
    total
}

/// Kills the child's process group when dropped while armed: a run that
/// is abandoned (its task dropped at shutdown) leaves nothing behind.
struct GroupGuard(Option<u32>);

impl GroupGuard {
    fn kill_now(&self) {
        if let Some(pgid) = self.0 {
            kill_group(pgid);
        }
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill_now();
    }
}

fn kill_group(pgid: u32) {
    // The group is led by our own child, signalled only before that child
    // is reaped or while a member is known to be alive, so the id cannot
    // have been recycled for an unrelated group.
    crate::sys::kill_process_group(pgid);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> Command {
        let mut c = Command::new("/bin/sh", "/", timeout);
        c.arg("-c").arg(script).env("PATH", "/usr/bin:/bin");
        c
    }

    #[tokio::test]
    async fn output_and_status() {
        let f = run(sh("echo out; echo err >&2", Duration::from_secs(5))).await.unwrap();
        assert_eq!(f.stdout, "out\n");
        assert_eq!(f.stderr, "err\n");
        match run(sh("echo bad >&2; exit 3", Duration::from_secs(5))).await {
            Err(Failure::Exit(f)) => {
                assert_eq!(f.status.code(), Some(3));
                assert_eq!(f.diagnostic(), "bad");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn environment_is_only_what_is_given() {
        let mut c = sh("env", Duration::from_secs(5));
        c.env("LANG", "C.UTF-8");
        let f = run(c).await.unwrap();
        let mut vars: Vec<&str> = f.stdout.lines().filter(|l| !l.starts_with("PWD=")).collect();
        vars.sort();
        assert_eq!(vars, vec!["LANG=C.UTF-8", "PATH=/usr/bin:/bin"], "{}", f.stdout);
        for name in ["LD_PRELOAD", "OPENSSL_CONF", "PYTHONPATH", "FOO", "DOCKER_CONTENT_TRUST"] {
            let mut c = sh("true", Duration::from_secs(5));
            c.env(name, "x");
            assert!(matches!(run(c).await, Err(Failure::Spawn(_))), "{name} reached a child");
        }
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = std::env::temp_dir().join(format!("berth-proc-{}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let t = std::time::Instant::now();
        match run(sh(&script, Duration::from_millis(500))).await {
            Err(Failure::TimedOut { .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
        let pid: u32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        // The grandchild is gone (or a zombie about to be reaped by init).
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit(") ").next().and_then(|s| s.chars().next());
            if stat.is_empty() || state == Some('Z') {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "grandchild {pid} survived: {stat}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn output_is_capped_at_the_end() {
        let f = run(sh("head -c 300000 /dev/zero | tr '\\0' a; echo END", Duration::from_secs(10))).await.unwrap();
        assert!(f.stdout.len() <= OUTPUT_CAP + 5, "{}", f.stdout.len());
        assert!(f.stdout.starts_with("[...]") && f.stdout.ends_with("END\n"));
    }

    #[tokio::test]
    async fn a_growing_directory_is_stopped() {
        let dir = std::env::temp_dir().join(format!("berth-watch-{}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut c = sh(
            &format!("while true; do head -c 100000 /dev/zero >> {}/f; done", dir.display()),
            Duration::from_secs(20),
        );
        c.watch = Some((dir.clone(), 1_000_000));
        match run(c).await {
            Err(Failure::TooLarge { limit: 1_000_000 }) => {}
            other => panic!("{other:?}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
