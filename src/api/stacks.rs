//! Stacks (`/api/stacks`): create from a string, an uploaded file or a git
//! repository, list, inspect, read the file, update, stop, start, git
//! redeploy and delete. The deployers and their hardening live in
//! [`crate::stacks`].
//!
//! Every operation that deploys or removes runs in a task of its own, so a
//! client that disconnects mid-deploy cannot leave a half-made stack
//! behind: the operation finishes (or rolls back) either way. Operations on
//! one stack name of one endpoint hold that name's lock from the
//! uniqueness check to the stored record, so two creates of one name give
//! one stack and one 409.
//!
//! A failed create leaves nothing: the deployer's partial work is rolled
//! back (`compose down` / `docker stack rm`), the project folder removed,
//! no record stored. A failed update restores the previous file.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::form::{self, Limits};
use super::{decode_json, no_content, ok_json, store_err, ApiRequest};
use crate::auth::Principal;
use crate::body::ResponseBody;
use crate::endpoints::EndpointEntry;
use crate::error::{ApiError, ApiResult};
use crate::stacks::deploy::{DeployError, DeployOptions, Job, Login};
use crate::stacks::git::{self, GitError};
use crate::stacks::{self as st, deploy};
use crate::state::AppState;
use crate::store::model::{
    GitAuth, Id, Pair, Stack, StackGitConfig, STACK_ACTIVE, STACK_COMPOSE, STACK_INACTIVE, STACK_SWARM,
};
use crate::store::STACKS;

/// File name of stacks created from a string or an upload (Portainer's).
const STACK_FILE: &str = "docker-compose.yml";
/// Room for the JSON or multipart framing around a stack file.
const BODY_SLACK: usize = 64 * 1024;
/// Bound on the Docker queries made before a deploy (`/info`, name checks).
const DOCKER_QUERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Method {
    String,
    File,
    Repository,
}

impl Method {
    fn label(self) -> &'static str {
        match self {
            Method::String => "string",
            Method::File => "file",
            Method::Repository => "repository",
        }
    }
}

fn type_label(kind: u8) -> &'static str {
    if kind == STACK_SWARM {
        "swarm"
    } else {
        "compose"
    }
}

// ---------------------------------------------------------------------------
// Checks shared by the routes
// ---------------------------------------------------------------------------

fn bad_query(name: &str, details: impl AsRef<str>) -> ApiError {
    ApiError::bad_request(format!("Invalid query parameter: {name}"), details)
}

/// `?endpointId=`: required and numeric.
fn query_endpoint(req: &ApiRequest) -> ApiResult<Id> {
    let raw = req.query("endpointId").ok_or_else(|| bad_query("endpointId", "endpointId is required"))?;
    raw.trim().parse::<Id>().map_err(|e| bad_query("endpointId", format!("{e}: {raw:?}")))
}

fn endpoint_not_found() -> ApiError {
    ApiError::not_found("an environment")
}

fn stack_not_found() -> ApiError {
    ApiError::not_found("a stack")
}

fn access_denied() -> ApiError {
    ApiError::forbidden("Access denied to resource", "Unauthorized")
}

/// Endpoint access, then (for standard users) the endpoint's stack
/// management setting. Returns the caller's teams.
fn check_endpoint(state: &AppState, p: &Principal, entry: &EndpointEntry, creating: bool) -> ApiResult<Vec<Id>> {
    let teams = state.identity.teams_of(p.id());
    if !state.endpoints.may_access(p, &entry.record, &teams) {
        return Err(ApiError::forbidden("Permission denied to access environment", "Access denied to environment"));
    }
    if !p.is_admin() && !entry.record.security_settings.allow_stack_management_for_regular_users {
        let message = if creating {
            "Stack creation is disabled for non-admin users"
        } else {
            "Stack management is disabled for non-admin users"
        };
        return Err(ApiError::forbidden(message, message));
    }
    Ok(teams)
}

/// Standard users deploy only where Berth need not enforce security
/// settings inside stack files (see [`st::restricts_regular_users`]).
fn check_may_deploy(p: &Principal, entry: &EndpointEntry) -> ApiResult<()> {
    if !p.is_admin() && st::restricts_regular_users(&entry.record.security_settings) {
        return Err(ApiError::forbidden(
            "Stack deployment is disabled for non-admin users on this environment",
            "This environment restricts bind mounts, privileged mode, host namespaces, devices, capabilities or \
             sysctls for standard users, and Berth does not inspect stack files to enforce that",
        ));
    }
    Ok(())
}

/// A standard user's stack file must not make the deployer read files on
/// Berth's host.
fn check_content(p: &Principal, file: &str, text: &str) -> ApiResult<()> {
    if p.is_admin() {
        return Ok(());
    }
    match st::host_file_reference(text) {
        None => Ok(()),
        Some(what) => Err(ApiError::forbidden(
            "Permission denied to deploy this stack file",
            format!(
                "{file}: stack files of non-admin users may not use {what}, which make the deployer read files on \
                 Berth's host"
            ),
        )),
    }
}

