//! Environments (`/api/endpoints`): registration, listing, updates, removal,
//! TLS uploads and on-demand snapshots. Handlers decode the request, call
//! `crate::endpoints::register` (which owns the check-store-swap order) and
//! encode the record it returns.

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderValue, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::doc::{json, list as list_of, Body, Doc, Query, QueryType, Reply};
use super::form::{self, Form, Limits};
use super::{decode_json, json_bytes_response, json_response, no_content, ok_json, ApiRequest};
use crate::auth::Principal;
use crate::body::ResponseBody;
use crate::connector::{validate_tls_files, TlsFiles};
pub(crate) use crate::endpoints::checks::{check_name, check_tags};
use crate::endpoints::checks::{check_public_url, check_url};
use crate::endpoints::register::{self, not_found, EndpointChanges, NewEndpoint, SecurityChanges, DOCKER_API};
use crate::endpoints::tls_files::{self, TlsFileKind};
use crate::endpoints::EndpointEntry;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::model::{AccessPolicies, DockerSnapshot, Endpoint, EndpointTls, Id, SecuritySettings};

fn permission_denied() -> ApiError {
    ApiError::forbidden("Permission denied to access environment", "Access denied to environment")
}

// ---------------------------------------------------------------------------
// The view
// ---------------------------------------------------------------------------

/// The TLS flags, and for admins the paths of the files on Berth's host.
#[derive(Serialize, ToSchema)]
pub struct TlsView {
    #[serde(rename = "TLS")]
    tls: bool,
    #[serde(rename = "TLSSkipVerify")]
    skip_verify: bool,
    #[serde(rename = "TLSCACert", skip_serializing_if = "Option::is_none")]
    ca_cert: Option<String>,
    #[serde(rename = "TLSCert", skip_serializing_if = "Option::is_none")]
    cert: Option<String>,
    #[serde(rename = "TLSKey", skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

fn tls_view(t: &EndpointTls, admin: bool) -> TlsView {
    let path = |p: &String| (admin && !p.is_empty()).then(|| p.clone());
    TlsView {
        tls: t.tls,
        skip_verify: t.skip_verify,
        ca_cert: path(&t.ca_cert),
        cert: path(&t.cert),
        key: path(&t.key),
    }
}

/// The endpoint object every route answers with, in Portainer's names, with
/// `{}`/`[]` wherever clients iterate. Standard users do not see who else
/// has access (`UserAccessPolicies`/`TeamAccessPolicies` are null for them),
/// and, stricter than Portainer, not where the Docker host is: `URL` is
/// empty and `TLSConfig` carries no file paths. They reach the host through
/// Berth only, so its address and Berth's file layout are no use to them
/// and a help to an attacker. `PublicURL` (for links to published ports)
/// stays. The Kubernetes, Azure, edge and agent fields are Portainer's,
/// answered empty (Berth serves Docker API endpoints only).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = Endpoint)]
pub struct EndpointView {
    id: Id,
    name: String,
    /// 1: Docker API (the only type Berth serves).
    #[serde(rename = "Type")]
    kind: u8,
    container_engine: &'static str,
    /// Empty for standard users.
    #[serde(rename = "URL")]
    url: String,
    group_id: Id,
    #[serde(rename = "PublicURL")]
    public_url: String,
    gpus: Vec<String>,
    #[serde(rename = "TLSConfig")]
    tls_config: TlsView,
    azure_credentials: AzureCredentials,
    tag_ids: Vec<Id>,
    /// 1 up, 2 down.
    status: u8,
    /// The latest health-check snapshot, when there is one (and it was not
    /// excluded).
    snapshots: Vec<DockerSnapshot>,
    user_access_policies: Option<AccessPolicies>,
    team_access_policies: Option<AccessPolicies>,
    edge_key: &'static str,
    edge_checkin_interval: u32,
    kubernetes: Kubernetes,
    compose_syntax_max_version: &'static str,
    security_settings: SecuritySettings,
    last_check_in_date: i64,
    query_date: i64,
    heartbeat: bool,
    post_init_migrations: PostInitMigrations,
    edge: EdgeSettings,
    agent: Agent,
    authorized_users: Vec<Id>,
    authorized_teams: Vec<Id>,
    extensions: Vec<String>,
    #[schema(value_type = Option<Vec<String>>)]
    tags: Option<()>,
}

#[derive(Serialize, ToSchema, Default)]
#[serde(rename_all = "PascalCase")]
pub struct AzureCredentials {
    #[serde(rename = "ApplicationID")]
    application_id: &'static str,
    #[serde(rename = "TenantID")]
    tenant_id: &'static str,
    authentication_key: &'static str,
}

#[derive(Serialize, ToSchema, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Kubernetes {
    snapshots: Vec<String>,
    configuration: KubernetesConfiguration,
    flags: KubernetesFlags,
}

