//! Stack repositories: a shallow fetch of one reference with `git`,
//! hardened because the URL, the reference and the repository's content
//! all come from the caller.
//!
//! - Only `http://`, `https://` and `git://` URLs are accepted, checked
//!   here and again by git itself (`protocol.allow=never` with those three
//!   allowed), so `ext::` commands, `file://` and local paths, `ssh` and
//!   option-looking values never reach a transport. The URL is passed after
//!   `--`.
//! - git runs with an environment built from nothing: no system or global
//!   config, no terminal prompts, hooks disabled, a scratch `HOME`.
//! - Credentials never appear on a command line, in a stored object, a log
//!   line or an error: git asks for them through a `GIT_ASKPASS` script
//!   (0700, in the run's private scratch folder) that prints them from the
//!   child's environment. URLs with user information are refused, and
//!   error texts are scrubbed of user information and of the password.
//! - The fetch is bounded in time (`git_clone_timeout`, all steps) and in
//!   size (`max_clone_size`, measured while it runs).
//! - What was fetched must stay inside the clone: the compose file and
//!   additional files are relative paths without `..`, and every symbolic
//!   link in the tree must resolve inside it (a `docker-compose.yml ->
//!   /etc/passwd` would otherwise hand a host file to the deployer).
//!
//! The fetch is `git init` + `git fetch --depth 1 -- URL REF` + `git
//! checkout FETCH_HEAD`, which takes branches, tags and full `refs/...`
//! names alike (and `HEAD`, the remote's default branch, when no reference
//! is given). The `.git` folder is removed once the commit is recorded:
//! redeploys fetch afresh.

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

pub use super::git_guard::AddressGuard;
use super::process::{self, Command, Failure};
use super::scratch::{remove_dir_logged, Scratch};
use super::tools::Tools;

/// Longest repository URL accepted.
const MAX_URL: usize = 2048;
/// Longest reference or file path accepted.
const MAX_PATH: usize = 4096;

const ASKPASS: &str = "#!/bin/sh\n\
case \"$1\" in\n\
  Username*|username*) printf '%s\\n' \"$BERTH_GIT_USERNAME\" ;;\n\
  *) printf '%s\\n' \"$BERTH_GIT_PASSWORD\" ;;\n\
esac\n";

/// Checks and normalises a repository URL (trailing `/` trimmed).
pub fn check_url(raw: &str) -> Result<String, String> {
    let url = raw.trim().trim_end_matches('/');
    if url.is_empty() {
        return Err("the repository URL is empty".into());
    }
    if url.len() > MAX_URL {
        return Err(format!("the repository URL is longer than {MAX_URL} bytes"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the repository URL contains spaces or control characters".into());
    }
    if url.starts_with('-') {
        return Err("the repository URL must not start with '-'".into());
    }
    let allowed = "only http://, https:// and git:// repository URLs are accepted";
    let Some((scheme, rest)) = url.split_once("://") else { return Err(allowed.into()) };
    if !matches!(scheme, "http" | "https" | "git") {
        return Err(allowed.into());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() {
        return Err("the repository URL has no host".into());
    }
    if authority.contains('@') {
        return Err(
            "the repository URL must not carry credentials: use RepositoryUsername and RepositoryPassword".into()
        );
    }
    Ok(url.to_string())
}

/// A branch, tag or `refs/...` name; empty means the remote's default branch.
pub fn check_reference(r: &str) -> Result<(), String> {
    if r.is_empty() {
        return Ok(());
    }
    let bad = r.len() > MAX_PATH
        || r.starts_with(['-', '/', '.'])
        || r.ends_with(['/', '.'])
        || r.ends_with(".lock")
        || r.contains("..")
        || r.contains("//")
        || r.contains("@{")
        || !r.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-' | '+'));
    if bad {
        return Err(format!("{r:?} is not a valid git reference"));
    }
    Ok(())
}

/// A path inside the repository: relative, no `..`, normalised (`./` and
/// doubled slashes dropped).
pub fn check_relative_path(p: &str) -> Result<String, String> {
    if p.is_empty() {
        return Err("the file path is empty".into());
    }
    if p.len() > MAX_PATH || p.contains('\0') || p.contains('\\') {
        return Err(format!("{p:?} is not a valid file path"));
    }
    let mut parts = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(format!("{p:?} must be a relative path inside the repository, without '..'"))
            }
        }
    }
    if parts.is_empty() {
        return Err(format!("{p:?} is not a file path"));
    }
    Ok(parts.join("/"))
}

