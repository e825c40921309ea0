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
