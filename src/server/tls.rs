//! The HTTPS listener: its certificate (the files given by `--sslcert` and
//! `--sslkey`, or one signed by Berth's CA for the `--tls-san` names,
//! generated into `<data>/certs` and reused while it matches) and the
//! client certificates it asks for (client bundles: any certificate of
//! Berth's CA, never required, so browsers and header clients are
//! unaffected; a certificate of another CA fails the handshake).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::bundles::ca::Ca;
use crate::config::Config;

pub fn acceptor(config: &Config, ca: &Ca) -> anyhow::Result<TlsAcceptor> {
    let (cert_path, key_path) = match (&config.sslcert, &config.sslkey) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => {
            let dir = config.data.join("certs");
            let c = dir.join("cert.pem");
            let k = dir.join("key.pem");
            crate::bundles::ca::private_dir(&dir)?;
            if !c.exists() || !k.exists() || !current(&c, ca, &config.tls_san) {
                generate(&c, &k, ca, &config.tls_san)?;
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
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let mut cfg = if config.client_certs {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert_der.clone())?;
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .allow_unauthenticated()
            .build()?;
        builder.with_client_cert_verifier(verifier).with_single_cert(certs, key)?
    } else {
        builder.with_no_client_auth().with_single_cert(certs, key)?
    };
    // HTTP/1.1 only, like Portainer: upgrades (attach, exec) need it.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// Whether the generated certificate at `cert` is still the one to serve:
/// issued by this CA, for exactly these names, and not within 30 days of
/// its end. A certificate from an older Berth (self-signed) is replaced.
fn current(cert: &Path, ca: &Ca, names: &[String]) -> bool {
    let Ok(pem) = std::fs::read(cert) else { return false };
    let Ok(der) = CertificateDer::from_pem_slice(&pem) else { return false };
    let (Ok((_, c)), Ok((_, ca_cert))) =
        (x509_parser::parse_x509_certificate(&der), x509_parser::parse_x509_certificate(&ca.cert_der))
    else {
        return false;
    };
    if c.issuer() != ca_cert.subject() || c.verify_signature(Some(ca_cert.public_key())).is_err() {
        return false;
    }
    let soon =
        x509_parser::time::ASN1Time::from_timestamp(time::OffsetDateTime::now_utc().unix_timestamp() + 30 * 86_400);
    if soon.is_ok_and(|t| c.validity().not_after < t) {
        return false;
    }
    let mut have: Vec<String> = match c.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(b) => ip_text(b),
                _ => None,
            })
            .collect(),
        _ => return false,
    };
    let mut want: Vec<String> =
        names.iter().map(|n| n.parse::<std::net::IpAddr>().map_or_else(|_| n.clone(), |ip| ip.to_string())).collect();
    have.sort();
    want.sort();
    have == want
}

fn ip_text(b: &[u8]) -> Option<String> {
    match b.len() {
        4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(b).ok()?).to_string()),
        16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(b).ok()?).to_string()),
        _ => None,
    }
}

fn generate(cert: &Path, key: &Path, ca: &Ca, names: &[String]) -> anyhow::Result<()> {
    let signed = ca.sign_server(names)?;
    let key_pem = signed.key_pem.ok_or_else(|| anyhow::anyhow!("no key generated for the HTTPS certificate"))?;
    crate::fsutil::write_private_atomic(key, key_pem.as_bytes())?;
    crate::fsutil::write_atomic(cert, signed.cert_pem.as_bytes(), 0o644)?;
    tracing::info!(cert = %cert.display(), names = ?names, "generated the HTTPS certificate, signed by Berth's CA");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_material_is_private_and_old_modes_are_fixed() {
        let data = tempfile::tempdir().unwrap();
        let config = Config { data: data.path().to_path_buf(), ..Config::default() };
        let ca = Ca::load_or_create(&data.path().join("ca")).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let certs = data.path().join("certs");
        acceptor(&config, &ca).unwrap();
        assert_eq!(mode(&certs), 0o700);
        assert_eq!(mode(&certs.join("key.pem")), 0o600);
        std::fs::set_permissions(&certs, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(certs.join("key.pem"), std::fs::Permissions::from_mode(0o644)).unwrap();
        acceptor(&config, &ca).unwrap();
        assert_eq!(mode(&certs), 0o700);
        assert_eq!(mode(&certs.join("key.pem")), 0o600);
    }
}
