//! The durable store: one redb file in the data directory.
//!
//! Each entity lives in its own table keyed by a monotonic id (never
//! reused: the next id is kept in the `meta` table and bumped in the same
//! transaction as the insert). Values are JSON of the `model` structs.
//! Every write commits with redb's default immediate durability, so the
//! data is fsynced before the call returns and before any response goes
//! out. All calls run on the blocking pool, never on an async worker.

pub mod model;

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A table of JSON records keyed by id.
pub type Table = TableDefinition<'static, u64, &'static [u8]>;

pub const USERS: Table = TableDefinition::new("users");
pub const TEAMS: Table = TableDefinition::new("teams");
pub const TEAM_MEMBERSHIPS: Table = TableDefinition::new("team_membership");
pub const API_KEYS: Table = TableDefinition::new("api_key");
pub const ENDPOINTS: Table = TableDefinition::new("endpoints");
pub const ENDPOINT_GROUPS: Table = TableDefinition::new("endpoint_groups");
pub const TAGS: Table = TableDefinition::new("tags");
pub const REGISTRIES: Table = TableDefinition::new("registries");
pub const STACKS: Table = TableDefinition::new("stacks");
pub const SNAPSHOTS: Table = TableDefinition::new("snapshots");
/// Resource controls of Docker objects ([`crate::controls`]).
pub const RESOURCE_CONTROLS: Table = TableDefinition::new("resource_controls");
/// Client bundles: certificates of Berth's CA and whose they are ([`crate::bundles`]).
pub const BUNDLES: Table = TableDefinition::new("bundles");
/// The audit trail ([`crate::audit`]): ids grow with time.
pub const AUDIT: Table = TableDefinition::new("audit");
/// Singletons and id sequences, keyed by name.
const META: TableDefinition<'static, &'static str, &'static [u8]> = TableDefinition::new("meta");
/// Revoked JWT ids with their expiry (unix seconds), so logouts survive a restart.
const REVOKED: TableDefinition<'static, &'static str, u64> = TableDefinition::new("revoked_tokens");

pub const ALL_TABLES: [Table; 13] = [
    USERS,
    TEAMS,
    TEAM_MEMBERSHIPS,
    API_KEYS,
    ENDPOINTS,
    ENDPOINT_GROUPS,
    TAGS,
    REGISTRIES,
    STACKS,
    SNAPSHOTS,
    RESOURCE_CONTROLS,
    BUNDLES,
    AUDIT,
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("another Berth process is already using the data directory {0} (its store is locked); stop it or choose another --data")]
    Locked(PathBuf),
    #[error("the store {0} is corrupt or unreadable ({1}); Berth will not re-initialise it. Restore it from a backup or move it away")]
    Corrupt(PathBuf, String),
    #[error("store error: {0}")]
    Db(String),
    #[error("record encoding error: {0}")]
    Encoding(String),
    #[error("{0}")]
    Conflict(String),
    #[error("not found")]
    NotFound,
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Db(e.to_string()) }
        }
    )*};
}
db_err!(redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Encoding(e.to_string())
    }
}

#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
}

fn seq_key(table: Table) -> String {
    format!("seq:{}", redb::TableHandle::name(&table))
}

/// A write transaction handed to closures passed to [`Store::write`].
pub struct Tx<'a> {
    txn: &'a redb::WriteTransaction,
}

