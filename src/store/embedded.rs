//! The embedded backend: one redb file in the data directory, the default
//! (nothing to set up). Every write commits with redb's immediate
//! durability, so the data is fsynced before the call returns.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{StoreError, Table, ALL_TABLES};

/// Singletons and id sequences, keyed by name.
const META: TableDefinition<'static, &'static str, &'static [u8]> = TableDefinition::new("meta");
/// Revoked JWT ids with their expiry (unix seconds), so logouts survive a restart.
const REVOKED: TableDefinition<'static, &'static str, u64> = TableDefinition::new("revoked_tokens");

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Db(e.to_string()) }
        }
    )*};
}
db_err!(redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

pub(super) struct Embedded {
    pub db: Arc<Database>,
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

impl Embedded {
    /// Opens (or creates) `<data>/berth.redb`, mode 0600 in a 0700
    /// directory. A store held by another process is refused at once; a
    /// corrupt file is refused, never replaced.
    pub fn open(data_dir: &Path) -> Result<Embedded, StoreError> {
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
        let store = Embedded { db: Arc::new(db) };
        // Create every table up front so readers never meet a missing one.
        let txn = store.db.begin_write()?;
        for t in ALL_TABLES {
            txn.open_table(*t)?;
        }
        txn.open_table(META)?;
        txn.open_table(REVOKED)?;
        txn.commit()?;
        Ok(store)
    }

    pub fn load_all_raw(&self, table: Table) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| StoreError::Db(e.to_string()))?;
        let t = txn.open_table(table)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push((k.value(), v.value().to_vec()));
        }
        Ok(out)
    }

    pub fn load_meta_raw(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| StoreError::Db(e.to_string()))?;
        let t = txn.open_table(META)?;
        let v = t.get(key)?;
        Ok(v.map(|v| v.value().to_vec()))
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

    /// Every meta entry (for `berth store copy`).
    pub fn load_all_meta(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| StoreError::Db(e.to_string()))?;
        let t = txn.open_table(META)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }
}

/// One redb write transaction seen through the backend-neutral operations
/// of [`super::Tx`].
pub(super) struct EmbeddedTx<'a> {
    pub txn: &'a redb::WriteTransaction,
}

impl EmbeddedTx<'_> {
    pub fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let meta = self.txn.open_table(META)?;
        let v = meta.get(key)?;
        Ok(v.map(|v| v.value().to_vec()))
    }

    pub fn meta_put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut meta = self.txn.open_table(META)?;
        meta.insert(key, value)?;
        Ok(())
    }

    pub fn put(&self, table: Table, id: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let mut t = self.txn.open_table(table)?;
        t.insert(id, bytes)?;
        Ok(())
    }

    pub fn get(&self, table: Table, id: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let t = self.txn.open_table(table)?;
        let v = t.get(id)?;
        Ok(v.map(|v| v.value().to_vec()))
    }

    pub fn delete(&self, table: Table, id: u64) -> Result<bool, StoreError> {
        let mut t = self.txn.open_table(table)?;
        let existed = t.remove(id)?.is_some();
        Ok(existed)
    }

    pub fn all(&self, table: Table) -> Result<Vec<Vec<u8>>, StoreError> {
        let t = self.txn.open_table(table)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (_, v) = row?;
            out.push(v.value().to_vec());
        }
        Ok(out)
    }

    pub fn len(&self, table: Table) -> Result<u64, StoreError> {
        let t = self.txn.open_table(table)?;
        Ok(t.len()?)
    }

    /// Up to `max` records of `table` by ascending id.
    pub fn oldest(&self, table: Table, max: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let t = self.txn.open_table(table)?;
        let mut out = Vec::new();
        for row in t.iter()?.take(max) {
            let (k, v) = row?;
            out.push((k.value(), v.value().to_vec()));
        }
        Ok(out)
    }

    pub fn delete_many(&self, table: Table, ids: &[u64]) -> Result<(), StoreError> {
        let mut t = self.txn.open_table(table)?;
        for id in ids {
            t.remove(*id)?;
        }
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
