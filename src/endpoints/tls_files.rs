//! TLS material of endpoints on disk: `<data>/tls/<id>/{ca,cert,key}.pem`,
//! the layout Portainer uses, so the paths clients see in `TLSConfig` look
//! the same. The directory is 0700 and every file 0600 (the key is a
//! credential to a Docker host, which is root on that host), and files are
//! replaced atomically so a crash never leaves half a certificate.

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;

use crate::connector::TlsFiles;
use crate::store::model::{EndpointTls, Id};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFileKind {
    Ca,
    Cert,
    Key,
}

impl TlsFileKind {
    /// The `{certificate}` route value of `POST /api/upload/tls/{certificate}`.
    pub fn from_route(s: &str) -> Option<TlsFileKind> {
        match s {
            "ca" => Some(TlsFileKind::Ca),
            "cert" => Some(TlsFileKind::Cert),
            "key" => Some(TlsFileKind::Key),
            _ => None,
        }
    }

    pub fn file_name(self) -> &'static str {
        match self {
            TlsFileKind::Ca => "ca.pem",
            TlsFileKind::Cert => "cert.pem",
            TlsFileKind::Key => "key.pem",
        }
    }

    fn what(self) -> &'static str {
        match self {
            TlsFileKind::Ca => "the TLS CA certificate",
            TlsFileKind::Cert => "the TLS certificate",
            TlsFileKind::Key => "the TLS key",
        }
    }
}

/// The data directory as an absolute path: paths stored in records and shown
/// to clients must not depend on the daemon's working directory.
pub fn absolute_data_dir(data: &Path) -> PathBuf {
    std::fs::canonicalize(data).unwrap_or_else(|_| {
        if data.is_absolute() {
            data.to_path_buf()
        } else {
            std::env::current_dir().map(|d| d.join(data)).unwrap_or_else(|_| data.to_path_buf())
        }
    })
}

pub fn tls_dir(data: &Path, id: Id) -> PathBuf {
    absolute_data_dir(data).join("tls").join(id.to_string())
}

pub fn tls_path(data: &Path, id: Id, kind: TlsFileKind) -> PathBuf {
    tls_dir(data, id).join(kind.file_name())
}

