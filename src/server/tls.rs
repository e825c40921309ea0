//! The HTTPS listener's certificate: the files given by `--sslcert` and
//! `--sslkey`, or a self-signed pair generated into `<data>/certs` on first
//! start (as Portainer does) and reused afterwards.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::Config;

pub fn acceptor(config: &Config) -> anyhow::Result<TlsAcceptor> {
    let (cert_path, key_path) = match (&config.sslcert, &config.sslkey) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => {
            let dir = config.data.join("certs");
            let c = dir.join("cert.pem");
            let k = dir.join("key.pem");
            private_dir(&dir)?;
            if !c.exists() || !k.exists() {
                generate_self_signed(&c, &k)?;
            }
            // A key made by an older version may be world-readable.
            std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| anyhow::anyhow!("securing {}: {e}", k.display()))?;
            (c, k)
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("parsing {}: {e}", cert_path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no certificate", cert_path.display());
    }
    let key =
        PrivateKeyDer::from_pem_file(&key_path).map_err(|e| anyhow::anyhow!("reading {}: {e}", key_path.display()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    // HTTP/1.1 only, like Portainer: upgrades (attach, exec) need it.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// `<data>/certs`, mode 0700, also when it exists with another mode.
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))
}

fn generate_self_signed(cert: &Path, key: &Path) -> anyhow::Result<()> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let certified = rcgen::generate_simple_self_signed(names)?;
    crate::fsutil::write_private_atomic(key, certified.signing_key.serialize_pem().as_bytes())?;
    crate::fsutil::write_atomic(cert, certified.cert.pem().as_bytes(), 0o644)?;
    tracing::info!(cert = %cert.display(), "generated a self-signed HTTPS certificate");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_material_is_private_and_old_modes_are_fixed() {
        let data = tempfile::tempdir().unwrap();
        let config = Config { data: data.path().to_path_buf(), ..Config::default() };
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let certs = data.path().join("certs");
        acceptor(&config).unwrap();
        assert_eq!(mode(&certs), 0o700);
        assert_eq!(mode(&certs.join("key.pem")), 0o600);
        std::fs::set_permissions(&certs, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(certs.join("key.pem"), std::fs::Permissions::from_mode(0o644)).unwrap();
        acceptor(&config).unwrap();
        assert_eq!(mode(&certs), 0o700);
        assert_eq!(mode(&certs.join("key.pem")), 0o600);
    }
}
