//! Putting one stored record into memory, or taking it out, table by table:
//! the same in-memory changes the API's own writes make after they commit.

use std::collections::HashSet;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::endpoints::load::{unavailable_upstream, upstream_for};
use crate::endpoints::map::EndpointEntry;
use crate::state::AppState;
use crate::store::model::{
    ApiKey, Bundle, Endpoint, EndpointGroup, Id, Registry, ResourceControl, SnapshotRecord, Stack, Tag, Team,
    TeamMembership, User, ENDPOINT_DOWN,
};

/// Whether a table has an in-memory copy to keep in step.
pub fn in_memory(table: &str) -> bool {
    !matches!(table, "audit" | "endpoint_tls" | "stack_files")
}

fn decode<T: DeserializeOwned>(table: &str, id: Id, bytes: &[u8]) -> Option<T> {
    match serde_json::from_slice(bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(table, id, error = %e, "a stored record does not decode; memory left as it was");
            None
        }
    }
}

/// Puts record `id` of `table` as stored now (`None`: deleted).
pub async fn record(state: &AppState, table: &str, id: Id, bytes: Option<&[u8]>) {
    macro_rules! put_or_remove {
        ($ty:ty, $put:expr, $remove:expr) => {
            match bytes {
                Some(b) => {
                    if let Some(v) = decode::<$ty>(table, id, b) {
                        #[allow(clippy::redundant_closure_call)]
                        ($put)(v);
                    }
                }
                None => {
                    #[allow(clippy::redundant_closure_call)]
                    ($remove)(id);
                }
            }
        };
    }
    let (id_, en) = (&state.identity, &state.endpoints);
    match table {
        "users" => put_or_remove!(User, |u| id_.put_user(u), |id| id_.remove_user(id)),
        "api_key" => put_or_remove!(ApiKey, |k| id_.put_api_key(k), |id| id_.remove_api_key(id)),
        "teams" => put_or_remove!(Team, |t| id_.put_team(t), |id| id_.remove_team(id)),
        "team_membership" => {
            put_or_remove!(TeamMembership, |m| id_.put_membership(m), |id| id_.remove_membership(id))
        }
        "endpoints" => match bytes.map(|b| decode::<Endpoint>(table, id, b)) {
            Some(Some(e)) => put_endpoint(state, e, false).await,
            Some(None) => {}
            None => {
                en.remove(id);
                en.remove_snapshot(id);
            }
        },
        // New TLS files: the endpoint's pool is rebuilt with them.
        "endpoint_tls" => {
            if let Some(e) = en.get(id) {
                put_endpoint(state, e.record.clone(), true).await;
            }
        }
        "endpoint_groups" => put_or_remove!(EndpointGroup, |g| en.put_group(g), |id| en.remove_group(id)),
        "tags" => put_or_remove!(Tag, |t| en.put_tag(t), |id| en.remove_tag(id)),
        "snapshots" => put_or_remove!(
            SnapshotRecord,
            |s: SnapshotRecord| match (s.docker, en.get(s.endpoint_id).is_some()) {
                (Some(d), true) => en.put_snapshot(s.endpoint_id, d),
                _ => en.remove_snapshot(s.endpoint_id),
            },
            |id| en.remove_snapshot(id)
        ),
        "registries" => {
            put_or_remove!(Registry, |r: Registry| state.registries.put(r.id, Arc::new(r)), |id| {
                state.registries.remove(&id);
            })
        }
        "stacks" => match bytes.map(|b| decode::<Stack>(table, id, b)) {
            Some(Some(s)) => put_stack(state, s).await,
            Some(None) => {}
            None => {
                state.stacks.remove(id);
                let dir = state.stacks.project_dir(id);
                let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
            }
        },
        "stack_files" if state.stacks.get(id).is_some() => {
            if let Err(e) = crate::stacks::shared::materialize(&state.store, state.stacks.project_dir(id), id).await {
                tracing::warn!(stack = id, error = %e, "a stack folder from another replica could not be written here");
            }
        }
        "resource_controls" => {
            let rc = bytes.and_then(|b| decode::<ResourceControl>(table, id, b));
            if bytes.is_none() || rc.is_some() {
                state.controls.apply_stored(id, rc).await;
            }
        }
        "bundles" => put_or_remove!(Bundle, |b| state.bundles.put(b), |id| {
            state.bundles.remove(id);
        }),
        _ => {}
    }
    if table == "endpoints" {
        state.health().refresh_status_gauge();
    }
}

