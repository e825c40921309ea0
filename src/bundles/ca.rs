//! Berth's own certificate authority: it signs client bundles' certificates
//! and, unless the operator brings `--sslcert/--sslkey`, the HTTPS
//! listener's certificate, so that a bundle's `ca.pem` is all a Docker
//! client needs to verify Berth and be verified by it.
//!
//! Created once in `<data>/ca/` (directory 0700, key 0600) and reused; a
//! client certificate is valid only while its bundle exists in the store,
//! so losing the CA key to a backup does not let anyone in on its own
//! (though it lets them mint certificates for bundles that exist: keep it
//! as private as the store).

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use rustls::pki_types::CertificateDer;

/// Subject of Berth's CA.
const CA_NAME: &str = "Berth client bundle CA";
/// The CA outlives every certificate it signs (bundles live 90 days by
/// default; the server certificate is re-signed when it nears its end).
const CA_YEARS: i64 = 20;
/// Lifetime of the generated HTTPS certificate.
const SERVER_DAYS: i64 = 825;

pub struct Ca {
    /// The CA certificate, PEM: a bundle's `ca.pem`.
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

/// A signed certificate and, when Berth generated the key pair, its key.
pub struct Signed {
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub key_pem: Option<String>,
}

impl Ca {
    /// Loads `<dir>/ca.pem` and `<dir>/ca-key.pem`, creating both on first use.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Ca> {
        private_dir(dir)?;
        let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
        if !cert_path.exists() || !key_path.exists() {
            let (cert, key) = Ca::generate()?;
            crate::fsutil::write_private_atomic(&key_path, key.as_bytes())?;
            crate::fsutil::write_atomic(&cert_path, cert.as_bytes(), 0o644)?;
            tracing::info!(ca = %cert_path.display(), "created Berth's client bundle CA");
        }
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| anyhow::anyhow!("securing {}: {e}", key_path.display()))?;
        let read =
            |p: &PathBuf| std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()));
        Ca::from_pems(&read(&cert_path)?, &read(&key_path)?)
            .map_err(|e| anyhow::anyhow!("loading the CA {}: {e}", cert_path.display()))
    }

    /// A new CA: its certificate and key, PEM.
    pub fn generate() -> anyhow::Result<(String, String)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(CA_NAME);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(365 * CA_YEARS);
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// The CA from its certificate and key (PEM), wherever they are kept.
    pub fn from_pems(cert_pem: &str, key_pem: &str) -> anyhow::Result<Ca> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| anyhow::anyhow!("parsing the CA key: {e}"))?;
        let cert_der = rustls::pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| anyhow::anyhow!("parsing the CA certificate: {e}"))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Ca { cert_pem: cert_pem.to_string(), cert_der, issuer })
    }

    /// A client certificate (`clientAuth` only) for `common_name`, with this
    /// serial and end of validity. `public_key` comes from the client's CSR
    /// (only its key is used: never its names, extensions or CA flag); with
    /// none, Berth generates the key pair and returns its key.
    pub fn sign_client(
        &self,
        common_name: &str,
        serial: &[u8],
        not_after: time::OffsetDateTime,
        public_key: Option<&dyn PublicKeyData>,
    ) -> anyhow::Result<Signed> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::minutes(5);
        params.not_after = not_after;
        params.serial_number = Some(SerialNumber::from_slice(serial));
        params.use_authority_key_identifier_extension = true;
        self.sign(&params, public_key)
    }

    /// The HTTPS listener's certificate for these names.
    pub fn sign_server(&self, names: &[String]) -> anyhow::Result<Signed> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(names.first().map_or("berth", String::as_str));
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => n.clone().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(SERVER_DAYS);
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        self.sign(&params, None)
    }

    fn sign(&self, params: &CertificateParams, public_key: Option<&dyn PublicKeyData>) -> anyhow::Result<Signed> {
        let (cert, key_pem) = match public_key {
            Some(pk) => (params.signed_by(&DynKey(pk), &self.issuer)?, None),
            None => {
                let key = KeyPair::generate()?;
                (params.signed_by(&key, &self.issuer)?, Some(key.serialize_pem()))
            }
        };
        Ok(Signed { cert_pem: cert.pem(), cert_der: cert.der().clone(), key_pem })
    }
}

/// `rcgen` takes `impl PublicKeyData`: a CSR's key and a generated one
/// through one path.
struct DynKey<'a>(&'a dyn PublicKeyData);

impl PublicKeyData for DynKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.0.der_bytes()
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.0.algorithm()
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Berth");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// 16 random bytes with the top bit clear: a positive serial of fixed length.
pub fn random_serial_bytes() -> [u8; 16] {
    let mut b: [u8; 16] = rand::random();
    b[0] &= 0x7f;
    b[0] |= 0x01;
    b
}

fn random_serial() -> SerialNumber {
    SerialNumber::from_slice(&random_serial_bytes())
}

/// `dir`, mode 0700, also when it exists with another mode.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_created_once_and_its_key_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("ca");
        let a = Ca::load_or_create(&ca_dir).unwrap();
        let b = Ca::load_or_create(&ca_dir).unwrap();
        assert_eq!(a.cert_pem, b.cert_pem);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&ca_dir), 0o700);
        assert_eq!(mode(&ca_dir.join("ca-key.pem")), 0o600);
    }

    #[test]
    fn client_certificates_carry_the_serial_and_client_auth_only() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path()).unwrap();
        let serial = random_serial_bytes();
        let end = time::OffsetDateTime::now_utc() + time::Duration::days(3);
        let signed = ca.sign_client("bob", &serial, end, None).unwrap();
        assert!(signed.key_pem.is_some());
        let (_, cert) = x509_parser::parse_x509_certificate(&signed.cert_der).unwrap();
        assert_eq!(cert.raw_serial(), serial.as_slice());
        assert!(!cert.is_ca());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca.cert_der).unwrap();
        assert_eq!(cert.issuer(), ca_cert.subject());
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
    }

    #[test]
    fn a_csr_gives_its_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path()).unwrap();
        let client_key = KeyPair::generate().unwrap();
        // The request asks to be a CA for another name: none of it is taken.
        let mut asked = CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
        asked.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let csr = asked.serialize_request(&client_key).unwrap().pem().unwrap();
        let parsed = rcgen::CertificateSigningRequestParams::from_pem(&csr).unwrap();
        let end = time::OffsetDateTime::now_utc() + time::Duration::days(3);
        let signed = ca.sign_client("bob", &random_serial_bytes(), end, Some(&parsed.public_key)).unwrap();
        assert!(signed.key_pem.is_none());
        let (_, cert) = x509_parser::parse_x509_certificate(&signed.cert_der).unwrap();
        assert!(!cert.is_ca());
        assert!(cert.subject_alternative_name().unwrap().is_none());
        assert_eq!(&*cert.public_key().subject_public_key.data, client_key.der_bytes());
    }
}
