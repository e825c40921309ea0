//! Client bundles (issue 18): Docker's own mutual TLS as a Berth credential,
//! for the many Docker clients that can send no header (programs on
//! Docker's Go SDK, docker-py's `attach_socket`, CI runners): they take only
//! `DOCKER_HOST` and `DOCKER_CERT_PATH`.
//!
//! A bundle is a certificate of Berth's own CA ([`ca`]) whose serial number
//! names a record in the store; the HTTPS listener asks for (never
//! requires) a client certificate of that CA, and a request that presents
//! one is that bundle's user. The allow list is the set of live bundles:
//! a certificate whose bundle was deleted (revoked) or has expired is
//! refused at once, whatever its own validity says, and the user's current
//! role and access decide what it may do, as for any other credential.
//!
//! [`archive`] builds the zip a user downloads: `ca.pem`, `cert.pem`,
//! `key.pem` (unless the key came from a CSR), `env.sh` and `contexts.sh`.

pub mod archive;
pub mod ca;

use std::sync::Arc;

use crate::store::model::{Bundle, Id};
use crate::table::Table;

/// The client certificate a TLS connection presented, as the handshake
/// verified it (chain to Berth's CA, validity, `clientAuth`): its serial
/// number in lower-case hex. Put in each request's extensions by the
/// server, read by [`crate::state::AppState::authenticate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCert {
    pub serial: Arc<str>,
}

impl ClientCert {
    /// The serial of a DER certificate (the leaf the client sent).
    pub fn from_der(der: &[u8]) -> Option<ClientCert> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        Some(ClientCert { serial: Arc::from(hex(cert.raw_serial())) })
    }
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Why a certificate does not authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No live bundle has this serial: revoked (deleted), or never issued here.
    Revoked,
    Expired,
}

/// The live bundles, by serial and by id, and the CA that signs them.
pub struct Bundles {
    pub ca: ca::Ca,
    by_serial: Table<Arc<str>, Arc<Bundle>>,
    by_id: Table<Id, Arc<Bundle>>,
}

impl Bundles {
    pub fn new(ca: ca::Ca, records: Vec<Bundle>) -> Bundles {
        let b = Bundles { ca, by_serial: Table::default(), by_id: Table::default() };
        for r in records {
            b.put(r);
        }
        b
    }

    pub fn put(&self, b: Bundle) {
        let b = Arc::new(b);
        self.by_serial.put(Arc::from(b.serial.as_str()), b.clone());
        self.by_id.put(b.id, b);
    }

    pub fn remove(&self, id: Id) -> Option<Arc<Bundle>> {
        let b = self.by_id.remove(&id)?;
        self.by_serial.remove(b.serial.as_str());
        Some(b)
    }

    pub fn get(&self, id: Id) -> Option<Arc<Bundle>> {
        self.by_id.get(&id)
    }

    pub fn all(&self) -> Vec<Arc<Bundle>> {
        self.by_id.all()
    }

    /// A user's bundles, oldest first.
    pub fn of_user(&self, user: Id) -> Vec<Arc<Bundle>> {
        let mut v = self.by_id.filter(|b| b.user_id == user);
        v.sort_by_key(|b| b.id);
        v
    }

    /// The bundle a connection's certificate belongs to, if it is live at
    /// `now` (unix seconds). A map read: this runs on every request that
    /// authenticates by certificate.
    pub fn authenticate(&self, cert: &ClientCert, now: u64) -> Result<Arc<Bundle>, Refusal> {
        let b = self.by_serial.get(&*cert.serial).ok_or(Refusal::Revoked)?;
        if b.expires_at <= now {
            return Err(Refusal::Expired);
        }
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: Id, serial: &str, expires_at: u64) -> Bundle {
        Bundle {
            id,
            user_id: 7,
            description: "ci".into(),
            serial: serial.into(),
            fingerprint: String::new(),
            date_created: 0,
            expires_at,
            scope: None,
        }
    }

    #[test]
    fn only_live_bundles_authenticate() {
        let dir = tempfile::tempdir().unwrap();
        let b = Bundles::new(ca::Ca::load_or_create(dir.path()).unwrap(), vec![record(1, "0a", 100)]);
        b.put(record(2, "0b", 10));
        let cert = |s: &str| ClientCert { serial: Arc::from(s) };
        assert_eq!(b.authenticate(&cert("0a"), 50).unwrap().id, 1);
        assert_eq!(b.authenticate(&cert("0b"), 50).unwrap_err(), Refusal::Expired);
        assert_eq!(b.authenticate(&cert("0c"), 50).unwrap_err(), Refusal::Revoked);
        b.remove(1);
        assert_eq!(b.authenticate(&cert("0a"), 50).unwrap_err(), Refusal::Revoked);
        assert_eq!(b.of_user(7).len(), 1);
    }

    #[test]
    fn serials_are_read_from_the_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca::Ca::load_or_create(dir.path()).unwrap();
        let serial = ca::random_serial_bytes();
        let end = time::OffsetDateTime::now_utc() + time::Duration::days(1);
        let signed = ca.sign_client("bob", &serial, end, None).unwrap();
        assert_eq!(&*ClientCert::from_der(&signed.cert_der).unwrap().serial, hex(&serial));
    }
}
