//! Stack operations, below the HTTP handlers of [`crate::api::stacks`]
//! (which only decode, call this and encode): the deployer jobs, their
//! metrics and timeouts, swarm waits, name checks on the Docker host,
//! registry logins, and the checks of stack files, which follow the
//! stack's *owner*: an admin's update, start or git redeploy of a standard
//! user's stack runs the same checks as the user's own deploy.
//!
//! Creation lives here; changes to existing stacks in [`super::changes`].
//! A failed create leaves nothing: the deployer's partial work is rolled
//! back (`compose down` / `docker stack rm`), the project folder removed,
//! no record stored.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::{json, Value};

use super::deploy::{self, DeployError, DeployOptions, Job, Login};
use super::git::{self, GitError};
use super::policy::{self, Policy};
use crate::auth::Principal;
use crate::endpoints::EndpointEntry;
use crate::error::{ApiError, ApiResult, ErrorKind};
use crate::response::store_err;
use crate::store::model::{GitAuth, Id, Pair, Stack, StackGitConfig, STACK_ACTIVE, STACK_SWARM};
use crate::store::STACKS;

/// File name of stacks created from a string or an upload (Portainer's).
pub const STACK_FILE: &str = "docker-compose.yml";
/// Bound on the Docker queries made before a deploy (`/info`, name checks).
const DOCKER_QUERY_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest wait for a removed swarm stack's networks to go.
const SWARM_SETTLE: Duration = Duration::from_secs(30);

/// What stack operations use of Berth's state: the parts, not the whole
/// `AppState`, so that `stacks` sits below the API layer and the state
/// that holds it (dependencies point one way).
pub struct Ops<'a> {
    pub config: &'a crate::config::Config,
    pub endpoints: &'a crate::endpoints::EndpointMap,
    pub identity: &'a crate::auth::Identity,
    pub metrics: &'a crate::metrics::Metrics,
    pub sealer: &'a crate::auth::seal::Sealer,
    pub registries: &'a crate::registries::Registries,
    pub stacks: &'a super::Stacks,
    pub store: &'a crate::store::Store,
}

impl Ops<'_> {
    /// Runs a store write and records its latency.
    pub async fn write<R, F>(&self, f: F) -> Result<R, crate::store::StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&crate::store::Tx<'_>) -> Result<R, crate::store::StoreError> + Send + 'static,
    {
        let t = Instant::now();
        let r = self.store.write(f).await;
        self.metrics.store_write.observe(t.elapsed().as_secs_f64());
        r
    }
}

pub fn type_label(kind: u8) -> &'static str {
    if kind == STACK_SWARM {
        "swarm"
    } else {
        "compose"
    }
}

pub fn endpoint_not_found() -> ApiError {
    ApiError::not_found("an environment")
}

pub fn stack_not_found() -> ApiError {
    ApiError::not_found("a stack")
}

// ------------------------------------------------------------- file checks

/// Whether a stack's files follow an admin's rules: its owner is an admin
/// (a user that no longer exists counts as a standard user).
pub fn owner_is_admin(state: &Ops<'_>, stack: &Stack) -> bool {
    state.identity.user_by_name(&stack.created_by).is_some_and(|u| u.is_admin())
}

/// The rules for a file: none when both the caller and the owner are
/// admins, else the endpoint's rules for standard users.
pub fn rules(caller: &Principal, owner_admin: bool, entry: &EndpointEntry) -> Option<Policy> {
    (!caller.is_admin() || !owner_admin).then(|| Policy::of(&entry.record.security_settings))
}

fn refused(details: String) -> ApiError {
    ApiError::bad_request("Invalid stack file", details)
}

/// Checks one file's bytes against the rules (if any).
pub fn check_content(rules: Option<&Policy>, file: &str, bytes: &[u8]) -> ApiResult<()> {
    let Some(p) = rules else { return Ok(()) };
    let doc = super::yaml::decode(bytes).and_then(super::yaml::parse).map_err(|e| refused(format!("{file}: {e}")))?;
    policy::check(&doc, p).map_err(|e| refused(format!("{file}: {e}")))
}

