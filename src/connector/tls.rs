//! TLS material for Docker hosts behind `--tlsverify`: validation of what users
//! upload, and the rustls client configuration built from it.
//!
//! Validation runs before anything is stored so that a wrong file is a 400 at
//! registration instead of an endpoint that silently never comes up.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, InconsistentKeys, RootCertStore, SignatureScheme};

/// What rustls keeps per server name: up to 8 TLS 1.3 tickets (or one
/// TLS 1.2 session); a cache of this size holds exactly one server.
const SESSIONS_PER_SERVER: usize = 8;

/// PEM bytes as uploaded by the user.
#[derive(Clone, Default)]
pub struct TlsFiles {
    pub ca: Option<Vec<u8>>,
    pub cert: Option<Vec<u8>>,
    pub key: Option<Vec<u8>>,
}

// Hand-written so that a `{:?}` in a log line can never print key material.
impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles")
            .field("ca", &self.ca.as_ref().map(Vec::len))
            .field("cert", &self.cert.as_ref().map(Vec::len))
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Clone, Default, Debug)]
pub struct TlsOptions {
    pub enabled: bool,
    pub skip_verify: bool,
    pub files: TlsFiles,
}

/// One provider for the whole process, chosen explicitly: the dependency graph
/// enables both ring and aws-lc-rs, so rustls cannot pick a default itself.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider())).clone()
}

/// Each given file must be PEM of the right kind; the key must match the
/// client certificate; neither the CA nor the client certificate may be
/// expired; the CA is required unless `skip_verify`; certificate and key are
/// required (together) unless `skip_client_verify`. The `Err` is user-facing.
pub fn validate_tls_files(files: &TlsFiles, skip_verify: bool, skip_client_verify: bool) -> Result<(), String> {
    match &files.ca {
        Some(ca) => {
            for der in parse_certs(ca, "the TLS CA certificate")? {
                check_validity(&der, "the TLS CA certificate")?;
            }
        }
        None if skip_verify => {}
        None => return Err("a TLS CA certificate is required unless TLS verification is skipped".into()),
    }

    let chain = files.cert.as_deref().map(|c| parse_certs(c, "the TLS certificate")).transpose()?;
    if let Some(leaf) = chain.as_ref().and_then(|c| c.first()) {
        check_validity(leaf, "the TLS certificate")?;
    }
    let key = files.key.as_deref().map(parse_key).transpose()?;

    match (chain, key) {
        (Some(chain), Some(key)) => check_key_matches(chain, key),
        (None, None) if skip_client_verify => Ok(()),
        (None, None) => {
            Err("a TLS client certificate and key are required unless client verification is skipped".into())
        }
        (Some(_), None) => Err("the TLS certificate was given without its key".into()),
        (None, Some(_)) => Err("the TLS key was given without its certificate".into()),
    }
}

/// Every certificate in a PEM file, each checked to be X.509; `what` names
/// the file in the error, which becomes a 400's details.
pub fn parse_certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} is not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what} does not contain a PEM-encoded CERTIFICATE"));
    }
    for der in &certs {
        x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("{what} is not a valid X.509 certificate: {e}"))?;
    }
    Ok(certs)
}

fn check_validity(der: &CertificateDer<'_>, what: &str) -> Result<(), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("{what} is not a valid X.509 certificate: {e}"))?;
    let validity = cert.validity();
    let now = x509_parser::time::ASN1Time::now();
    if now > validity.not_after {
        return Err(format!("{what} expired on {}", validity.not_after));
    }
    if now < validity.not_before {
        return Err(format!("{what} is not valid before {}", validity.not_before));
    }
    Ok(())
}

fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            "the TLS key does not contain a PEM-encoded private key".to_string()
        }
        e => format!("the TLS key is not valid PEM: {e}"),
    })
}

fn check_key_matches(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<(), String> {
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("the TLS key is not a usable private key: {e}"))?;
    match CertifiedKey::new(chain, signing_key).keys_match() {
        // Unknown: the provider cannot derive this key type's public half.
        // The handshake itself will still fail loudly if they differ.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(()),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err("the TLS key does not match the TLS certificate".into())
        }
        Err(e) => Err(format!("the TLS certificate and key cannot be used together: {e}")),
    }
}

