//! Environments (`/api/endpoints`): registration, listing, updates, removal,
//! TLS uploads and on-demand snapshots.
//!
//! Every change follows one order: validate everything (including TLS files
//! and a ping of the host on creation), store durably, then swap a whole new
//! entry into the registry. The check-store-swap step runs under the
//! registry's write lock so that two writers (or a writer and the health
//! checker) never interleave; the creation ping runs before taking it, so a
//! slow host never holds up other changes. Files on
//! disk are written before the record that points at them and removed after
//! the record that pointed at them, so a crash leaves at worst an orphan
//! file, never a record pointing at nothing.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use http::{HeaderValue, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::form::{self, Form, Limits};
use super::{decode_json, json_response, no_content, ok_json, store_err, ApiRequest};
use crate::auth::Principal;
use crate::body::ResponseBody;
use crate::connector::{validate_tls_files, DockerUrl, TlsFiles};
use crate::endpoints::load::{connector_settings, upstream_for};
use crate::endpoints::map::build_upstream;
use crate::endpoints::tls_files::{self, TlsFileKind};
use crate::endpoints::{health, EndpointEntry};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::model::{
    AccessPolicies, DockerSnapshot, Endpoint, EndpointTls, Id, SecuritySettings, SnapshotRecord, ENDPOINT_DOWN,
    ENDPOINT_UP,
};
use crate::store::{ENDPOINTS, SNAPSHOTS};

/// Longest name of an endpoint, group or tag. Names are shown in lists and
/// logs; anything longer is a mistake or an attack.
pub const MAX_NAME: usize = 255;
/// Longest `URL`/`PublicURL` accepted.
const MAX_URL: usize = 2048;

const DOCKER_API: u8 = 1;

/// Checks a display name; `what` is the Portainer word ("environment").
pub(crate) fn check_name(name: &str, what: &str) -> ApiResult<()> {
    let invalid = |details: String| ApiError::bad_request(format!("Invalid {what} name"), details);
    if name.trim().is_empty() {
        return Err(invalid(format!("the {what} name is required")));
    }
    let n = name.chars().count();
    if n > MAX_NAME {
        return Err(invalid(format!("the {what} name is {n} characters long; the limit is {MAX_NAME}")));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(format!("the {what} name contains control characters")));
    }
    Ok(())
}

/// Tag ids must name existing tags; duplicates are dropped, order kept.
pub(crate) fn check_tags(state: &AppState, ids: &[Id], message: &str) -> ApiResult<Vec<Id>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for &id in ids {
        if state.endpoints.tag(id).is_none() {
            return Err(ApiError::bad_request(message, format!("tag {id} does not exist")));
        }
        if seen.insert(id) {
            out.push(id);
        }
    }
    Ok(out)
}

/// Policy maps are keyed by user or team id as a string.
pub(crate) fn check_policies(p: &AccessPolicies, what: &str) -> ApiResult<()> {
    match p.keys().find(|k| k.parse::<u64>().is_err()) {
        Some(k) => Err(ApiError::invalid_payload(format!("{what} key {k:?} is not a numeric identifier"))),
        None => Ok(()),
    }
}

fn not_found() -> ApiError {
    ApiError::not_found("an environment")
}

fn name_taken() -> ApiError {
    ApiError::conflict("Name is not unique", "")
}

fn permission_denied() -> ApiError {
    ApiError::forbidden("Permission denied to access environment", "Access denied to environment")
}

/// File-system calls block; they must not stall an async worker serving
/// other requests.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
}

async fn remove_tls_dir(data: &Path, id: Id) {
    let data = data.to_path_buf();
    if let Err(e) = blocking(move || tls_files::remove_dir(&data, id)).await {
        tracing::warn!(endpoint = id, error = %e, "removing the endpoint's TLS directory failed");
    }
}

// ---------------------------------------------------------------------------
// The view
// ---------------------------------------------------------------------------

fn tls_view(t: &EndpointTls) -> Value {
    let mut v = json!({"TLS": t.tls, "TLSSkipVerify": t.skip_verify});
    for (k, p) in [("TLSCACert", &t.ca_cert), ("TLSCert", &t.cert), ("TLSKey", &t.key)] {
        if !p.is_empty() {
            v[k] = Value::String(p.clone());
        }
    }
    v
}

