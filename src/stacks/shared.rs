//! Stack project folders across replicas (shared store only).
//!
//! A stack's compose files live in `<data>/compose/<id>/` of the replica
//! that deployed it. For the others to show, start, stop, update or remove
//! it, the folder's files travel through the store: written there after
//! every deploy (the `stack_files` table), and written back into each
//! other replica's own `<data>/compose/<id>/` when the change feed brings
//! them. A git stack's `.git` folder stays behind (a redeploy fetches
//! again); a folder over [`MAX_SHARED`] is not shared and says so.

use std::path::{Component, Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::store::model::Id;
use crate::store::{Store, StoreError, STACK_FILES};

/// The most a project folder may hold to be shared.
pub const MAX_SHARED: u64 = 8 * 1024 * 1024;

#[derive(Serialize, Deserialize, Default)]
struct Folder {
    /// (path relative to the folder, base64 content)
    files: Vec<(String, String)>,
}

fn io_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

/// Every regular file under `dir` but `.git/`, relative paths; symbolic
/// links are never followed or copied.
fn read_folder(dir: &Path) -> std::io::Result<Folder> {
    let mut out = Folder::default();
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let ty = e.file_type()?;
            let path = e.path();
            if ty.is_dir() {
                if e.file_name() != ".git" {
                    stack.push(path);
                }
            } else if ty.is_file() {
                total += e.metadata()?.len();
                if total > MAX_SHARED {
                    return Err(std::io::Error::other(format!(
                        "the project folder holds more than {MAX_SHARED} bytes"
                    )));
                }
                let rel = path.strip_prefix(dir).map_err(std::io::Error::other)?.to_string_lossy().into_owned();
                let bytes = std::fs::read(&path)?;
                out.files.push((rel, base64::engine::general_purpose::STANDARD.encode(bytes)));
            }
        }
    }
    out.files.sort();
    Ok(out)
}

/// A stored relative path, refused unless every part is a plain name.
fn safe_rel(rel: &str) -> Option<PathBuf> {
    let p = Path::new(rel);
    let plain = !rel.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    plain.then(|| p.to_path_buf())
}

/// Stores the project folder of stack `id` for the other replicas.
pub async fn share(store: &Store, dir: &Path, id: Id) -> Result<(), StoreError> {
    if !store.is_shared() {
        return Ok(());
    }
    let d = dir.to_path_buf();
    let folder = match tokio::task::spawn_blocking(move || read_folder(&d)).await.map_err(io_err)? {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(stack = id, error = %e, "stack folder not shared with the other replicas");
            return Ok(());
        }
    };
    store.write(move |tx| tx.put(STACK_FILES, id, &folder)).await
}

/// Writes the stored folder of stack `id` as `dir`, replacing what is
/// there in one rename (an interrupted swap leaves `<id>.old-*`, which
/// start-up puts back).
pub async fn materialize(store: &Store, dir: PathBuf, id: Id) -> Result<(), StoreError> {
    let rows = store.fetch(STACK_FILES, vec![id]).await?;
    let Some((_, bytes)) = rows.into_iter().next() else { return Ok(()) };
    let folder: Folder = serde_json::from_slice(&bytes)?;
    tokio::task::spawn_blocking(move || write_folder(&dir, &folder)).await.map_err(io_err)?.map_err(io_err)
}

fn write_folder(dir: &Path, folder: &Folder) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let parent = dir.parent().ok_or_else(|| std::io::Error::other("no parent folder"))?;
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let fresh = parent.join(format!("{name}.new-{:08x}", rand::random::<u32>()));
    std::fs::DirBuilder::new().mode(0o700).create(&fresh)?;
    let written = (|| {
        for (rel, b64) in &folder.files {
            let Some(rel) = safe_rel(rel) else { continue };
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).map_err(std::io::Error::other)?;
            let path = fresh.join(rel);
            if let Some(p) = path.parent() {
                std::fs::DirBuilder::new().recursive(true).mode(0o700).create(p)?;
            }
            crate::fsutil::write_atomic(&path, &bytes, 0o600)?;
        }
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&fresh);
        return Err(e);
    }
    let old = parent.join(format!("{name}.old-{:08x}", rand::random::<u32>()));
    let had = std::fs::rename(dir, &old).is_ok();
    std::fs::rename(&fresh, dir)?;
    if had {
        let _ = std::fs::remove_dir_all(&old);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_round_trips_without_git_or_links() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("docker-compose.yml"), "services: {}\n").unwrap();
        std::fs::create_dir_all(src.path().join("conf/sub")).unwrap();
        std::fs::write(src.path().join("conf/sub/a.env"), "A=1\n").unwrap();
        std::fs::create_dir(src.path().join(".git")).unwrap();
        std::fs::write(src.path().join(".git/HEAD"), "ref").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.path().join("link")).unwrap();
        let f = read_folder(src.path()).unwrap();
        let names: Vec<&str> = f.files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["conf/sub/a.env", "docker-compose.yml"]);
        let dst = tempfile::tempdir().unwrap();
        let dir = dst.path().join("7");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("stale.yml"), "old").unwrap();
        write_folder(&dir, &f).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("conf/sub/a.env")).unwrap(), "A=1\n");
        assert!(!dir.join("stale.yml").exists(), "the old folder is replaced whole");
        assert_eq!(std::fs::read_dir(dst.path()).unwrap().count(), 1, "no temporary folder left");
    }

    #[test]
    fn stored_paths_cannot_leave_the_folder() {
        for bad in ["../x", "/etc/x", "a/../../x", "", "./a/.."] {
            assert!(safe_rel(bad).is_none(), "{bad}");
        }
        assert_eq!(safe_rel("a/b.yml"), Some(PathBuf::from("a/b.yml")));
    }
}