/// Removes URL user information and the given secrets from a text meant
/// for a client or a log.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(|c: char| c == '/' || c.is_whitespace() || matches!(c, '\'' | '"')).unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => out.push_str(&authority[at + 1..]),
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    for s in secrets.iter().filter(|s| s.len() >= 3) {
        out = out.replace(s, "********");
    }
    out
}

pub struct Source {
    pub url: String,
    pub reference: String,
    pub credentials: Option<(String, String)>,
    pub skip_tls_verify: bool,
}

#[derive(Debug)]
pub enum GitError {
    /// The repository could not be fetched (git's own words, scrubbed).
    Fetch(String),
    TimedOut(Duration),
    TooLarge(u64),
    /// The URL leads where the caller may not fetch from.
    Refused(String),
    /// Berth could not prepare or clean up (disk, spawn).
    Local(String),
}

/// How far one fetch may go.
pub struct Limits {
    /// All steps together.
    pub timeout: Duration,
    /// Bytes on disk.
    pub max_size: u64,
    /// For standard users: where the URL may lead.
    pub guard: Option<AddressGuard>,
}

impl std::fmt::Display for GitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GitError::Fetch(s) | GitError::Local(s) | GitError::Refused(s) => f.write_str(s),
            GitError::TimedOut(t) => {
                write!(f, "the repository could not be fetched within {}", humantime::format_duration(*t))
            }
            GitError::TooLarge(n) => write!(f, "the repository is larger than the limit of {n} bytes"),
        }
    }
}

/// Fetches `src` into `dest` (which must not exist) and returns the commit
/// checked out. On error `dest` is removed.
pub async fn fetch(
    tools: &Tools,
    src: &Source,
    dest: &Path,
    scratch_root: &Path,
    limits: &Limits,
) -> Result<String, GitError> {
    let pinned = match &limits.guard {
        Some(g) => g.check(&src.url).await?,
        None => None,
    };
    let scratch = Scratch::new(scratch_root).await.map_err(|e| GitError::Local(format!("scratch folder: {e}")))?;
    let r = fetch_in(tools, src, dest, &scratch, limits, pinned).await;
    scratch.remove().await;
    if r.is_err() {
        let d = dest.to_path_buf();
        let _ = tokio::task::spawn_blocking(move || remove_dir_logged(&d)).await;
    }
    r
}

