//! Endpoints (Docker hosts): the in-memory registry the proxy reads, the
//! access rule for standard users, and TLS material on disk.

pub mod checks;
pub mod health;
pub mod load;
pub mod redact;
pub mod register;
pub mod registry;
pub mod tls_files;

pub use registry::{EndpointEntry, Registry};
