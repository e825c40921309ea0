//! The durable store, behind one interface with two backends: the
//! embedded redb file in the data directory (the default: nothing to set
//! up) and PostgreSQL (`--store postgres://...`), on which several Berth
//! replicas share one data set.
//!
//! Each entity lives in its own table keyed by a monotonic id (never
//! reused: the next id is kept in the `meta` table and bumped in the same
//! transaction as the insert). Values are JSON of the `model` structs.
//! Every write commits durably (redb's immediate durability, PostgreSQL's
//! synchronous commit) before the call returns and before any response goes
//! out. All calls run off the async workers.
//!
//! On PostgreSQL, each write transaction also announces what it changed
//! ([`Change`]) so the other replicas can apply it to their memory
//! (`crate::replica`).

pub mod copy;
mod embedded;
pub mod model;
pub mod postgres;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redb::TableDefinition;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use embedded::{Embedded, EmbeddedTx};
use postgres::{Pg, PgTx};
pub use postgres::{PgOptions, SharedLock};

/// A table of JSON records keyed by id.
pub type Table = TableDefinition<'static, u64, &'static [u8]>;

macro_rules! tables {
    ($($(#[$m:meta])* $c:ident = $n:literal;)*) => {
        $($(#[$m])* pub const $c: Table = TableDefinition::new($n);)*
        /// Every table, in the order `berth store copy` moves them.
        pub const ALL_TABLES: &[Table] = &[$($c),*];
        /// Their names, as the PostgreSQL backend and the change feed know them.
        pub const TABLE_NAMES: &[&str] = &[$($n),*];
    };
}

tables! {
    USERS = "users";
    TEAMS = "teams";
    TEAM_MEMBERSHIPS = "team_membership";
    API_KEYS = "api_key";
    ENDPOINTS = "endpoints";
    ENDPOINT_GROUPS = "endpoint_groups";
    TAGS = "tags";
    REGISTRIES = "registries";
    STACKS = "stacks";
    SNAPSHOTS = "snapshots";
    /// Resource controls of Docker objects ([`crate::controls`]).
    RESOURCE_CONTROLS = "resource_controls";
    /// Client bundles: certificates of Berth's CA and whose they are ([`crate::bundles`]).
    BUNDLES = "bundles";
    /// The audit trail ([`crate::audit`]): ids grow with time.
    AUDIT = "audit";
    /// Endpoints' TLS files, for the replicas that did not receive the
    /// upload (shared store only; the embedded store's one process keeps
    /// them in `<data>/tls/<id>/` alone).
    ENDPOINT_TLS = "endpoint_tls";
    /// Stack project folders, for the replicas that did not deploy the
    /// stack (shared store only; see [`crate::stacks::shared`]).
    STACK_FILES = "stack_files";
}

/// A table's name with a `'static` lifetime (redb lends it only as long
/// as the definition).
pub fn table_name(t: Table) -> &'static str {
    let n = redb::TableHandle::name(&t);
    TABLE_NAMES.iter().copied().find(|k| *k == n).unwrap_or("unknown")
}

/// The table of a name from the change feed or a copy.
pub fn table_by_name(name: &str) -> Option<Table> {
    TABLE_NAMES.iter().position(|k| *k == name).map(|i| ALL_TABLES[i])
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("another Berth process is already using the data directory {0} (its store is locked); stop it or choose another --data")]
    Locked(PathBuf),
    #[error("the store {0} is corrupt or unreadable ({1}); Berth will not re-initialise it. Restore it from a backup or move it away")]
    Corrupt(PathBuf, String),
    #[error("store error: {0}")]
    Db(String),
    /// The database cannot be reached: writes answer 503 until it is back.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("record encoding error: {0}")]
    Encoding(String),
    #[error("{0}")]
    Conflict(String),
    #[error("not found")]
    NotFound,
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Encoding(e.to_string())
    }
}

/// What a write changed, as the other replicas learn it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k")]
pub enum Change {
    /// A record was stored or deleted: its current state is read back.
    #[serde(rename = "r")]
    Record {
        #[serde(rename = "t")]
        table: String,
        id: u64,
    },
    /// A singleton (settings) changed.
    #[serde(rename = "m")]
    Meta { key: String },
    /// A session token was revoked until `exp`.
    #[serde(rename = "x")]
    Revoked { jti: String, exp: u64 },
}

/// What the change feed delivers.
#[derive(Debug)]
pub enum FeedEvent {
    /// (Re)connected: reload everything, something may have been missed.
    Resync,
    /// Changes committed by replica `origin` at `at_ms` (unix milliseconds).
    Changes { origin: String, at_ms: u64, changes: Vec<Change> },
}

/// The store's metrics, registered by [`crate::metrics::Metrics`].
pub struct Stats {
    pub op_seconds: prometheus::HistogramVec,
    pub reconnects: prometheus::IntCounter,
    pub feed_up: prometheus::IntGauge,
    pub feed_lag: prometheus::Histogram,
}

impl Stats {
    pub(crate) fn new() -> Stats {
        let buckets = vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
        Stats {
            op_seconds: prometheus::HistogramVec::new(
                prometheus::HistogramOpts::new("berth_store_seconds", "Latency of store operations, by kind")
                    .buckets(buckets.clone()),
                &["op"],
            )
            .expect("valid metric"),
            reconnects: prometheus::IntCounter::new(
                "berth_store_feed_reconnects_total",
                "Times the change feed lost its database connection and reconnected",
            )
            .expect("valid metric"),
            feed_up: prometheus::IntGauge::new(
                "berth_store_feed_up",
                "1 while the change feed listens (PostgreSQL backend), 0 otherwise",
            )
            .expect("valid metric"),
            feed_lag: prometheus::Histogram::with_opts(
                prometheus::HistogramOpts::new(
                    "berth_store_feed_lag_seconds",
                    "From another replica's commit to this replica's memory applying it",
                )
                .buckets(buckets),
            )
            .expect("valid metric"),
        }
    }
}

enum Backend {
    Embedded(Embedded),
    Postgres(Arc<Pg>),
}

struct Inner {
    backend: Backend,
    stats: Arc<Stats>,
    feed: Mutex<Option<mpsc::Receiver<FeedEvent>>>,
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

fn seq_key(table: Table) -> String {
    format!("seq:{}", table_name(table))
}

enum Ops<'a> {
    Embedded(EmbeddedTx<'a>),
    Postgres(&'a PgTx<'a>),
}

macro_rules! on {
    ($self:expr, $m:ident($($a:expr),*)) => {
        match &$self.ops {
            Ops::Embedded(t) => t.$m($($a),*),
            Ops::Postgres(t) => t.$m($($a),*),
        }
    };
}

/// A write transaction handed to closures passed to [`Store::write`].
pub struct Tx<'a> {
    ops: Ops<'a>,
    /// What this transaction changed, announced on commit (PostgreSQL only).
    changes: Option<RefCell<Vec<Change>>>,
}

impl Tx<'_> {
    fn changed(&self, table: Table, id: u64) {
        if let Some(c) = &self.changes {
            if table_name(table) != table_name(AUDIT) {
                c.borrow_mut().push(Change::Record { table: table_name(table).to_string(), id });
            }
        }
    }

    /// Next id of a table; bumped in this transaction, so an aborted write
    /// leaves a gap rather than a reused id.
    pub fn next_id(&self, table: Table) -> Result<u64, StoreError> {
        let next = self.last_id(table)? + 1;
        self.set_last_id(table, next)?;
        Ok(next)
    }

    /// Stores the record `make` builds with the table's next id, and
    /// returns it.
    pub fn insert<T: Serialize>(&self, table: Table, make: impl FnOnce(u64) -> T) -> Result<T, StoreError> {
        let id = self.next_id(table)?;
        let record = make(id);
        self.put(table, id, &record)?;
        Ok(record)
    }

    /// `n` consecutive ids of a table at once (the first of them): one
    /// sequence update for a batch of records.
    pub fn next_ids(&self, table: Table, n: u64) -> Result<u64, StoreError> {
        let first = self.last_id(table)? + 1;
        self.set_last_id(table, first + n.saturating_sub(1))?;
        Ok(first)
    }

    /// The last id handed out for `table` (0 before the first).
    fn last_id(&self, table: Table) -> Result<u64, StoreError> {
        match on!(self, meta_get(seq_key(table).as_str()))? {
            Some(v) => Ok(u64::from_le_bytes(
                v.as_slice().try_into().map_err(|_| StoreError::Encoding("bad sequence".into()))?,
            )),
            None => Ok(0),
        }
    }

    fn set_last_id(&self, table: Table, id: u64) -> Result<(), StoreError> {
        on!(self, meta_put(seq_key(table).as_str(), id.to_le_bytes().as_slice()))
    }

    /// Makes the next id of `table` greater than `floor` (ids taken by
    /// records that live elsewhere but share the table's id space).
    pub fn raise_next_id(&self, table: Table, floor: u64) -> Result<(), StoreError> {
        if self.last_id(table)? < floor {
            self.set_last_id(table, floor)?;
        }
        Ok(())
    }

    pub fn put<T: Serialize>(&self, table: Table, id: u64, value: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value)?;
        on!(self, put(table, id, &bytes))?;
        self.changed(table, id);
        Ok(())
    }

    pub fn get<T: DeserializeOwned>(&self, table: Table, id: u64) -> Result<Option<T>, StoreError> {
        match on!(self, get(table, id))? {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        }
    }

    /// Returns whether a record was removed.
    pub fn delete(&self, table: Table, id: u64) -> Result<bool, StoreError> {
        let existed = on!(self, delete(table, id))?;
        if existed {
            self.changed(table, id);
        }
        Ok(existed)
    }

    pub fn all<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<T>, StoreError> {
        let raw = on!(self, all(table))?;
        raw.iter().map(|v| Ok(serde_json::from_slice(v)?)).collect()
    }

    /// Removes the oldest records of `table` (ascending id) while
    /// `remove(record, records left)` says so, at most `max` of them;
    /// returns how many went. Records that do not decode stop the walk.
    pub fn remove_oldest<T: DeserializeOwned>(
        &self,
        table: Table,
        max: usize,
        mut remove: impl FnMut(&T, u64) -> bool,
    ) -> Result<usize, StoreError> {
        let mut left = on!(self, len(table))?;
        let mut doomed = Vec::new();
        for (id, v) in on!(self, oldest(table, max))? {
            let Ok(record) = serde_json::from_slice::<T>(&v) else { break };
            if !remove(&record, left) {
                break;
            }
            doomed.push(id);
            left -= 1;
        }
        on!(self, delete_many(table, &doomed))?;
        for id in &doomed {
            self.changed(table, *id);
        }
        Ok(doomed.len())
    }

    pub fn put_meta<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value)?;
        on!(self, meta_put(key, &bytes))?;
        if let Some(c) = &self.changes {
            c.borrow_mut().push(Change::Meta { key: key.to_string() });
        }
        Ok(())
    }

    pub fn revoke(&self, jti: &str, exp: u64) -> Result<(), StoreError> {
        on!(self, revoke(jti, exp))?;
        if let Some(c) = &self.changes {
            c.borrow_mut().push(Change::Revoked { jti: jti.to_string(), exp });
        }
        Ok(())
    }

    pub fn prune_revoked(&self, now: u64) -> Result<usize, StoreError> {
        on!(self, prune_revoked(now))
    }
}

