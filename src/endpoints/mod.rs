//! Endpoints (Docker hosts): the in-memory registry the proxy reads, the
//! access rule for standard users, and TLS material on disk.

pub mod health;
pub mod load;
pub mod map;
pub mod tls_files;

pub use map::{EndpointEntry, EndpointMap};