/// Checks every file a stack names, as stored in `dir`, and (for rules)
/// that no `.env` beside the entry file or at the root would be read.
pub async fn check_stored(rules: Option<Policy>, dir: &Path, files: Vec<String>) -> ApiResult<()> {
    let Some(p) = rules else { return Ok(()) };
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let entry_dir = files.first().and_then(|f| Path::new(f).parent().map(Path::to_path_buf)).unwrap_or_default();
        for d in [PathBuf::new(), entry_dir] {
            if dir.join(&d).join(".env").symlink_metadata().is_ok() {
                return Err(refused(format!(
                    "{}: standard users' repositories may not carry a .env file (set the stack's variables instead)",
                    d.join(".env").display()
                )));
            }
        }
        for f in &files {
            let bytes =
                std::fs::read(dir.join(f)).map_err(|e| ApiError::internal("Unable to read the stack file", e))?;
            check_content(Some(&p), f, &bytes)?;
        }
        Ok(())
    })
    .await
    .map_err(|e| ApiError::internal("Unable to check the stack files", e))?
}

// ------------------------------------------------------------ deployer jobs

/// Registry logins the caller may use on this endpoint, for the deploy's
/// `config.json`.
pub fn logins_for(state: &Ops<'_>, p: &Principal, endpoint: Id, teams: &[Id]) -> Vec<Login> {
    state
        .registries
        .all()
        .iter()
        .filter(|r| r.authentication && crate::registries::may_use(r, p, endpoint, teams))
        .filter_map(|r| {
            let password = state.sealer.open(&r.sealed_password)?;
            let hub = r.kind == 6 || matches!(r.url.as_str(), "docker.io" | "index.docker.io" | "registry-1.docker.io");
            let server = if hub { "https://index.docker.io/v1/".to_string() } else { r.url.clone() };
            Some(Login { server, username: r.username.clone(), password })
        })
        .collect()
}

/// What a job is about, beyond the endpoint.
pub struct JobSpec<'s> {
    pub dir: PathBuf,
    pub files: Vec<String>,
    pub name: &'s str,
    pub env: &'s Option<Vec<Pair>>,
    pub owner_is_admin: bool,
    pub files_checked: bool,
}

pub fn job<'a>(state: &'a Ops<'a>, entry: &EndpointEntry, spec: JobSpec<'_>, logins: Vec<Login>) -> Job<'a> {
    Job {
        tools: &state.stacks.tools,
        target: deploy::Target::of(&entry.record),
        scratch_root: &state.stacks.scratch_root,
        project_dir: spec.dir,
        files: spec.files,
        name: spec.name.to_string(),
        env: spec.env.clone().unwrap_or_default(),
        logins,
        timeout: state.config.stack_deploy_timeout,
        owner_is_admin: spec.owner_is_admin,
        files_checked: spec.files_checked,
    }
}

