//! Stacks (`/api/stacks`): create from a string, an uploaded file or a git
//! repository, list, inspect, read the file, update, stop, start, git
//! redeploy and delete. These handlers decode the request, check access and
//! encode the answer; the operations themselves (deployers, checks of the
//! stack files, limits) live in [`crate::stacks::ops`] and
//! [`crate::stacks::changes`].
//!
//! Every operation that deploys or removes runs in a task of its own, so a
//! client that disconnects mid-deploy cannot leave a half-made stack
//! behind: the operation finishes (or rolls back) either way. Operations on
//! one stack name of one endpoint hold that name's lock from the
//! uniqueness check to the stored record, so two creates of one name give
//! one stack and one 409.

use std::path::PathBuf;
use std::sync::Arc;

use http::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::doc::{json, list as list_of, Body, Doc, Query, QueryType, Reply};
use super::form::{self, Limits};
use super::{decode_json, no_content, ok_json, ApiRequest};
use crate::auth::Principal;
use crate::body::ResponseBody;
use crate::endpoints::EndpointEntry;
use crate::error::{ApiError, ApiResult};
use crate::stacks::deploy::DeployOptions;
use crate::stacks::git;
use crate::stacks::ops::{self, endpoint_not_found, stack_not_found, Draft, DraftSource, STACK_FILE};
use crate::stacks::{self as st, changes, StackView};
use crate::state::AppState;
use crate::store::model::{Id, Pair, Stack, STACK_COMPOSE, STACK_SWARM};

/// Room for the JSON or multipart framing around a stack file.
const BODY_SLACK: usize = 64 * 1024;

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

/// A stack, its endpoint (none when orphaned) and the caller's teams.
type Found = (Arc<Stack>, Option<Arc<EndpointEntry>>, Vec<Id>);

/// The stack and, unless it is orphaned, its endpoint; with every access
/// rule applied. Orphaned stacks (endpoint deleted) are for admins only.
fn stack_for(state: &AppState, p: &Principal, id: Id) -> ApiResult<Found> {
    let stack = state.stacks.get(id).ok_or_else(stack_not_found)?;
    match state.endpoints.get(stack.endpoint_id) {
        // Orphans belong to no endpoint: closed to endpoint-limited keys.
        None if p.is_admin() && !p.limits_endpoints() => Ok((stack, None, Vec::new())),
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
/// must exist.
fn stack_for_change(
    state: &AppState,
    req: &ApiRequest,
    p: &Principal,
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
    Ok((stack, entry, teams))
}

/// Runs `f` in a task of its own: a client going away must not cut a
/// deploy (or its rollback) in half.
async fn detached<T: Send + 'static>(
    f: impl std::future::Future<Output = ApiResult<T>> + Send + 'static,
) -> ApiResult<T> {
    tokio::spawn(f).await.unwrap_or_else(|e| Err(ApiError::internal("The stack operation failed", e)))
}

// ---------------------------------------------------------------------------
// Payloads
// ---------------------------------------------------------------------------

/// `{"name","value"}`, names matched case-insensitively like Go does.
#[derive(Deserialize, Clone, ToSchema)]
#[schema(as = EnvVariable)]
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

#[derive(Deserialize, Default, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = StackFromString)]
struct StringPayload {
    name: Option<String>,
    swarmid: Option<String>,
    stackfilecontent: Option<String>,
    env: Option<Vec<PairIn>>,
    fromapptemplate: Option<bool>,
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = StackFromRepository)]
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

/// The form of `POST /api/stacks/create/{type}/file` ([`parse_draft`]).
#[derive(ToSchema)]
#[allow(dead_code)] // a description of the form: `parse_draft` reads it field by field
#[schema(as = StackFromFile)]
struct FileForm {
    #[schema(rename = "Name")]
    name: String,
    /// Swarm stacks only.
    #[schema(rename = "SwarmID")]
    swarm_id: Option<String>,
    /// The compose file.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// A JSON array of `{"name", "value"}`.
    #[schema(rename = "Env")]
    env: Option<String>,
    /// `true` or `false`.
    #[schema(rename = "FromAppTemplate")]
    from_app_template: Option<String>,
}

