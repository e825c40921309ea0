//! Who is calling: credentials (JWT, API key), password hashing, the login
//! rate limiter, and the in-memory identity tables the request path reads.

pub mod apikey;
pub mod extract;
pub mod identity;
pub mod jwt;
pub mod paced_bcrypt;
pub mod password;
pub mod ratelimit;
pub mod seal;

pub use extract::Principal;
pub use identity::Identity;

/// Current unix time in seconds.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
