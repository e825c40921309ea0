//! Private scratch folders of deployer and git runs, and what goes in
//! them: the run's `HOME`, `TMPDIR`, a `DOCKER_CONFIG` holding only the
//! registry logins the caller may use, the env file, the git askpass
//! helper. Created 0700 under `<data>/tmp`, removed when the run ends
//! whatever its outcome (and emptied at start-up after a crash).

use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::json;

use super::process::Command;

/// `PATH` of every child: the system's folders only. Programs are resolved
/// to absolute paths at start-up; this is for what they run themselves.
pub const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A private folder under `<data>/tmp` for one run: `home/`, `docker/`
/// (the `DOCKER_CONFIG`), whatever else the run needs. Removed by
/// [`Scratch::remove`], or on drop as a fallback.
pub struct Scratch {
    path: Option<PathBuf>,
}

impl Scratch {
    pub async fn new(root: &Path) -> std::io::Result<Scratch> {
        let path = root.join(format!("run-{:016x}", rand::random::<u64>()));
        let p = path.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::create_dir_all(p.parent().unwrap_or(Path::new("/")))?;
            std::fs::DirBuilder::new().mode(0o700).create(&p)?;
            std::fs::DirBuilder::new().mode(0o700).create(p.join("home"))?;
            std::fs::DirBuilder::new().mode(0o700).create(p.join("docker"))?;
            std::fs::DirBuilder::new().mode(0o700).create(p.join("tmp"))?;
            crate::fsutil::write_private_atomic(&p.join("docker").join("config.json"), b"{}")
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;
        Ok(Scratch { path: Some(path) })
    }

    pub fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new("/nonexistent"))
    }

    /// The environment every child starts from, all of Berth's choosing:
    /// a fixed `PATH`, `HOME`, `TMPDIR` and `DOCKER_CONFIG` in this private
    /// folder, and a UTF-8 locale. Nothing is inherited from Berth's own
    /// environment and nothing comes from a user ([`super::process`]
    /// refuses any other name but the few Berth sets per run).
    pub fn base_env(&self, c: &mut Command) {
        c.env("PATH", SAFE_PATH)
            .env("HOME", self.path().join("home"))
            .env("TMPDIR", self.path().join("tmp"))
            .env("DOCKER_CONFIG", self.path().join("docker"))
            .env("LANG", "C.UTF-8");
    }

    pub async fn write_private(&self, rel: &str, bytes: Vec<u8>) -> std::io::Result<PathBuf> {
        let p = self.path().join(rel);
        let p2 = p.clone();
        tokio::task::spawn_blocking(move || crate::fsutil::write_private_atomic(&p2, &bytes))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))??;
        Ok(p)
    }

    pub async fn write_executable(&self, rel: &str, bytes: Vec<u8>) -> std::io::Result<PathBuf> {
        let p = self.path().join(rel);
        let p2 = p.clone();
        tokio::task::spawn_blocking(move || crate::fsutil::write_atomic(&p2, &bytes, 0o700))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))??;
        Ok(p)
    }

    pub async fn remove(mut self) {
        if let Some(p) = self.path.take() {
            let _ = tokio::task::spawn_blocking(move || remove_dir_logged(&p)).await;
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            remove_dir_logged(&p);
        }
    }
}

pub fn remove_dir_logged(p: &Path) {
    match std::fs::remove_dir_all(p) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(dir = %p.display(), error = %e, "removing a folder failed"),
    }
}

/// A registry login for the deploy's `config.json`.
pub struct Login {
    pub server: String,
    pub username: String,
    pub password: String,
}

/// `config.json` with `auths` for these logins (`docker login` writes the
/// same shape).
pub fn docker_config(logins: &[Login]) -> Vec<u8> {
    let mut auths = serde_json::Map::new();
    for l in logins {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", l.username, l.password));
        auths.insert(l.server.clone(), json!({ "auth": token }));
    }
    serde_json::to_vec(&json!({ "auths": auths })).unwrap_or_default()
}
