//! Keeping this replica's memory in step with the shared store.
//!
//! With the PostgreSQL backend, other replicas change the data set too.
//! The request path still reads memory only; this task applies the store's
//! change feed on top of it: for every record another replica stored or
//! deleted, the record is read back from the database (its state now, not
//! what the notification said) and put into, or taken out of, the in-memory
//! tables. After every (re)connection of the feed, and after a read that
//! failed, every table is reloaded and reconciled, so a notification missed
//! while the connection was down costs a reload, never a stale replica.
//!
//! How stale a replica can be: while its feed is connected, as long as a
//! notification takes to arrive plus one read (milliseconds; measured by
//! `berth_store_feed_lag_seconds`). While the database cannot be reached,
//! no replica can write, so there is nothing to miss; a replica cut off from
//! the database alone keeps serving what it had until its feed reconnects
//! (every 0.5 s) and it reloads.

mod apply;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::state::AppState;
use crate::store::{table_by_name, Change, FeedEvent, ALL_TABLES};

/// Changes gathered before they are applied together.
const BATCH: usize = 4096;
/// Wait before retrying a reload that failed.
const RETRY: Duration = Duration::from_secs(1);

/// Starts applying the change feed, when the store has one.
pub fn spawn(state: &Arc<AppState>) {
    let Some(mut feed) = state.store.take_feed() else { return };
    let state = state.clone();
    tokio::spawn(async move {
        let mut stale = false;
        loop {
            let first = tokio::select! {
                _ = state.shutdown.cancelled() => return,
                ev = feed.recv() => ev,
                // A reload that failed is retried even if nothing arrives.
                () = tokio::time::sleep(RETRY), if stale => None,
            };
            let mut events: Vec<FeedEvent> = first.into_iter().collect();
            while events.len() < BATCH {
                match feed.try_recv() {
                    Ok(ev) => events.push(ev),
                    Err(_) => break,
                }
            }
            if events.iter().any(|e| matches!(e, FeedEvent::Resync)) {
                stale = true;
            }
            if stale {
                match reload(&state).await {
                    Ok(()) => stale = false,
                    Err(e) => {
                        tracing::warn!(error = %e, "reloading from the store failed; retrying");
                        continue;
                    }
                }
            }
            if let Err(e) = apply_changes(&state, events).await {
                tracing::warn!(error = %e, "applying changes from the store failed; reloading");
                stale = true;
            }
        }
    });
}

/// Applies other replicas' changes.
async fn apply_changes(state: &AppState, events: Vec<FeedEvent>) -> Result<(), crate::store::StoreError> {
    let mut records: BTreeMap<&'static str, BTreeSet<u64>> = BTreeMap::new();
    let mut meta = BTreeSet::new();
    let mut oldest_ms = None;
    for ev in events {
        let FeedEvent::Changes { origin, at_ms, changes } = ev else { continue };
        // Our own writes were applied by the code that made them.
        if origin == state.config.replica_name {
            continue;
        }
        oldest_ms = Some(oldest_ms.map_or(at_ms, |o: u64| o.min(at_ms)));
        for c in changes {
            match c {
                Change::Record { table, id } => {
                    if let Some(t) = table_by_name(&table) {
                        records.entry(crate::store::table_name(t)).or_default().insert(id);
                    }
                }
                Change::Meta { key } => {
                    meta.insert(key);
                }
                Change::Revoked { jti, exp } => state.identity.revoke(jti, exp),
            }
        }
    }
    // Tables in the order of `ALL_TABLES`: users before their keys and
    // memberships, endpoints before their snapshots.
    for t in ALL_TABLES {
        let name = crate::store::table_name(*t);
        let Some(ids) = records.remove(name) else { continue };
        let ids: Vec<u64> = ids.into_iter().collect();
        let found: BTreeMap<u64, Vec<u8>> = state.store.fetch(*t, ids.clone()).await?.into_iter().collect();
        for id in ids {
            apply::record(state, name, id, found.get(&id).map(Vec::as_slice)).await;
        }
    }
    for key in meta {
        apply::meta(state, &key).await?;
    }
    if let Some(at) = oldest_ms {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(at);
        state.store.stats().feed_lag.observe(now.saturating_sub(at) as f64 / 1000.0);
    }
    Ok(())
}

/// Reloads every table and reconciles memory with it.
async fn reload(state: &AppState) -> Result<(), crate::store::StoreError> {
    for t in ALL_TABLES {
        let name = crate::store::table_name(*t);
        if !apply::in_memory(name) {
            continue;
        }
        let rows = state.store.fetch_all(*t).await?;
        apply::reconcile(state, name, rows).await;
    }
    for (jti, exp) in {
        let s = state.store.clone();
        tokio::task::spawn_blocking(move || s.load_revoked())
            .await
            .map_err(|e| crate::store::StoreError::Db(e.to_string()))??
    } {
        if exp >= crate::auth::now_secs() {
            state.identity.revoke(jti, exp);
        }
    }
    apply::meta(state, crate::api::settings::SETTINGS_KEY).await?;
    Ok(())
}