/// A stack, its endpoint (none when orphaned) and the caller's teams.
type Found = (Arc<Stack>, Option<Arc<EndpointEntry>>, Vec<Id>);

/// The stack and, unless it is orphaned, its endpoint; with every access
/// rule applied. Orphaned stacks (endpoint deleted) are for admins only.
fn stack_for(state: &AppState, p: &Principal, id: Id) -> ApiResult<Found> {
    let stack = state.stacks.get(id).ok_or_else(stack_not_found)?;
    match state.endpoints.get(stack.endpoint_id) {
        None if p.is_admin() => Ok((stack, None, Vec::new())),
        None => Err(access_denied()),
        Some(entry) => {
            let teams = check_endpoint(state, p, &entry, false)?;
            if !st::control_grants(&stack.resource_control, p, &teams) {
                return Err(access_denied());
            }
            Ok((stack, Some(entry), teams))
        }
    }
}

/// For changes: the stack must live on `?endpointId=` and that endpoint
/// must exist. `deploys`: the change runs the stack's file (update, start,
/// redeploy), which standard users may not do on restricted endpoints;
/// stopping and deleting stay open to them.
fn stack_for_change(
    state: &AppState,
    req: &ApiRequest,
    p: &Principal,
    deploys: bool,
) -> ApiResult<(Arc<Stack>, Arc<EndpointEntry>, Vec<Id>)> {
    let id = req.id("id", "stack")?;
    let eid = query_endpoint(req)?;
    let (stack, entry, teams) = stack_for(state, p, id)?;
    let entry = entry.ok_or_else(endpoint_not_found)?;
    if stack.endpoint_id != eid {
        return Err(bad_query(
            "endpointId",
            format!("stack {} belongs to environment {}, not {eid}", stack.id, stack.endpoint_id),
        ));
    }
    if deploys {
        check_may_deploy(p, &entry)?;
    }
    Ok((stack, entry, teams))
}

/// Runs `f` in a task of its own: a client going away must not cut a
/// deploy (or its rollback) in half.
async fn detached<T: Send + 'static>(
    f: impl std::future::Future<Output = ApiResult<T>> + Send + 'static,
) -> ApiResult<T> {
    tokio::spawn(f).await.unwrap_or_else(|e| Err(ApiError::internal("The stack operation failed", e)))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
}

async fn remove_dir(p: PathBuf) {
    let _ = tokio::task::spawn_blocking(move || deploy::remove_dir_logged(&p)).await;
}

/// Registry logins the caller may use on this endpoint, for the deploy's
/// `config.json`.
fn logins_for(state: &AppState, p: &Principal, endpoint: Id, teams: &[Id]) -> Vec<Login> {
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

fn job<'a>(
    state: &'a AppState,
    entry: &EndpointEntry,
    stack_dir: PathBuf,
    files: Vec<String>,
    name: &str,
    env: &Option<Vec<Pair>>,
    logins: Vec<Login>,
) -> Job<'a> {
    Job {
        tools: &state.stacks.tools,
        target: deploy::Target::of(&entry.record),
        scratch_root: &state.stacks.scratch_root,
        project_dir: stack_dir,
        files,
        name: name.to_string(),
        env: env.clone().unwrap_or_default(),
        logins,
        timeout: state.config.stack_deploy_timeout,
    }
}

/// Runs a deployer operation and records its metrics.
async fn timed<F>(state: &AppState, kind: u8, method: &str, f: F) -> Result<String, DeployError>
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

