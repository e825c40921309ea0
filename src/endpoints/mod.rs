//! Endpoints (Docker hosts): the in-memory registry the proxy reads, the
//! access rule for standard users, and TLS material on disk.

pub mod registry;

pub use registry::{EndpointEntry, Registry};