#[derive(Serialize, ToSchema, Default)]
#[serde(rename_all = "PascalCase")]
pub struct KubernetesConfiguration {
    use_load_balancer: bool,
    use_server_metrics: bool,
    storage_classes: Vec<String>,
    ingress_classes: Vec<String>,
}

#[derive(Serialize, ToSchema, Default)]
#[serde(rename_all = "PascalCase")]
pub struct KubernetesFlags {
    is_server_metrics_detected: bool,
    is_server_ingress_class_detected: bool,
    is_server_storage_detected: bool,
}

#[derive(Serialize, ToSchema, Default)]
#[serde(rename_all = "PascalCase")]
pub struct PostInitMigrations {
    migrate_ingresses: bool,
    #[serde(rename = "MigrateGPUs")]
    migrate_gpus: bool,
}

#[derive(Serialize, ToSchema, Default)]
#[serde(rename_all = "PascalCase")]
pub struct EdgeSettings {
    async_mode: bool,
    ping_interval: u32,
    snapshot_interval: u32,
    command_interval: u32,
}

#[derive(Serialize, ToSchema, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Agent {
    version: &'static str,
}

pub fn endpoint_view(record: &Endpoint, admin: bool, snapshot: Option<&DockerSnapshot>) -> EndpointView {
    let policies = |p: &AccessPolicies| admin.then(|| p.clone());
    EndpointView {
        id: record.id,
        name: record.name.clone(),
        kind: record.kind,
        container_engine: "docker",
        url: if admin { record.url.clone() } else { String::new() },
        group_id: record.group_id,
        public_url: record.public_url.clone(),
        gpus: Vec::new(),
        tls_config: tls_view(&record.tls, admin),
        azure_credentials: AzureCredentials::default(),
        tag_ids: record.tag_ids.clone(),
        status: record.status,
        snapshots: snapshot.into_iter().cloned().collect(),
        user_access_policies: policies(&record.user_access_policies),
        team_access_policies: policies(&record.team_access_policies),
        edge_key: "",
        edge_checkin_interval: 0,
        kubernetes: Kubernetes::default(),
        compose_syntax_max_version: "3.9",
        security_settings: record.security_settings.clone(),
        last_check_in_date: 0,
        query_date: 0,
        heartbeat: false,
        post_init_migrations: PostInitMigrations::default(),
        edge: EdgeSettings::default(),
        agent: Agent::default(),
        authorized_users: Vec::new(),
        authorized_teams: Vec::new(),
        extensions: Vec::new(),
        tags: None,
    }
}

/// About the size of one encoded view with its snapshot, to size the list's
/// buffer once.
const VIEW_BYTES: usize = 2048;

fn view_of(state: &AppState, record: &Endpoint, admin: bool, with_snapshot: bool) -> EndpointView {
    let snap = if with_snapshot { state.endpoints.snapshot(record.id) } else { None };
    endpoint_view(record, admin, snap.as_deref())
}

// ---------------------------------------------------------------------------
// POST /api/endpoints
// ---------------------------------------------------------------------------

const TYPE_VALUES: &str = "Invalid environment type value. Value must be one of: 1 (Docker environment), 2 (Agent environment), 3 (Azure environment), 4 (Edge Agent environment) or 5 (Local Kubernetes environment)";

