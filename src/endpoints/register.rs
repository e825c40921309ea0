//! Changes to endpoints: registration, updates, security settings, TLS file
//! replacement and removal. The `/api/endpoints` handlers decode a request,
//! call one of these and encode the record it returns.
//!
//! Every change follows one order: validate everything (including TLS files
//! and a ping of the host on creation), store durably, then swap a whole new
//! entry into the registry. The check-store-swap step runs under the
//! registry's write lock so that two writers (or a writer and the health
//! checker) never interleave; the creation ping runs before taking it, so a
//! slow host never holds up other changes. Files on disk are written before
//! the record that points at them and removed after the record that pointed
//! at them, so a crash leaves at worst an orphan file, never a record
//! pointing at nothing.

use std::path::Path;

use http::StatusCode;
use serde::Deserialize;

use super::checks::{apply_policies, check_name, check_public_url, check_tags, check_url};
use super::load::{connector_settings, upstream_for};
use super::map::build_upstream;
use super::tls_files::{self, TlsFileKind};
use super::{health, EndpointEntry, Ops};
use crate::connector::TlsFiles;
use crate::error::{ApiError, ApiResult};
use crate::response::store_err;
use crate::store::model::{
    AccessPolicies, Endpoint, EndpointTls, Id, SecuritySettings, SnapshotRecord, ENDPOINT_DOWN, ENDPOINT_UP,
};
use crate::store::{ENDPOINTS, SNAPSHOTS};

/// The only endpoint type Berth serves: the Docker API over a unix socket
/// or TCP.
pub const DOCKER_API: u8 = 1;

pub fn not_found() -> ApiError {
    ApiError::not_found("an environment")
}

fn name_taken() -> ApiError {
    ApiError::conflict("Name is not unique", "")
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

async fn store_record(state: &Ops<'_>, record: &Endpoint) -> ApiResult<()> {
    let (r, shared) = (record.clone(), state.store.is_shared());
    state.write(move |tx| put_unique(tx, &r, shared)).await.map_err(name_conflict)
}

/// Stores an endpoint record. On a shared store the name is checked again
/// inside the write, among the stored records: another replica may have
/// taken it a moment ago, before this one's memory shows it. (Alone, the
/// in-memory check under `write_lock` is already authoritative.)
fn put_unique(tx: &crate::store::Tx<'_>, r: &Endpoint, shared: bool) -> Result<(), crate::store::StoreError> {
    if shared && tx.all::<Endpoint>(ENDPOINTS)?.iter().any(|e| e.id != r.id && e.name == r.name) {
        return Err(crate::store::StoreError::Conflict("name".into()));
    }
    tx.put(ENDPOINTS, r.id, r)
}

fn name_conflict(e: crate::store::StoreError) -> ApiError {
    match e {
        crate::store::StoreError::Conflict(_) => name_taken(),
        e => store_err(e),
    }
}

// ---------------------------------------------------------------------------
// Registration
// ---------------------------------------------------------------------------

/// A registration request whose fields are checked one by one (the URL
/// parsed, the socket present, the TLS files valid PEM that fit together).
pub struct NewEndpoint {
    pub name: String,
    pub url: String,
    pub public_url: String,
    pub group_id: Id,
    pub tag_ids: Vec<Id>,
    pub tls: EndpointTls,
    pub files: TlsFiles,
    /// What standard users may do there at first (the server setting
    /// `PortainerSecurityDefaults` picks it).
    pub security: SecuritySettings,
}

/// Registers an endpoint: pings the host, stores the record (and a first
/// snapshot) and publishes it.
pub async fn create(state: &Ops<'_>, new: NewEndpoint) -> ApiResult<Endpoint> {
    if state.endpoints.all().iter().any(|e| e.record.name == new.name) {
        return Err(name_taken());
    }
    // The id is consumed first, as in Portainer: a failed creation leaves a
    // gap, never a reused id (TLS paths and metrics labels embed it).
    let id = state.write(|tx| tx.next_id(ENDPOINTS)).await.map_err(store_err)?;
    match register(state, id, new).await {
        Ok(record) => Ok(record),
        Err(e) => {
            remove_tls_dir(&state.config.data, id).await;
            // The files may have been shared already: the empty folder
            // removes them from the store too.
            if let Err(se) = tls_files::share(state.store, &state.config.data, id).await {
                tracing::warn!(endpoint = id, error = %se, "removing the TLS files of a failed registration from the store failed");
            }
            Err(e)
        }
    }
}

/// Everything after the id is allocated; on `Err` the caller removes the
/// endpoint's TLS directory.
async fn register(state: &Ops<'_>, id: Id, new: NewEndpoint) -> ApiResult<Endpoint> {
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
        security_settings: new.security,
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
    let upstream = build_upstream(&record, new.files, &connector_settings(state.config))
        .map_err(|e| ApiError::bad_request("Invalid TLS files", e.to_string()))?;
    // One connection for the ping and the first snapshot, closed after
    // them: a new endpoint holds no connection until it is used.
    let mut conn = upstream.series();
    conn.ping(state.config.ping_timeout).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Unable to initiate communications with environment",
            e.to_string(),
        )
    })?;
    let snapshot = health::snapshot_on(&mut conn, state.config.health_timeout).await;
    conn.finish();

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
    check_tags(state.endpoints, &record.tag_ids, "Invalid TagIds parameter")?;
    if record.tls.tls {
        tls_files::share(state.store, &state.config.data, id).await.map_err(store_err)?;
    }
    let (r2, s2, shared) = (record.clone(), snapshot.clone(), state.store.is_shared());
    state
        .write(move |tx| {
            put_unique(tx, &r2, shared)?;
            if let Some(docker) = s2 {
                tx.put(SNAPSHOTS, id, &SnapshotRecord { endpoint_id: id, docker: Some(docker) })?;
            }
            Ok(())
        })
        .await
        .map_err(name_conflict)?;
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
// Updates
// ---------------------------------------------------------------------------

