//! `berth store copy`: moves a whole data set between the embedded store
//! and PostgreSQL, either way, records byte for byte.
//!
//! The embedded store keeps three secrets as files beside `berth.redb`
//! (the JWT signing secret, the key that seals registry passwords, Berth's
//! CA); replicas keep them in the database, so that they agree. A copy
//! moves them too: without them, tokens issued before the move would be
//! refused and sealed registry passwords could not be opened.

use std::path::{Path, PathBuf};

use super::{table_name, Store, StoreError, ALL_TABLES};

/// Meta keys of the secrets a shared store holds (see [`Secrets`]).
pub const JWT_SECRET_KEY: &str = "secret:jwt";
pub const SEAL_KEY_KEY: &str = "secret:seal";
/// The CA as one JSON value `{"cert": PEM, "key": PEM}`, so that replicas
/// starting together can never pair one's certificate with another's key.
pub const CA_KEY: &str = "secret:ca";

/// A whole data set, raw.
#[derive(Default)]
pub struct Dump {
    /// (table, id, JSON bytes)
    pub records: Vec<(String, u64, Vec<u8>)>,
    pub meta: Vec<(String, Vec<u8>)>,
    pub revoked: Vec<(String, u64)>,
}

/// Where the embedded store keeps its secrets, as files.
pub struct SecretFiles {
    pub jwt: PathBuf,
    pub seal: PathBuf,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
}

impl SecretFiles {
    pub fn in_data_dir(data: &Path) -> SecretFiles {
        SecretFiles {
            jwt: data.join("jwt.secret"),
            seal: data.join("secret.key"),
            ca_cert: data.join("ca").join("ca.pem"),
            ca_key: data.join("ca").join("ca-key.pem"),
        }
    }

    fn pairs(&self) -> [(&'static str, &Path); 2] {
        [(JWT_SECRET_KEY, &self.jwt), (SEAL_KEY_KEY, &self.seal)]
    }

    /// The secrets as meta entries.
    fn read(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let read = |p: &Path| match std::fs::read(p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Db(format!("reading {}: {e}", p.display()))),
        };
        let mut out = Vec::new();
        for (key, path) in self.pairs() {
            if let Some(b) = read(path)? {
                out.push((key.to_string(), b));
            }
        }
        if let (Some(cert), Some(key)) = (read(&self.ca_cert)?, read(&self.ca_key)?) {
            let v = serde_json::json!({
                "cert": String::from_utf8_lossy(&cert),
                "key": String::from_utf8_lossy(&key),
            });
            out.push((CA_KEY.to_string(), v.to_string().into_bytes()));
        }
        Ok(out)
    }

    /// Writes the secrets among `meta` as files, taking them out of it.
    fn write(&self, meta: &mut Vec<(String, Vec<u8>)>) -> Result<usize, StoreError> {
        let mut take = |key: &str| meta.iter().position(|(k, _)| k == key).map(|i| meta.remove(i).1);
        let mut files: Vec<(&Path, Vec<u8>, u32)> = Vec::new();
        for (key, path) in self.pairs() {
            if let Some(b) = take(key) {
                files.push((path, b, 0o600));
            }
        }
        if let Some(ca) = take(CA_KEY) {
            #[derive(serde::Deserialize)]
            struct CaPems {
                cert: String,
                key: String,
            }
            let pems: CaPems = serde_json::from_slice(&ca)?;
            files.push((&self.ca_cert, pems.cert.into_bytes(), 0o644));
            files.push((&self.ca_key, pems.key.into_bytes(), 0o600));
        }
        for (path, bytes, mode) in &files {
            if let Some(parent) = path.parent() {
                use std::os::unix::fs::PermissionsExt;
                std::fs::create_dir_all(parent)
                    .and_then(|()| std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700)))
                    .map_err(|e| StoreError::Db(format!("creating {}: {e}", parent.display())))?;
            }
            crate::fsutil::write_atomic(path, bytes, *mode)
                .map_err(|e| StoreError::Db(format!("writing {}: {e}", path.display())))?;
        }
        Ok(files.len())
    }
}