fn form_int(form: &Form, key: &str, message: &str) -> ApiResult<Option<i64>> {
    match form.value(key) {
        None => Ok(None),
        Some(v) => {
            v.trim().parse::<i64>().map(Some).map_err(|e| ApiError::bad_request(message, format!("{key}={v:?}: {e}")))
        }
    }
}

/// `EndpointCreationType` (2.x) or `EndpointType` (1.x), neither meaning 1;
/// both is fine only when they agree. Unlike Portainer, which sends any
/// value above 5 down the Docker API path, a type that does not exist is a
/// 400: a client asking for something Berth does not know must not get a
/// Docker endpoint it did not ask for.
fn creation_type(form: &Form) -> ApiResult<u8> {
    let t = match (form_int(form, "EndpointCreationType", TYPE_VALUES)?, form_int(form, "EndpointType", TYPE_VALUES)?) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::bad_request(
                TYPE_VALUES,
                format!("EndpointCreationType={a} and EndpointType={b} disagree; send one of them"),
            ))
        }
        (Some(t), _) | (None, Some(t)) => t,
        (None, None) => 1,
    };
    let kind = match t {
        1 => return Ok(DOCKER_API),
        2 => "2 (Agent)",
        3 => "3 (Azure)",
        4 => "4 (Edge Agent)",
        5 => "5 (Local Kubernetes)",
        _ => return Err(ApiError::bad_request(TYPE_VALUES, format!("environment type {t} does not exist"))),
    };
    Err(ApiError::bad_request(
        "Environment type not supported",
        format!("environment type {kind} is not supported by Berth; only 1 (Docker API over a unix socket or TCP) is"),
    ))
}

async fn parse_new(state: &AppState, form: &Form) -> ApiResult<NewEndpoint> {
    let name = form.value("Name").unwrap_or("").to_owned();
    check_name(&name, "environment")?;
    creation_type(form)?;
    let url = match form.value("URL") {
        Some(u) if !u.trim().is_empty() => u,
        _ => state.config.docker_socket.as_str(),
    };
    let url = check_url(url).await?;
    let public_url = check_public_url(form.value("PublicURL").unwrap_or(""), "Invalid PublicURL parameter")?;
    let group_id = match form_int(form, "GroupID", "Invalid GroupID parameter")? {
        None | Some(0) => 1,
        Some(g) => g
            .try_into()
            .map_err(|_| ApiError::bad_request("Invalid GroupID parameter", format!("{g} is not an identifier")))?,
    };
    if state.endpoints.group(group_id).is_none() {
        return Err(ApiError::bad_request(
            "Invalid GroupID parameter",
            format!("environment group {group_id} does not exist"),
        ));
    }
    let tag_ids: Vec<Id> = match form.value("TagIds") {
        None => Vec::new(),
        Some(raw) => {
            serde_json::from_str(raw).map_err(|e| ApiError::bad_request("Invalid TagIds parameter", e.to_string()))?
        }
    };
    let tag_ids = check_tags(&state.endpoints, &tag_ids, "Invalid TagIds parameter")?;

    let mut tls = EndpointTls { tls: form.value("TLS") == Some("true"), ..Default::default() };
    let mut files = TlsFiles::default();
    if tls.tls {
        tls.skip_verify = form.value("TLSSkipVerify") == Some("true");
        tls.skip_client_verify = form.value("TLSSkipClientVerify") == Some("true");
        let file = |key: &str, message: &str| -> ApiResult<Vec<u8>> {
            match form.file(key) {
                Some(f) if !f.bytes.is_empty() => Ok(f.bytes.to_vec()),
                _ => Err(ApiError::bad_request(message, format!("{key} is required when TLS is enabled"))),
            }
        };
        // As in Portainer, a file the skip flags make unnecessary is ignored.
        if !tls.skip_verify {
            files.ca =
                Some(file("TLSCACertFile", "Invalid CA certificate file. Ensure that the file is uploaded correctly")?);
        }
        if !tls.skip_client_verify {
            files.cert =
                Some(file("TLSCertFile", "Invalid certificate file. Ensure that the file is uploaded correctly")?);
            files.key = Some(file("TLSKeyFile", "Invalid key file. Ensure that the file is uploaded correctly")?);
        }
        let kinds = [(TlsFileKind::Ca, &files.ca), (TlsFileKind::Cert, &files.cert), (TlsFileKind::Key, &files.key)];
        for (kind, bytes) in kinds {
            if let Some(b) = bytes {
                tls_files::check_trailer(kind, b).map_err(|e| ApiError::bad_request("Invalid TLS files", e))?;
            }
        }
        validate_tls_files(&files, tls.skip_verify, tls.skip_client_verify)
            .map_err(|e| ApiError::bad_request("Invalid TLS files", e))?;
    }
    let security = crate::store::model::SecuritySettings::for_new_endpoint(&state.settings());
    Ok(NewEndpoint { name, url, public_url, group_id, tag_ids, tls, files, security })
}

