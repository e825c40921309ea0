//! Endpoints (Docker hosts): the in-memory map the proxy reads, the
//! access rule for standard users, and TLS material on disk.

pub mod checks;
pub mod health;
pub mod load;
pub mod map;
pub mod register;
pub mod tls_files;

pub use map::{EndpointEntry, EndpointMap};

use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError, Tx};

/// What endpoint changes ([`register`]) and health checks touch, and
/// nothing else: the domain takes these rather than the application's
/// whole state, which sits above it. [`crate::state::AppState::endpoint_ops`]
/// builds one.
#[derive(Clone, Copy)]
pub struct Ops<'a> {
    pub config: &'a Config,
    pub endpoints: &'a EndpointMap,
    pub store: &'a Store,
    pub metrics: &'a Metrics,
    pub shutdown: &'a CancellationToken,
}

impl<'a> Ops<'a> {
    /// Runs a store write and records its latency.
    pub async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<R, StoreError> + Send + 'static,
    {
        let t = Instant::now();
        let r = self.store.write(f).await;
        self.metrics.store_write.observe(t.elapsed().as_secs_f64());
        r
    }

    /// The health checker, with the configured timeout and concurrency.
    pub fn health(self) -> health::Checker<'a> {
        health::Checker {
            endpoints: self.endpoints,
            store: self.store,
            metrics: self.metrics,
            timeout: self.config.health_timeout,
            concurrency: self.config.health_concurrency,
            shutdown: self.shutdown,
        }
    }
}
