//! Prometheus metrics on a registry owned by the app (never the global
//! one), so that tests can run several daemons in one process.
//!
//! Labels stay bounded: route *templates* (ids replaced by `{id}`), method,
//! status or status class, endpoint id. Never a raw path, never a token.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub const HTTP_REQUESTS: &str = "berth_http_requests_total";
pub const HTTP_DURATION: &str = "berth_http_request_duration_seconds";
pub const AUTH_FAILURES: &str = "berth_auth_failures_total";
pub const RATE_LIMITED: &str = "berth_rate_limited_total";
pub const STORE_WRITE: &str = "berth_store_write_duration_seconds";
pub const PROXY_REQUESTS: &str = "berth_proxy_requests_total";
pub const PROXY_DURATION: &str = "berth_proxy_request_duration_seconds";
pub const PROXY_BYTES_IN: &str = "berth_proxy_request_bytes_total";
pub const PROXY_BYTES_OUT: &str = "berth_proxy_response_bytes_total";
pub const UPSTREAM_CONNECT_FAILURES: &str = "berth_upstream_connect_failures_total";
pub const TUNNELS_OPEN: &str = "berth_tunnels_open";
pub const ENDPOINT_UP: &str = "berth_endpoint_up";
pub const ENDPOINTS_BY_STATUS: &str = "berth_endpoints";
pub const HEALTH_DURATION: &str = "berth_endpoint_check_duration_seconds";
pub const HEALTH_FAILURES: &str = "berth_endpoint_check_failures_total";
pub const CONNECTIONS_OPEN: &str = "berth_connections_open";
pub const POOL_CONNECTIONS: &str = "berth_upstream_pool_connections";
pub const STACK_DEPLOYS: &str = "berth_stack_deploys_total";
pub const STACK_DEPLOY_DURATION: &str = "berth_stack_deploy_duration_seconds";

/// Stack operations run child processes for seconds to minutes.
const DEPLOY_BUCKETS: &[f64] = &[0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// Latency buckets from 100 µs to 30 s: proxied calls are sub-millisecond,
/// logins ~50 ms, image pulls minutes (those land in +Inf).
const BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

pub struct Metrics {
    pub registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub auth_failures: IntCounterVec,
    pub rate_limited: IntCounterVec,
    pub store_write: Histogram,
    pub proxy_requests: IntCounterVec,
    pub proxy_duration: HistogramVec,
    pub proxy_bytes_in: IntCounterVec,
    pub proxy_bytes_out: IntCounterVec,
    pub upstream_connect_failures: IntCounterVec,
    pub tunnels_open: IntGauge,
    pub endpoint_up: IntGaugeVec,
    pub endpoints_by_status: IntGaugeVec,
    pub health_duration: HistogramVec,
    pub health_failures: IntCounterVec,
    pub connections_open: IntGauge,
    pub pool_connections: IntGaugeVec,
    /// Stack operations by type (swarm/compose), method (string, file,
    /// repository, update, redeploy, start, stop, remove, rollback) and
    /// outcome (ok, error, timeout).
    pub stack_deploys: IntCounterVec,
    pub stack_deploy_duration: HistogramVec,
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    r.register(Box::new(c.clone())).expect("metric names are unique constants");
    c
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let h = |name: &str, help: &str| HistogramOpts::new(name, help).buckets(BUCKETS.to_vec());
        let m = Metrics {
            http_requests: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(HTTP_REQUESTS, "API requests by route template, method and status"),
                    &["route", "method", "status"],
                )
                .unwrap(),
            ),
            http_duration: reg(
                &r,
                HistogramVec::new(h(HTTP_DURATION, "API request latency by route template"), &["route", "method"])
                    .unwrap(),
            ),
            auth_failures: reg(
                &r,
                IntCounterVec::new(Opts::new(AUTH_FAILURES, "Refused credentials and logins by reason"), &["reason"])
                    .unwrap(),
            ),
            rate_limited: reg(
                &r,
                IntCounterVec::new(Opts::new(RATE_LIMITED, "Requests refused by the rate limiter"), &["route"])
                    .unwrap(),
            ),
            store_write: reg(
                &r,
                Histogram::with_opts(h(STORE_WRITE, "Durable store write latency (commit and fsync)")).unwrap(),
            ),
            proxy_requests: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        PROXY_REQUESTS,
                        "Docker API requests proxied, by endpoint, route template and status class",
                    ),
                    &["endpoint", "route", "status_class"],
                )
                .unwrap(),
            ),
            proxy_duration: reg(
                &r,
                HistogramVec::new(
                    h(PROXY_DURATION, "Time to the Docker host's response headers"),
                    &["endpoint", "route"],
                )
                .unwrap(),
            ),
            proxy_bytes_in: reg(
                &r,
                IntCounterVec::new(Opts::new(PROXY_BYTES_IN, "Request body bytes sent to Docker hosts"), &["endpoint"])
                    .unwrap(),
            ),
            proxy_bytes_out: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(PROXY_BYTES_OUT, "Response body bytes relayed from Docker hosts"),
                    &["endpoint"],
                )
                .unwrap(),
            ),
            upstream_connect_failures: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(UPSTREAM_CONNECT_FAILURES, "Failed connections to Docker hosts"),
                    &["endpoint", "kind"],
                )
                .unwrap(),
            ),
            tunnels_open: reg(
                &r,
                IntGauge::new(TUNNELS_OPEN, "Hijacked connections (attach, exec, websocket, h2c) open now").unwrap(),
            ),
            endpoint_up: reg(
                &r,
                IntGaugeVec::new(Opts::new(ENDPOINT_UP, "1 when the endpoint's last check succeeded"), &["endpoint"])
                    .unwrap(),
            ),
            endpoints_by_status: reg(
                &r,
                IntGaugeVec::new(Opts::new(ENDPOINTS_BY_STATUS, "Endpoints by status (up/down)"), &["status"]).unwrap(),
            ),
            health_duration: reg(
                &r,
                HistogramVec::new(h(HEALTH_DURATION, "Duration of endpoint health checks"), &["endpoint"]).unwrap(),
            ),
            health_failures: reg(
                &r,
                IntCounterVec::new(Opts::new(HEALTH_FAILURES, "Failed endpoint health checks"), &["endpoint"]).unwrap(),
            ),
            connections_open: reg(&r, IntGauge::new(CONNECTIONS_OPEN, "Client connections open now").unwrap()),
            pool_connections: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        POOL_CONNECTIONS,
                        "Connections to each Docker host, idle or busy (hijacked ones excluded)",
                    ),
                    &["endpoint", "state"],
                )
                .unwrap(),
            ),
            stack_deploys: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(STACK_DEPLOYS, "Stack deployer runs by stack type, method and outcome"),
                    &["type", "method", "outcome"],
                )
                .unwrap(),
            ),
            stack_deploy_duration: reg(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(STACK_DEPLOY_DURATION, "Duration of stack operations (clone and deployer runs)")
                        .buckets(DEPLOY_BUCKETS.to_vec()),
                    &["type", "method"],
                )
                .unwrap(),
            ),
            registry: r,
        };
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            let _ = m.registry.register(Box::new(pc));
        }
        m
    }

    /// The text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(16 * 1024);
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }

    /// Forget an endpoint's series when it is deleted, so labels stay bounded.
    pub fn forget_endpoint(&self, id: &str) {
        let _ = self.endpoint_up.remove_label_values(&[id]);
        let _ = self.proxy_bytes_in.remove_label_values(&[id]);
        let _ = self.proxy_bytes_out.remove_label_values(&[id]);
        let _ = self.health_failures.remove_label_values(&[id]);
        let _ = self.health_duration.remove_label_values(&[id]);
        let _ = self.pool_connections.remove_label_values(&[id, "idle"]);
        let _ = self.pool_connections.remove_label_values(&[id, "open"]);
    }
}