/// The form `POST /api/endpoints` reads ([`parse_new`]), as Portainer's:
/// `multipart/form-data` or URL-encoded, values as text.
#[derive(ToSchema)]
#[allow(dead_code)] // a description of the form: `parse_new` reads it field by field
#[schema(as = EndpointCreateForm)]
struct CreateForm {
    #[schema(rename = "Name")]
    name: String,
    /// 1 Docker API (the only type Berth serves; the default).
    #[schema(rename = "EndpointCreationType")]
    creation_type: Option<i64>,
    /// Portainer 1.x's name of EndpointCreationType.
    #[schema(rename = "EndpointType")]
    endpoint_type: Option<i64>,
    /// `unix:///path` or `tcp://host:port`; Berth's --docker-socket when empty.
    #[schema(rename = "URL")]
    url: Option<String>,
    #[schema(rename = "PublicURL")]
    public_url: Option<String>,
    /// An endpoint group id (1, Unassigned, by default).
    #[schema(rename = "GroupID")]
    group_id: Option<i64>,
    /// A JSON array of tag ids (`[1,2]`).
    #[schema(rename = "TagIds")]
    tag_ids: Option<String>,
    /// `true` for TLS.
    #[schema(rename = "TLS")]
    tls: Option<String>,
    #[schema(rename = "TLSSkipVerify")]
    tls_skip_verify: Option<String>,
    #[schema(rename = "TLSSkipClientVerify")]
    tls_skip_client_verify: Option<String>,
    #[schema(rename = "TLSCACertFile", value_type = Option<String>, format = Binary)]
    ca_file: Option<Vec<u8>>,
    #[schema(rename = "TLSCertFile", value_type = Option<String>, format = Binary)]
    cert_file: Option<Vec<u8>>,
    #[schema(rename = "TLSKeyFile", value_type = Option<String>, format = Binary)]
    key_file: Option<Vec<u8>>,
}

pub const CREATE: Doc = Doc::new("Register an endpoint", &[Reply::json(200, "The endpoint", json::<EndpointView>)])
    .describe("A Docker host over a unix socket or TCP (with TLS files when TLS is on).")
    .body(Body::Form(json::<CreateForm>))
    .errors(&[(409, "An endpoint has this name")]);

pub async fn create(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let form = form::read(&mut req, Limits::upload(state.config.max_upload_body)).await?;
    let new = parse_new(&state, &form).await?;
    drop(form);
    let record = register::create(&state.endpoint_ops(), new).await?;
    ok_json(&view_of(&state, &record, true, true))
}

// ---------------------------------------------------------------------------
// GET /api/endpoints
// ---------------------------------------------------------------------------

#[derive(Default)]
struct ListQuery {
    start: usize,
    limit: usize,
    search: String,
    sort: Option<String>,
    desc: bool,
    types: Vec<u64>,
    group_ids: Vec<u64>,
    tag_ids: Vec<u64>,
    tags_partial: bool,
    endpoint_ids: Vec<u64>,
    exclude_ids: Vec<u64>,
    status: Vec<u64>,
    name: Option<String>,
    exclude_snapshots: bool,
}

fn bad_query(key: &str, v: &str) -> ApiError {
    ApiError::bad_request("Invalid query parameters", format!("the value {v:?} of {key} is not a number"))
}