impl Store {
    /// [`Store::open`], waiting up to `wait` while another process holds
    /// the store's lock: a supervisor that restarts Berth at once after a
    /// crash or `kill -9` may find the old process still releasing it.
    pub async fn open_waiting(data_dir: &Path, wait: Duration) -> Result<Store, StoreError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut logged = false;
        loop {
            let dir = data_dir.to_path_buf();
            let r = tokio::task::spawn_blocking(move || Store::open(&dir))
                .await
                .map_err(|e| StoreError::Db(format!("store task failed: {e}")))?;
            match r {
                Err(StoreError::Locked(_)) if tokio::time::Instant::now() < deadline => {
                    if !logged {
                        tracing::warn!(
                            data = %data_dir.display(),
                            wait = %humantime::format_duration(wait),
                            "the store is locked by another process; waiting for it to be released"
                        );
                        logged = true;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                r => return r,
            }
        }
    }

    /// Opens (or creates) the embedded store `<data>/berth.redb`, mode
    /// 0600 in a 0700 directory. A store held by another process is refused
    /// at once; a corrupt file is refused, never replaced.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let e = Embedded::open(data_dir)?;
        Ok(Store::with(Backend::Embedded(e), None))
    }

    /// Connects to PostgreSQL and migrates its schema (once, whichever
    /// replica gets there first).
    pub fn connect(o: &PgOptions) -> Result<Store, StoreError> {
        let (pg, feed) = Pg::open(o)?;
        Ok(Store::with(Backend::Postgres(Arc::new(pg)), Some(feed)))
    }