/// The endpoint object every route answers with, in Portainer's names, with
/// `{}`/`[]` wherever clients iterate. Standard users do not see who else
/// has access (`UserAccessPolicies`/`TeamAccessPolicies` are null for them).
pub fn endpoint_view(record: &Endpoint, admin: bool, snapshot: Option<&DockerSnapshot>) -> Value {
    let policies =
        |p: &AccessPolicies| if admin { serde_json::to_value(p).unwrap_or_else(|_| json!({})) } else { Value::Null };
    let snapshots = match snapshot {
        Some(s) => json!([serde_json::to_value(s).unwrap_or(Value::Null)]),
        None => json!([]),
    };
    json!({
        "Id": record.id,
        "Name": record.name,
        "Type": record.kind,
        "ContainerEngine": "docker",
        "URL": record.url,
        "GroupId": record.group_id,
        "PublicURL": record.public_url,
        "Gpus": [],
        "TLSConfig": tls_view(&record.tls),
        "AzureCredentials": {"ApplicationID": "", "TenantID": "", "AuthenticationKey": ""},
        "TagIds": record.tag_ids,
        "Status": record.status,
        "Snapshots": snapshots,
        "UserAccessPolicies": policies(&record.user_access_policies),
        "TeamAccessPolicies": policies(&record.team_access_policies),
        "EdgeKey": "",
        "EdgeCheckinInterval": 0,
        "Kubernetes": {
            "Snapshots": [],
            "Configuration": {"UseLoadBalancer": false, "UseServerMetrics": false, "StorageClasses": [], "IngressClasses": []},
            "Flags": {"IsServerMetricsDetected": false, "IsServerIngressClassDetected": false, "IsServerStorageDetected": false},
        },
        "ComposeSyntaxMaxVersion": "3.9",
        "SecuritySettings": record.security_settings,
        "LastCheckInDate": 0,
        "QueryDate": 0,
        "Heartbeat": false,
        "PostInitMigrations": {"MigrateIngresses": false, "MigrateGPUs": false},
        "Edge": {"AsyncMode": false, "PingInterval": 0, "SnapshotInterval": 0, "CommandInterval": 0},
        "Agent": {"Version": ""},
        "AuthorizedUsers": [],
        "AuthorizedTeams": [],
        "Extensions": [],
        "Tags": null,
    })
}

fn view_of(state: &AppState, record: &Endpoint, admin: bool, with_snapshot: bool) -> Value {
    let snap = if with_snapshot { state.endpoints.snapshot(record.id) } else { None };
    endpoint_view(record, admin, snap.as_deref())
}

// ---------------------------------------------------------------------------
// POST /api/endpoints
// ---------------------------------------------------------------------------

/// A registration request, validated.
struct NewEndpoint {
    name: String,
    url: String,
    public_url: String,
    group_id: Id,
    tag_ids: Vec<Id>,
    tls: EndpointTls,
    files: TlsFiles,
}

const TYPE_VALUES: &str = "Invalid environment type value. Value must be one of: 1 (Docker environment), 2 (Agent environment), 3 (Azure environment), 4 (Edge Agent environment) or 5 (Local Kubernetes environment)";

fn form_int(form: &Form, key: &str, message: &str) -> ApiResult<Option<i64>> {
    match form.value(key) {
        None => Ok(None),
        Some(v) => {
            v.trim().parse::<i64>().map(Some).map_err(|e| ApiError::bad_request(message, format!("{key}={v:?}: {e}")))
        }
    }
}

/// `EndpointCreationType` (2.x) or `EndpointType` (1.x), neither meaning 1.
fn creation_type(form: &Form) -> ApiResult<u8> {
    let t = match form_int(form, "EndpointCreationType", TYPE_VALUES)? {
        Some(t) => t,
        None => form_int(form, "EndpointType", TYPE_VALUES)?.unwrap_or(1),
    };
    let kind = match t {
        1 => return Ok(DOCKER_API),
        2 => "2 (Agent)",
        3 => "3 (Azure)",
        4 => "4 (Edge Agent)",
        5 => "5 (Local Kubernetes)",
        // Portainer sends any other positive value down the Docker API path.
        t if t > 5 => return Ok(DOCKER_API),
        _ => return Err(ApiError::bad_request(TYPE_VALUES, format!("environment type {t} does not exist"))),
    };
    Err(ApiError::bad_request(
        "Environment type not supported",
        format!("environment type {kind} is not supported by Berth; only 1 (Docker API over a unix socket or TCP) is"),
    ))
}

