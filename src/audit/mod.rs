//! The audit trail (issue 15): who changed what, where, from where, and
//! whether it worked. A proxy between people and root on many hosts must
//! be able to say so afterwards; Portainer keeps this for its paid edition.
//!
//! What is recorded, and how:
//! - management changes (every state-changing `/api/*` call of an
//!   authenticated caller) and logins, failed logins and logouts: written
//!   to the store before the answer is sent ([`Trail::record`]);
//! - mutating Docker calls through the proxy and terminal sessions: handed
//!   to a bounded queue ([`Trail::enqueue`]) that one writer task drains in
//!   batches, so the proxy never waits on a disk; a full queue drops the
//!   event, counts it (`berth_audit_dropped_total`) and logs it.
//!
//! Never recorded: passwords, tokens, keys, registry credentials, query
//! strings, request or response bodies. An event holds route templates,
//! path parameters (ids and names), object ids, statuses, sizes.
//!
//! Events live in the store's `audit` table (ids grow with time), are pruned
//! by age and count from the settings ([`prune`]), and are also appended to
//! a JSON-lines file when `--audit-file` is set. [`query`] answers
//! `/api/useractivity/*`.

pub mod query;

use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::store::model::Id;
use crate::store::{Store, StoreError, AUDIT};

/// Events written in one store transaction by the queue's writer: one
/// commit (and fsync) per batch under load.
const BATCH: usize = 1024;
/// How long the writer lets queued events gather before a commit.
const GATHER: std::time::Duration = std::time::Duration::from_millis(20);
/// Records removed per pruning transaction.
const PRUNE_BATCH: usize = 10_000;

/// What an event is about: the `kind` of `berth_audit_events_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = AuditKind)]
pub enum Kind {
    /// A management API change.
    Api,
    /// A mutating Docker call through the proxy.
    Docker,
    /// A login, failed login or logout (the auth logs).
    Auth,
    /// A terminal session's start or end.
    Terminal,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Api => "api",
            Kind::Docker => "docker",
            Kind::Auth => "auth",
            Kind::Terminal => "terminal",
        }
    }
}

/// Portainer's auth activity types.
pub const AUTH_SUCCESS: u8 = 1;
pub const AUTH_FAILURE: u8 = 2;
pub const AUTH_LOGOUT: u8 = 3;

/// One audit event, as stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Event {
    #[serde(default)]
    pub id: u64,
    /// Unix seconds.
    pub timestamp: u64,
    pub kind: Option<Kind>,
    /// `METHOD /route/template`, or `login`, `logout`, `exec start`, ...
    pub action: String,
    pub user_id: Option<Id>,
    /// The caller's name, or the name a failed login tried.
    pub username: String,
    pub api_key_id: Option<Id>,
    pub bundle_id: Option<Id>,
    /// The client address (after trusted proxies).
    pub origin: String,
    pub endpoint_id: Option<Id>,
    /// The Docker object (container, exec instance, ...) the call named.
    pub object: Option<String>,
    /// The answer's status (101 for an upgrade).
    pub status: u16,
    /// Auth logs only: [`AUTH_SUCCESS`], [`AUTH_FAILURE`], [`AUTH_LOGOUT`].
    pub auth_type: Option<u8>,
    /// Path parameters, byte counts: never a body, never a secret.
    #[serde(default)]
    pub payload: serde_json::Map<String, serde_json::Value>,
}

impl Event {
    pub fn new(kind: Kind, action: impl Into<String>, origin: IpAddr) -> Event {
        Event {
            timestamp: crate::auth::now_secs(),
            kind: Some(kind),
            action: action.into(),
            origin: origin.to_string(),
            ..Event::default()
        }
    }

    /// A terminal session's `phase` ("start" or "end") of `terminal`
    /// ("exec" or "attach"); on end, the bytes each way (to Docker, to the
    /// client).
    pub fn terminal(
        terminal: &str,
        phase: &str,
        at: (Id, &str),
        user: (Id, &str),
        origin: IpAddr,
        bytes: Option<(u64, u64)>,
    ) -> Event {
        let mut e = Event::new(Kind::Terminal, format!("{terminal} {phase}"), origin);
        e.endpoint_id = Some(at.0);
        e.object = Some(at.1.to_string());
        e.user_id = Some(user.0);
        e.username = user.1.to_string();
        e.status = 101;
        if let Some((to_docker, to_client)) = bytes {
            e.payload.insert("bytesToDocker".into(), to_docker.into());
            e.payload.insert("bytesToClient".into(), to_client.into());
        }
        e
    }

