//! Test support that lives in the library (not under `tests/`) so that unit
//! tests, integration tests, benchmarks and the `berth-mock-docker` binary
//! all drive the very same fake Docker Engine, and a number measured in a
//! benchmark means the same thing as a behaviour asserted in a test.
//!
//! Nothing here is used by the daemon itself.

pub mod checksum;
pub mod mock_docker;
pub mod pki;

pub use checksum::Fnv1a64;
pub use mock_docker::{FailMode, MockBuilder, MockDocker, MockOptions, RecordedRequest};
pub use pki::Pki;