/// Swaps in an endpoint another replica stored. Its TLS files come from the
/// store into this replica's own `<data>/tls/<id>/`. Its pool is kept when
/// only the record's other fields changed (a status from the health
/// checks, a name, access policies): open connections survive.
async fn put_endpoint(state: &AppState, mut record: Endpoint, files_changed: bool) {
    if record.tls.tls {
        if let Err(e) = crate::endpoints::tls_files::materialize(&state.store, &state.config.data, &mut record).await {
            tracing::warn!(endpoint = record.id, error = %e, "TLS files of an endpoint from another replica are not available here");
        }
    }
    let same_target = state
        .endpoints
        .get(record.id)
        .filter(|old| !files_changed && old.record.url == record.url && old.record.tls == record.tls)
        .map(|old| old.upstream.clone());
    let upstream = match same_target {
        Some(u) => u,
        None => match upstream_for(&record, &state.config) {
            Ok(u) => u,
            Err(reason) => {
                tracing::warn!(endpoint = record.id, %reason, "endpoint from another replica is unusable here; marked down");
                record.status = ENDPOINT_DOWN;
                unavailable_upstream(&state.config, &record)
            }
        },
    };
    state.endpoints.insert(EndpointEntry { record, upstream });
}

/// Puts a stack another replica stored, with its folder in this replica's
/// own data directory (written from the store if not there yet).
async fn put_stack(state: &AppState, mut s: Stack) {
    let dir = state.stacks.project_dir(s.id);
    s.project_path = dir.display().to_string();
    let id = s.id;
    state.stacks.put(s);
    if !dir.exists() {
        if let Err(e) = crate::stacks::shared::materialize(&state.store, dir, id).await {
            tracing::warn!(stack = id, error = %e, "a stack folder from another replica could not be written here");
        }
    }
}

/// The ids memory holds for `table`.
fn ids_in_memory(state: &AppState, table: &str) -> Vec<Id> {
    let en = &state.endpoints;
    match table {
        "users" => state.identity.users().iter().map(|u| u.id).collect(),
        "api_key" => {
            state.identity.users().iter().flat_map(|u| state.identity.api_keys_of(u.id)).map(|k| k.id).collect()
        }
        "teams" => state.identity.teams().iter().map(|t| t.id).collect(),
        "team_membership" => state.identity.memberships().iter().map(|m| m.id).collect(),
        "endpoints" => en.all().iter().map(|e| e.record.id).collect(),
        "endpoint_groups" => en.groups().iter().map(|g| g.id).collect(),
        "tags" => en.tags().iter().map(|t| t.id).collect(),
        "registries" => state.registries.all().iter().map(|r| r.id).collect(),
        "stacks" => state.stacks.all().iter().map(|s| s.id).collect(),
        "resource_controls" => state.controls.all().iter().map(|c| c.id).collect(),
        "bundles" => state.bundles.all().iter().map(|b| b.id).collect(),
        // Snapshots go with their endpoints.
        _ => Vec::new(),
    }
}

/// Makes memory hold exactly `rows` for `table`.
pub async fn reconcile(state: &AppState, table: &str, rows: Vec<(Id, Vec<u8>)>) {
    let stored: HashSet<Id> = rows.iter().map(|(id, _)| *id).collect();
    for id in ids_in_memory(state, table) {
        if !stored.contains(&id) {
            record(state, table, id, None).await;
        }
    }
    for (id, bytes) in rows {
        record(state, table, id, Some(&bytes)).await;
    }
}

/// Re-reads a singleton another replica changed.
pub async fn meta(state: &AppState, key: &str) -> Result<(), crate::store::StoreError> {
    if key == crate::api::settings::SETTINGS_KEY {
        if let Some(s) = state.store.fetch_meta::<crate::store::model::Settings>(key).await? {
            state.set_settings(s);
        }
    }
    Ok(())
}