impl Tx<'_> {
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
        let meta = self.txn.open_table(META)?;
        let v = meta.get(seq_key(table).as_str())?;
        match v {
            Some(v) => {
                Ok(u64::from_le_bytes(v.value().try_into().map_err(|_| StoreError::Encoding("bad sequence".into()))?))
            }
            None => Ok(0),
        }
    }

    fn set_last_id(&self, table: Table, id: u64) -> Result<(), StoreError> {
        let mut meta = self.txn.open_table(META)?;
        meta.insert(seq_key(table).as_str(), id.to_le_bytes().as_slice())?;
        Ok(())
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
        let mut t = self.txn.open_table(table)?;
        t.insert(id, bytes.as_slice())?;
        Ok(())
    }

    pub fn get<T: DeserializeOwned>(&self, table: Table, id: u64) -> Result<Option<T>, StoreError> {
        let t = self.txn.open_table(table)?;
        let v = t.get(id)?;
        match v {
            Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
            None => Ok(None),
        }
    }

    /// Returns whether a record was removed.
    pub fn delete(&self, table: Table, id: u64) -> Result<bool, StoreError> {
        let mut t = self.txn.open_table(table)?;
        let existed = t.remove(id)?.is_some();
        Ok(existed)
    }

    pub fn all<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<T>, StoreError> {
        let t = self.txn.open_table(table)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (_, v) = row?;
            out.push(serde_json::from_slice(v.value())?);
        }
        Ok(out)
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
        let mut t = self.txn.open_table(table)?;
        let mut left = t.len()?;
        let mut doomed = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            let Ok(record) = serde_json::from_slice::<T>(v.value()) else { break };
            if doomed.len() >= max || !remove(&record, left) {
                break;
            }
            doomed.push(k.value());
            left -= 1;
        }
        for k in &doomed {
            t.remove(*k)?;
        }
        Ok(doomed.len())
    }

    pub fn put_meta<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value)?;
        let mut meta = self.txn.open_table(META)?;
        meta.insert(key, bytes.as_slice())?;
        Ok(())
    }

    pub fn revoke(&self, jti: &str, exp: u64) -> Result<(), StoreError> {
        let mut t = self.txn.open_table(REVOKED)?;
        t.insert(jti, exp)?;
        Ok(())
    }

    pub fn prune_revoked(&self, now: u64) -> Result<usize, StoreError> {
        let mut t = self.txn.open_table(REVOKED)?;
        let mut removed = 0;
        t.retain(|_, exp| {
            let keep = exp >= now;
            removed += usize::from(!keep);
            keep
        })?;
        Ok(removed)
    }
}

/// The store holds password hashes, sealed secrets and stack variables:
/// only Berth's user may read it or list its directory. Modes are set on
/// every start too, so a data directory made by an older version (0755,
/// 0644) is fixed.
fn make_private(data_dir: &Path, path: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))?;
    // Created 0600 before redb opens it, so it is never readable by others,
    // not even for a moment.
    std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
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

    /// Opens (or creates) `<data>/berth.redb`, mode 0600 in a 0700
    /// directory. A store held by another process is refused at once; a
    /// corrupt file is refused, never replaced.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let path = data_dir.join("berth.redb");
        let existed = path.metadata().map(|m| m.len() > 0).unwrap_or(false);
        make_private(data_dir, &path)
            .map_err(|e| StoreError::Db(format!("securing {} and {}: {e}", data_dir.display(), path.display())))?;
        let db = match Database::create(&path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(StoreError::Locked(data_dir.to_path_buf())),
            Err(e) if existed => return Err(StoreError::Corrupt(path, e.to_string())),
            Err(e) => return Err(StoreError::Db(e.to_string())),
        };
        let store = Store { db: Arc::new(db) };
        // Create every table up front so readers never meet a missing one.
        let txn = store.db.begin_write()?;
        for t in ALL_TABLES {
            txn.open_table(t)?;
        }
        txn.open_table(META)?;
        txn.open_table(REVOKED)?;
        txn.commit()?;
        Ok(store)
    }

    /// Runs `f` in one write transaction on the blocking pool and commits
    /// durably; an `Err` from `f` aborts everything it wrote.
    pub async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<R, StoreError> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_write()?;
            let r = f(&Tx { txn: &txn });
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
        })
        .await
        .map_err(|e| StoreError::Db(format!("store task failed: {e}")))?
    }

    /// Synchronous full read of a table, for loading memory at start-up.
    pub fn load_all<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<T>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| StoreError::Db(e.to_string()))?;
        let t = txn.open_table(table)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (_, v) = row?;
            out.push(serde_json::from_slice(v.value())?);
        }
        Ok(out)
    }

    pub fn load_meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| StoreError::Db(e.to_string()))?;
        let t = txn.open_table(META)?;
        let v = t.get(key)?;
        match v {
            Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
            None => Ok(None),
        }
    }

    pub fn load_revoked(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| StoreError::Db(e.to_string()))?;
        let t = txn.open_table(REVOKED)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push((k.value().to_string(), v.value()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
