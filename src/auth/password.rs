//! bcrypt hashing (Portainer's scheme, so imported hashes verify), always
//! on the blocking pool: a hash takes tens of milliseconds of CPU.

use crate::error::ApiError;

/// Hashes off the async workers. Passwords over 72 bytes are refused rather
/// than silently truncated.
pub async fn hash(password: String, cost: u32) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || bcrypt::non_truncating_hash(password.as_bytes(), cost))
        .await
        .map_err(|e| ApiError::internal("Unable to hash password", e))?
        .map_err(|e| match e {
            bcrypt::BcryptError::Truncation(_) => {
                ApiError::invalid_payload("Password must not be longer than 72 bytes")
            }
            other => ApiError::internal("Unable to hash password", other),
        })
}

/// Verifies off the async workers. Any malformed hash is a plain mismatch.
pub async fn verify(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || bcrypt::verify(password.as_bytes(), &hash).unwrap_or(false))
        .await
        .unwrap_or(false)
}

/// A hash to verify against when the user does not exist, so that an
/// unknown username costs the same time as a wrong password.
pub fn dummy_hash(cost: u32) -> String {
    bcrypt::hash(rand::random::<[u8; 16]>(), cost).expect("bcrypt of random bytes")
}