impl ListQuery {
    fn parse(pairs: &[(String, String)]) -> ApiResult<ListQuery> {
        let mut q = ListQuery::default();
        for (k, v) in pairs {
            let num = || v.trim().parse::<u64>().map_err(|_| bad_query(k, v));
            let size = || v.trim().parse::<usize>().map_err(|_| bad_query(k, v));
            match k.as_str() {
                "start" => q.start = size()?,
                "limit" => q.limit = size()?,
                "search" => q.search = v.to_lowercase(),
                "sort" => q.sort = Some(v.clone()),
                "order" => q.desc = v.eq_ignore_ascii_case("desc"),
                "types[]" => q.types.push(num()?),
                "groupIds[]" => q.group_ids.push(num()?),
                "tagIds[]" => q.tag_ids.push(num()?),
                "endpointIds[]" => q.endpoint_ids.push(num()?),
                "excludeIds[]" => q.exclude_ids.push(num()?),
                "status[]" => q.status.push(num()?),
                "tagsPartialMatch" => q.tags_partial = v == "true",
                "name" => q.name = Some(v.clone()),
                "excludeSnapshots" => q.exclude_snapshots = v == "true",
                _ => {}
            }
        }
        Ok(q)
    }
}

/// Who may see an endpoint: admins all, others per the access rule; a
/// scoped API key only what its scope covers (`may_access` asks it).
fn visible(state: &AppState, p: &Principal, record: &Endpoint, teams: &[Id]) -> bool {
    state.endpoints.may_access(p, record, teams)
}

pub const LIST: Doc = Doc::new(
    "List endpoints",
    &[Reply::json(200, "A page of the endpoints the caller may use", list_of::<EndpointView>).with_headers(&[
        ("X-Total-Count", "Endpoints matching the filters"),
        ("X-Total-Available", "Endpoints the caller may use"),
    ])],
)
.query(&[
    Query::optional("start", QueryType::Integer, "1-based index of the first endpoint of the page"),
    Query::optional("limit", QueryType::Integer, "Endpoints per page (0: all)"),
    Query::optional("search", QueryType::String, "Substring of the name, group, tags (and URL, for admins)"),
    Query::optional("sort", QueryType::String, "Name, Group or Status"),
    Query::optional("order", QueryType::String, "asc or desc"),
    Query::optional("types[]", QueryType::IntegerList, "Endpoint types"),
    Query::optional("groupIds[]", QueryType::IntegerList, "Group ids"),
    Query::optional("tagIds[]", QueryType::IntegerList, "Tag ids"),
    Query::optional("tagsPartialMatch", QueryType::Boolean, "Any of tagIds[] rather than all"),
    Query::optional("endpointIds[]", QueryType::IntegerList, "Endpoint ids"),
    Query::optional("excludeIds[]", QueryType::IntegerList, "Endpoint ids left out"),
    Query::optional("status[]", QueryType::IntegerList, "1 up, 2 down"),
    Query::optional("name", QueryType::String, "Exact name"),
    Query::optional("excludeSnapshots", QueryType::Boolean, "Leave Snapshots empty"),
]);