    /// The caller, from a principal.
    pub fn by(mut self, p: &crate::auth::Principal) -> Event {
        self.user_id = Some(p.id());
        self.username = p.user.username.clone();
        self.api_key_id = p.api_key_id;
        self.bundle_id = p.bundle.as_ref().map(|b| b.id);
        self
    }

    /// Whether the call succeeded (2xx, or the 101 of an upgrade).
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status) || self.status == 101
    }
}

/// The trail: the queue of proxied events, the file sink, the counters.
pub struct Trail {
    queue: mpsc::Sender<Event>,
    receiver: Mutex<Option<mpsc::Receiver<Event>>>,
    file: Option<Arc<Mutex<std::fs::File>>>,
    events: prometheus::IntCounterVec,
    dropped: prometheus::IntCounter,
    failures: prometheus::IntCounter,
    /// Unix seconds of the last "queue full" warning (one a minute at most).
    last_drop_warning: AtomicU64,
}

impl Trail {
    /// Opens the JSON-lines file (appending, 0600) when one is configured.
    pub fn new(config: &crate::config::Config, metrics: &crate::metrics::Metrics) -> anyhow::Result<Trail> {
        let (queue, receiver) = mpsc::channel(config.audit_queue.max(1));
        let file = match &config.audit_file {
            None => None,
            Some(path) => {
                use std::os::unix::fs::OpenOptionsExt;
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| anyhow::anyhow!("opening the audit file {}: {e}", path.display()))?;
                Some(Arc::new(Mutex::new(f)))
            }
        };
        Ok(Trail {
            queue,
            receiver: Mutex::new(Some(receiver)),
            file,
            events: metrics.audit_events.clone(),
            dropped: metrics.audit_dropped.clone(),
            failures: metrics.audit_failures.clone(),
            last_drop_warning: AtomicU64::new(0),
        })
    }

    /// Writes one event durably (store, then the file) before returning:
    /// management changes and logins call this before they answer. A
    /// failure is logged and counted; the caller's answer stands.
    pub async fn record(&self, store: &Store, e: Event) {
        self.write(store, vec![e]).await;
    }

    /// Hands one event to the writer task without waiting: the proxy's
    /// and the terminals' way. A full queue drops it, counted and logged.
    pub fn enqueue(&self, e: Event) {
        let Err(mpsc::error::TrySendError::Full(e) | mpsc::error::TrySendError::Closed(e)) = self.queue.try_send(e)
        else {
            return;
        };
        self.dropped.inc();
        let now = crate::auth::now_secs();
        let last = self.last_drop_warning.load(Ordering::Relaxed);
        let due = now >= last + 60 || last == 0;
        if due && self.last_drop_warning.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            tracing::warn!(
                action = %e.action,
                endpoint = e.endpoint_id.unwrap_or(0),
                dropped_total = self.dropped.get(),
                "audit queue full: events of proxied calls are being dropped (raise --audit-queue)"
            );
        }
    }

    /// Drains the queue in batches until shutdown, then writes what is
    /// still queued. Runs once; a second call returns at once.
    pub async fn run_writer(&self, store: Store, shutdown: tokio_util::sync::CancellationToken) {
        let Some(mut rx) = self.receiver.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
        loop {
            let mut batch = Vec::with_capacity(BATCH);
            tokio::select! {
                n = rx.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        return;
                    }
                    // Let a burst gather: one commit (one fsync) for many
                    // events instead of one for each.
                    if batch.len() < BATCH {
                        tokio::time::sleep(GATHER).await;
                        while batch.len() < BATCH {
                            let Ok(e) = rx.try_recv() else { break };
                            batch.push(e);
                        }
                    }
                    self.write(&store, batch).await;
                }
                _ = shutdown.cancelled() => {
                    rx.close();
                    let mut rest = Vec::new();
                    while rx.recv_many(&mut rest, BATCH).await > 0 {
                        self.write(&store, std::mem::take(&mut rest)).await;
                    }
                    return;
                }
            }
        }
    }

    async fn write(&self, store: &Store, events: Vec<Event>) {
        let file = self.file.clone();
        // Counted per kind once per batch, not per event.
        let mut per_kind = [0u64; 4];
        for k in events.iter().filter_map(|e| e.kind) {
            per_kind[k as usize] += 1;
        }
        let count = events.len();
        let r = store
            .write(move |tx| {
                let mut written = Vec::with_capacity(events.len());
                let first = tx.next_ids(AUDIT, events.len() as u64)?;
                for (i, mut e) in events.into_iter().enumerate() {
                    e.id = first + i as u64;
                    tx.put(AUDIT, e.id, &e)?;
                    written.push(e);
                }
                Ok(written)
            })
            .await;
        let written = match r {
            Ok(w) => w,
            Err(e) => {
                self.failures.inc_by(count as u64);
                tracing::error!(error = %e, events = count, "writing audit events to the store failed");
                return;
            }
        };
        for (k, n) in [Kind::Api, Kind::Docker, Kind::Auth, Kind::Terminal].into_iter().zip(per_kind) {
            if n > 0 {
                self.events.with_label_values(&[k.name()]).inc_by(n);
            }
        }
        let Some(file) = file else { return };
        // Blocking file I/O: off the async workers.
        let failures = self.failures.clone();
        let appended = tokio::task::spawn_blocking(move || {
            let mut lines = Vec::new();
            for e in &written {
                if serde_json::to_writer(&mut lines, e).is_ok() {
                    lines.push(b'\n');
                }
            }
            let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
            f.write_all(&lines).and_then(|()| f.flush())
        })
        .await;
        if !matches!(appended, Ok(Ok(()))) {
            failures.inc();
            tracing::error!(result = ?appended, "appending to the audit file failed");
        }
    }
}