/// Either JSON payload of stack creation: `string` reads
/// [`StringPayload`], `repository` [`RepoPayload`].
#[derive(ToSchema)]
#[allow(dead_code)] // a description: the `{method}` decides which is decoded
#[schema(as = StackCreateJson)]
#[serde(untagged)]
enum JsonPayload {
    String(StringPayload),
    Repository(RepoPayload),
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
    let rules = ops::rules(&p, p.is_admin(), &entry);
    let stack_limit = state.config.max_stack_file.saturating_add(BODY_SLACK);
    let draft = |name, swarm_id, env, from_app_template, source| Draft {
        kind,
        method: method.label(),
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
            ops::check_content(rules.as_ref(), STACK_FILE, &text)?;
            let env = pairs(b.env)?;
            Ok(draft(name, swarm, env, b.fromapptemplate.unwrap_or(false), DraftSource::Content(text)))
        }
        Method::File => {
            let f = form::read(req, Limits::upload(stack_limit)).await?;
            let name = stack_name(f.value("Name"))?;
            let swarm = swarm_id(kind, f.value("SwarmID"))?;
            let text = content(state, f.file("file").map(|f| f.bytes.to_vec()))?;
            ops::check_content(rules.as_ref(), STACK_FILE, &text)?;
            let env: Option<Vec<PairIn>> = match f.value("Env") {
                None => None,
                Some(raw) => Some(
                    serde_json::from_str(raw)
                        .map_err(|e| ApiError::bad_request("Invalid Env parameter", e.to_string()))?,
                ),
            };
            let env = pairs(env)?;
            Ok(draft(name, swarm, env, f.value("FromAppTemplate") == Some("true"), DraftSource::Content(text)))
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
                DraftSource::Git { src, compose_file, additional },
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

const ENDPOINT_ID: Query = Query::required("endpointId", QueryType::Integer, "The endpoint of the stack");
const CREATE_ERRORS: &[(u16, &str)] = &[
    (409, "A stack of this name exists on the endpoint"),
    (502, "The Docker host or the git repository could not be reached"),
];

pub const CREATE: Doc = Doc::new("Deploy a stack", &[Reply::json(200, "The stack", json::<StackView>)])
    .describe(
        "`type` is `standalone` (Compose) or `swarm`; `method` is `string` (JSON with StackFileContent), \
         `repository` (JSON naming a git repository) or `file` (a multipart upload).",
    )
    .query(&[ENDPOINT_ID])
    .body(Body::JsonOrForm(json::<JsonPayload>, json::<FileForm>))
    .errors(CREATE_ERRORS);

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
    ok_json(&detached(async move { ops::create(&state.stack_ops(), p, draft).await }).await?)
}

/// The deprecated form: `type` 1 (swarm) or 2 (standalone) and `method` in
/// the query string, answered by the same code.
pub const CREATE_LEGACY: Doc = Doc::new(
    "Deploy a stack (Portainer 1.x route)",
    &[Reply::json(200, "The stack", json::<StackView>)],
)
.describe(
    "As POST /api/stacks/create/{type}/{method}, with type 1 (swarm) or 2 (standalone) and the method in the query.",
)
.query(&[
    ENDPOINT_ID,
    Query::required("type", QueryType::Integer, "1 swarm, 2 standalone"),
    Query::required("method", QueryType::String, "string, file or repository"),
])
.body(Body::JsonOrForm(json::<JsonPayload>, json::<FileForm>))
.errors(CREATE_ERRORS);

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
    ok_json(&detached(async move { ops::create(&state.stack_ops(), p, draft).await }).await?)
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

pub const LIST: Doc =
    Doc::new("List stacks", &[Reply::json(200, "The stacks the caller may use", list_of::<StackView>)]).query(&[
        Query::optional(
            "filters",
            QueryType::String,
            "JSON: {\"EndpointID\": n, \"SwarmID\": \"...\", \"IncludeOrphanedStacks\": bool}",
        ),
    ]);

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
        if orphan && (!f.include_orphans || p.limits_endpoints()) {
            continue;
        }
        // A scoped key's endpoints, for admins too (`may_access` below asks
        // it for standard users).
        if entry.as_ref().is_some_and(|e| !p.endpoint_in_scope(&e.record)) {
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
    ok_json(&out)
}

pub const INSPECT: Doc = Doc::new("Inspect a stack", &[Reply::json(200, "The stack", json::<StackView>)]);

pub async fn inspect(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let id = req.id("id", "stack")?;
    let (stack, _, _) = stack_for(&state, req.principal(), id)?;
    ok_json(&st::view(&stack))
}

/// The entry point of a stack, as text.
#[derive(Serialize, ToSchema)]
pub struct StackFile {
    #[serde(rename = "StackFileContent")]
    stack_file_content: String,
}

pub const FILE: Doc = Doc::new("A stack's compose file", &[Reply::json(200, "The file", json::<StackFile>)]);

pub async fn file(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let id = req.id("id", "stack")?;
    let (stack, _, _) = stack_for(&state, req.principal(), id)?;
    let path = PathBuf::from(&stack.project_path).join(&stack.entry_point);
    let bytes =
        tokio::fs::read(&path).await.map_err(|e| ApiError::internal("Unable to retrieve stack file from disk", e))?;
    ok_json(&StackFile { stack_file_content: String::from_utf8_lossy(&bytes).into_owned() })
}

// ---------------------------------------------------------------------------
// PUT /api/stacks/{id}
// ---------------------------------------------------------------------------

#[derive(Deserialize, Default, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = StackUpdate)]
struct UpdatePayload {
    stackfilecontent: Option<String>,
    env: Option<Vec<PairIn>>,
    prune: Option<bool>,
    pullimage: Option<bool>,
}

pub const UPDATE: Doc =
    Doc::new("Redeploy a stack with a new file", &[Reply::json(200, "The stack", json::<StackView>)])
        .query(&[ENDPOINT_ID])
        .body(Body::Json(json::<UpdatePayload>))
        .errors(&[(502, "The Docker host could not be reached")]);

pub async fn update(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let p = req.principal().clone();
    let (stack, _, teams) = stack_for_change(&state, &req, &p)?;
    let limit = state.config.max_stack_file.saturating_add(BODY_SLACK);
    let b: UpdatePayload = read_json(&mut req, limit).await?;
    let text = content(&state, b.stackfilecontent.map(String::into_bytes))?;
    let env = pairs(b.env)?;
    let opts = DeployOptions { prune: b.prune.unwrap_or(false), pull: b.pullimage.unwrap_or(false) };
    ok_json(
        &detached(async move { changes::update(&state.stack_ops(), p, stack.id, teams, text, env, opts).await })
            .await?,
    )
}

// ---------------------------------------------------------------------------
// POST /api/stacks/{id}/stop and /start
// ---------------------------------------------------------------------------

pub const STOP: Doc = Doc::new("Stop a stack", &[Reply::json(200, "The stack", json::<StackView>)])
    .query(&[ENDPOINT_ID])
    .errors(&[(502, "The Docker host could not be reached")]);

pub async fn stop(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let p = req.principal().clone();
    let (stack, _, teams) = stack_for_change(&state, &req, &p)?;
    ok_json(&detached(async move { changes::stop(&state.stack_ops(), p, stack.id, teams).await }).await?)
}

pub const START: Doc = Doc::new("Start a stack", &[Reply::json(200, "The stack", json::<StackView>)])
    .query(&[ENDPOINT_ID])
    .errors(&[(502, "The Docker host could not be reached")]);

pub async fn start(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let p = req.principal().clone();
    let (stack, _, teams) = stack_for_change(&state, &req, &p)?;
    ok_json(&detached(async move { changes::start(&state.stack_ops(), p, stack.id, teams).await }).await?)
}

// ---------------------------------------------------------------------------
// DELETE /api/stacks/{id}
// ---------------------------------------------------------------------------

pub const DELETE: Doc = Doc::new("Remove a stack", &[Reply::empty(204, "Removed, with its containers")])
    .query(&[
        ENDPOINT_ID,
        Query::optional("external", QueryType::Boolean, "Not supported: Berth removes its own stacks only"),
    ])
    .errors(&[(502, "The Docker host could not be reached")]);

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
    detached(async move { changes::delete(&state.stack_ops(), p, stack.id, teams, entry.is_none()).await }).await?;
    no_content()
}

// ---------------------------------------------------------------------------
// PUT /api/stacks/{id}/git/redeploy
// ---------------------------------------------------------------------------

#[derive(Deserialize, Default, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = StackGitRedeploy)]
struct RedeployPayload {
    repositoryreferencename: Option<String>,
    repositoryauthentication: Option<bool>,
    repositoryusername: Option<String>,
    repositorypassword: Option<String>,
    env: Option<Vec<PairIn>>,
    prune: Option<bool>,
    pullimage: Option<bool>,
}

pub const GIT_REDEPLOY: Doc =
    Doc::new("Redeploy a git stack from its repository", &[Reply::json(200, "The stack", json::<StackView>)])
        .query(&[ENDPOINT_ID])
        .body(Body::Json(json::<RedeployPayload>))
        .errors(&[(502, "The Docker host or the git repository could not be reached")]);

pub async fn git_redeploy(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let p = req.principal().clone();
    let (stack, _, teams) = stack_for_change(&state, &req, &p)?;
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
    ok_json(
        &detached(async move { changes::redeploy(&state.stack_ops(), p, stack.id, teams, src, env, opts).await })
            .await?,
    )
}