pub async fn list(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let p = req.principal();
    let q = ListQuery::parse(&req.query_pairs())?;
    let teams = if p.is_admin() { Vec::new() } else { state.identity.teams_of(p.id()) };
    let all: Vec<_> = state.endpoints.all().into_iter().filter(|e| visible(&state, p, &e.record, &teams)).collect();
    let total_available = all.len();

    let groups: HashMap<Id, _> = state.endpoints.groups().into_iter().map(|g| (g.id, g)).collect();
    let tag_names: HashMap<Id, String> =
        state.endpoints.tags().into_iter().map(|t| (t.id, t.name.to_lowercase())).collect();
    let group_name = |gid: Id| groups.get(&gid).map(|g| g.name.to_lowercase()).unwrap_or_default();
    let group_tags = |gid: Id| groups.get(&gid).map(|g| g.tag_ids.clone()).unwrap_or_default();

    let mut rows: Vec<_> = all
        .into_iter()
        .filter(|e| {
            let r = &e.record;
            let has = |set: &[u64], v: u64| set.is_empty() || set.contains(&v);
            if !has(&q.types, u64::from(r.kind))
                || !has(&q.group_ids, r.group_id)
                || !has(&q.endpoint_ids, r.id)
                || !has(&q.status, u64::from(r.status))
                || q.exclude_ids.contains(&r.id)
                || q.name.as_ref().is_some_and(|n| *n != r.name)
            {
                return false;
            }
            let mut tags = r.tag_ids.clone();
            tags.extend(group_tags(r.group_id));
            if !q.tag_ids.is_empty() {
                let ok = if q.tags_partial {
                    q.tag_ids.iter().any(|t| tags.contains(t))
                } else {
                    q.tag_ids.iter().all(|t| tags.contains(t))
                };
                if !ok {
                    return false;
                }
            }
            if !q.search.is_empty() {
                let s = &q.search;
                // The URL is searched for admins only: a standard user could
                // otherwise read it out one guessed substring at a time.
                let hit = r.name.to_lowercase().contains(s)
                    || (p.is_admin() && r.url.to_lowercase().contains(s))
                    || group_name(r.group_id).contains(s)
                    || tags.iter().filter_map(|t| tag_names.get(t)).any(|n| n.contains(s));
                if !hit {
                    return false;
                }
            }
            true
        })
        .collect();

    if let Some(sort) = q.sort.as_deref() {
        let known = match sort {
            "Name" => {
                rows.sort_by_key(|e| e.record.name.to_lowercase());
                true
            }
            "Group" => {
                rows.sort_by_key(|e| group_name(e.record.group_id));
                true
            }
            "Status" => {
                rows.sort_by_key(|e| e.record.status);
                true
            }
            _ => false,
        };
        if known && q.desc {
            rows.reverse();
        }
    }
    let total_count = rows.len();
    let offset = q.start.saturating_sub(1);
    let limit = if q.limit == 0 { usize::MAX } else { q.limit };
    // Each view is encoded as soon as it is built, so one view at a time is
    // alive besides the text: a list of 10,000 endpoints is 17 MB of JSON,
    // and its views all at once were several times that, which the
    // allocator then kept (docs/PERFORMANCE.md, "Memory per endpoint").
    let page = rows.iter().skip(offset).take(limit);
    let mut body = Vec::with_capacity(2 + page.len() * VIEW_BYTES);
    body.push(b'[');
    for (i, e) in page.enumerate() {
        if i > 0 {
            body.push(b',');
        }
        let view = view_of(&state, &e.record, p.is_admin(), !q.exclude_snapshots);
        serde_json::to_writer(&mut body, &view)
            .map_err(|e| ApiError::internal("Unable to encode the environments", e))?;
    }
    body.push(b']');
    let mut resp = json_bytes_response(StatusCode::OK, body);
    let h = resp.headers_mut();
    h.insert("x-total-count", HeaderValue::from(total_count));
    h.insert("x-total-available", HeaderValue::from(total_available));
    Ok(resp)
}

// ---------------------------------------------------------------------------
// GET /api/endpoints/{id}
// ---------------------------------------------------------------------------

fn entry_of(state: &AppState, req: &ApiRequest) -> ApiResult<Arc<EndpointEntry>> {
    let id = req.id("id", "environment")?;
    state.endpoints.get(id).ok_or_else(not_found)
}

pub const INSPECT: Doc = Doc::new("Inspect an endpoint", &[Reply::json(200, "The endpoint", json::<EndpointView>)])
    .query(&[Query::optional("excludeSnapshot", QueryType::Boolean, "Leave Snapshots empty")]);

pub async fn inspect(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let entry = entry_of(&state, &req)?;
    let p = req.principal();
    let teams = if p.is_admin() { Vec::new() } else { state.identity.teams_of(p.id()) };
    if !visible(&state, p, &entry.record, &teams) {
        return Err(permission_denied());
    }
    let exclude = req.query("excludeSnapshot").is_some_and(|v| v == "true");
    ok_json(&view_of(&state, &entry.record, p.is_admin(), !exclude))
}

