//! HS256 session tokens with Portainer's claims.
//!
//! Unlike Portainer, the signing secret is kept in the data directory (or a
//! file named by config), so sessions survive a restart and several Berth
//! processes can share it.

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claims {
    pub id: u64,
    pub username: String,
    pub role: u8,
    pub scope: String,
    pub force_change_password: bool,
    pub jti: String,
    pub iat: u64,
    pub exp: u64,
    /// The user's token generation when issued (Berth's addition).
    #[serde(default)]
    pub gen: u64,
}

pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("invalid token")]
    Invalid,
    #[error("expired token")]
    Expired,
}

impl JwtKeys {
    pub fn from_secret(secret: &[u8]) -> JwtKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.required_spec_claims = ["exp".to_string()].into_iter().collect();
        JwtKeys { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret), validation }
    }

    /// Reads the secret file, creating it (32 random bytes, mode 0600) on
    /// first start.
    pub fn load_or_create(path: &Path) -> std::io::Result<JwtKeys> {
        match std::fs::read(path) {
            Ok(bytes) if bytes.len() >= 32 => Ok(JwtKeys::from_secret(&bytes)),
            Ok(_) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("JWT secret {} is shorter than 32 bytes", path.display()),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secret: [u8; 32] = rand::random();
                crate::fsutil::write_private_atomic(path, &secret)?;
                Ok(JwtKeys::from_secret(&secret))
            }
            Err(e) => Err(e),
        }
    }

    pub fn sign(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail")
    }

    /// Verifies signature, algorithm (HS256 only: `none` and others are
    /// refused) and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, JwtError> {
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(d) => Ok(d.claims),
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => Err(JwtError::Expired),
            Err(_) => Err(JwtError::Invalid),
        }
    }
}

/// Claims of user 1 (admin) expiring at `exp`, for tests.
#[cfg(test)]
pub(crate) fn test_claims(exp: u64) -> Claims {
    Claims {
        id: 1,
        username: "admin".into(),
        role: 1,
        scope: "default".into(),
        force_change_password: false,
        jti: "j".into(),
        iat: 1,
        exp,
        gen: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::test_claims as claims;
    use super::*;
    use base64::Engine;

    #[test]
    fn round_trip() {
        let k = JwtKeys::from_secret(&[7u8; 32]);
        let t = k.sign(&claims(crate::auth::now_secs() + 60));
        assert_eq!(k.verify(&t).unwrap().username, "admin");
    }

    #[test]
    fn other_key_expired_and_alg_none_are_refused() {
        let k = JwtKeys::from_secret(&[7u8; 32]);
        let other = JwtKeys::from_secret(&[8u8; 32]);
        let t = other.sign(&claims(crate::auth::now_secs() + 60));
        assert!(matches!(k.verify(&t), Err(JwtError::Invalid)));
        let t = k.sign(&claims(crate::auth::now_secs() - 10));
        assert!(matches!(k.verify(&t), Err(JwtError::Expired)));
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(serde_json::to_vec(&claims(crate::auth::now_secs() + 60)).unwrap())
        );
        assert!(k.verify(&none).is_err());
        assert!(k.verify("garbage").is_err());
    }
}