async fn deploy_job(
    state: &AppState,
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

async fn remove_job(
    state: &AppState,
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

/// Longest wait for a removed swarm stack's networks to go.
const SWARM_SETTLE: std::time::Duration = std::time::Duration::from_secs(30);

/// `docker stack rm` returns before the swarm has removed the stack's
/// networks; deploying the name again meanwhile fails ("network ... not
/// found"), so a stop or delete waits, bounded, until they are gone.
async fn wait_swarm_removed(entry: &EndpointEntry, name: &str, limit: std::time::Duration) {
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
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn deploy_failed(message: &str, e: DeployError) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message, e.details)
}

fn git_failed(e: GitError) -> ApiError {
    let status = match e {
        GitError::TooLarge(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, "Unable to clone git repository", e.to_string())
}

/// The endpoint's swarm, for swarm stacks: it must be a manager of the
/// swarm the caller named.
async fn check_swarm(entry: &EndpointEntry, swarm_id: &str) -> ApiResult<()> {
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

fn name_taken(name: &str) -> ApiError {
    let m = format!("A stack with the normalized name '{name}' already exists");
    ApiError::conflict(m.clone(), m)
}

/// Something on the Docker host already answers to the name: containers
/// of a Compose project of that name, or (swarm) services of a stack.
async fn check_docker_names(entry: &EndpointEntry, name: &str, kind: u8) -> ApiResult<()> {
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

// ---------------------------------------------------------------------------
// Payloads
// ---------------------------------------------------------------------------

/// `{"name","value"}`, names matched case-insensitively like Go does.
#[derive(Deserialize, Clone)]
struct PairIn {
    #[serde(alias = "Name", alias = "NAME")]
    name: String,
    #[serde(alias = "Value", alias = "VALUE", default)]
    value: String,
}

fn pairs(env: Option<Vec<PairIn>>) -> ApiResult<Option<Vec<Pair>>> {
    let env = env.map(|v| v.into_iter().map(|p| Pair { name: p.name, value: p.value }).collect::<Vec<_>>());
    if let Some(e) = &env {
        st::check_env(e).map_err(ApiError::invalid_payload)?;
    }
    Ok(env)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "lowercase")]
struct StringPayload {
    name: Option<String>,
    swarmid: Option<String>,
    stackfilecontent: Option<String>,
    env: Option<Vec<PairIn>>,
    fromapptemplate: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "lowercase")]
struct RepoPayload {
    name: Option<String>,
    swarmid: Option<String>,
    repositoryurl: Option<String>,
    repositoryreferencename: Option<String>,
    repositoryauthentication: Option<bool>,
    repositoryusername: Option<String>,
    repositorypassword: Option<String>,
    composefile: Option<String>,
    /// The name of `ComposeFile` before Portainer 2.9 (the seeds use it).
    composefilepathinrepository: Option<String>,
    additionalfiles: Option<Vec<String>>,
    autoupdate: Option<Value>,
    env: Option<Vec<PairIn>>,
    fromapptemplate: Option<bool>,
    tlsskipverify: Option<bool>,
}

enum Source {
    Content(Vec<u8>),
    Git { src: git::Source, compose_file: String, additional: Vec<String> },
}

/// A validated create request.
struct Draft {
    kind: u8,
    method: Method,
    entry: Arc<EndpointEntry>,
    teams: Vec<Id>,
    name: String,
    swarm_id: String,
    env: Option<Vec<Pair>>,
    from_app_template: bool,
    source: Source,
}

fn stack_name(raw: Option<&str>) -> ApiResult<String> {
    let name = st::normalize_name(raw.unwrap_or(""));
    st::check_name(&name).map_err(ApiError::invalid_payload)?;
    Ok(name)
}

fn swarm_id(kind: u8, raw: Option<&str>) -> ApiResult<String> {
    if kind != STACK_SWARM {
        return Ok(String::new());
    }
    match raw.map(str::trim) {
        Some(s) if !s.is_empty() => Ok(s.to_string()),
        _ => Err(ApiError::invalid_payload("Invalid Swarm ID")),
    }
}

fn content(state: &AppState, bytes: Option<Vec<u8>>) -> ApiResult<Vec<u8>> {
    let bytes = bytes
        .filter(|b| !b.iter().all(u8::is_ascii_whitespace))
        .ok_or_else(|| ApiError::invalid_payload("Invalid stack file content"))?;
    if bytes.len() > state.config.max_stack_file {
        return Err(form::too_large(format!("The stack file exceeds {} bytes", state.config.max_stack_file)));
    }
    Ok(bytes)
}

async fn read_json<T: serde::de::DeserializeOwned>(req: &mut ApiRequest, limit: usize) -> ApiResult<T> {
    let bytes = req.bytes(limit).await?;
    decode_json(&bytes)
}

async fn parse_draft(state: &AppState, req: &mut ApiRequest, kind: u8, method: Method) -> ApiResult<Draft> {
    let eid = query_endpoint(req)?;
    let entry = state.endpoints.get(eid).ok_or_else(endpoint_not_found)?;
    let p = req.principal().clone();
    let teams = check_endpoint(state, &p, &entry, true)?;
    check_may_deploy(&p, &entry)?;
    let stack_limit = state.config.max_stack_file.saturating_add(BODY_SLACK);
    let draft = |name, swarm_id, env, from_app_template, source| Draft {
        kind,
        method,
        entry: entry.clone(),
        teams: teams.clone(),
        name,
        swarm_id,
        env,
        from_app_template,
        source,
    };
    match method {
        Method::String => {
            let b: StringPayload = read_json(req, stack_limit).await?;
            let name = stack_name(b.name.as_deref())?;
            let swarm = swarm_id(kind, b.swarmid.as_deref())?;
            let text = content(state, b.stackfilecontent.map(String::into_bytes))?;
            check_content(&p, STACK_FILE, &String::from_utf8_lossy(&text))?;
            let env = pairs(b.env)?;
            Ok(draft(name, swarm, env, b.fromapptemplate.unwrap_or(false), Source::Content(text)))
        }
        Method::File => {
            let f = form::read(req, Limits::upload(stack_limit)).await?;
            let name = stack_name(f.value("Name"))?;
            let swarm = swarm_id(kind, f.value("SwarmID"))?;
            let text = content(state, f.file("file").map(|f| f.bytes.to_vec()))?;
            check_content(&p, STACK_FILE, &String::from_utf8_lossy(&text))?;
            let env: Option<Vec<PairIn>> = match f.value("Env") {
                None => None,
                Some(raw) => Some(
                    serde_json::from_str(raw)
                        .map_err(|e| ApiError::bad_request("Invalid Env parameter", e.to_string()))?,
                ),
            };
            let env = pairs(env)?;
            Ok(draft(name, swarm, env, f.value("FromAppTemplate") == Some("true"), Source::Content(text)))
        }
        Method::Repository => {
            let limit = req.max_json_body;
            let b: RepoPayload = read_json(req, limit).await?;
            let name = stack_name(b.name.as_deref())?;
            let swarm = swarm_id(kind, b.swarmid.as_deref())?;
            let url = git::check_url(b.repositoryurl.as_deref().unwrap_or("")).map_err(|e| {
                ApiError::invalid_payload(format!("Invalid repository URL. Must correspond to a valid URL format: {e}"))
            })?;
            let reference = b.repositoryreferencename.unwrap_or_default().trim().to_string();
            git::check_reference(&reference).map_err(ApiError::invalid_payload)?;
            let credentials = if b.repositoryauthentication.unwrap_or(false) {
                let user = b.repositoryusername.unwrap_or_default();
                let pass = b.repositorypassword.unwrap_or_default();
                if pass.is_empty() {
                    return Err(ApiError::invalid_payload(
                        "Invalid repository credentials. Password must be specified when authentication is enabled",
                    ));
                }
                Some((user, pass))
            } else {
                None
            };
            let compose_file = b
                .composefile
                .filter(|s| !s.trim().is_empty())
                .or(b.composefilepathinrepository.filter(|s| !s.trim().is_empty()))
                .unwrap_or_else(|| STACK_FILE.to_string());
            let compose_file = git::check_relative_path(compose_file.trim())
                .map_err(|e| ApiError::invalid_payload(format!("Invalid compose file path: {e}")))?;
            let mut additional = Vec::new();
            for f in b.additionalfiles.unwrap_or_default() {
                additional.push(
                    git::check_relative_path(f.trim())
                        .map_err(|e| ApiError::invalid_payload(format!("Invalid additional file path: {e}")))?,
                );
            }
            if let Some(Value::Object(a)) = &b.autoupdate {
                let set = |k: &str| {
                    a.iter().any(|(key, v)| key.eq_ignore_ascii_case(k) && v.as_str().is_some_and(|s| !s.is_empty()))
                };
                if set("Interval") || set("Webhook") {
                    return Err(ApiError::invalid_payload(
                        "Automatic updates (AutoUpdate) are not supported by Berth: redeploy with PUT \
                         /api/stacks/{id}/git/redeploy",
                    ));
                }
            }
            let env = pairs(b.env)?;
            let src = git::Source { url, reference, credentials, skip_tls_verify: b.tlsskipverify.unwrap_or(false) };
            Ok(draft(
                name,
                swarm,
                env,
                b.fromapptemplate.unwrap_or(false),
                Source::Git { src, compose_file, additional },
            ))
        }
    }
}

// ---------------------------------------------------------------------------
// POST /api/stacks/create/{type}/{method} and POST /api/stacks?type=&method=
// ---------------------------------------------------------------------------

const METHODS: &str = "Value must be one of: string, repository or file";

fn parse_method(raw: Option<&str>) -> ApiResult<Method> {
    match raw.unwrap_or("") {
        "string" => Ok(Method::String),
        "file" => Ok(Method::File),
        "repository" => Ok(Method::Repository),
        other => Err(bad_query("method", format!("Invalid value {other:?} for query parameter: method. {METHODS}"))),
    }
}

fn kubernetes() -> ApiError {
    ApiError::bad_request("Kubernetes stacks are not supported", "Berth manages Docker environments only")
}

pub async fn create(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let map = super::params_map(&req.params);
    let kind = match map.get("type").copied().unwrap_or("") {
        "swarm" => STACK_SWARM,
        "standalone" => STACK_COMPOSE,
        "kubernetes" => return Err(kubernetes()),
        other => {
            return Err(ApiError::bad_request(
                "Invalid stack type",
                format!("{other:?} is not a stack type. Value must be one of: swarm, standalone or kubernetes"),
            ))
        }
    };
    let method = parse_method(map.get("method").copied())?;
    let draft = parse_draft(&state, &mut req, kind, method).await?;
    let p = req.principal().clone();
    ok_json(&detached(create_stack(state, p, draft)).await?)
}

/// The deprecated form: `type` 1 (swarm) or 2 (standalone) and `method` in
/// the query string, answered by the same code.
pub async fn create_legacy(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let kind = match req.query("type").as_deref().map(str::trim) {
        Some("1") => STACK_SWARM,
        Some("2") => STACK_COMPOSE,
        Some("3") => return Err(kubernetes()),
        Some(other) => {
            return Err(bad_query("type", format!("{other:?} is not a stack type: 1 (swarm) or 2 (standalone)")))
        }
        None => return Err(bad_query("type", "type is required: 1 (swarm) or 2 (standalone)")),
    };
    let method = parse_method(req.query("method").as_deref())?;
    let draft = parse_draft(&state, &mut req, kind, method).await?;
    let p = req.principal().clone();
    ok_json(&detached(create_stack(state, p, draft)).await?)
}

async fn create_stack(state: Arc<AppState>, p: Principal, d: Draft) -> ApiResult<Value> {
    let eid = d.entry.record.id;
    if d.kind == STACK_SWARM {
        check_swarm(&d.entry, &d.swarm_id).await?;
    }
    let _lock = state.stacks.lock(eid, &d.name).await;
    // The endpoint as it is now: it may have changed while this waited.
    let mut d = d;
    d.entry = state.endpoints.get(eid).ok_or_else(endpoint_not_found)?;
    if state.stacks.find(eid, &d.name).is_some() {
        return Err(name_taken(&d.name));
    }
    check_docker_names(&d.entry, &d.name, d.kind).await?;
    let id = state.write(|tx| tx.next_id(STACKS)).await.map_err(store_err)?;
    let dir = state.stacks.project_dir(id);
    let r = create_in(&state, &p, &d, id, dir.clone()).await;
    if let Err(e) = &r {
        remove_dir(dir).await;
        tracing::warn!(stack = %d.name, endpoint = eid, error = %e.details, "stack creation failed");
    }
    r
}

async fn create_in(state: &Arc<AppState>, p: &Principal, d: &Draft, id: Id, dir: PathBuf) -> ApiResult<Value> {
    let eid = d.entry.record.id;
    let (entry_point, additional, git_config) = match &d.source {
        Source::Content(bytes) => {
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
        Source::Git { src, compose_file, additional } => {
            let commit = git::fetch(
                &state.stacks.tools,
                src,
                &dir,
                &state.stacks.scratch_root,
                state.config.git_clone_timeout,
                state.config.max_clone_size,
            )
            .await
            .map_err(git_failed)?;
            let mut files = vec![compose_file.clone()];
            files.extend(additional.iter().cloned());
            check_fetched(p, &dir, files).await?;
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
    let job = job(state, &d.entry, dir.clone(), files, &d.name, &d.env, logins);
    if let Err(e) = deploy_job(state, d.kind, d.method.label(), &job, DeployOptions::default()).await {
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
        resource_control: st::resource_control(id, eid, &d.name, p),
        from_app_template: d.from_app_template,
    };
    let s2 = stack.clone();
    if let Err(e) = state.write(move |tx| tx.put(STACKS, id, &s2)).await {
        let _ = remove_job(state, &d.entry, d.kind, "rollback", &job).await;
        return Err(store_err(e));
    }
    state.stacks.put(stack.clone());
    tracing::info!(stack = id, name = %stack.name, endpoint = eid, r#type = type_label(d.kind), "stack deployed");
    Ok(st::view(&stack))
}

/// After a fetch: the named files exist inside the clone, no link leads
/// out, and a standard user's files reference nothing on Berth's host.
async fn check_fetched(p: &Principal, dir: &std::path::Path, files: Vec<String>) -> ApiResult<()> {
    let (d, f) = (dir.to_path_buf(), files.clone());
    tokio::task::spawn_blocking(move || git::check_tree(&d, &f))
        .await
        .map_err(|e| ApiError::internal("Unable to check the repository", e))?
        .map_err(|e| ApiError::bad_request("Invalid repository content", e))?;
    if !p.is_admin() {
        for f in files {
            let path = dir.join(&f);
            let text =
                tokio::fs::read(&path).await.map_err(|e| ApiError::internal("Unable to read the stack file", e))?;
            check_content(p, &f, &String::from_utf8_lossy(&text))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// GET /api/stacks, GET /api/stacks/{id}, GET /api/stacks/{id}/file
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Filters {
    endpoint_id: Option<Id>,
    swarm_id: Option<String>,
    include_orphans: bool,
}

fn parse_filters(raw: Option<String>) -> ApiResult<Filters> {
    let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else { return Ok(Filters::default()) };
    let v: Value = serde_json::from_str(&raw).map_err(|e| bad_query("filters", e.to_string()))?;
    let Value::Object(m) = v else { return Err(bad_query("filters", "filters must be a JSON object")) };
    let mut f = Filters::default();
    for (k, v) in m {
        match k.to_ascii_lowercase().as_str() {
            "endpointid" => {
                f.endpoint_id = match &v {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => s.parse().ok(),
                    _ => None,
                }
                .filter(|n| *n != 0)
            }
            "swarmid" => f.swarm_id = v.as_str().map(str::to_string).filter(|s| !s.is_empty()),
            "includeorphanedstacks" => f.include_orphans = v.as_bool().unwrap_or(false),
            _ => {}
        }
    }
    Ok(f)
}

pub async fn list(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let f = parse_filters(req.query("filters"))?;
    let p = req.principal();
    if f.include_orphans && !p.is_admin() {
        return Err(ApiError::forbidden(
            "Permission denied to access orphaned stacks",
            "Only administrators may list orphaned stacks",
        ));
    }
    let teams = state.identity.teams_of(p.id());
    let filtered = f.endpoint_id.is_some() || f.swarm_id.is_some();
    let mut out = Vec::new();
    for s in state.stacks.all() {
        let entry = state.endpoints.get(s.endpoint_id);
        let orphan = entry.is_none();
        if orphan && !f.include_orphans {
            continue;
        }
        if filtered && !orphan {
            let keep = (s.kind == STACK_COMPOSE && Some(s.endpoint_id) == f.endpoint_id)
                || (s.kind == STACK_SWARM && f.swarm_id.as_deref() == Some(s.swarm_id.as_str()));
            if !keep {
                continue;
            }
        }
        if !p.is_admin() {
            let Some(e) = entry else { continue };
            if !state.endpoints.may_access(p, &e.record, &teams)
                || !e.record.security_settings.allow_stack_management_for_regular_users
                || !st::control_grants(&s.resource_control, p, &teams)
            {
                continue;
            }
        }
        out.push(st::view(&s));
    }
    ok_json(&Value::Array(out))
}

pub async fn inspect(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let id = req.id("id", "stack")?;
    let (stack, _, _) = stack_for(&state, req.principal(), id)?;
    ok_json(&st::view(&stack))
}

pub async fn file(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let id = req.id("id", "stack")?;
    let (stack, _, _) = stack_for(&state, req.principal(), id)?;
    let path = PathBuf::from(&stack.project_path).join(&stack.entry_point);
    let bytes =
        tokio::fs::read(&path).await.map_err(|e| ApiError::internal("Unable to retrieve stack file from disk", e))?;
    ok_json(&json!({ "StackFileContent": String::from_utf8_lossy(&bytes) }))
}

// ---------------------------------------------------------------------------
// PUT /api/stacks/{id}
// ---------------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(rename_all = "lowercase")]
struct UpdatePayload {
    stackfilecontent: Option<String>,
    env: Option<Vec<PairIn>>,
    prune: Option<bool>,
    pullimage: Option<bool>,
}

pub async fn update(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let p = req.principal().clone();
    let (stack, _, teams) = stack_for_change(&state, &req, &p, true)?;
    let limit = state.config.max_stack_file.saturating_add(BODY_SLACK);
    let b: UpdatePayload = read_json(&mut req, limit).await?;
    let text = content(&state, b.stackfilecontent.map(String::into_bytes))?;
    check_content(&p, &stack.entry_point, &String::from_utf8_lossy(&text))?;
    let env = pairs(b.env)?;
    let opts = DeployOptions { prune: b.prune.unwrap_or(false), pull: b.pullimage.unwrap_or(false) };
    let v = detached(async move {
        let _lock = state.stacks.lock(stack.endpoint_id, &stack.name).await;
        let stack = state.stacks.get(stack.id).ok_or_else(stack_not_found)?;
        let entry = state.endpoints.get(stack.endpoint_id).ok_or_else(endpoint_not_found)?;
        let dir = PathBuf::from(&stack.project_path);
        let path = dir.join(&stack.entry_point);
        let p2 = path.clone();
        let previous = blocking(move || match std::fs::read(&p2) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
        .map_err(|e| ApiError::internal("Unable to read the stack file", e))?;
        let p2 = path.clone();
        blocking(move || crate::fsutil::write_atomic(&p2, &text, 0o600))
            .await
            .map_err(|e| ApiError::internal("Unable to persist the stack file on disk", e))?;
        let logins = logins_for(&state, &p, stack.endpoint_id, &teams);
        let job = job(&state, &entry, dir, st::files_of(&stack), &stack.name, &env, logins);
        if let Err(e) = deploy_job(&state, stack.kind, "update", &job, opts).await {
            let p2 = path.clone();
            let restored = blocking(move || match previous {
                Some(b) => crate::fsutil::write_atomic(&p2, &b, 0o600),
                None => std::fs::remove_file(&p2),
            })
            .await;
            if let Err(re) = restored {
                tracing::error!(stack = stack.id, error = %re, "restoring the previous stack file failed");
            }
            tracing::warn!(stack = stack.id, error = %e, "stack update failed; previous file restored");
            return Err(deploy_failed("Unable to update stack", e));
        }
        let mut rec = (*stack).clone();
        rec.env = env;
        rec.git_config = None;
        rec.status = STACK_ACTIVE;
        rec.update_date = crate::auth::now_secs() as i64;
        rec.updated_by = p.user.username.clone();
        if rec.kind == STACK_SWARM {
            rec.option = Some(json!({ "Prune": opts.prune }));
        }
        save(&state, rec).await
    })
    .await?;
    ok_json(&v)
}

async fn save(state: &AppState, rec: Stack) -> ApiResult<Value> {
    let r2 = rec.clone();
    state.write(move |tx| tx.put(STACKS, r2.id, &r2)).await.map_err(store_err)?;
    state.stacks.put(rec.clone());
    Ok(st::view(&rec))
}

// ---------------------------------------------------------------------------
// POST /api/stacks/{id}/stop and /start
// ---------------------------------------------------------------------------

pub async fn stop(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let p = req.principal().clone();
    let (stack, _, teams) = stack_for_change(&state, &req, &p, false)?;
    let v = detached(async move {
        let _lock = state.stacks.lock(stack.endpoint_id, &stack.name).await;
        let stack = state.stacks.get(stack.id).ok_or_else(stack_not_found)?;
        let entry = state.endpoints.get(stack.endpoint_id).ok_or_else(endpoint_not_found)?;
        if stack.status != STACK_ACTIVE {
            return Err(ApiError::bad_request("Stack is already inactive", "Stack is already inactive"));
        }
        let logins = logins_for(&state, &p, stack.endpoint_id, &teams);
        let job = job(
            &state,
            &entry,
            PathBuf::from(&stack.project_path),
            st::files_of(&stack),
            &stack.name,
            &stack.env,
            logins,
        );
        remove_job(&state, &entry, stack.kind, "stop", &job)
            .await
            .map_err(|e| deploy_failed("Unable to stop stack", e))?;
        let mut rec = (*stack).clone();
        rec.status = STACK_INACTIVE;
        save(&state, rec).await
    })
    .await?;
    ok_json(&v)
}

pub async fn start(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let p = req.principal().clone();
    let (stack, _, teams) = stack_for_change(&state, &req, &p, true)?;
    let v = detached(async move {
        let _lock = state.stacks.lock(stack.endpoint_id, &stack.name).await;
        let stack = state.stacks.get(stack.id).ok_or_else(stack_not_found)?;
        let entry = state.endpoints.get(stack.endpoint_id).ok_or_else(endpoint_not_found)?;
        if stack.status != STACK_INACTIVE {
            return Err(ApiError::bad_request("Stack is already active", "Stack is already active"));
        }
        // While it was stopped, something else may have taken the name.
        check_docker_names(&entry, &stack.name, stack.kind).await?;
        let logins = logins_for(&state, &p, stack.endpoint_id, &teams);
        let job = job(
            &state,
            &entry,
            PathBuf::from(&stack.project_path),
            st::files_of(&stack),
            &stack.name,
            &stack.env,
            logins,
        );
        if let Err(e) = deploy_job(&state, stack.kind, "start", &job, DeployOptions::default()).await {
            let _ = remove_job(&state, &entry, stack.kind, "rollback", &job).await;
            return Err(deploy_failed("Unable to start stack", e));
        }
        let mut rec = (*stack).clone();
        rec.status = STACK_ACTIVE;
        save(&state, rec).await
    })
    .await?;
    ok_json(&v)
}

// ---------------------------------------------------------------------------
// DELETE /api/stacks/{id}
// ---------------------------------------------------------------------------

pub async fn delete(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let id = req.id("id", "stack")?;
    let eid = query_endpoint(&req)?;
    if req.query("external").as_deref() == Some("true") {
        return Err(ApiError::bad_request(
            "External stacks are not supported",
            "Berth deletes only the stacks it deployed",
        ));
    }
    let p = req.principal().clone();
    let (stack, entry, teams) = stack_for(&state, &p, id)?;
    if entry.is_some() && stack.endpoint_id != eid {
        return Err(bad_query(
            "endpointId",
            format!("stack {} belongs to environment {}, not {eid}", stack.id, stack.endpoint_id),
        ));
    }
    detached(async move {
        let _lock = state.stacks.lock(stack.endpoint_id, &stack.name).await;
        let stack = state.stacks.get(stack.id).ok_or_else(stack_not_found)?;
        let entry = if entry.is_some() { state.endpoints.get(stack.endpoint_id) } else { None };
        // Orphaned stacks have no host to remove anything from.
        if let Some(entry) = &entry {
            if stack.status == STACK_ACTIVE {
                let logins = logins_for(&state, &p, stack.endpoint_id, &teams);
                let job = job(
                    &state,
                    entry,
                    PathBuf::from(&stack.project_path),
                    st::files_of(&stack),
                    &stack.name,
                    &stack.env,
                    logins,
                );
                remove_job(&state, entry, stack.kind, "remove", &job)
                    .await
                    .map_err(|e| deploy_failed("Unable to remove stack", e))?;
            }
        }
        let sid = stack.id;
        state.write(move |tx| tx.delete(STACKS, sid)).await.map_err(store_err)?;
        state.stacks.remove(sid);
        remove_dir(PathBuf::from(&stack.project_path)).await;
        tracing::info!(stack = sid, name = %stack.name, endpoint = stack.endpoint_id, "stack removed");
        Ok(())
    })
    .await?;
    no_content()
}

// ---------------------------------------------------------------------------
// PUT /api/stacks/{id}/git/redeploy
// ---------------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(rename_all = "lowercase")]
struct RedeployPayload {
    repositoryreferencename: Option<String>,
    repositoryauthentication: Option<bool>,
    repositoryusername: Option<String>,
    repositorypassword: Option<String>,
    env: Option<Vec<PairIn>>,
    prune: Option<bool>,
    pullimage: Option<bool>,
}

pub async fn git_redeploy(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let p = req.principal().clone();
    let (stack, _, teams) = stack_for_change(&state, &req, &p, true)?;
    let limit = req.max_json_body;
    let b: RedeployPayload = read_json(&mut req, limit).await?;
    let Some(git_config) = stack.git_config.clone() else {
        return Err(ApiError::bad_request(
            "Stack is not deployed from a git repository",
            "only stacks created with the repository method can be redeployed from git",
        ));
    };
    let reference =
        b.repositoryreferencename.map(|r| r.trim().to_string()).unwrap_or(git_config.reference_name.clone());
    git::check_reference(&reference).map_err(ApiError::invalid_payload)?;
    let stored = git_config.authentication.clone();
    let credentials = match b.repositoryauthentication {
        Some(false) => None,
        Some(true) => {
            let user = b.repositoryusername.filter(|u| !u.is_empty()).or(stored.as_ref().map(|a| a.username.clone()));
            let pass = match b.repositorypassword.filter(|p| !p.is_empty()) {
                Some(pw) => Some(pw),
                None => stored.as_ref().and_then(|a| state.sealer.open(&a.sealed_password)),
            };
            match (user, pass) {
                (Some(u), Some(pw)) => Some((u, pw)),
                _ => {
                    return Err(ApiError::invalid_payload(
                        "Invalid repository credentials. Password must be specified when authentication is enabled",
                    ))
                }
            }
        }
        None => match stored {
            Some(a) => Some((
                a.username.clone(),
                state
                    .sealer
                    .open(&a.sealed_password)
                    .ok_or_else(|| ApiError::internal("Unable to read the repository credentials", "unseal failed"))?,
            )),
            None => None,
        },
    };
    let env = match b.env {
        Some(e) => pairs(Some(e))?,
        None => stack.env.clone(),
    };
    let opts = DeployOptions { prune: b.prune.unwrap_or(false), pull: b.pullimage.unwrap_or(false) };
    let src = git::Source {
        url: git_config.url.clone(),
        reference,
        credentials,
        skip_tls_verify: git_config.tls_skip_verify,
    };
    let v = detached(async move {
        let _lock = state.stacks.lock(stack.endpoint_id, &stack.name).await;
        let stack = state.stacks.get(stack.id).ok_or_else(stack_not_found)?;
        let entry = state.endpoints.get(stack.endpoint_id).ok_or_else(endpoint_not_found)?;
        let t = Instant::now();
        let fresh = state.stacks.scratch_root.join(format!("clone-{:016x}", rand::random::<u64>()));
        let commit = git::fetch(
            &state.stacks.tools,
            &src,
            &fresh,
            &state.stacks.scratch_root,
            state.config.git_clone_timeout,
            state.config.max_clone_size,
        )
        .await
        .map_err(git_failed)?;
        tracing::debug!(stack = stack.id, elapsed = ?t.elapsed(), "repository fetched");
        if let Err(e) = check_fetched(&p, &fresh, st::files_of(&stack)).await {
            remove_dir(fresh).await;
            return Err(e);
        }
        // Swap the new tree in; the old one comes back if the deploy fails.
        let dir = PathBuf::from(&stack.project_path);
        let old = state.stacks.compose_root.join(format!("{}.old-{:08x}", stack.id, rand::random::<u32>()));
        let (d2, o2, f2) = (dir.clone(), old.clone(), fresh.clone());
        if let Err(e) = blocking(move || {
            std::fs::rename(&d2, &o2)?;
            if let Err(e) = std::fs::rename(&f2, &d2) {
                let _ = std::fs::rename(&o2, &d2);
                return Err(e);
            }
            Ok(())
        })
        .await
        {
            remove_dir(fresh).await;
            return Err(ApiError::internal("Unable to replace the stack's files", e));
        }
        let logins = logins_for(&state, &p, stack.endpoint_id, &teams);
        let job = job(&state, &entry, dir.clone(), st::files_of(&stack), &stack.name, &env, logins);
        if let Err(e) = deploy_job(&state, stack.kind, "redeploy", &job, opts).await {
            let (d2, o2) = (dir.clone(), old.clone());
            let back = blocking(move || {
                deploy::remove_dir_logged(&d2);
                std::fs::rename(&o2, &d2)
            })
            .await;
            if let Err(re) = back {
                tracing::error!(stack = stack.id, error = %re, "restoring the previous stack files failed");
            }
            return Err(deploy_failed("Unable to redeploy stack", e));
        }
        remove_dir(old).await;
        let mut rec = (*stack).clone();
        let mut g = git_config;
        g.reference_name = src.reference.clone();
        g.config_hash = commit;
        g.authentication = src
            .credentials
            .as_ref()
            .map(|(u, pw)| GitAuth { username: u.clone(), sealed_password: state.sealer.seal(pw) });
        rec.git_config = Some(g);
        rec.env = env;
        rec.status = STACK_ACTIVE;
        rec.update_date = crate::auth::now_secs() as i64;
        rec.updated_by = p.user.username.clone();
        if rec.kind == STACK_SWARM {
            rec.option = Some(json!({ "Prune": opts.prune }));
        }
        save(&state, rec).await
    })
    .await?;
    ok_json(&v)
}