/// `PUT /api/endpoints/{id}`: every field optional, names matched ignoring
/// case (the JSON decoder lower-cases top-level keys).
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub struct EndpointChanges {
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

pub async fn update(state: &Ops<'_>, id: Id, body: EndpointChanges) -> ApiResult<Endpoint> {
    // Checked before the lock: it looks at the file system.
    let url = match &body.url {
        Some(u) => Some(check_url(u).await?),
        None => None,
    };
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
    if let Some(url) = url {
        rec.url = url;
    }
    if let Some(u) = body.publicurl {
        rec.public_url = check_public_url(&u, "Invalid request payload")?;
    }
    if let Some(g) = body.groupid {
        if state.endpoints.group(g).is_none() {
            return Err(ApiError::invalid_payload(format!("environment group {g} does not exist")));
        }
        rec.group_id = g;
    }
    if let Some(tags) = &body.tagids {
        rec.tag_ids = check_tags(state.endpoints, tags, "Invalid request payload")?;
    }
    if let Some(s) = body.status {
        if s != ENDPOINT_UP && s != ENDPOINT_DOWN {
            return Err(ApiError::invalid_payload("Status must be 1 (up) or 2 (down)"));
        }
        rec.status = s;
    }
    apply_policies(
        body.useraccesspolicies,
        body.teamaccesspolicies,
        &mut rec.user_access_policies,
        &mut rec.team_access_policies,
    )?;

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
        upstream_for(&rec, state.config).map_err(|e| ApiError::bad_request("Invalid TLS configuration", e))?
    } else {
        cur.upstream.clone()
    };
    store_record(state, &rec).await?;
    state.endpoints.insert(EndpointEntry { record: rec.clone(), upstream });
    state.health().refresh_status_gauge();
    drop(_guard);
    if remove_dir {
        remove_tls_dir(&data, id).await;
    } else if !remove_kinds.is_empty() {
        let d2 = data.clone();
        let r = blocking(move || remove_kinds.into_iter().try_for_each(|k| tls_files::remove_file(&d2, id, k))).await;
        if let Err(e) = r {
            tracing::warn!(endpoint = id, error = %e, "removing unused TLS files failed");
        }
    }
    if body.tls.is_some() {
        tls_files::share(state.store, &data, id).await.map_err(store_err)?;
    }
    Ok(rec)
}

/// `PUT /api/endpoints/{id}/settings`: Portainer's lowerCamel flag names,
/// matched ignoring case.
#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct SecurityChanges {
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
    #[serde(rename = "allowsecurityoptionsforregularusers")]
    security_options: Option<bool>,
    #[serde(rename = "enablehostmanagementfeatures")]
    host_management: Option<bool>,
}

pub async fn update_settings(state: &Ops<'_>, id: Id, b: SecurityChanges) -> ApiResult<Endpoint> {
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
        (b.security_options, &mut s.allow_security_options_for_regular_users),
        (b.host_management, &mut s.enable_host_management_features),
    ];
    for (v, slot) in pairs {
        if let Some(v) = v {
            *slot = v;
        }
    }
    store_record(state, &rec).await?;
    // Nothing about the connection changed: the entry keeps its pool.
    state.endpoints.insert(EndpointEntry { record: rec.clone(), upstream: cur.upstream.clone() });
    Ok(rec)
}

/// Stores one uploaded TLS file (already checked to be PEM of its kind) for
/// endpoint `id`, and rebuilds the pool once the files fit together.
pub async fn replace_tls_file(state: &Ops<'_>, id: Id, kind: TlsFileKind, bytes: bytes::Bytes) -> ApiResult<()> {
    let _guard = state.endpoints.write_lock.lock().await;
    let cur = state.endpoints.get(id).ok_or_else(not_found)?;
    let data = state.config.data.clone();
    let d2 = data.clone();
    blocking(move || tls_files::write_file(&d2, id, kind, &bytes))
        .await
        .map_err(|e| ApiError::internal("Unable to persist TLS file on disk", e))?;
    tls_files::share(state.store, &data, id).await.map_err(store_err)?;
    if cur.record.tls.tls {
        // Files are replaced one upload at a time; until the set fits
        // together the endpoint keeps its current, working pool.
        match upstream_for(&cur.record, state.config) {
            Ok(upstream) => state.endpoints.insert(EndpointEntry { record: cur.record.clone(), upstream }),
            Err(e) => {
                tracing::info!(endpoint = id, reason = %e, "TLS file stored; keeping the current connection until the files match")
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Removal
// ---------------------------------------------------------------------------

pub async fn delete(state: &Ops<'_>, id: Id) -> ApiResult<()> {
    {
        let _guard = state.endpoints.write_lock.lock().await;
        if state.endpoints.get(id).is_none() {
            return Err(not_found());
        }
        state
            .write(move |tx| {
                tx.delete(ENDPOINTS, id)?;
                tx.delete(SNAPSHOTS, id)?;
                tx.delete(crate::store::ENDPOINT_TLS, id)?;
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
