//! Everything a request handler can reach, built once at start-up and
//! shared behind an `Arc`.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::auth::jwt::JwtKeys;
use crate::auth::ratelimit::RateLimiter;
use crate::auth::{Identity, Principal};
use crate::config::Config;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::store::model::Settings;
use crate::store::{Store, StoreError};

pub struct AppState {
    pub config: Config,
    pub store: Store,
    pub metrics: Metrics,
    pub identity: Identity,
    pub jwt: JwtKeys,
    /// Read on logins and settings calls only, never on the proxy path.
    pub(crate) settings: RwLock<Arc<Settings>>,
    pub limiter: RateLimiter,
    /// bcrypt hash that unknown usernames are checked against.
    pub dummy_hash: String,
    pub started: Instant,
    pub instance_id: String,
    pub shutdown: CancellationToken,
    pub endpoints: crate::endpoints::EndpointMap,
    pub registries: crate::registries::Registries,
    /// Seals secrets Berth must read back (registry passwords).
    pub sealer: crate::auth::seal::Sealer,
    /// Stacks, their per-name locks and the deployer programs.
    pub stacks: crate::stacks::Stacks,
    /// Resource controls of Docker objects, read by the restricted proxy.
    pub controls: crate::controls::ControlTable,
    /// Client bundles and Berth's CA.
    pub bundles: crate::bundles::Bundles,
    /// The audit trail: who changed what.
    pub audit: crate::audit::Trail,
}

impl AppState {
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_settings(&self, s: Settings) {
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(s);
    }

    /// Admin creation is allowed only within the init window after start
    /// (Portainer: 5 minutes), so an exposed fresh instance cannot be
    /// claimed by a stranger days later.
    pub fn admin_init_open(&self) -> bool {
        self.started.elapsed() < self.config.admin_init_window
    }

    pub fn session_lifetime(&self) -> Duration {
        humantime::parse_duration(&go_duration_to_humantime(&self.settings().user_session_timeout))
            .unwrap_or(Duration::from_secs(8 * 3600))
    }

    /// Authenticates a request's credentials, counting a failure by its
    /// reason. Every authenticated route goes through here (the API router,
    /// `/metrics`, the Docker proxy), so no path can forget the count.
    ///
    /// The credentials are the request's headers and, on HTTPS, the client
    /// certificate the connection presented (a [`crate::bundles::ClientCert`]
    /// in the request's extensions).
    pub fn authenticate<B>(&self, req: &http::Request<B>) -> Result<Principal, ApiError> {
        let cert = req.extensions().get::<crate::bundles::ClientCert>();
        let (headers, query) = (req.headers(), req.uri().query());
        match crate::auth::extract::authenticate_with_cert(
            headers,
            query,
            cert,
            &self.identity,
            &self.jwt,
            &self.bundles,
        ) {
            Ok(p) => {
                let m = &self.metrics;
                let by = if p.bundle.is_some() {
                    &m.auth_bundle
                } else if p.via_api_key {
                    &m.auth_api_key
                } else {
                    &m.auth_jwt
                };
                by.inc();
                Ok(p)
            }
            Err(f) => {
                self.metrics.auth_failures.with_label_values(&[f.label()]).inc();
                Err(f.to_error())
            }
        }
    }

    /// What endpoint changes and health checks use, and nothing else.
    pub fn endpoint_ops(&self) -> crate::endpoints::Ops<'_> {
        crate::endpoints::Ops {
            config: &self.config,
            endpoints: &self.endpoints,
            store: &self.store,
            metrics: &self.metrics,
            shutdown: &self.shutdown,
        }
    }

    /// What stack operations see of the state.
    pub fn stack_ops(&self) -> crate::stacks::ops::Ops<'_> {
        crate::stacks::ops::Ops {
            config: &self.config,
            endpoints: &self.endpoints,
            identity: &self.identity,
            metrics: &self.metrics,
            sealer: &self.sealer,
            registries: &self.registries,
            stacks: &self.stacks,
            store: &self.store,
        }
    }

    /// The endpoint health checker's view of the state.
    pub fn health(&self) -> crate::endpoints::health::Checker<'_> {
        self.endpoint_ops().health()
    }

    /// Runs a store write and records its latency.
    pub async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&crate::store::Tx<'_>) -> Result<R, StoreError> + Send + 'static,
    {
        self.endpoint_ops().write(f).await
    }
}

/// Portainer stores Go durations ("8h", "1h30m", "5m0s"); humantime wants
/// spaces between units.
pub fn go_duration_to_humantime(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    let mut prev_alpha = false;
    for c in s.chars() {
        if c.is_ascii_digit() && prev_alpha {
            out.push(' ');
        }
        prev_alpha = c.is_ascii_alphabetic();
        out.push(c);
    }
    out
}

pub fn parse_go_duration(s: &str) -> Option<Duration> {
    if s.is_empty() {
        return None;
    }
    humantime::parse_duration(&go_duration_to_humantime(s)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_go_duration("8h"), Some(Duration::from_secs(8 * 3600)));
        assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("5m0s"), Some(Duration::from_secs(300)));
        assert_eq!(parse_go_duration("bogus"), None);
    }
}