pub fn status_class(code: u16) -> &'static str {
    match code {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Docker API path → bounded route template: version prefix dropped, ids
/// and names replaced (`/containers/{id}/json`).
pub fn docker_route_template(path: &str) -> String {
    let path = path.split('?').next().unwrap_or("");
    let mut segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segs.first().is_some_and(|s| is_version(s)) {
        segs.remove(0);
    }
    let Some(&first) = segs.first() else { return "/".into() };
    const KNOWN: &[&str] = &[
        "_ping",
        "auth",
        "build",
        "commit",
        "configs",
        "containers",
        "distribution",
        "events",
        "exec",
        "grpc",
        "images",
        "info",
        "networks",
        "nodes",
        "plugins",
        "secrets",
        "services",
        "session",
        "swarm",
        "system",
        "tasks",
        "version",
        "volumes",
    ];
    if !KNOWN.contains(&first) {
        return "/{other}".into();
    }
    const COLLECTION_VERBS: &[&str] = &[
        "json",
        "create",
        "prune",
        "load",
        "get",
        "search",
        "init",
        "join",
        "leave",
        "update",
        "unlock",
        "unlockkey",
        "df",
        "privileges",
        "pull",
    ];
    let mut out = format!("/{first}");
    if segs.len() == 1 {
        return out;
    }
    let second = segs[1];
    if COLLECTION_VERBS.contains(&second) && segs.len() == 2 {
        out.push('/');
        out.push_str(second);
        return out;
    }
    match first {
        // Image and plugin names contain slashes: the last segment is the action when known.
        "images" | "plugins" | "distribution" => {
            const ACTIONS: &[&str] = &["json", "history", "push", "tag", "get", "enable", "disable", "upgrade", "set"];
            let last = segs[segs.len() - 1];
            if segs.len() > 2 && ACTIONS.contains(&last) {
                out.push_str("/{name}/");
                out.push_str(last);
            } else {
                out.push_str("/{name}");
            }
        }
        _ => {
            out.push_str("/{id}");
            if segs.len() > 2 {
                let rest = segs[2];
                let action = if rest.chars().all(|c| c.is_ascii_lowercase() || c == '_') { rest } else { "{sub}" };
                out.push('/');
                out.push_str(action);
            }
        }
    }
    out
}

fn is_version(s: &str) -> bool {
    s.strip_prefix('v').is_some_and(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_hide_ids() {
        assert_eq!(docker_route_template("/v1.41/containers/abc123/json"), "/containers/{id}/json");
        assert_eq!(docker_route_template("/containers/json?all=1"), "/containers/json");
        assert_eq!(docker_route_template("/_ping"), "/_ping");
        assert_eq!(docker_route_template("/images/library/busybox:latest/json"), "/images/{name}/json");
        assert_eq!(docker_route_template("/images/create?fromImage=x"), "/images/create");
        assert_eq!(docker_route_template("/exec/deadbeef/start"), "/exec/{id}/start");
        assert_eq!(docker_route_template("/whatever/x"), "/{other}");
    }

    #[test]
    fn registries_are_independent() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.tunnels_open.set(3);
        assert_eq!(b.tunnels_open.get(), 0);
        assert!(String::from_utf8(a.render()).unwrap().contains("berth_tunnels_open 3"));
    }
}