fn parse_url(raw: &str) -> ApiResult<String> {
    let url = raw.trim();
    if url.len() > MAX_URL {
        return Err(ApiError::bad_request(
            "Invalid environment URL",
            format!("the URL is longer than {MAX_URL} bytes"),
        ));
    }
    DockerUrl::parse(url).map_err(|e| ApiError::bad_request("Invalid environment URL", e))?;
    Ok(url.to_owned())
}

fn parse_new(state: &AppState, form: &Form) -> ApiResult<NewEndpoint> {
    let name = form.value("Name").unwrap_or("").to_owned();
    check_name(&name, "environment")?;
    creation_type(form)?;
    let url = match form.value("URL") {
        Some(u) if !u.trim().is_empty() => parse_url(u)?,
        _ => state.config.docker_socket.clone(),
    };
    let public_url = form.value("PublicURL").unwrap_or("").trim().to_owned();
    if public_url.len() > MAX_URL {
        return Err(ApiError::bad_request(
            "Invalid PublicURL parameter",
            format!("the URL is longer than {MAX_URL} bytes"),
        ));
    }
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
    let tag_ids = check_tags(state, &tag_ids, "Invalid TagIds parameter")?;

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
        validate_tls_files(&files, tls.skip_verify, tls.skip_client_verify)
            .map_err(|e| ApiError::bad_request("Invalid TLS files", e))?;
    }
    Ok(NewEndpoint { name, url, public_url, group_id, tag_ids, tls, files })
}

pub async fn create(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let form = form::read(&mut req, Limits::upload(state.config.max_upload_body)).await?;
    let new = parse_new(&state, &form)?;
    drop(form);
    if state.endpoints.all().iter().any(|e| e.record.name == new.name) {
        return Err(name_taken());
    }
    // The id is consumed first, as in Portainer: a failed creation leaves a
    // gap, never a reused id (TLS paths and metrics labels embed it).
    let id = state.write(|tx| tx.next_id(ENDPOINTS)).await.map_err(store_err)?;
    match register(&state, id, new).await {
        Ok(record) => ok_json(&view_of(&state, &record, true, true)),
        Err(e) => {
            remove_tls_dir(&state.config.data, id).await;
            Err(e)
        }
    }
}

/// Everything after the id is allocated; on `Err` the caller removes the
/// endpoint's TLS directory.
async fn register(state: &Arc<AppState>, id: Id, new: NewEndpoint) -> ApiResult<Endpoint> {
    let mut record = Endpoint {
        id,
        name: new.name,
        kind: DOCKER_API,
        url: new.url,
        public_url: new.public_url,
        group_id: new.group_id,
        tls: new.tls,
        tag_ids: new.tag_ids,
        status: ENDPOINT_UP,
        user_access_policies: Default::default(),
        team_access_policies: Default::default(),
        security_settings: SecuritySettings::default(),
    };
    if record.tls.tls {
        let data = state.config.data.clone();
        let (files, mut tls) = (new.files.clone(), record.tls.clone());
        record.tls = blocking(move || {
            // A directory left by a crash under this (fresh) id must not
            // contribute stale files.
            tls_files::remove_dir(&data, id)?;
            tls_files::write_files(&data, id, &files, &mut tls)?;
            Ok(tls)
        })
        .await
        .map_err(|e| ApiError::internal("Unable to persist TLS files on disk", e))?;
    }
    let upstream = build_upstream(&record, new.files, &connector_settings(&state.config))
        .map_err(|e| ApiError::bad_request("Invalid TLS files", e.to_string()))?;
    upstream.ping(state.config.ping_timeout).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Unable to initiate communications with environment",
            e.to_string(),
        )
    })?;
    let snapshot = health::snapshot(&upstream, state.config.health_timeout).await;

    let _guard = state.endpoints.write_lock.lock().await;
    // Authoritative checks: every endpoint, group and tag change holds this
    // lock, and the registry mirrors the store.
    if state.endpoints.all().iter().any(|e| e.record.name == record.name) {
        return Err(name_taken());
    }
    if state.endpoints.group(record.group_id).is_none() {
        return Err(ApiError::bad_request(
            "Invalid GroupID parameter",
            format!("environment group {} does not exist", record.group_id),
        ));
    }
    check_tags(state, &record.tag_ids, "Invalid TagIds parameter")?;
    let (r2, s2) = (record.clone(), snapshot.clone());
    state
        .write(move |tx| {
            tx.put(ENDPOINTS, id, &r2)?;
            if let Some(docker) = s2 {
                tx.put(SNAPSHOTS, id, &SnapshotRecord { endpoint_id: id, docker: Some(docker) })?;
            }
            Ok(())
        })
        .await
        .map_err(store_err)?;
    if let Some(s) = snapshot {
        state.endpoints.put_snapshot(id, s);
    }
    state.endpoints.insert(EndpointEntry { record: record.clone(), upstream });
    state.metrics.endpoint_up.with_label_values(&[&id.to_string()]).set(1);
    state.health().refresh_status_gauge();
    tracing::info!(endpoint = id, name = %record.name, url = %record.url, "endpoint registered");
    Ok(record)
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

