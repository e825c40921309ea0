//! Periodic housekeeping: pruning expired revocations and idle rate-limit
//! buckets. (The endpoint health checker lives in `endpoints`.)

use std::sync::Arc;
use std::time::Duration;

use crate::auth::now_secs;
use crate::state::AppState;

pub fn spawn_all(state: &Arc<AppState>) {
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
            let st = s.settings();
            s.limiter.prune(st.login_rate_burst, st.login_rate_per_second);
        }
    });
}