fn ensure_dir(dir: &Path) -> io::Result<()> {
    if let Some(parent) = dir.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

/// Writes one file of an endpoint and returns its absolute path.
pub fn write_file(data: &Path, id: Id, kind: TlsFileKind, bytes: &[u8]) -> io::Result<PathBuf> {
    let dir = tls_dir(data, id);
    ensure_dir(&dir)?;
    let path = dir.join(kind.file_name());
    crate::fsutil::write_private_atomic(&path, bytes)?;
    Ok(path)
}

/// Writes the files that are present and records their paths in `tls`.
pub fn write_files(data: &Path, id: Id, files: &TlsFiles, tls: &mut EndpointTls) -> io::Result<()> {
    let parts = [
        (TlsFileKind::Ca, &files.ca, &mut tls.ca_cert),
        (TlsFileKind::Cert, &files.cert, &mut tls.cert),
        (TlsFileKind::Key, &files.key, &mut tls.key),
    ];
    for (kind, bytes, slot) in parts {
        if let Some(b) = bytes {
            *slot = write_file(data, id, kind, b)?.to_string_lossy().into_owned();
        }
    }
    Ok(())
}

/// Removes an endpoint's TLS directory; a missing one is not an error.
pub fn remove_dir(data: &Path, id: Id) -> io::Result<()> {
    match std::fs::remove_dir_all(tls_dir(data, id)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

pub fn remove_file(data: &Path, id: Id, kind: TlsFileKind) -> io::Result<()> {
    match std::fs::remove_file(tls_path(data, id, kind)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Reads the files a record points at. The `Err` names the missing file.
pub fn read_files(tls: &EndpointTls) -> Result<TlsFiles, String> {
    let read = |p: &str, kind: TlsFileKind| -> Result<Option<Vec<u8>>, String> {
        if p.is_empty() {
            return Ok(None);
        }
        std::fs::read(p).map(Some).map_err(|e| format!("{} ({p}) cannot be read: {e}", kind.what()))
    };
    Ok(TlsFiles {
        ca: read(&tls.ca_cert, TlsFileKind::Ca)?,
        cert: read(&tls.cert, TlsFileKind::Cert)?,
        key: read(&tls.key, TlsFileKind::Key)?,
    })
}

/// Refuses anything but whitespace after the last PEM block, and a block
/// that is never closed. PEM parsers skip what follows, so a file with a
/// second key or a script glued to its end would be stored, shown as valid
/// and copied around with content nobody checked. Lines are read the way
/// RFC 7468 writes them: a block opens with a `-----BEGIN ...-----` line and
/// closes with an `-----END ...-----` line; text before a block is the RFC's
/// explanatory text and stays allowed. A file with no block at all is left
/// to the PEM parser, which refuses it.
pub fn check_trailer(kind: TlsFileKind, bytes: &[u8]) -> Result<(), String> {
    let what = kind.what();
    let is_line = |t: &[u8], tag: &[u8]| t.starts_with(tag) && t.len() >= tag.len() + 5 && t.ends_with(b"-----");
    let (mut open, mut end_of_last, mut offset) = (false, None, 0usize);
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let t = line.trim_ascii();
        if !open && is_line(t, b"-----BEGIN ") {
            open = true;
        } else if open && is_line(t, b"-----END ") {
            open = false;
            end_of_last = Some(offset + line.len());
        }
        offset += line.len();
    }
    if open {
        return Err(format!("{what} is not valid PEM: its last block has no END line"));
    }
    let tail = end_of_last.map_or(&[][..], |e| &bytes[e..]);
    match tail.iter().position(|b| !b.is_ascii_whitespace()) {
        None => Ok(()),
        Some(i) => Err(format!(
            "{what} is not valid PEM: {} bytes follow its last END line; only whitespace may",
            tail.len() - i
        )),
    }
}

/// Checks that one uploaded file is PEM of the kind its name says, with
/// nothing after its last block. Whether it fits with the endpoint's other
/// files is decided when the connection is rebuilt, since a replacement
/// arrives one file at a time.
pub fn check_pem(kind: TlsFileKind, bytes: &[u8]) -> Result<(), String> {
    check_trailer(kind, bytes)?;
    let what = kind.what();
    match kind {
        TlsFileKind::Ca | TlsFileKind::Cert => crate::connector::parse_certs(bytes, what).map(|_| ()),
        TlsFileKind::Key => PrivateKeyDer::from_pem_slice(bytes).map(|_| ()).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => format!("{what} does not contain a PEM-encoded private key"),
            e => format!("{what} is not valid PEM: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_are_private_and_paths_absolute() {
        let dir = tempfile::tempdir().unwrap();
        let mut tls = EndpointTls::default();
        let files = TlsFiles { ca: Some(b"ca".to_vec()), cert: None, key: Some(b"key".to_vec()) };
        write_files(dir.path(), 7, &files, &mut tls).unwrap();
        assert!(Path::new(&tls.ca_cert).is_absolute());
        assert!(tls.ca_cert.ends_with("/tls/7/ca.pem"), "{}", tls.ca_cert);
        assert!(tls.cert.is_empty());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(Path::new(&tls.key)), 0o600);
        assert_eq!(mode(&tls_dir(dir.path(), 7)), 0o700);
        let back = read_files(&tls).unwrap();
        assert_eq!(back.ca.as_deref(), Some(&b"ca"[..]));
        assert!(back.cert.is_none());
        remove_dir(dir.path(), 7).unwrap();
        assert!(!tls_dir(dir.path(), 7).exists());
        remove_dir(dir.path(), 7).unwrap();
        let e = read_files(&tls).unwrap_err();
        assert!(e.contains("CA certificate") && e.contains("cannot be read"), "{e}");
    }

    #[test]
    fn pem_kinds_are_checked() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".to_string()]).unwrap().self_signed(&key).unwrap();
        check_pem(TlsFileKind::Ca, cert.pem().as_bytes()).unwrap();
        check_pem(TlsFileKind::Key, key.serialize_pem().as_bytes()).unwrap();
        let e = check_pem(TlsFileKind::Cert, key.serialize_pem().as_bytes()).unwrap_err();
        assert!(e.contains("CERTIFICATE"), "{e}");
        let e = check_pem(TlsFileKind::Key, cert.pem().as_bytes()).unwrap_err();
        assert!(e.contains("private key"), "{e}");
        let e = check_pem(TlsFileKind::Ca, b"hello").unwrap_err();
        assert!(e.contains("CA certificate"), "{e}");
    }

    #[test]
    fn nothing_but_whitespace_may_follow_the_last_pem_block() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".to_string()]).unwrap().self_signed(&key).unwrap();
        let (c, k) = (cert.pem(), key.serialize_pem());
        for ok in [c.clone(), format!("{c}\n\r\n \t\n"), format!("explanatory text\n{c}"), format!("{c}{c}")] {
            check_pem(TlsFileKind::Cert, ok.as_bytes()).unwrap();
        }
        check_pem(TlsFileKind::Key, format!("{k}\n\n").as_bytes()).unwrap();
        for (kind, bad) in [
            (TlsFileKind::Cert, format!("{c}garbage")),
            (TlsFileKind::Ca, format!("{c}\n#!/bin/sh\n")),
            (TlsFileKind::Key, format!("{k}x")),
            (TlsFileKind::Key, format!("{k}\0")),
        ] {
            let e = check_pem(kind, bad.as_bytes()).unwrap_err();
            assert!(e.contains("follow its last END line"), "{e}");
        }
        // A stray END line, or text on the END line itself, does not hide
        // what follows.
        for bad in [format!("{c}-----END X-----\n"), format!("{c}x-----END X-----\n")] {
            let e = check_trailer(TlsFileKind::Cert, bad.as_bytes()).unwrap_err();
            assert!(e.contains("follow its last END line"), "{e}");
        }
        let glued = c.trim_end().to_owned() + "garbage\n";
        assert!(check_trailer(TlsFileKind::Cert, glued.as_bytes()).unwrap_err().contains("no END line"));
    }
}

/// An endpoint's TLS files as the shared store keeps them (PEM text).
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct SharedFiles {
    ca: Option<String>,
    cert: Option<String>,
    key: Option<String>,
}

/// On a shared store, copies the endpoint's TLS files as they are now on
/// this replica's disk into the store (or removes them there when there
/// are none), so that every replica can connect with them. Nothing on the
/// embedded store: its one process reads its own disk.
pub async fn share(store: &crate::store::Store, data: &Path, id: Id) -> Result<(), crate::store::StoreError> {
    use crate::store::ENDPOINT_TLS;
    if !store.is_shared() {
        return Ok(());
    }
    let dir = tls_dir(data, id);
    let files = tokio::task::spawn_blocking(move || {
        let read = |k: TlsFileKind| std::fs::read_to_string(dir.join(k.file_name())).ok();
        SharedFiles { ca: read(TlsFileKind::Ca), cert: read(TlsFileKind::Cert), key: read(TlsFileKind::Key) }
    })
    .await
    .map_err(|e| crate::store::StoreError::Db(e.to_string()))?;
    store
        .write(move |tx| {
            if files.ca.is_none() && files.cert.is_none() && files.key.is_none() {
                tx.delete(ENDPOINT_TLS, id).map(drop)
            } else {
                tx.put(ENDPOINT_TLS, id, &files)
            }
        })
        .await
}

/// Writes the TLS files the shared store holds for `record` into this
/// replica's data directory and points the record's paths at them.
pub async fn materialize(
    store: &crate::store::Store,
    data: &Path,
    record: &mut crate::store::model::Endpoint,
) -> Result<(), String> {
    let id = record.id;
    let rows = store.fetch(crate::store::ENDPOINT_TLS, vec![id]).await.map_err(|e| e.to_string())?;
    let Some((_, bytes)) = rows.into_iter().next() else { return Err("no TLS files in the store".into()) };
    let shared: SharedFiles = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    let files = TlsFiles {
        ca: shared.ca.map(String::into_bytes),
        cert: shared.cert.map(String::into_bytes),
        key: shared.key.map(String::into_bytes),
    };
    let (data, mut tls) = (data.to_path_buf(), record.tls.clone());
    record.tls = tokio::task::spawn_blocking(move || {
        write_files(&data, id, &files, &mut tls)?;
        Ok::<_, io::Error>(tls)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    Ok(())
}