/// Who may see an endpoint: admins all, others per the access rule.
fn visible(state: &AppState, p: &Principal, record: &Endpoint, teams: &[Id]) -> bool {
    p.is_admin() || state.endpoints.may_access(p, record, teams)
}

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
                let hit = r.name.to_lowercase().contains(s)
                    || r.url.to_lowercase().contains(s)
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
    let page: Vec<Value> = rows
        .iter()
        .skip(offset)
        .take(limit)
        .map(|e| view_of(&state, &e.record, p.is_admin(), !q.exclude_snapshots))
        .collect();
    let mut resp = json_response(StatusCode::OK, &Value::Array(page));
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
// PUT /api/endpoints/{id}
// ---------------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(rename_all = "lowercase")]
struct UpdateEndpoint {
    name: Option<String>,
    url: Option<String>,
    publicurl: Option<String>,
    groupid: Option<Id>,
    /// `TagIDs` and `TagIds` both arrive here (keys are lower-cased).
    tagids: Option<Vec<Id>>,
    tls: Option<bool>,
    tlsskipverify: Option<bool>,
    tlsskipclientverify: Option<bool>,
    status: Option<u8>,
    useraccesspolicies: Option<AccessPolicies>,
    teamaccesspolicies: Option<AccessPolicies>,
}

/// Swaps in a record with the entry's current pool (nothing about the
/// connection changed). Caller holds the write lock and has stored `record`.
fn swap_record(state: &AppState, cur: &EndpointEntry, record: Endpoint) {
    state.endpoints.insert(EndpointEntry { record, upstream: cur.upstream.clone() });
}

async fn store_record(state: &AppState, record: &Endpoint) -> ApiResult<()> {
    let r = record.clone();
    state.write(move |tx| tx.put(ENDPOINTS, r.id, &r)).await.map_err(store_err)
}