async fn fetch_in(
    tools: &Tools,
    src: &Source,
    dest: &Path,
    scratch: &Scratch,
    limits: &Limits,
    pinned: Option<super::git_guard::Pinned>,
) -> Result<String, GitError> {
    let (timeout, max_size) = (limits.timeout, limits.max_size);
    let deadline = Instant::now() + timeout;
    // Standard users: no redirect (it could lead anywhere), the checked
    // address only.
    let mut extra: Vec<String> = Vec::new();
    if limits.guard.is_some() {
        extra.push("http.followRedirects=false".into());
    }
    let url = match pinned {
        Some(p) => {
            extra.extend(p.config);
            p.url
        }
        None => src.url.clone(),
    };
    let askpass = match &src.credentials {
        Some(_) => Some(
            scratch
                .write_executable("askpass.sh", ASKPASS.as_bytes().to_vec())
                .await
                .map_err(|e| GitError::Local(format!("askpass helper: {e}")))?,
        ),
        None => None,
    };
    let secrets: Vec<&str> = src.credentials.iter().map(|(_, p)| p.as_str()).collect();
    let git = |args: &[&str], cwd: &Path| -> Command {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let mut c = Command::new(tools.git.clone(), cwd, left);
        scratch.base_env(&mut c);
        c.env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_PROTOCOL_FROM_USER", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_ATTR_NOSYSTEM", "1");
        match (&askpass, &src.credentials) {
            (Some(a), Some((user, pass))) => {
                c.env("GIT_ASKPASS", a).env("BERTH_GIT_USERNAME", user).env("BERTH_GIT_PASSWORD", pass);
            }
            _ => {
                // No helper: a server that asks for credentials gets none.
                c.env("GIT_ASKPASS", "/bin/false");
            }
        }
        c.args([
            "-c",
            "protocol.allow=never",
            "-c",
            "protocol.https.allow=always",
            "-c",
            "protocol.http.allow=always",
            "-c",
            "protocol.git.allow=always",
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.symlinks=true",
            "-c",
            "core.fsmonitor=false",
            "-c",
            "credential.helper=",
            "-c",
            "http.followRedirects=initial",
            "-c",
            "submodule.recurse=false",
        ]);
        if src.skip_tls_verify {
            c.args(["-c", "http.sslVerify=false"]);
        }
        for e in &extra {
            c.arg("-c").arg(e);
        }
        c.args(args.iter().copied());
        c
    };
    let fail = |what: &str, e: Failure| -> GitError {
        match e {
            Failure::Exit(f) => GitError::Fetch(scrub(&f.diagnostic(), &secrets)),
            Failure::TimedOut { .. } => GitError::TimedOut(timeout),
            Failure::TooLarge { limit } => GitError::TooLarge(limit),
            Failure::Spawn(e) => GitError::Local(format!("cannot run git ({what}): {e}")),
        }
    };
    let parent = dest.parent().unwrap_or(Path::new("/")).to_path_buf();
    let dest_s = dest.to_string_lossy().into_owned();
    process::run(git(&["init", "--quiet", "--template=", "--", &dest_s], &parent))
        .await
        .map_err(|e| fail("init", e))?;
    let reference = if src.reference.is_empty() { "HEAD" } else { src.reference.as_str() };
    let mut fetch =
        git(&["fetch", "--quiet", "--depth=1", "--no-tags", "--no-recurse-submodules", "--", &url, reference], dest);
    fetch.watch = Some((dest.to_path_buf(), max_size));
    process::run(fetch).await.map_err(|e| fail("fetch", e))?;
    let mut checkout = git(&["-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", "FETCH_HEAD"], dest);
    checkout.watch = Some((dest.to_path_buf(), max_size));
    process::run(checkout).await.map_err(|e| fail("checkout", e))?;
    let head = process::run(git(&["rev-parse", "HEAD"], dest)).await.map_err(|e| fail("rev-parse", e))?;
    let commit = head.stdout.trim().to_string();
    let d = dest.to_path_buf();
    let size = tokio::task::spawn_blocking(move || process::dir_size(&d)).await.unwrap_or(u64::MAX);
    if size > max_size {
        return Err(GitError::TooLarge(max_size));
    }
    let dot_git = dest.join(".git");
    tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dot_git))
        .await
        .map_err(|e| GitError::Local(e.to_string()))?
        .map_err(|e| GitError::Local(format!("removing .git: {e}")))?;
    Ok(commit)
}