/// Removes events older than `days` and the oldest beyond `max_entries`,
/// a bounded number per transaction; returns how many went.
pub async fn prune(store: &Store, days: u32, max_entries: u64) -> Result<usize, StoreError> {
    let cutoff = crate::auth::now_secs().saturating_sub(u64::from(days) * 86_400);
    let mut total = 0;
    loop {
        let n = store
            .write(move |tx| {
                tx.remove_oldest::<Event>(AUDIT, PRUNE_BATCH, |e, left| left > max_entries || e.timestamp < cutoff)
            })
            .await?;
        total += n;
        if n < PRUNE_BATCH {
            return Ok(total);
        }
    }
}

/// An `/api/…` template's parameters, read back from the path: what a
/// management event's payload holds (ids and names, never a body).
pub fn path_params(template: &str, path: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    for (t, p) in template.split('/').zip(path.split('/')) {
        if let Some(name) = t.strip_prefix('{').and_then(|n| n.strip_suffix('}')) {
            let raw = crate::access::path::unescape(p, false).unwrap_or_else(|| p.as_bytes().to_vec());
            let value: String = String::from_utf8_lossy(&raw).chars().take(256).collect();
            out.insert(name.to_string(), value.into());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_parameters_come_from_the_template() {
        let p = path_params("/api/users/{id}/tokens/{keyId}", "/api/users/3/tokens/9");
        assert_eq!(serde_json::Value::Object(p), serde_json::json!({"id": "3", "keyId": "9"}));
        assert!(path_params("/api/users", "/api/users").is_empty());
    }

    #[tokio::test]
    async fn events_are_stored_in_order_and_pruned_by_count_and_age() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let config = crate::config::Config { audit_queue: 16, ..crate::config::Config::default() };
        let metrics = crate::metrics::Metrics::new();
        let trail = Trail::new(&config, &metrics).unwrap();
        let origin: IpAddr = "127.0.0.1".parse().unwrap();
        for i in 0..5 {
            let mut e = Event::new(Kind::Api, format!("POST /api/x{i}"), origin);
            if i == 0 {
                e.timestamp = 1; // long ago
            }
            trail.record(&store, e).await;
        }
        let all: Vec<Event> = store.load_all(AUDIT).unwrap();
        assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
        assert_eq!(prune(&store, 90, 100).await.unwrap(), 1, "the old one goes");
        assert_eq!(prune(&store, 90, 2).await.unwrap(), 2, "then the oldest beyond the count");
        let left: Vec<Event> = store.load_all(AUDIT).unwrap();
        assert_eq!(left.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), vec!["POST /api/x3", "POST /api/x4"]);
        assert_eq!(metrics.audit_events.with_label_values(&["api"]).get(), 5);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::Config { audit_queue: 2, ..crate::config::Config::default() };
        let metrics = crate::metrics::Metrics::new();
        let trail = Trail::new(&config, &metrics).unwrap();
        let origin: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..5 {
            trail.enqueue(Event::new(Kind::Docker, "POST /containers/{id}/start", origin));
        }
        assert_eq!(metrics.audit_dropped.get(), 3);
        let store = Store::open(dir.path()).unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        shutdown.cancel();
        trail.run_writer(store.clone(), shutdown).await;
        assert_eq!(store.load_all::<Event>(AUDIT).unwrap().len(), 2, "what was queued is written at shutdown");
    }
}
