//! A throwaway PKI for tests: a CA, a server certificate for 127.0.0.1 and
//! localhost, and client certificates, generated with rcgen at test time so
//! no key material is checked in. Shared by unit tests (connector, proxy)
//! and integration tests (mutual-TLS endpoints).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub struct Pki {
    pub ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("empty SAN list");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, cn);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    p
}

fn client_pair(issuer: &Issuer<'static, KeyPair>) -> (String, String) {
    let key = KeyPair::generate().expect("key generation");
    let mut cp = CertificateParams::new(Vec::<String>::new()).expect("empty SAN list");
    cp.distinguished_name.push(DnType::CommonName, "berth");
    cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    (cp.signed_by(&key, issuer).expect("signing").pem(), key.serialize_pem())
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Pki {
    pub fn new() -> Pki {
        let ca_key = KeyPair::generate().expect("key generation");
        let ca = ca_params("berth test CA");
        let ca_pem = ca.self_signed(&ca_key).expect("self-signing").pem();
        let issuer = Issuer::new(ca, ca_key);
        let server_key = KeyPair::generate().expect("key generation");
        let mut sp = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("SANs");
        sp.distinguished_name.push(DnType::CommonName, "docker host");
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = sp.signed_by(&server_key, &issuer).expect("signing");
        let (client_cert_pem, client_key_pem) = client_pair(&issuer);
        Pki {
            ca_pem,
            issuer,
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            client_cert_pem,
            client_key_pem,
        }
    }

    /// Another client certificate and key from the same CA.
    pub fn new_client(&self) -> (String, String) {
        client_pair(&self.issuer)
    }

    /// A CA certificate whose validity ended in 2001.
    pub fn expired_ca_pem() -> String {
        let key = KeyPair::generate().expect("key generation");
        let mut p = ca_params("expired CA");
        p.not_before = rcgen::date_time_ymd(2000, 1, 1);
        p.not_after = rcgen::date_time_ymd(2001, 1, 1);
        p.self_signed(&key).expect("self-signing").pem()
    }

    /// Writes ca.pem, cert.pem and key.pem (the client pair) into `dir`.
    pub fn write_client_files(&self, dir: &Path) -> std::io::Result<(PathBuf, PathBuf, PathBuf)> {
        let (ca, cert, key) = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&ca, &self.ca_pem)?;
        std::fs::write(&cert, &self.client_cert_pem)?;
        std::fs::write(&key, &self.client_key_pem)?;
        Ok((ca, cert, key))
    }

    /// A server config like a Docker daemon's with `--tlsverify` (client
    /// certificates from this CA required) or plain `--tls`.
    pub fn server_config(&self, require_client_cert: bool) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("default protocol versions");
        let builder = if require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
                roots.add(c.expect("CA PEM")).expect("CA into root store");
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let chain = CertificateDer::pem_slice_iter(self.server_cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("server chain PEM");
        let key = PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes()).expect("server key PEM");
        Arc::new(builder.with_single_cert(chain, key).expect("server certificate"))
    }
}
