//! Sealing of secrets Berth must be able to read back (registry passwords):
//! AES-256-GCM with a random nonce, under a key kept in the data directory
//! (mode 0600). Portainer stores them in clear; a stolen store file alone
//! reveals nothing here.

use std::path::Path;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::Engine;

pub struct Sealer {
    key: LessSafeKey,
}

impl Sealer {
    pub fn load_or_create(path: &Path) -> std::io::Result<Sealer> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let k: [u8; 32] = rand::random();
                crate::fsutil::write_private_atomic(path, &k)?;
                k.to_vec()
            }
            Err(e) => return Err(e),
        };
        Sealer::from_key(&bytes).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{} is not a 32-byte key", path.display()))
        })
    }

    pub fn from_key(bytes: &[u8]) -> Option<Sealer> {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).ok()?;
        Some(Sealer { key: LessSafeKey::new(unbound) })
    }

    pub fn seal(&self, plain: &str) -> String {
        if plain.is_empty() {
            return String::new();
        }
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let mut buf = plain.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce_bytes), Aad::empty(), &mut buf)
            .expect("AES-GCM sealing of a short secret cannot fail");
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buf);
        base64::engine::general_purpose::STANDARD.encode(out)
    }

    pub fn open(&self, sealed: &str) -> Option<String> {
        if sealed.is_empty() {
            return Some(String::new());
        }
        let raw = base64::engine::general_purpose::STANDARD.decode(sealed).ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (n, ct) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(n).ok()?;
        let mut buf = ct.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::empty(), &mut buf).ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let s = Sealer::from_key(&[3u8; 32]).unwrap();
        let sealed = s.seal("hunter2");
        assert_ne!(sealed, "hunter2");
        assert_eq!(s.open(&sealed).as_deref(), Some("hunter2"));
        let other = Sealer::from_key(&[4u8; 32]).unwrap();
        assert_eq!(other.open(&sealed), None);
        assert_eq!(s.open("").as_deref(), Some(""));
    }
}
