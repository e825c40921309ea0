//! Test support for Berth, kept out of the product crate so that `cargo
//! install` ships the daemon alone and the library exports no test code.
//!
//! Unit tests, integration tests, benchmarks and the load scripts all drive
//! the very same fake Docker Engine, so a number measured in a benchmark
//! means the same thing as a behaviour asserted in a test.
//!
//! This crate does not depend on `berth`: a test binary that linked both
//! would hold two copies of Berth's types that do not unify. It talks to
//! the daemon as an operator would, over HTTP and the command line
//! (see [`harness`]).
//!
//! - [`mock_docker`]: the fake Docker Engine (also the `berth-mock-docker`
//!   binary, for scripts/bench/*.sh).
//! - [`pki`]: a throwaway CA with server and client certificates.
//! - [`checksum`]: the streaming checksum the mock and the load generator
//!   agree on.
//! - [`servers`]: small HTTP/1.1 servers standing in for Docker hosts, for
//!   the connector's and the proxy's unit tests.
//! - [`harness`]: starts the real `berth` binary on free loopback ports with
//!   a temporary data directory; Docker and CLI availability checks.
//! - [`postgres`]: a throwaway PostgreSQL cluster (replica tests, and the
//!   suite on the PostgreSQL store with `BERTH_TEST_STORE=postgres`).
//! - [`terminal`]: a WebSocket client for the terminal routes.
//! - [`endpoints`], [`stacks`], [`users`]: helpers of the endpoint, stack
//!   and restricted-access test binaries.
//!
//! The `loadgen` binary is the load generator of scripts/bench/*.sh.

// Test support: an unwrap that fails is a failed test, which is what it
// should be; the product crate denies them.
#![allow(clippy::unwrap_used, clippy::needless_pass_by_value)]

pub mod checksum;
pub mod endpoints;
pub mod harness;
pub mod mock_docker;
pub mod pki;
pub mod postgres;
pub mod servers;
pub mod stacks;
pub mod terminal;
pub mod users;

pub use checksum::Fnv1a64;
pub use mock_docker::{FailMode, MockBuilder, MockDocker, MockOptions, RecordedRequest};
pub use pki::Pki;

/// The error type of the mock's bodies, as hyper's boxed bodies expect.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