    fn with(backend: Backend, feed: Option<mpsc::Receiver<FeedEvent>>) -> Store {
        let stats = match &backend {
            Backend::Postgres(pg) => pg.stats.clone(),
            Backend::Embedded(_) => Arc::new(Stats::new()),
        };
        Store { inner: Arc::new(Inner { backend, stats, feed: Mutex::new(feed) }) }
    }

    /// `"embedded"` or `"postgres"`, for `/api/status`.
    pub fn backend_name(&self) -> &'static str {
        match self.inner.backend {
            Backend::Embedded(_) => "embedded",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Whether other replicas may share this store.
    pub fn is_shared(&self) -> bool {
        matches!(self.inner.backend, Backend::Postgres(_))
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// The change feed (PostgreSQL), once: the replica's applier owns it.
    pub fn take_feed(&self) -> Option<mpsc::Receiver<FeedEvent>> {
        self.inner.feed.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn observe(&self, op: &str, started: Instant) {
        self.inner.stats.op_seconds.with_label_values(&[op]).observe(started.elapsed().as_secs_f64());
    }

    /// Runs `f` in one write transaction on the blocking pool and commits
    /// durably; an `Err` from `f` aborts everything it wrote.
    pub async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<R, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        let started = Instant::now();
        let r = tokio::task::spawn_blocking(move || match &inner.backend {
            Backend::Embedded(e) => {
                let txn = e.db.begin_write()?;
                let r = f(&Tx { ops: Ops::Embedded(EmbeddedTx { txn: &txn }), changes: None });
                match r {
                    Ok(v) => {
                        txn.commit()?;
                        Ok(v)
                    }
                    Err(e) => {
                        let _ = txn.abort();
                        Err(e)
                    }
                }
            }
            Backend::Postgres(pg) => pg.write(|ptx| {
                let tx = Tx { ops: Ops::Postgres(ptx), changes: Some(RefCell::default()) };
                let v = f(&tx)?;
                Ok((v, tx.changes.map(RefCell::into_inner).unwrap_or_default()))
            }),
        })
        .await
        .map_err(|e| StoreError::Db(format!("store task failed: {e}")))?;
        self.observe("write", started);
        r
    }

    /// Synchronous full read of a table, for loading memory at start-up.
    pub fn load_all<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<T>, StoreError> {
        self.load_all_raw(table)?.iter().map(|(_, v)| Ok(serde_json::from_slice(v)?)).collect()
    }

    /// [`Store::load_all`] without decoding, with ids.
    pub fn load_all_raw(&self, table: Table) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        match &self.inner.backend {
            Backend::Embedded(e) => e.load_all_raw(table),
            Backend::Postgres(pg) => pg.block_anywhere(Pg::load_all_raw(pg.pool(), table_name(table))),
        }
    }

    pub fn load_meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let raw = match &self.inner.backend {
            Backend::Embedded(e) => e.load_meta_raw(key)?,
            Backend::Postgres(pg) => pg.block_anywhere(Pg::load_meta_raw(pg.pool(), key.to_string()))?,
        };
        match raw {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        }
    }