/// Runs a deployer operation and records its metrics.
async fn timed<F>(state: &Ops<'_>, kind: u8, method: &str, f: F) -> Result<String, DeployError>
where
    F: std::future::Future<Output = Result<String, DeployError>>,
{
    let t = Instant::now();
    let r = f.await;
    let outcome = match &r {
        Ok(_) => "ok",
        Err(e) if e.timed_out => "timeout",
        Err(_) => "error",
    };
    let ty = type_label(kind);
    state.metrics.stack_deploys.with_label_values(&[ty, method, outcome]).inc();
    state.metrics.stack_deploy_duration.with_label_values(&[ty, method]).observe(t.elapsed().as_secs_f64());
    r
}

pub async fn deploy_job(
    state: &Ops<'_>,
    kind: u8,
    method: &str,
    job: &Job<'_>,
    opts: DeployOptions,
) -> Result<String, DeployError> {
    if kind == STACK_SWARM {
        timed(state, kind, method, job.swarm_deploy(opts)).await
    } else {
        timed(state, kind, method, job.compose_up(opts)).await
    }
}

pub async fn remove_job(
    state: &Ops<'_>,
    entry: &EndpointEntry,
    kind: u8,
    method: &str,
    job: &Job<'_>,
) -> Result<String, DeployError> {
    if kind == STACK_SWARM {
        let out = timed(state, kind, method, job.swarm_remove()).await?;
        let limit = state.config.stack_deploy_timeout.min(SWARM_SETTLE);
        wait_swarm_removed(entry, &job.name, limit).await;
        Ok(out)
    } else {
        timed(state, kind, method, job.compose_down()).await
    }
}

/// `docker stack rm` returns before the swarm has removed the stack's
/// networks; deploying the name again meanwhile fails ("network ... not
/// found"), so a stop or delete waits, bounded, until they are gone.
async fn wait_swarm_removed(entry: &EndpointEntry, name: &str, limit: Duration) {
    let filters = json!({ "label": [format!("com.docker.stack.namespace={name}")] }).to_string();
    let path = format!("/networks?{}", serde_urlencoded::to_string([("filters", filters)]).unwrap_or_default());
    let deadline = Instant::now() + limit;
    loop {
        match entry.upstream.get_json(&path, DOCKER_QUERY_TIMEOUT).await {
            Ok(Value::Array(a)) if a.is_empty() => return,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(stack = %name, error = %e, "checking the removed stack's networks failed");
            }
        }
        if Instant::now() >= deadline {
            tracing::warn!(stack = %name, "the swarm has not removed the stack's networks yet");
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn deploy_failed(message: &str, e: DeployError) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message, e.details)
}

/// A clone's failure as the API answers it. A standard user learns only
/// that the clone failed: git's words would tell an open port from a
/// closed one, or one internal service from another (they go to the log).
pub fn git_failed(e: &GitError, caller: &Principal) -> ApiError {
    const MESSAGE: &str = "Unable to clone git repository";
    tracing::warn!(error = %e, "cloning a stack repository failed");
    let (kind, details) = match e {
        GitError::TooLarge(_) | GitError::Refused(_) => (ErrorKind::BadRequest, e.to_string()),
        GitError::TimedOut(_) | GitError::Local(_) => (ErrorKind::Internal, e.to_string()),
        GitError::Fetch(_) if !caller.is_admin() => {
            (ErrorKind::Internal, "the repository could not be fetched".to_string())
        }
        GitError::Fetch(_) => (ErrorKind::Internal, e.to_string()),
    };
    ApiError::of(kind, MESSAGE, details)
}

/// The endpoint's swarm, for swarm stacks: it must be a manager of the
/// swarm the caller named.
pub async fn check_swarm(entry: &EndpointEntry, swarm_id: &str) -> ApiResult<()> {
    let info = entry.upstream.get_json("/info", DOCKER_QUERY_TIMEOUT).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Unable to retrieve information from the environment",
            e.to_string(),
        )
    })?;
    let manager = info.pointer("/Swarm/ControlAvailable").and_then(Value::as_bool).unwrap_or(false);
    if !manager {
        return Err(ApiError::bad_request(
            "Unable to deploy a swarm stack on this environment",
            "The environment is not a Swarm manager: initialise or join a swarm, or deploy a standalone stack",
        ));
    }
    let cluster = info.pointer("/Swarm/Cluster/ID").and_then(Value::as_str).unwrap_or("");
    if !cluster.is_empty() && cluster != swarm_id {
        return Err(ApiError::bad_request(
            "Invalid Swarm ID",
            format!("the environment is a manager of swarm {cluster}, not {swarm_id}"),
        ));
    }
    Ok(())
}

pub fn name_taken(name: &str) -> ApiError {
    let m = format!("A stack with the normalized name '{name}' already exists");
    ApiError::conflict(m.clone(), m)
}

/// Something on the Docker host already answers to the name: containers
/// of a Compose project of that name, or (swarm) services of a stack.
pub async fn check_docker_names(entry: &EndpointEntry, name: &str, kind: u8) -> ApiResult<()> {
    let failed =
        |e: crate::connector::UpstreamError| ApiError::internal("Unable to check for name collision", e.to_string());
    let query = |label: String| {
        let filters = json!({ "label": [label] }).to_string();
        serde_urlencoded::to_string([("filters", filters)]).unwrap_or_default()
    };
    let path = format!("/containers/json?all=1&{}", query(format!("com.docker.compose.project={name}")));
    let containers = entry.upstream.get_json(&path, DOCKER_QUERY_TIMEOUT).await.map_err(failed)?;
    if containers.as_array().is_some_and(|a| !a.is_empty()) {
        return Err(name_taken(name));
    }
    if kind == STACK_SWARM {
        let path = format!("/services?{}", query(format!("com.docker.stack.namespace={name}")));
        let services = entry.upstream.get_json(&path, DOCKER_QUERY_TIMEOUT).await.map_err(failed)?;
        if services.as_array().is_some_and(|a| !a.is_empty()) {
            return Err(name_taken(name));
        }
    }
    Ok(())
}

pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
}

pub async fn remove_dir(p: PathBuf) {
    let _ = tokio::task::spawn_blocking(move || deploy::remove_dir_logged(&p)).await;
}

pub async fn save(state: &Ops<'_>, rec: Stack) -> ApiResult<super::StackView> {
    let r2 = rec.clone();
    state.write(move |tx| tx.put(STACKS, r2.id, &r2)).await.map_err(store_err)?;
    state.stacks.put(rec.clone());
    super::shared::share(state.store, Path::new(&rec.project_path), rec.id).await.map_err(store_err)?;
    Ok(super::view(&rec))
}

/// After a fetch: the named files exist inside the clone, no link leads
/// out, and the files pass the rules.
pub async fn check_fetched(rules: Option<Policy>, dir: &Path, files: Vec<String>) -> ApiResult<()> {
    let (d, f) = (dir.to_path_buf(), files.clone());
    tokio::task::spawn_blocking(move || git::check_tree(&d, &f))
        .await
        .map_err(|e| ApiError::internal("Unable to check the repository", e))?
        .map_err(|e| ApiError::bad_request("Invalid repository content", e))?;
    check_stored(rules, dir, files).await
}

// ------------------------------------------------------------------ create

pub enum DraftSource {
    Content(Vec<u8>),
    Git { src: git::Source, compose_file: String, additional: Vec<String> },
}

/// A validated create request.
pub struct Draft {
    pub kind: u8,
    pub method: &'static str,
    pub entry: Arc<EndpointEntry>,
    pub teams: Vec<Id>,
    pub name: String,
    pub swarm_id: String,
    pub env: Option<Vec<Pair>>,
    pub from_app_template: bool,
    pub source: DraftSource,
}

pub async fn create(state: &Ops<'_>, p: Principal, d: Draft) -> ApiResult<super::StackView> {
    let eid = d.entry.record.id;
    if d.kind == STACK_SWARM {
        check_swarm(&d.entry, &d.swarm_id).await?;
    }
    let _lock = state.stacks.lock(eid, &d.name).await.map_err(store_err)?;
    // The endpoint as it is now: it may have changed while this waited.
    let mut d = d;
    d.entry = state.endpoints.get(eid).ok_or_else(endpoint_not_found)?;
    if state.stacks.find(eid, &d.name).is_some() {
        return Err(name_taken(&d.name));
    }
    check_docker_names(&d.entry, &d.name, d.kind).await?;
    let _slot = state.stacks.quota.stack_slot(state.stacks, &p, state.config)?;
    // The control's id comes from the controls' sequence (one id space).
    // Memory was checked above; the store is checked again here, inside
    // the transaction: another replica may have created the name a moment
    // ago (it held the name's lock, released now) and this replica's
    // memory may not show it yet.
    let name = d.name.clone();
    let (id, control_id) = state
        .write(move |tx| {
            let taken = tx.all::<Stack>(STACKS)?.iter().any(|s| s.endpoint_id == eid && s.name == name);
            if taken {
                return Err(crate::store::StoreError::Conflict(name));
            }
            Ok((tx.next_id(STACKS)?, tx.next_id(crate::store::RESOURCE_CONTROLS)?))
        })
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict(name) => name_taken(&name),
            e => store_err(e),
        })?;
    let dir = state.stacks.project_dir(id);
    let r = create_in(state, &p, &d, (id, control_id), dir.clone()).await;
    if let Err(e) = &r {
        remove_dir(dir).await;
        tracing::warn!(stack = %d.name, endpoint = eid, error = %e.details, "stack creation failed");
    }
    r
}