pub async fn update(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let id = req.id("id", "environment")?;
    let body: UpdateEndpoint = req.json().await?;
    let _guard = state.endpoints.write_lock.lock().await;
    let cur = state.endpoints.get(id).ok_or_else(not_found)?;
    let mut rec = cur.record.clone();
    if let Some(name) = body.name {
        check_name(&name, "environment")?;
        if state.endpoints.all().iter().any(|e| e.record.id != id && e.record.name == name) {
            return Err(name_taken());
        }
        rec.name = name;
    }
    if let Some(url) = &body.url {
        rec.url = parse_url(url)?;
    }
    if let Some(u) = body.publicurl {
        if u.len() > MAX_URL {
            return Err(ApiError::invalid_payload(format!("PublicURL is longer than {MAX_URL} bytes")));
        }
        rec.public_url = u;
    }
    if let Some(g) = body.groupid {
        if state.endpoints.group(g).is_none() {
            return Err(ApiError::invalid_payload(format!("environment group {g} does not exist")));
        }
        rec.group_id = g;
    }
    if let Some(tags) = &body.tagids {
        rec.tag_ids = check_tags(&state, tags, "Invalid request payload")?;
    }
    if let Some(s) = body.status {
        if s != ENDPOINT_UP && s != ENDPOINT_DOWN {
            return Err(ApiError::invalid_payload("Status must be 1 (up) or 2 (down)"));
        }
        rec.status = s;
    }
    if let Some(p) = body.useraccesspolicies {
        check_policies(&p, "UserAccessPolicies")?;
        rec.user_access_policies = p;
    }
    if let Some(p) = body.teamaccesspolicies {
        check_policies(&p, "TeamAccessPolicies")?;
        rec.team_access_policies = p;
    }

    // TLS: the files come from `POST /api/upload/tls/{certificate}`; here
    // only the flags change, and the paths follow them.
    let data = state.config.data.clone();
    let mut remove_kinds: Vec<TlsFileKind> = Vec::new();
    let mut remove_dir = false;
    match body.tls {
        Some(true) => {
            rec.tls.tls = true;
            rec.tls.skip_verify = body.tlsskipverify.unwrap_or(rec.tls.skip_verify);
            rec.tls.skip_client_verify = body.tlsskipclientverify.unwrap_or(rec.tls.skip_client_verify);
            let path = |k| tls_files::tls_path(&data, id, k).to_string_lossy().into_owned();
            if rec.tls.skip_verify {
                rec.tls.ca_cert.clear();
                remove_kinds.push(TlsFileKind::Ca);
            } else {
                rec.tls.ca_cert = path(TlsFileKind::Ca);
            }
            if rec.tls.skip_client_verify {
                rec.tls.cert.clear();
                rec.tls.key.clear();
                remove_kinds.extend([TlsFileKind::Cert, TlsFileKind::Key]);
            } else {
                rec.tls.cert = path(TlsFileKind::Cert);
                rec.tls.key = path(TlsFileKind::Key);
            }
        }
        Some(false) => {
            rec.tls = EndpointTls::default();
            remove_dir = true;
        }
        None => {}
    }
    // A new pool when anything about the connection was touched (an explicit
    // TLS flag also picks up files replaced by uploads since).
    let upstream = if rec.url != cur.record.url || rec.tls != cur.record.tls || body.tls.is_some() {
        upstream_for(&rec, &state.config).map_err(|e| ApiError::bad_request("Invalid TLS configuration", e))?
    } else {
        cur.upstream.clone()
    };
    store_record(&state, &rec).await?;
    state.endpoints.insert(EndpointEntry { record: rec.clone(), upstream });
    state.health().refresh_status_gauge();
    drop(_guard);
    if remove_dir {
        remove_tls_dir(&data, id).await;
    } else if !remove_kinds.is_empty() {
        let r = blocking(move || remove_kinds.into_iter().try_for_each(|k| tls_files::remove_file(&data, id, k))).await;
        if let Err(e) = r {
            tracing::warn!(endpoint = id, error = %e, "removing unused TLS files failed");
        }
    }
    ok_json(&view_of(&state, &rec, true, true))
}

// ---------------------------------------------------------------------------
// PUT /api/endpoints/{id}/settings
// ---------------------------------------------------------------------------

#[derive(Deserialize, Default)]
struct SettingsBody {
    #[serde(rename = "allowbindmountsforregularusers")]
    bind_mounts: Option<bool>,
    #[serde(rename = "allowprivilegedmodeforregularusers")]
    privileged: Option<bool>,
    #[serde(rename = "allowvolumebrowserforregularusers")]
    volume_browser: Option<bool>,
    #[serde(rename = "allowhostnamespaceforregularusers")]
    host_namespace: Option<bool>,
    #[serde(rename = "allowdevicemappingforregularusers")]
    device_mapping: Option<bool>,
    #[serde(rename = "allowstackmanagementforregularusers")]
    stack_management: Option<bool>,
    #[serde(rename = "allowcontainercapabilitiesforregularusers")]
    capabilities: Option<bool>,
    #[serde(rename = "allowsysctlsettingforregularusers")]
    sysctl: Option<bool>,
    #[serde(rename = "enablehostmanagementfeatures")]
    host_management: Option<bool>,
}

