//! API keys: `ptr_` + base64 of 32 random bytes, shown once; only the
//! SHA-256 digest and a 7-character prefix are kept.

use base64::Engine;
use sha2::{Digest, Sha256};

pub const PREFIX: &str = "ptr_";

pub fn generate() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{PREFIX}{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

pub fn digest(raw: &str) -> [u8; 32] {
    Sha256::digest(raw.as_bytes()).into()
}

pub fn digest_b64(d: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(d)
}

pub fn display_prefix(raw: &str) -> String {
    raw.chars().take(7).collect()
}

/// A fresh unrestricted key record of `user_id` and its raw value, for the
/// unit tests of the modules that hold and check keys.
#[cfg(test)]
pub(crate) fn for_tests(id: u64, user_id: u64) -> (String, crate::store::model::ApiKey) {
    let raw = generate();
    let key = crate::store::model::ApiKey {
        id,
        user_id,
        description: "k".into(),
        prefix: display_prefix(&raw),
        digest: digest_b64(&digest(&raw)),
        date_created: 0,
        last_used: 0,
        expires_at: 0,
        scope: Default::default(),
    };
    (raw, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_is_portainers() {
        let k = generate();
        assert!(k.starts_with("ptr_"));
        assert_eq!(k.len(), 48);
        assert_ne!(k, generate());
        assert_eq!(display_prefix(&k).len(), 7);
    }
}
