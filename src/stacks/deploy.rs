//! The deployers: `docker stack deploy` for swarm stacks, Compose for
//! standalone ones, each a child process pointed at the endpoint over the
//! endpoint's own transport.
//!
//! The host is always passed explicitly (also for unix endpoints, where
//! Portainer relies on the default socket), so a deploy can only reach the
//! endpoint it was meant for. TLS endpoints get their stored CA,
//! certificate and key. Every run gets a private scratch folder under
//! `<data>/tmp` holding `HOME` and a `DOCKER_CONFIG` whose `config.json`
//! carries only the registry logins the caller may use on that endpoint;
//! the folder is removed when the run ends, whatever the outcome.
//!
//! Swarm deploys pass `--resolve-image=never` unless the caller asked to
//! pull (`PullImage` on update or git redeploy): the nodes then run the
//! image as tagged locally, instead of the CLI first asking a registry for
//! a digest (which hangs or fails where no registry is reachable, and pins
//! a digest the nodes may not be able to pull). Portainer resolves images
//! on create; Berth leaves that to an explicit pull.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::process::{self, Command, Failure};
pub use super::scratch::{docker_config, remove_dir_logged, Login, Scratch};
pub use super::tools::{Compose, ComposeKind, Tools};
use crate::store::model::{Endpoint, Pair};

/// How a deployer reaches the endpoint.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub tls: bool,
    pub verify: bool,
    pub ca: String,
    pub cert: String,
    pub key: String,
}

impl Target {
    pub fn of(e: &Endpoint) -> Target {
        Target {
            url: e.url.clone(),
            tls: e.tls.tls,
            verify: e.tls.tls && !e.tls.skip_verify,
            ca: e.tls.ca_cert.clone(),
            cert: e.tls.cert.clone(),
            key: e.tls.key.clone(),
        }
    }

    /// `-H` and TLS flags; the Docker CLI and Compose v1 spell them alike.
    fn host_args(&self, host_flag: &str) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![host_flag.into(), self.url.clone().into()];
        if self.tls {
            if self.verify {
                a.push("--tlsverify".into());
                if !self.ca.is_empty() {
                    a.extend(["--tlscacert".into(), self.ca.clone().into()]);
                }
            } else {
                a.push("--tls".into());
            }
            if !self.cert.is_empty() && !self.key.is_empty() {
                a.extend(["--tlscert".into(), self.cert.clone().into(), "--tlskey".into(), self.key.clone().into()]);
            }
        }
        a
    }
}

/// Why a deployer run failed, in words for the API's `details`.
#[derive(Debug)]
pub struct DeployError {
    pub details: String,
    pub timed_out: bool,
}

impl std::fmt::Display for DeployError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.details)
    }
}

/// The most of a deployer's output sent back in an error.
const MAX_DETAILS: usize = 16 * 1024;

fn tail(s: &str) -> String {
    if s.len() <= MAX_DETAILS {
        return s.to_string();
    }
    let mut start = s.len() - MAX_DETAILS;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("[...]{}", &s[start..])
}

/// Everything one deployer operation needs.
pub struct Job<'a> {
    pub tools: &'a Tools,
    pub target: Target,
    pub scratch_root: &'a Path,
    /// The project folder: the children's working directory.
    pub project_dir: PathBuf,
    /// Entry file then additional files, relative to `project_dir`.
    pub files: Vec<String>,
    pub name: String,
    /// The stack's variables: to Compose in an env file, into swarm files
    /// by [`super::render`]; never into a child's environment.
    pub env: Vec<Pair>,
    pub logins: Vec<Login>,
    pub timeout: Duration,
    /// The stack's owner is an admin: the repository's `.env` beside the
    /// entry file, which Compose would read by itself, goes first in the
    /// env file. A standard user's repository may not have one.
    pub owner_is_admin: bool,
    /// The files passed the owner's checks. When they did not (a stack
    /// stored before the checks tightened), `down` runs on a stand-in, so
    /// Compose never reads them.
    pub files_checked: bool,
}