pub async fn update_settings(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let id = req.id("id", "environment")?;
    let b: SettingsBody = req.json().await?;
    let _guard = state.endpoints.write_lock.lock().await;
    let cur = state.endpoints.get(id).ok_or_else(not_found)?;
    let mut rec = cur.record.clone();
    let s = &mut rec.security_settings;
    let pairs = [
        (b.bind_mounts, &mut s.allow_bind_mounts_for_regular_users),
        (b.privileged, &mut s.allow_privileged_mode_for_regular_users),
        (b.volume_browser, &mut s.allow_volume_browser_for_regular_users),
        (b.host_namespace, &mut s.allow_host_namespace_for_regular_users),
        (b.device_mapping, &mut s.allow_device_mapping_for_regular_users),
        (b.stack_management, &mut s.allow_stack_management_for_regular_users),
        (b.capabilities, &mut s.allow_container_capabilities_for_regular_users),
        (b.sysctl, &mut s.allow_sysctl_setting_for_regular_users),
        (b.host_management, &mut s.enable_host_management_features),
    ];
    for (v, slot) in pairs {
        if let Some(v) = v {
            *slot = v;
        }
    }
    store_record(&state, &rec).await?;
    swap_record(&state, &cur, rec.clone());
    ok_json(&view_of(&state, &rec, true, true))
}

// ---------------------------------------------------------------------------
// DELETE /api/endpoints/{id} and DELETE /api/endpoints
// ---------------------------------------------------------------------------

async fn delete_one(state: &AppState, id: Id) -> ApiResult<()> {
    {
        let _guard = state.endpoints.write_lock.lock().await;
        if state.endpoints.get(id).is_none() {
            return Err(not_found());
        }
        state
            .write(move |tx| {
                tx.delete(ENDPOINTS, id)?;
                tx.delete(SNAPSHOTS, id)?;
                Ok(())
            })
            .await
            .map_err(store_err)?;
        // Dropping the entry drops its pool once in-flight requests finish.
        state.endpoints.remove(id);
        state.endpoints.remove_snapshot(id);
    }
    remove_tls_dir(&state.config.data, id).await;
    state.metrics.forget_endpoint(&id.to_string());
    state.health().refresh_status_gauge();
    tracing::info!(endpoint = id, "endpoint removed");
    Ok(())
}

pub async fn delete(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let id = req.id("id", "environment")?;
    delete_one(&state, id).await?;
    no_content()
}

pub async fn delete_many(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        endpoints: Vec<Value>,
    }
    let limit = req.max_json_body;
    let bytes = req.bytes(limit).await?;
    let body: Body = decode_json(&bytes)?;
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
        match delete_one(&state, id).await {
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
    Ok(json_response(StatusCode::PARTIAL_CONTENT, &json!({"deleted": deleted, "errors": errors})))
}

// ---------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------

pub async fn snapshot_one(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let entry = entry_of(&state, &req)?;
    state.health().check_now(entry).await;
    no_content()
}

pub async fn snapshot_all(state: Arc<AppState>, _req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    state.health().check_endpoints(state.endpoints.all()).await;
    no_content()
}

// ---------------------------------------------------------------------------
// POST /api/upload/tls/{certificate}
// ---------------------------------------------------------------------------

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
    let id: Id = folder.parse().map_err(|_| {
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

    let _guard = state.endpoints.write_lock.lock().await;
    let cur = state.endpoints.get(id).ok_or_else(not_found)?;
    let data = state.config.data.clone();
    blocking(move || tls_files::write_file(&data, id, kind, &file.bytes))
        .await
        .map_err(|e| ApiError::internal("Unable to persist TLS file on disk", e))?;
    if cur.record.tls.tls {
        // Files are replaced one upload at a time; until the set fits
        // together the endpoint keeps its current, working pool.
        match upstream_for(&cur.record, &state.config) {
            Ok(upstream) => state.endpoints.insert(EndpointEntry { record: cur.record.clone(), upstream }),
            Err(e) => {
                tracing::info!(endpoint = id, reason = %e, "TLS file stored; keeping the current connection until the files match")
            }
        }
    }
    no_content()
}