// ---------------------------------------------------------------------------
// PUT /api/endpoints/{id} and /api/endpoints/{id}/settings
// ---------------------------------------------------------------------------

pub const UPDATE: Doc = Doc::new("Update an endpoint", &[Reply::json(200, "The endpoint", json::<EndpointView>)])
    .body(Body::Json(json::<EndpointChanges>))
    .errors(&[(409, "An endpoint has this name")]);

pub async fn update(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let id = req.id("id", "environment")?;
    let body: EndpointChanges = req.json().await?;
    let rec = register::update(&state.endpoint_ops(), id, body).await?;
    ok_json(&view_of(&state, &rec, true, true))
}

pub const UPDATE_SETTINGS: Doc = Doc::new(
    "Change what standard users may do on an endpoint",
    &[Reply::json(200, "The endpoint", json::<EndpointView>)],
)
.body(Body::Json(json::<SecurityChanges>));

pub async fn update_settings(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let id = req.id("id", "environment")?;
    let b: SecurityChanges = req.json().await?;
    let rec = register::update_settings(&state.endpoint_ops(), id, b).await?;
    ok_json(&view_of(&state, &rec, true, true))
}

// ---------------------------------------------------------------------------
// DELETE /api/endpoints/{id} and DELETE /api/endpoints
// ---------------------------------------------------------------------------

pub const DELETE: Doc = Doc::new("Remove an endpoint", &[Reply::empty(204, "Removed")]);

pub async fn delete(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let id = req.id("id", "environment")?;
    register::delete(&state.endpoint_ops(), id).await?;
    no_content()
}

/// `DELETE /api/endpoints`: `{"endpoints": [{"id": 1}, ...]}`. A
/// description: [`delete_many`] decodes it loosely (`id` in any case, each
/// element checked with its own message).
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(as = EndpointDeletion)]
struct DeleteMany {
    endpoints: Vec<DeleteManyItem>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(as = EndpointDeletionItem)]
struct DeleteManyItem {
    id: Id,
}

/// What a bulk removal did when some endpoints stayed.
#[derive(Serialize, ToSchema)]
pub struct BulkDeleted {
    deleted: Vec<Id>,
    errors: Vec<Id>,
}

pub const DELETE_MANY: Doc = Doc::new(
    "Remove several endpoints",
    &[
        Reply::empty(204, "All removed"),
        Reply::json(206, "Some could not be removed (they did not exist)", json::<BulkDeleted>),
    ],
)
.body(Body::Json(json::<DeleteMany>));

pub async fn delete_many(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    #[derive(Deserialize)]
    struct Loose {
        #[serde(default)]
        endpoints: Vec<Value>,
    }
    let limit = req.max_json_body;
    let bytes = req.bytes(limit).await?;
    let body: Loose = decode_json(&bytes)?;
    if body.endpoints.is_empty() {
        return Err(ApiError::invalid_payload("Invalid number of environments: the list is empty"));
    }
    let mut ids = Vec::with_capacity(body.endpoints.len());
    for item in &body.endpoints {
        let id = item
            .as_object()
            .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("id")))
            .and_then(|(_, v)| v.as_u64())
            .ok_or_else(|| {
                ApiError::invalid_payload(format!("each element of endpoints needs a numeric id, got {item}"))
            })?;
        ids.push(id);
    }
    let (mut deleted, mut errors) = (Vec::new(), Vec::new());
    for id in ids {
        match register::delete(&state.endpoint_ops(), id).await {
            Ok(()) => deleted.push(id),
            Err(e) => {
                tracing::info!(endpoint = id, error = %e, "bulk delete: endpoint not removed");
                errors.push(id);
            }
        }
    }
    if errors.is_empty() {
        return no_content();
    }
    Ok(json_response(StatusCode::PARTIAL_CONTENT, &BulkDeleted { deleted, errors }))
}

// ---------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------

pub const SNAPSHOT_ONE: Doc =
    Doc::new("Check an endpoint now", &[Reply::empty(204, "Checked; its status and snapshot are fresh")]);