/// One end of a copy: a data directory or a PostgreSQL store.
pub enum End {
    Dir(PathBuf),
    Postgres(super::PgOptions),
}

impl End {
    fn describe(&self) -> String {
        match self {
            End::Dir(d) => d.display().to_string(),
            End::Postgres(o) => o.url.clone(),
        }
    }
}

/// What a copy moved.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Copied {
    pub records: usize,
    pub meta: usize,
    pub revoked: usize,
    pub secrets: usize,
}

pub fn export(store: &Store) -> Result<Dump, StoreError> {
    let mut d = Dump::default();
    for t in ALL_TABLES {
        for (id, v) in store.load_all_raw(*t)? {
            d.records.push((table_name(*t).to_string(), id, v));
        }
    }
    d.meta = store.load_all_meta()?;
    d.revoked = store.load_revoked()?;
    Ok(d)
}

fn open(end: &End) -> Result<Store, StoreError> {
    match end {
        End::Dir(d) => Store::open(d),
        End::Postgres(o) => Store::connect(o),
    }
}

/// Copies everything in `from` into `to`. A target that holds anything is
/// refused unless `force` (then records with the same ids are replaced).
pub fn copy(from: &End, to: &End, force: bool) -> Result<Copied, StoreError> {
    let source = open(from)?;
    let target = open(to)?;
    if !force && !target.is_empty()? {
        return Err(StoreError::Conflict(format!(
            "{} already holds data; pass --force to copy over it",
            to.describe()
        )));
    }
    let mut dump = export(&source)?;
    // Secrets: files on the embedded side, meta entries on PostgreSQL.
    let mut secrets = 0;
    if let End::Dir(dir) = from {
        for (key, bytes) in SecretFiles::in_data_dir(dir).read()? {
            dump.meta.retain(|(k, _)| *k != key);
            dump.meta.push((key, bytes));
            secrets += 1;
        }
    }
    if let End::Dir(dir) = to {
        secrets = secrets.max(SecretFiles::in_data_dir(dir).write(&mut dump.meta)?);
    }
    let copied = Copied { records: dump.records.len(), meta: dump.meta.len(), revoked: dump.revoked.len(), secrets };
    target.import(dump)?;
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{TAGS, USERS};

    #[tokio::test]
    async fn a_copy_moves_everything_and_refuses_a_used_target() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        {
            let s = Store::open(a.path()).unwrap();
            s.write(|tx| {
                tx.insert(USERS, |id| serde_json::json!({"id": id, "name": "x"}))?;
                tx.insert(TAGS, |id| serde_json::json!({"id": id}))?;
                tx.put_meta("settings", &serde_json::json!({"a": 1}))?;
                tx.revoke("jti-1", u64::MAX / 2)
            })
            .await
            .unwrap();
        }
        std::fs::write(a.path().join("jwt.secret"), [7u8; 32]).unwrap();
        let (from, to) = (End::Dir(a.path().into()), End::Dir(b.path().into()));
        let c = tokio::task::spawn_blocking(move || copy(&from, &to, false)).await.unwrap().unwrap();
        assert_eq!((c.records, c.revoked, c.secrets), (2, 1, 1));
        assert_eq!(std::fs::read(b.path().join("jwt.secret")).unwrap(), vec![7u8; 32]);
        let t = Store::open(b.path()).unwrap();
        assert_eq!(t.load_all_raw(USERS).unwrap(), Store::open(a.path()).unwrap().load_all_raw(USERS).unwrap());
        assert_eq!(t.load_revoked().unwrap().len(), 1);
        // The sequence came along: the next id continues, never reuses.
        assert_eq!(t.write(|tx| tx.next_id(USERS)).await.unwrap(), 2);
        drop(t);
        let (from, to) = (End::Dir(a.path().into()), End::Dir(b.path().into()));
        let e = tokio::task::spawn_blocking(move || copy(&from, &to, false)).await.unwrap();
        assert!(matches!(e, Err(StoreError::Conflict(_))), "a used target is refused");
        let (from, to) = (End::Dir(a.path().into()), End::Dir(b.path().into()));
        assert!(tokio::task::spawn_blocking(move || copy(&from, &to, true)).await.unwrap().is_ok());
    }
}
