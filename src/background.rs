//! The periodic tasks `run` starts beside the listeners: the endpoint
//! health rounds (on one replica at a time), and housekeeping (pruning expired revocations and idle
//! rate-limit buckets, recording API keys' last use, pruning the audit
//! trail) and the audit trail's writer. Each ends when
//! `state.shutdown` is cancelled.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::now_secs;
use crate::state::AppState;

pub fn spawn_all(state: &Arc<AppState>) {
    spawn_health_checks(state);
    spawn_housekeeping(state);
    let s = state.clone();
    tokio::spawn(async move { s.audit.run_writer(s.store.clone(), s.shutdown.clone()).await });
}

/// Checks every endpoint every `health_interval`, the first round at once.
fn spawn_health_checks(state: &Arc<AppState>) -> tokio::task::JoinHandle<()> {
    let state = state.clone();
    tokio::spawn(async move {
        state.health().refresh_status_gauge();
        // A zero interval would spin; nothing useful is checked that often.
        let interval = state.config.health_interval.max(Duration::from_millis(100));
        loop {
            let started = tokio::time::Instant::now();
            // On a shared store, one replica at a time checks (the lease
            // passes on when it dies); the others learn the statuses it
            // stores through the change feed.
            if state.store.health_lease().await {
                state.health().round().await;
            }
            tokio::select! {
                _ = state.shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(started + interval) => {}
            }
        }
    })
}

fn spawn_housekeeping(state: &Arc<AppState>) {
    let s = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = s.shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let now = now_secs();
            s.identity.prune_revoked(now);
            if let Err(e) = s.store.write(move |tx| tx.prune_revoked(now)).await {
                tracing::warn!(error = %e, "pruning revoked tokens failed");
            }
            // API keys' lastUsed: written here, off the request path.
            let used = s.identity.api_keys_to_flush();
            if !used.is_empty() {
                let batch = used.clone();
                let stored = s
                    .store
                    .write(move |tx| {
                        for k in &batch {
                            if tx.get::<crate::store::model::ApiKey>(crate::store::API_KEYS, k.id)?.is_some() {
                                tx.put(crate::store::API_KEYS, k.id, k)?;
                            }
                        }
                        Ok(())
                    })
                    .await;
                match stored {
                    Ok(()) => used.into_iter().for_each(|k| s.identity.refresh_api_key(k)),
                    Err(e) => tracing::warn!(error = %e, "recording API key use failed"),
                }
            }
            let st = s.settings();
            s.limiter.prune(st.login_rate_burst, st.login_rate_per_second);
            if let Err(e) = crate::audit::prune(&s.store, st.audit_log_retention_days, st.audit_log_max_entries).await {
                tracing::warn!(error = %e, "pruning the audit trail failed");
            }
        }
    });
}