/// Checks a fetched tree (blocking): every symbolic link resolves inside
/// `root`, and each of `files` is a regular file inside it.
pub fn check_tree(root: &Path, files: &[String]) -> Result<(), String> {
    let root = std::fs::canonicalize(root).map_err(|e| format!("cannot read the clone: {e}"))?;
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        let rd = std::fs::read_dir(&dir).map_err(|e| format!("cannot read the clone: {e}"))?;
        for e in rd.flatten() {
            let path = e.path();
            let meta = path.symlink_metadata().map_err(|e| format!("cannot read the clone: {e}"))?;
            let shown = || path.strip_prefix(&root).unwrap_or(&path).display().to_string();
            if meta.file_type().is_symlink() {
                let inside = match std::fs::canonicalize(&path) {
                    Ok(real) => real.starts_with(&root),
                    // Dangling: judge the link text itself.
                    Err(_) => match std::fs::read_link(&path) {
                        Ok(t) => lexically_inside(&root, path.parent().unwrap_or(&root), &t),
                        Err(_) => false,
                    },
                };
                if !inside {
                    return Err(format!(
                        "the repository contains a symbolic link {} that points outside of it",
                        shown()
                    ));
                }
            } else if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    for f in files {
        let p = root.join(f);
        let real = match std::fs::canonicalize(&p) {
            Ok(r) => r,
            Err(_) => return Err(format!("the file {f} does not exist in the repository")),
        };
        if !real.starts_with(&root) {
            return Err(format!("the file {f} points outside of the repository"));
        }
        if !real.is_file() {
            return Err(format!("{f} is not a file in the repository"));
        }
    }
    Ok(())
}

fn lexically_inside(root: &Path, base: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut p: PathBuf = base.to_path_buf();
    for c in target.components() {
        match c {
            Component::ParentDir => {
                if !p.pop() {
                    return false;
                }
            }
            Component::Normal(s) => p.push(s),
            Component::CurDir => {}
            _ => return false,
        }
    }
    p.starts_with(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            check_url("https://github.com/portainer/templates/").unwrap(),
            "https://github.com/portainer/templates"
        );
        assert!(check_url("git://127.0.0.1:9418/repo").is_ok());
        assert!(check_url("http://127.0.0.1:8080/repo.git").is_ok());
        for bad in [
            "ext::sh -c touch% /tmp/pwned",
            "--upload-pack=touch /tmp/pwned",
            "file:///etc",
            "/etc",
            "ssh://git@host/repo",
            "git@github.com:a/b.git",
            "https://user:pw@host/repo",
            "HTTPS://host/x",
            "https:///nohost",
            "",
            "https://host/a b",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn references() {
        for ok in ["", "main", "refs/heads/main", "refs/tags/v1.2", "feature/x-y_z", "refs/pull/1/head"] {
            assert!(check_reference(ok).is_ok(), "{ok}");
        }
        for bad in ["-x", "--upload-pack=x", "a..b", "a b", "x:y", "refs/heads/", "/abs", "a@{1}", "x.lock"] {
            assert!(check_reference(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths() {
        assert_eq!(check_relative_path("./stacks//a/docker-stack.yml").unwrap(), "stacks/a/docker-stack.yml");
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a/..", ".", "a\\b"] {
            assert!(check_relative_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scrubbing() {
        let s = scrub("fatal: unable to access 'https://bob:s3cret@host/repo/': s3cret", &["s3cret"]);
        assert_eq!(s, "fatal: unable to access 'https://host/repo/': ********");
        assert_eq!(scrub("no url here", &[]), "no url here");
    }

    #[test]
    fn trees() {
        let dir = std::env::temp_dir().join(format!("berth-tree-{}", rand::random::<u32>()));
        std::fs::create_dir_all(dir.join("stacks")).unwrap();
        std::fs::write(dir.join("stacks/a.yml"), "x").unwrap();
        std::os::unix::fs::symlink("stacks/a.yml", dir.join("link.yml")).unwrap();
        std::os::unix::fs::symlink("nowhere", dir.join("dangling")).unwrap();
        assert_eq!(check_tree(&dir, &["stacks/a.yml".into(), "link.yml".into()]), Ok(()));
        assert!(check_tree(&dir, &["missing.yml".into()]).unwrap_err().contains("does not exist"));
        assert!(check_tree(&dir, &["stacks".into()]).unwrap_err().contains("not a file"));
        std::os::unix::fs::symlink("/etc/passwd", dir.join("stacks/evil")).unwrap();
        assert!(check_tree(&dir, &["stacks/a.yml".into()]).unwrap_err().contains("symbolic link stacks/evil"));
        std::fs::remove_file(dir.join("stacks/evil")).unwrap();
        std::os::unix::fs::symlink("../../../nowhere", dir.join("stacks/up")).unwrap();
        assert!(check_tree(&dir, &[]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