    pub fn load_revoked(&self) -> Result<Vec<(String, u64)>, StoreError> {
        match &self.inner.backend {
            Backend::Embedded(e) => e.load_revoked(),
            Backend::Postgres(pg) => pg.block_anywhere(Pg::load_revoked(pg.pool())),
        }
    }

    /// Every meta entry, sequences included (for `berth store copy`).
    pub fn load_all_meta(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        match &self.inner.backend {
            Backend::Embedded(e) => e.load_all_meta(),
            Backend::Postgres(pg) => pg.block_anywhere(Pg::load_all_meta(pg.pool())),
        }
    }

    /// The current records of `table` with these ids, off the async
    /// workers (the change feed's reads).
    pub async fn fetch(&self, table: Table, ids: Vec<u64>) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let started = Instant::now();
        let r = match &self.inner.backend {
            Backend::Postgres(pg) => pg.run(Pg::load_some_raw(pg.pool(), table_name(table), ids)).await,
            Backend::Embedded(_) => {
                let s = self.clone();
                tokio::task::spawn_blocking(move || {
                    Ok(s.load_all_raw(table)?.into_iter().filter(|(id, _)| ids.contains(id)).collect())
                })
                .await
                .map_err(|e| StoreError::Db(format!("store task failed: {e}")))?
            }
        };
        self.observe("read", started);
        r
    }

    /// Every record of `table`, off the async workers.
    pub async fn fetch_all(&self, table: Table) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let started = Instant::now();
        let r = match &self.inner.backend {
            Backend::Postgres(pg) => pg.run(Pg::load_all_raw(pg.pool(), table_name(table))).await,
            Backend::Embedded(_) => {
                let s = self.clone();
                tokio::task::spawn_blocking(move || s.load_all_raw(table))
                    .await
                    .map_err(|e| StoreError::Db(format!("store task failed: {e}")))?
            }
        };
        self.observe("read", started);
        r
    }

    /// A meta value, off the async workers.
    pub async fn fetch_meta<T: DeserializeOwned + Send + 'static>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let (s, key) = (self.clone(), key.to_string());
        tokio::task::spawn_blocking(move || s.load_meta(&key))
            .await
            .map_err(|e| StoreError::Db(format!("store task failed: {e}")))?
    }

    /// The value under `key`, storing `make()` first if there is none.
    /// Replicas starting at the same moment agree on one value (the
    /// PostgreSQL insert is conditional); on the embedded store, the one
    /// process is alone.
    pub fn meta_get_or_create(&self, key: &str, make: impl FnOnce() -> Vec<u8>) -> Result<Vec<u8>, StoreError> {
        match &self.inner.backend {
            Backend::Postgres(pg) => pg.block_anywhere(Pg::meta_get_or_insert(pg.pool(), key.to_string(), make())),
            Backend::Embedded(e) => {
                if let Some(v) = e.load_meta_raw(key)? {
                    return Ok(v);
                }
                let v = make();
                let txn = e.db.begin_write()?;
                EmbeddedTx { txn: &txn }.meta_put(key, &v)?;
                txn.commit()?;
                Ok(v)
            }
        }
    }

    /// Whether the store holds nothing at all (`berth store copy` refuses
    /// a target that does, unless told).
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        match &self.inner.backend {
            Backend::Postgres(pg) => pg.block_anywhere(Pg::is_empty(pg.pool())),
            Backend::Embedded(e) => {
                for t in ALL_TABLES {
                    if !e.load_all_raw(*t)?.is_empty() {
                        return Ok(false);
                    }
                }
                Ok(e.load_all_meta()?.is_empty() && e.load_revoked()?.is_empty())
            }
        }
    }

    /// Writes raw records, meta entries and revocations as they are
    /// (`berth store copy`), in one transaction.
    pub fn import(&self, dump: copy::Dump) -> Result<(), StoreError> {
        let apply = move |tx: &Tx<'_>| -> Result<(), StoreError> {
            for (t, id, v) in &dump.records {
                let table = table_by_name(t).ok_or_else(|| StoreError::Encoding(format!("unknown table {t}")))?;
                on!(tx, put(table, *id, v))?;
            }
            for (k, v) in &dump.meta {
                on!(tx, meta_put(k, v))?;
            }
            for (jti, exp) in &dump.revoked {
                on!(tx, revoke(jti, *exp))?;
            }
            Ok(())
        };
        match &self.inner.backend {
            Backend::Embedded(e) => {
                let txn = e.db.begin_write()?;
                apply(&Tx { ops: Ops::Embedded(EmbeddedTx { txn: &txn }), changes: None })?;
                txn.commit()?;
                Ok(())
            }
            Backend::Postgres(pg) => std::thread::scope(|s| {
                s.spawn(|| {
                    pg.write(|ptx| {
                        apply(&Tx { ops: Ops::Postgres(ptx), changes: None })?;
                        Ok(((), Vec::new()))
                    })
                })
                .join()
                .unwrap_or_else(|_| Err(StoreError::Db("store thread panicked".into())))
            }),
        }
    }

    /// On PostgreSQL, whether this replica holds (or just took) the lease
    /// to run the endpoint health checks; the embedded store's one process
    /// always does.
    pub async fn health_lease(&self) -> bool {
        match &self.inner.backend {
            Backend::Embedded(_) => true,
            Backend::Postgres(pg) => pg.health_lease().await,
        }
    }

    /// A lock named `name` held across every replica until the guard is
    /// dropped (PostgreSQL advisory lock); `None` on the embedded store,
    /// where the caller's in-process lock is enough.
    pub async fn shared_lock(&self, name: &str) -> Result<Option<SharedLock>, StoreError> {
        match &self.inner.backend {
            Backend::Embedded(_) => Ok(None),
            Backend::Postgres(pg) => {
                use sha2::Digest;
                let d = sha2::Sha256::digest(name.as_bytes());
                let mut k = [0u8; 8];
                k.copy_from_slice(&d[..8]);
                pg.shared_lock(i64::from_le_bytes(k)).await.map(Some)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn ids_are_monotonic_and_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = store.write(|tx| tx.next_id(TAGS)).await.unwrap();
        let b = store
            .write(|tx| {
                let id = tx.next_id(TAGS)?;
                tx.put(TAGS, id, &serde_json::json!({"x": 1}))?;
                Ok(id)
            })
            .await
            .unwrap();
        store.write(move |tx| tx.delete(TAGS, b)).await.unwrap();
        // An aborted write still leaves no reuse.
        let _ = store
            .write(|tx| {
                tx.next_id(TAGS)?;
                Err::<(), _>(StoreError::Conflict("abort".into()))
            })
            .await;
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let c = store.write(|tx| tx.next_id(TAGS)).await.unwrap();
        assert!(a < b && b < c, "{a} {b} {c}");
    }

    #[tokio::test]
    async fn a_raised_sequence_never_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.write(|tx| tx.raise_next_id(TAGS, 7)).await.unwrap();
        assert_eq!(store.write(|tx| tx.next_id(TAGS)).await.unwrap(), 8);
        store.write(|tx| tx.raise_next_id(TAGS, 3)).await.unwrap();
        assert_eq!(store.write(|tx| tx.next_id(TAGS)).await.unwrap(), 9, "a lower floor changes nothing");
    }

    #[test]
    fn a_second_open_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _s = Store::open(dir.path()).unwrap();
        match Store::open(dir.path()) {
            Err(StoreError::Locked(_)) => {}
            other => panic!("expected Locked, got {:?}", other.err()),
        }
    }

    #[test]
    fn store_and_directory_are_private_even_when_made_open_before() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        drop(Store::open(&dir).unwrap());
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("berth.redb")), 0o600);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(dir.join("berth.redb"), std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(Store::open(&dir).unwrap());
        assert_eq!(mode(&dir), 0o700, "fixed on the next start");
        assert_eq!(mode(&dir.join("berth.redb")), 0o600, "fixed on the next start");
    }

    #[tokio::test]
    async fn a_locked_store_is_waited_for_then_refused() {
        let dir = tempfile::tempdir().unwrap();
        let held = Store::open(dir.path()).unwrap();
        match Store::open_waiting(dir.path(), Duration::from_millis(300)).await {
            Err(StoreError::Locked(_)) => {}
            other => panic!("expected Locked after the wait, got {:?}", other.err()),
        }
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(held);
        });
        let s = Store::open_waiting(dir.path(), Duration::from_secs(20)).await.expect("opened once released");
        release.await.unwrap();
        drop(s);
    }

    #[test]
    fn a_corrupt_file_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.redb");
        std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
        match Store::open(dir.path()) {
            Err(StoreError::Corrupt(..)) => {}
            other => panic!("expected Corrupt, got {:?}", other.err()),
        }
        assert_eq!(std::fs::read(&path).unwrap(), vec![0x42u8; 8192]);
    }
}
