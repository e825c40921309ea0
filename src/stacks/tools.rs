//! The deployer programs: which Docker CLI, Compose and git run, found
//! once at start-up so a run's environment can never change which binary
//! runs, and which Compose flavour answers.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::process::{self, Command};
use super::scratch::Scratch;

/// How Compose is invoked, detected once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComposeKind {
    /// `docker compose` (v2 as a CLI plugin): takes the Docker CLI's flags.
    Plugin,
    /// A standalone `docker-compose` v2 binary: reads the host from the
    /// Docker CLI's environment variables.
    StandaloneV2,
    /// `docker-compose` v1 (Python): takes `--host` and TLS flags.
    V1,
}

#[derive(Debug, Clone)]
pub struct Compose {
    pub kind: ComposeKind,
    pub program: PathBuf,
    pub version: String,
}

impl Compose {
    pub fn describe(&self) -> String {
        match self.kind {
            ComposeKind::Plugin => format!("docker compose {} (v2 plugin)", self.version),
            ComposeKind::StandaloneV2 => format!("docker-compose {} (v2)", self.version),
            ComposeKind::V1 => format!("docker-compose {} (v1)", self.version),
        }
    }

    /// The short name shown in `GET /api/status`.
    pub fn flavor(&self) -> &'static str {
        match self.kind {
            ComposeKind::Plugin => "plugin",
            ComposeKind::StandaloneV2 => "standalone-v2",
            ComposeKind::V1 => "v1",
        }
    }
}

/// The programs deployer runs start.
#[derive(Debug)]
pub struct Tools {
    pub docker: PathBuf,
    pub git: PathBuf,
    /// Berth's own `PATH` at start-up, where bare program names are found.
    path: OsString,
    /// The configured standalone Compose, before lookup.
    compose_bin: String,
    scratch_root: PathBuf,
    /// Detected once, in the background from start-up (running Compose v1
    /// to ask its version costs half a second of Python start-up, which
    /// the daemon's own start need not wait for); deploys wait for it.
    compose: tokio::sync::OnceCell<Option<Compose>>,
}

const DETECT_TIMEOUT: Duration = Duration::from_secs(15);
const FALLBACK_PATH: &str = super::scratch::SAFE_PATH;

/// A bare program name is looked up on Berth's own `PATH` once, at
/// start-up: the configured programs are the operator's choice, and
/// children run with a fixed `PATH` of their own.
pub fn resolve(program: &str, path: &OsString) -> PathBuf {
    if program.contains('/') {
        return PathBuf::from(program);
    }
    for dir in std::env::split_paths(path) {
        let candidate = dir.join(program);
        if is_executable(&candidate) {
            return candidate;
        }
    }
    PathBuf::from(program)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl Tools {
    pub fn new(docker: &str, compose: &str, git: &str, scratch_root: &Path) -> Tools {
        let path = std::env::var_os("PATH").filter(|p| !p.is_empty()).unwrap_or_else(|| FALLBACK_PATH.into());
        Tools {
            docker: resolve(docker, &path),
            git: resolve(git, &path),
            compose_bin: compose.to_string(),
            scratch_root: scratch_root.to_path_buf(),
            compose: tokio::sync::OnceCell::new(),
            path,
        }
    }

    /// Which Compose deploys standalone stacks (detected on first call).
    pub async fn compose(&self) -> Option<&Compose> {
        self.compose.get_or_init(|| self.detect_compose()).await.as_ref()
    }

    /// `None` while detection runs; then what it found.
    pub fn compose_detected(&self) -> Option<Option<&Compose>> {
        self.compose.get().map(Option::as_ref)
    }

    /// The `docker compose` plugin when it answers, else the standalone
    /// binary (v1 or v2).
    async fn detect_compose(&self) -> Option<Compose> {
        let Ok(scratch) = Scratch::new(&self.scratch_root).await else {
            tracing::warn!(dir = %self.scratch_root.display(), "cannot create a scratch folder; Compose not detected");
            return None;
        };
        let version = |program: PathBuf, args: &[&str]| {
            let mut c = Command::new(program, scratch.path(), DETECT_TIMEOUT);
            c.args(args.iter().copied());
            scratch.base_env(&mut c);
            async move { process::run(c).await.ok().map(|f| f.stdout.trim().trim_start_matches('v').to_string()) }
        };
        let mut found = None;
        if let Some(v) = version(self.docker.clone(), &["compose", "version", "--short"]).await {
            found = Some(Compose { kind: ComposeKind::Plugin, program: self.docker.clone(), version: v });
        } else {
            let program = resolve(&self.compose_bin, &self.path);
            if let Some(v) = version(program.clone(), &["version", "--short"]).await {
                let kind = if v.starts_with("1.") { ComposeKind::V1 } else { ComposeKind::StandaloneV2 };
                found = Some(Compose { kind, program, version: v });
            }
        }
        scratch.remove().await;
        match &found {
            Some(c) => tracing::info!(
                program = %c.program.display(),
                "Compose stacks deploy with {}",
                c.describe()
            ),
            None => tracing::warn!(
                "neither the `docker compose` plugin nor `{}` answers: Compose stacks cannot be deployed",
                self.compose_bin
            ),
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_names_resolve_on_path() {
        let p = resolve("sh", &OsString::from("/nonexistent:/bin:/usr/bin"));
        assert!(p.is_absolute(), "{p:?}");
        assert_eq!(resolve("./x", &OsString::from("/bin")), PathBuf::from("./x"));
    }
}