async fn create_in(
    state: &Ops<'_>,
    p: &Principal,
    d: &Draft,
    (id, control_id): (Id, Id),
    dir: PathBuf,
) -> ApiResult<super::StackView> {
    let eid = d.entry.record.id;
    let (entry_point, additional, git_config) = match &d.source {
        DraftSource::Content(bytes) => {
            let (dir2, bytes) = (dir.clone(), bytes.clone());
            blocking(move || {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new().mode(0o700).create(&dir2)?;
                crate::fsutil::write_atomic(&dir2.join(STACK_FILE), &bytes, 0o600)
            })
            .await
            .map_err(|e| ApiError::internal("Unable to persist the stack file on disk", e))?;
            (STACK_FILE.to_string(), Vec::new(), None)
        }
        DraftSource::Git { src, compose_file, additional } => {
            let commit = super::changes::clone(state, p, src, &dir).await?;
            let mut files = vec![compose_file.clone()];
            files.extend(additional.iter().cloned());
            check_fetched(rules(p, p.is_admin(), &d.entry), &dir, files).await?;
            let authentication = src
                .credentials
                .as_ref()
                .map(|(u, pw)| GitAuth { username: u.clone(), sealed_password: state.sealer.seal(pw) });
            let git = StackGitConfig {
                url: src.url.clone(),
                reference_name: src.reference.clone(),
                config_file_path: compose_file.clone(),
                authentication,
                config_hash: commit,
                tls_skip_verify: src.skip_tls_verify,
            };
            (compose_file.clone(), additional.clone(), Some(git))
        }
    };
    let mut files = vec![entry_point.clone()];
    files.extend(additional.iter().cloned());
    let logins = logins_for(state, p, eid, &d.teams);
    let spec = JobSpec {
        dir: dir.clone(),
        files,
        name: &d.name,
        env: &d.env,
        owner_is_admin: p.is_admin(),
        files_checked: true,
    };
    let job = job(state, &d.entry, spec, logins);
    let deployed = {
        let _run = state.stacks.quota.deployer_slot(p, state.config)?;
        deploy_job(state, d.kind, d.method, &job, DeployOptions::default()).await
    };
    if let Err(e) = deployed {
        // Whatever was half started goes; the name was free before.
        if let Err(re) = remove_job(state, &d.entry, d.kind, "rollback", &job).await {
            tracing::warn!(stack = %d.name, error = %re, "rolling back a failed deploy failed");
        }
        return Err(deploy_failed("Unable to deploy stack", e));
    }
    let stack = Stack {
        id,
        name: d.name.clone(),
        kind: d.kind,
        endpoint_id: eid,
        swarm_id: d.swarm_id.clone(),
        entry_point,
        env: d.env.clone(),
        status: STACK_ACTIVE,
        project_path: dir.display().to_string(),
        creation_date: crate::auth::now_secs() as i64,
        created_by: p.user.username.clone(),
        update_date: 0,
        updated_by: String::new(),
        additional_files: if additional.is_empty() { None } else { Some(additional) },
        option: None,
        git_config,
        resource_control: super::resource_control(control_id, eid, &d.name, p),
        from_app_template: d.from_app_template,
    };
    let s2 = stack.clone();
    if let Err(e) = state.write(move |tx| tx.put(STACKS, id, &s2)).await {
        let _ = remove_job(state, &d.entry, d.kind, "rollback", &job).await;
        return Err(store_err(e));
    }
    state.stacks.put(stack.clone());
    super::shared::share(state.store, &dir, id).await.map_err(store_err)?;
    tracing::info!(stack = id, name = %stack.name, endpoint = eid, r#type = type_label(d.kind), "stack deployed");
    Ok(super::view(&stack))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::StatusCode;

    use super::git_failed;
    use crate::auth::Principal;
    use crate::stacks::git::GitError;

    fn caller(role: u8) -> Principal {
        Principal::for_tests(7, role)
    }

    #[test]
    fn every_git_failure_has_its_status_and_standard_users_never_see_gits_words() {
        let (admin, user) = (caller(1), caller(2));
        let secret = "connect to 10.0.0.5 port 22: Connection refused";
        let cases = [
            (GitError::TooLarge(1 << 20), StatusCode::BAD_REQUEST),
            (GitError::Refused("loopback".into()), StatusCode::BAD_REQUEST),
            (GitError::TimedOut(Duration::from_secs(5)), StatusCode::INTERNAL_SERVER_ERROR),
            (GitError::Local("disk full".into()), StatusCode::INTERNAL_SERVER_ERROR),
            (GitError::Fetch(secret.into()), StatusCode::INTERNAL_SERVER_ERROR),
        ];
        for (e, status) in &cases {
            assert_eq!(git_failed(e, &admin).status(), *status, "{e}");
            assert_eq!(git_failed(e, &user).status(), *status, "{e}");
        }
        let fetch = GitError::Fetch(secret.into());
        assert!(git_failed(&fetch, &admin).to_string().contains("10.0.0.5"));
        assert!(!git_failed(&fetch, &user).to_string().contains("10.0.0.5"));
    }
}