/// Builds the client configuration for one endpoint. Errors are the same kind
/// of user-facing strings as `validate_tls_files`, for material that was
/// stored before validation existed or was edited on disk.
pub(crate) fn client_config(tls: &TlsOptions) -> Result<Arc<ClientConfig>, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot configure TLS: {e}"))?;

    let builder = if tls.skip_verify {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(provider)))
    } else {
        let Some(ca) = &tls.files.ca else {
            return Err("a TLS CA certificate is required unless TLS verification is skipped".into());
        };
        let mut roots = RootCertStore::empty();
        for der in parse_certs(ca, "the TLS CA certificate")? {
            roots.add(der).map_err(|e| format!("the TLS CA certificate cannot be used as a trust anchor: {e}"))?;
        }
        builder.with_root_certificates(roots)
    };

    let mut config = match (&tls.files.cert, &tls.files.key) {
        (Some(cert), Some(key)) => {
            let chain = parse_certs(cert, "the TLS certificate")?;
            let key = parse_key(key)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("the TLS certificate and key cannot be used: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    // Say explicitly that we speak HTTP/1.1: the hijack/upgrade protocol used
    // by attach and exec does not exist over HTTP/2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // A configuration serves one endpoint, so one server name: rustls's
    // default session cache is sized for 32 and allocates for all of them
    // up front, about 11 KiB of every TLS endpoint's memory, used or not
    // (docs/PERFORMANCE.md, "Memory per endpoint"). Sessions still resume.
    config.resumption = Resumption::in_memory_sessions(SESSIONS_PER_SERVER);
    Ok(Arc::new(config))
}

/// The SNI / verification name for a host: IP literals are allowed because
/// Docker hosts are very often addressed by IP, with IP SANs in their certs.
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_owned()).map_err(|e| format!("invalid TLS server name {host:?}: {e}"))
}

/// A verifier that accepts any server certificate while still checking
/// handshake signatures: what `TLSSkipVerify` means, also handy for tests
/// that talk to Berth's own self-signed HTTPS listener.
pub fn accept_any_server_cert() -> Arc<dyn ServerCertVerifier> {
    Arc::new(AcceptAnyServerCert(provider()))
}

/// `skip_verify`: the peer's identity is not checked, but handshake signatures
/// still are, so the session keys are at least bound to whoever holds the
/// presented certificate's key.
#[derive(Debug)]
struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_testkit::Pki;

    fn files(ca: &str, cert: &str, key: &str) -> TlsFiles {
        TlsFiles {
            ca: Some(ca.as_bytes().to_vec()),
            cert: Some(cert.as_bytes().to_vec()),
            key: Some(key.as_bytes().to_vec()),
        }
    }

    #[test]
    fn good_set_is_accepted() {
        let pki = Pki::new();
        let f = files(&pki.ca_pem, &pki.client_cert_pem, &pki.client_key_pem);
        validate_tls_files(&f, false, false).unwrap();
        assert!(client_config(&TlsOptions { enabled: true, skip_verify: false, files: f }).is_ok());
    }

    #[test]
    fn requirements_depend_on_skip_flags() {
        let pki = Pki::new();
        let ca_only = TlsFiles { ca: Some(pki.ca_pem.clone().into_bytes()), ..Default::default() };
        assert!(validate_tls_files(&ca_only, false, true).is_ok());
        let e = validate_tls_files(&ca_only, false, false).unwrap_err();
        assert!(e.contains("client certificate and key are required"), "{e}");

        let none = TlsFiles::default();
        assert!(validate_tls_files(&none, true, true).is_ok());
        let e = validate_tls_files(&none, false, true).unwrap_err();
        assert!(e.contains("CA certificate is required"), "{e}");

        let lone_cert = TlsFiles { cert: Some(pki.client_cert_pem.clone().into_bytes()), ..Default::default() };
        let e = validate_tls_files(&lone_cert, true, true).unwrap_err();
        assert!(e.contains("without its key"), "{e}");
    }

    #[test]
    fn not_pem_is_rejected() {
        let pki = Pki::new();
        let e =
            validate_tls_files(&files("hello", &pki.client_cert_pem, &pki.client_key_pem), false, false).unwrap_err();
        assert!(e.contains("CA certificate") && e.contains("CERTIFICATE"), "{e}");

        // A key uploaded where the CA belongs is PEM, but of the wrong kind.
        let e =
            validate_tls_files(&files(&pki.client_key_pem, &pki.client_cert_pem, &pki.client_key_pem), false, false)
                .unwrap_err();
        assert!(e.contains("does not contain a PEM-encoded CERTIFICATE"), "{e}");

        let e = validate_tls_files(&files(&pki.ca_pem, &pki.client_cert_pem, &pki.ca_pem), false, false).unwrap_err();
        assert!(e.contains("private key"), "{e}");

        let broken = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        let e =
            validate_tls_files(&files(broken, &pki.client_cert_pem, &pki.client_key_pem), false, false).unwrap_err();
        assert!(e.contains("not valid PEM"), "{e}");
    }

    #[test]
    fn key_must_match_certificate() {
        let pki = Pki::new();
        let other = Pki::new();
        let e = validate_tls_files(&files(&pki.ca_pem, &pki.client_cert_pem, &other.client_key_pem), false, false)
            .unwrap_err();
        assert!(e.contains("does not match"), "{e}");
    }

    #[test]
    fn expired_ca_is_rejected() {
        let pki = Pki::new();
        let expired = Pki::expired_ca_pem();
        let e =
            validate_tls_files(&files(&expired, &pki.client_cert_pem, &pki.client_key_pem), false, false).unwrap_err();
        assert!(e.contains("CA certificate expired"), "{e}");
    }
}