/// The env file's name in the scratch folder.
const ENV_FILE: &str = "stack.env";

/// What a deploy should do beyond the plain run.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeployOptions {
    pub prune: bool,
    pub pull: bool,
}

impl Job<'_> {
    fn file_paths(&self) -> Vec<PathBuf> {
        self.files.iter().map(|f| self.project_dir.join(f)).collect()
    }

    async fn run(
        &self,
        files: Vec<(&str, Vec<u8>)>,
        build: impl FnOnce(&Scratch, &mut Command),
    ) -> Result<String, DeployError> {
        let local = |what: &str, e: std::io::Error| DeployError { details: format!("{what}: {e}"), timed_out: false };
        let scratch = Scratch::new(self.scratch_root).await.map_err(|e| local("cannot create a scratch folder", e))?;
        let result = async {
            scratch
                .write_private("docker/config.json", docker_config(&self.logins))
                .await
                .map_err(|e| local("cannot write the deploy's docker config", e))?;
            for (name, bytes) in files {
                scratch.write_private(name, bytes).await.map_err(|e| local("cannot write the deploy's files", e))?;
            }
            let mut c = Command::new(PathBuf::new(), self.project_dir.clone(), self.timeout);
            scratch.base_env(&mut c);
            build(&scratch, &mut c);
            let program = c.program.display().to_string();
            match process::run(c).await {
                Ok(f) => Ok(format!("{}{}", f.stdout, f.stderr)),
                Err(Failure::Exit(f)) => Err(DeployError { details: tail(&f.diagnostic()), timed_out: false }),
                Err(Failure::Spawn(e)) => {
                    Err(DeployError { details: format!("cannot run {program}: {e}"), timed_out: false })
                }
                Err(Failure::TimedOut { timeout, stderr }) => {
                    let mut details = format!(
                        "the deployer did not finish within {} and was stopped",
                        humantime::format_duration(timeout)
                    );
                    if !stderr.trim().is_empty() {
                        details.push_str(": ");
                        details.push_str(&tail(stderr.trim()));
                    }
                    Err(DeployError { details, timed_out: true })
                }
                Err(Failure::TooLarge { limit }) => {
                    Err(DeployError { details: format!("output exceeded {limit} bytes"), timed_out: false })
                }
            }
        }
        .await;
        scratch.remove().await;
        result
    }

    /// `docker stack deploy`, on files with the stack's variables
    /// substituted by Berth when there is anything to substitute.
    pub async fn swarm_deploy(&self, opts: DeployOptions) -> Result<String, DeployError> {
        let rendered = self.render_swarm_files().await?;
        let files = rendered.iter().map(|(path, _)| path.clone()).collect::<Vec<_>>();
        let r = self
            .run(Vec::new(), |_, c| {
                c.program = self.tools.docker.clone();
                c.args(self.target.host_args("-H"));
                c.args(["stack", "deploy", "--with-registry-auth"]);
                if opts.prune {
                    c.arg("--prune");
                }
                c.arg(if opts.pull { "--resolve-image=always" } else { "--resolve-image=never" });
                for f in files {
                    c.arg("--compose-file").arg(f);
                }
                c.arg(self.name.clone());
            })
            .await;
        for (path, temporary) in rendered {
            if temporary {
                let _ = tokio::fs::remove_file(&path).await;
            }
        }
        r
    }

    /// Each file as the CLI should read it, and whether it is a rendered
    /// copy (beside the original, so relative paths resolve alike) to
    /// remove after the run.
    async fn render_swarm_files(&self) -> Result<Vec<(PathBuf, bool)>, DeployError> {
        let bad = |details: String| DeployError { details, timed_out: false };
        let mut out: Vec<(PathBuf, bool)> = Vec::new();
        for path in self.file_paths() {
            let bytes = match tokio::fs::read(&path).await {
                Ok(b) => b,
                Err(e) => {
                    for (p, t) in &out {
                        if *t {
                            let _ = tokio::fs::remove_file(p).await;
                        }
                    }
                    return Err(bad(format!("cannot read {}: {e}", path.display())));
                }
            };
            if self.env.is_empty() && !bytes.contains(&b'$') {
                out.push((path, false));
                continue;
            }
            let rendered = super::yaml::decode(&bytes)
                .and_then(super::yaml::parse)
                .and_then(|doc| super::render::render(&doc, &self.env))
                .map_err(|e| format!("{}: {e}", path.display()));
            let dir = path.parent().unwrap_or(&self.project_dir).to_path_buf();
            let target = dir.join(format!(".berth-render-{:016x}.json", rand::random::<u64>()));
            let written = match rendered {
                Ok(json) => {
                    let t = target.clone();
                    tokio::task::spawn_blocking(move || crate::fsutil::write_atomic(&t, &json, 0o600))
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r.map_err(|e| e.to_string()))
                }
                Err(e) => Err(e),
            };
            out.push((target, true));
            if let Err(e) = written {
                for (p, t) in &out {
                    if *t {
                        let _ = tokio::fs::remove_file(p).await;
                    }
                }
                return Err(bad(e));
            }
        }
        Ok(out)
    }

    /// `docker stack rm`.
    pub async fn swarm_remove(&self) -> Result<String, DeployError> {
        self.run(Vec::new(), |_, c| {
            c.program = self.tools.docker.clone();
            c.args(self.target.host_args("-H"));
            c.args(["stack", "rm"]);
            c.arg(self.name.clone());
        })
        .await
    }

    async fn compose(&self) -> Result<&Compose, DeployError> {
        self.tools.compose().await.ok_or_else(|| DeployError {
            details: "Compose is not installed: neither the `docker compose` plugin nor `docker-compose` was found \
                      when Berth started"
                .into(),
            timed_out: false,
        })
    }

    /// The compose command line up to the subcommand.
    fn compose_command(&self, compose: &Compose, scratch: &Scratch, c: &mut Command, files: &[PathBuf]) {
        c.program = compose.program.clone();
        match compose.kind {
            ComposeKind::Plugin => {
                c.args(self.target.host_args("-H"));
                c.arg("compose");
            }
            ComposeKind::V1 => {
                c.args(self.target.host_args("--host"));
            }
            ComposeKind::StandaloneV2 => {
                c.env("DOCKER_HOST", &self.target.url);
                if self.target.tls {
                    // DOCKER_CERT_PATH wants ca.pem, cert.pem, key.pem in one
                    // folder: the endpoint's own TLS folder is laid out so.
                    let dir = Path::new(if !self.target.ca.is_empty() { &self.target.ca } else { &self.target.cert })
                        .parent()
                        .map(Path::to_path_buf)
                        .unwrap_or_else(|| scratch.path().to_path_buf());
                    c.env("DOCKER_CERT_PATH", dir);
                    if self.target.verify {
                        c.env("DOCKER_TLS_VERIFY", "1");
                    } else {
                        c.env("DOCKER_TLS", "1");
                    }
                }
            }
        }
        c.arg("--env-file").arg(scratch.path().join(ENV_FILE));
        for f in files {
            c.arg("-f").arg(f);
        }
        c.arg(format!("--project-name={}", self.name));
    }

    /// The repository's `.env` beside the entry file, for admins' stacks.
    async fn dotenv(&self) -> Vec<u8> {
        if !self.owner_is_admin {
            return Vec::new();
        }
        let Some(first) = self.file_paths().into_iter().next() else { return Vec::new() };
        let path = first.parent().unwrap_or(&self.project_dir).join(".env");
        match tokio::fs::symlink_metadata(&path).await {
            Ok(m) if m.is_file() && m.len() <= 1024 * 1024 => tokio::fs::read(&path).await.unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    async fn compose_run(&self, files: Vec<PathBuf>, sub: &[&str]) -> Result<String, DeployError> {
        let compose = self.compose().await?;
        let env_file = super::env::env_file(&compose.kind, &self.dotenv().await, &self.env);
        self.run(vec![(ENV_FILE, env_file)], |scratch, c| {
            self.compose_command(compose, scratch, c, &files);
            c.args(sub.iter().copied());
        })
        .await
    }

    /// `compose up -d` (after `compose pull` when asked).
    pub async fn compose_up(&self, opts: DeployOptions) -> Result<String, DeployError> {
        let mut out = String::new();
        if opts.pull {
            out.push_str(&self.compose_run(self.file_paths(), &["pull"]).await?);
        }
        out.push_str(&self.compose_run(self.file_paths(), &["up", "-d", "--remove-orphans"]).await?);
        Ok(out)
    }

    /// `compose down --remove-orphans`. Compose needs a file to run at all;
    /// when the project's files are gone, or failed the owner's checks, an
    /// empty one stands in (down works from the project's labels).
    pub async fn compose_down(&self) -> Result<String, DeployError> {
        self.compose().await?;
        let files = self.file_paths();
        let present = self.files_checked && {
            let f = files.clone();
            tokio::task::spawn_blocking(move || f.iter().all(|p| p.is_file())).await.unwrap_or(false)
        };
        if present {
            return self.compose_run(files, &["down", "--remove-orphans"]).await;
        }
        let stand_in = self.project_dir.join(format!(".berth-empty-{:08x}.yml", rand::random::<u32>()));
        let s2 = stand_in.clone();
        let written = tokio::task::spawn_blocking(move || {
            crate::fsutil::write_atomic(&s2, b"version: \"3.7\"\nservices: {}\n", 0o600)
        })
        .await;
        let stand_in_ok = matches!(written, Ok(Ok(())));
        let out = if stand_in_ok {
            self.compose_run(vec![stand_in.clone()], &["down", "--remove-orphans"]).await
        } else {
            Err(DeployError { details: "the stack's files are missing".into(), timed_out: false })
        };
        let _ = tokio::fs::remove_file(&stand_in).await;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::model::EndpointTls;

    fn endpoint(url: &str, tls: EndpointTls) -> Endpoint {
        Endpoint {
            id: 1,
            name: "e".into(),
            kind: 1,
            url: url.into(),
            public_url: String::new(),
            group_id: 1,
            tls,
            tag_ids: vec![],
            status: 1,
            user_access_policies: Default::default(),
            team_access_policies: Default::default(),
            security_settings: Default::default(),
        }
    }

    fn strings(v: Vec<OsString>) -> Vec<String> {
        v.into_iter().map(|s| s.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn host_flags_follow_the_endpoint_transport() {
        let t = Target::of(&endpoint("unix:///var/run/docker.sock", EndpointTls::default()));
        assert_eq!(strings(t.host_args("-H")), ["-H", "unix:///var/run/docker.sock"]);
        let tls = EndpointTls {
            tls: true,
            ca_cert: "/d/ca.pem".into(),
            cert: "/d/cert.pem".into(),
            key: "/d/key.pem".into(),
            ..Default::default()
        };
        let t = Target::of(&endpoint("tcp://10.0.0.1:2376", tls.clone()));
        assert_eq!(
            strings(t.host_args("--host")),
            [
                "--host",
                "tcp://10.0.0.1:2376",
                "--tlsverify",
                "--tlscacert",
                "/d/ca.pem",
                "--tlscert",
                "/d/cert.pem",
                "--tlskey",
                "/d/key.pem"
            ]
        );
        let skip = EndpointTls { skip_verify: true, ca_cert: String::new(), ..tls };
        let t = Target::of(&endpoint("tcp://10.0.0.1:2376", skip));
        assert_eq!(
            strings(t.host_args("-H")),
            ["-H", "tcp://10.0.0.1:2376", "--tls", "--tlscert", "/d/cert.pem", "--tlskey", "/d/key.pem"]
        );
    }

    #[test]
    fn config_json_holds_logins() {
        let c = docker_config(&[Login { server: "reg:5000".into(), username: "bob".into(), password: "pw".into() }]);
        let v: serde_json::Value = serde_json::from_slice(&c).unwrap();
        assert_eq!(v["auths"]["reg:5000"]["auth"], "Ym9iOnB3");
        assert_eq!(docker_config(&[]), br#"{"auths":{}}"#);
    }
}