pub async fn snapshot_one(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let entry = entry_of(&state, &req)?;
    state.health().check_now(entry).await;
    no_content()
}

pub const SNAPSHOT_ALL: Doc = Doc::new("Check every endpoint now", &[Reply::empty(204, "Checked")]);

pub async fn snapshot_all(state: Arc<AppState>, _req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    state.health().check_endpoints(state.endpoints.all()).await;
    no_content()
}

// ---------------------------------------------------------------------------
// POST /api/upload/tls/{certificate}
// ---------------------------------------------------------------------------

/// The form `POST /api/upload/tls/{certificate}` reads.
#[derive(ToSchema)]
#[allow(dead_code)] // a description of the form: `upload_tls` reads it field by field
#[schema(as = TlsUploadForm)]
struct UploadForm {
    /// The endpoint id the file is for.
    folder: String,
    /// The PEM file.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

pub const UPLOAD_TLS: Doc = Doc::new("Replace an endpoint's TLS file", &[Reply::empty(204, "Replaced")])
    .describe("`certificate` is ca, cert or key; the endpoint reconnects with the new file.")
    .body(Body::Form(json::<UploadForm>));

pub async fn upload_tls(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let raw = req.params.iter().find(|(k, _)| k == "certificate").map(|(_, v)| v.clone()).unwrap_or_default();
    let kind = TlsFileKind::from_route(&raw).ok_or_else(|| {
        ApiError::bad_request(
            "Invalid certificate route value. Value must be one of: ca, cert or key",
            format!("got {raw:?}"),
        )
    })?;
    let form = form::read(&mut req, Limits::upload(state.config.max_upload_body)).await?;
    let folder = form
        .value("folder")
        .ok_or_else(|| ApiError::bad_request("Invalid folder query parameter", "folder is required"))?;
    // The folder is a path component: only an endpoint id is accepted, so
    // nothing can be written outside `<data>/tls/<id>/`.
    let id: Id = super::parse_id(folder, "environment").map_err(|_| {
        ApiError::bad_request(
            "Invalid folder query parameter",
            format!("the folder must be an environment identifier, got {folder:?}"),
        )
    })?;
    let file = form.file("file").filter(|f| !f.bytes.is_empty()).ok_or_else(|| {
        ApiError::bad_request(
            "Invalid certificate file. Ensure that the certificate file is uploaded correctly",
            "file is required",
        )
    })?;
    tls_files::check_pem(kind, &file.bytes).map_err(|e| ApiError::bad_request("Invalid certificate file", e))?;

    register::replace_tls_file(&state.endpoint_ops(), id, kind, file.bytes).await?;
    no_content()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_users_see_neither_the_url_nor_tls_paths() {
        let record = Endpoint {
            id: 3,
            name: "prod".into(),
            kind: DOCKER_API,
            url: "tcp://10.0.0.5:2376".into(),
            public_url: "prod.example".into(),
            group_id: 1,
            tls: EndpointTls {
                tls: true,
                ca_cert: "/data/tls/3/ca.pem".into(),
                cert: "/data/tls/3/cert.pem".into(),
                key: "/data/tls/3/key.pem".into(),
                ..Default::default()
            },
            tag_ids: Vec::new(),
            status: 1,
            user_access_policies: Default::default(),
            team_access_policies: Default::default(),
            security_settings: Default::default(),
        };
        let admin = serde_json::to_value(endpoint_view(&record, true, None)).unwrap();
        assert_eq!(admin["URL"], "tcp://10.0.0.5:2376");
        assert_eq!(admin["TLSConfig"]["TLSKey"], "/data/tls/3/key.pem");
        let user = serde_json::to_value(endpoint_view(&record, false, None)).unwrap();
        assert_eq!(user["URL"], "");
        assert_eq!(user["TLSConfig"], serde_json::json!({"TLS": true, "TLSSkipVerify": false}));
        assert_eq!(user["PublicURL"], "prod.example");
        let text = user.to_string();
        assert!(!text.contains("10.0.0.5") && !text.contains("/data/tls"), "{text}");
    }
}
