//! Prometheus metrics on a registry owned by the app (never the global
//! one), so that tests can run several daemons in one process.
//!
//! Labels stay bounded: route *templates* (ids replaced by `{id}`, unknown
//! segments by `{other}`), the known methods (`other` for the rest), status
//! or status class, endpoint id. Never a raw path, never a token, never a
//! string the client chose.

use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use prometheus::proto::{LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub const HTTP_REQUESTS: &str = "berth_http_requests_total";
pub const HTTP_DURATION: &str = "berth_http_request_duration_seconds";
pub const AUTH_FAILURES: &str = "berth_auth_failures_total";
pub const AUTH_TOTAL: &str = "berth_auth_total";
pub const AUDIT_EVENTS: &str = "berth_audit_events_total";
pub const AUDIT_DROPPED: &str = "berth_audit_dropped_total";
pub const AUDIT_FAILURES: &str = "berth_audit_write_failures_total";
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
pub const HEALTH_LAST_DURATION: &str = "berth_endpoint_check_last_duration_seconds";
pub const HEALTH_FAILURES: &str = "berth_endpoint_check_failures_total";
pub const CONNECTIONS_OPEN: &str = "berth_connections_open";
pub const POOL_CONNECTIONS: &str = "berth_upstream_pool_connections";
pub const BREAKER_STATE: &str = "berth_upstream_breaker_state";
pub const CONNECTIONS_REFUSED: &str = "berth_connections_refused_total";
pub const ACCESS_DENIED: &str = "berth_access_denied_total";
pub const STACK_DEPLOYS: &str = "berth_stack_deploys_total";
pub const TERMINALS_OPEN: &str = "berth_terminals_open";
pub const TERMINAL_BYTES: &str = "berth_terminal_bytes_total";
pub const TERMINAL_SESSIONS: &str = "berth_terminal_sessions_total";
pub const STACK_DEPLOY_DURATION: &str = "berth_stack_deploy_duration_seconds";
pub const FANOUT_REQUESTS: &str = "berth_fanout_requests_total";
pub const FANOUT_FAILURES: &str = "berth_fanout_endpoint_failures_total";
pub const FANOUT_DURATION: &str = "berth_fanout_duration_seconds";
pub const FANOUT_ENDPOINTS: &str = "berth_fanout_endpoints_total";

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
    /// Authenticated requests by credential: `berth_auth_total{method}`,
    /// one handle per method so the request path does no label lookup.
    pub auth_jwt: IntCounter,
    pub auth_api_key: IntCounter,
    pub auth_bundle: IntCounter,
    /// Audit events written, by kind (api, docker, auth, terminal).
    pub audit_events: IntCounterVec,
    /// Proxied calls whose audit event was dropped: the queue was full.
    pub audit_dropped: IntCounter,
    /// Audit events that could not be written (store or file errors).
    pub audit_failures: IntCounter,
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
    /// Every endpoint's checks in one histogram: one per endpoint was 20
    /// series each, about 0.8 KB of memory per idle endpoint and 1.4 KB of
    /// text per scrape (docs/PERFORMANCE.md, metrics at 10,000 endpoints),
    /// for a figure the last check's gauge below gives per host.
    pub health_duration: Histogram,
    /// Each endpoint's last check, as Prometheus's blackbox exporter reports
    /// a probe: one series per endpoint.
    pub health_last_duration: GaugeVec,
    pub health_failures: IntCounterVec,
    pub connections_open: IntGauge,
    /// Client connections closed at once by a connection limit.
    pub connections_refused: IntCounterVec,
    /// Stack operations by type (swarm/compose), method (string, file,
    /// repository, update, redeploy, start, stop, remove, rollback) and
    /// outcome (ok, error, timeout).
    pub stack_deploys: IntCounterVec,
    pub stack_deploy_duration: HistogramVec,
    /// Standard users' Docker requests refused, by endpoint and rule
    /// ([`crate::access::DenyRule::name`], a fixed set).
    pub access_denied: IntCounterVec,
    /// WebSocket terminals open now, by endpoint.
    pub terminals_open: IntGaugeVec,
    /// Terminal bytes by endpoint and direction (`to_docker`, `to_client`).
    pub terminal_bytes: IntCounterVec,
    /// Terminal sessions ended, by kind (exec, attach) and why they ended
    /// (a fixed set: see `terminal::End`).
    pub terminal_sessions: IntCounterVec,
    /// Fan-out calls (`/api/docker/...`) started, by kind (the fixed route
    /// list: `containers`, `images`, ...).
    pub fanout_requests: IntCounterVec,
    /// Endpoints asked by fan-out calls, by kind.
    pub fanout_endpoints: IntCounterVec,
    /// Endpoints a fan-out call listed as failed, by kind and reason (a
    /// fixed set: see `fanout::Reason`).
    pub fanout_failures: IntCounterVec,
    /// Time from the start of a fan-out call to the end of its document.
    pub fanout_duration: HistogramVec,
    /// Handles of the proxy's per-endpoint series, see [`Metrics::proxy_series`].
    proxy_series: DashMap<u64, Arc<ProxySeries>>,
}

/// Builds and registers one series family. Definitions are constants
/// (names, help, label names), so an error here is a programming error
/// caught by every test that starts a daemon, never a runtime condition.
fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: prometheus::Result<T>) -> T {
    let c = c.expect("metric definitions are valid constants");
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
        let auth_total =
            reg(&r, IntCounterVec::new(Opts::new(AUTH_TOTAL, "Authenticated requests by credential"), &["method"]));
        let m = Metrics {
            auth_jwt: auth_total.with_label_values(&["jwt"]),
            auth_api_key: auth_total.with_label_values(&["apikey"]),
            auth_bundle: auth_total.with_label_values(&["bundle"]),
            audit_events: reg(
                &r,
                IntCounterVec::new(Opts::new(AUDIT_EVENTS, "Audit events written, by kind"), &["kind"]),
            ),
            audit_dropped: reg(
                &r,
                IntCounter::new(AUDIT_DROPPED, "Audit events of proxied calls dropped because the queue was full"),
            ),
            audit_failures: reg(&r, IntCounter::new(AUDIT_FAILURES, "Audit events that could not be written")),
            http_requests: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(HTTP_REQUESTS, "API requests by route template, method and status"),
                    &["route", "method", "status"],
                ),
            ),
            http_duration: reg(
                &r,
                HistogramVec::new(h(HTTP_DURATION, "API request latency by route template"), &["route", "method"]),
            ),
            auth_failures: reg(
                &r,
                IntCounterVec::new(Opts::new(AUTH_FAILURES, "Refused credentials and logins by reason"), &["reason"]),
            ),
            rate_limited: reg(
                &r,
                IntCounterVec::new(Opts::new(RATE_LIMITED, "Requests refused by the rate limiter"), &["route"]),
            ),
            store_write: reg(
                &r,
                Histogram::with_opts(h(STORE_WRITE, "Durable store write latency (commit and fsync)")),
            ),
            proxy_requests: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        PROXY_REQUESTS,
                        "Docker API requests proxied, by endpoint, route template and status class",
                    ),
                    &["endpoint", "route", "status_class"],
                ),
            ),
            proxy_duration: reg(
                &r,
                HistogramVec::new(
                    h(PROXY_DURATION, "Time to the Docker host's response headers"),
                    &["endpoint", "route"],
                ),
            ),
            proxy_bytes_in: reg(
                &r,
                IntCounterVec::new(Opts::new(PROXY_BYTES_IN, "Request body bytes sent to Docker hosts"), &["endpoint"]),
            ),
            proxy_bytes_out: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(PROXY_BYTES_OUT, "Response body bytes relayed from Docker hosts"),
                    &["endpoint"],
                ),
            ),
            upstream_connect_failures: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(UPSTREAM_CONNECT_FAILURES, "Failed connections to Docker hosts"),
                    &["endpoint", "kind"],
                ),
            ),
            tunnels_open: reg(
                &r,
                IntGauge::new(TUNNELS_OPEN, "Hijacked connections (attach, exec, websocket, h2c) open now"),
            ),
            endpoint_up: reg(
                &r,
                IntGaugeVec::new(Opts::new(ENDPOINT_UP, "1 when the endpoint's last check succeeded"), &["endpoint"]),
            ),
            endpoints_by_status: reg(
                &r,
                IntGaugeVec::new(Opts::new(ENDPOINTS_BY_STATUS, "Endpoints by status (up/down)"), &["status"]),
            ),
            health_duration: reg(
                &r,
                Histogram::with_opts(h(HEALTH_DURATION, "Duration of endpoint health checks, all endpoints")),
            ),
            health_last_duration: reg(
                &r,
                GaugeVec::new(
                    Opts::new(HEALTH_LAST_DURATION, "Duration of each endpoint's last health check"),
                    &["endpoint"],
                ),
            ),
            health_failures: reg(
                &r,
                IntCounterVec::new(Opts::new(HEALTH_FAILURES, "Failed endpoint health checks"), &["endpoint"]),
            ),
            connections_open: reg(&r, IntGauge::new(CONNECTIONS_OPEN, "Client connections open now")),
            connections_refused: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(CONNECTIONS_REFUSED, "Client connections closed at once by a connection limit"),
                    &["limit"],
                ),
            ),
            stack_deploys: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(STACK_DEPLOYS, "Stack deployer runs by stack type, method and outcome"),
                    &["type", "method", "outcome"],
                ),
            ),
            stack_deploy_duration: reg(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(STACK_DEPLOY_DURATION, "Duration of stack operations (clone and deployer runs)")
                        .buckets(DEPLOY_BUCKETS.to_vec()),
                    &["type", "method"],
                ),
            ),
            fanout_requests: reg(
                &r,
                IntCounterVec::new(Opts::new(FANOUT_REQUESTS, "Fan-out calls (/api/docker/...) by kind"), &["kind"]),
            ),
            fanout_endpoints: reg(
                &r,
                IntCounterVec::new(Opts::new(FANOUT_ENDPOINTS, "Endpoints asked by fan-out calls, by kind"), &["kind"]),
            ),
            fanout_failures: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(FANOUT_FAILURES, "Endpoints a fan-out call listed as failed, by kind and reason"),
                    &["kind", "reason"],
                ),
            ),
            fanout_duration: reg(
                &r,
                HistogramVec::new(
                    h(FANOUT_DURATION, "Duration of fan-out calls, to the end of the document"),
                    &["kind"],
                ),
            ),
            access_denied: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(ACCESS_DENIED, "Standard users' Docker requests refused, by endpoint and rule"),
                    &["endpoint", "rule"],
                ),
            ),
            terminals_open: reg(
                &r,
                IntGaugeVec::new(Opts::new(TERMINALS_OPEN, "WebSocket terminals open now, by endpoint"), &["endpoint"]),
            ),
            terminal_bytes: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(TERMINAL_BYTES, "WebSocket terminal bytes by endpoint and direction"),
                    &["endpoint", "direction"],
                ),
            ),
            terminal_sessions: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(TERMINAL_SESSIONS, "WebSocket terminal sessions ended, by kind and reason"),
                    &["kind", "end"],
                ),
            ),
            proxy_series: DashMap::new(),
            registry: r,
        };
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            let _ = m.registry.register(Box::new(pc));
        }
        m
    }

    /// Adds the store's own series (latency, change feed) to this registry.
    pub fn register_store(&self, s: &crate::store::Stats) {
        let _ = self.registry.register(Box::new(s.op_seconds.clone()));
        let _ = self.registry.register(Box::new(s.reconnects.clone()));
        let _ = self.registry.register(Box::new(s.feed_up.clone()));
        let _ = self.registry.register(Box::new(s.feed_lag.clone()));
    }

    /// The text exposition format.
    pub fn render(&self) -> Vec<u8> {
        self.render_with(Vec::new())
    }

    /// The text exposition format with each Docker host's pool sizes and
    /// breaker state, read from live state at scrape time (see
    /// [`ScrapedGauges`]) rather than kept in the registry.
    pub fn render_with_upstreams(&self, upstreams: &[UpstreamState]) -> Vec<u8> {
        let mut pools = ScrapedGauges::new(
            POOL_CONNECTIONS,
            "Connections to each Docker host, idle or busy (hijacked ones excluded)",
            2 * upstreams.len(),
        );
        let mut breakers = ScrapedGauges::new(
            BREAKER_STATE,
            "Circuit breaker of each Docker host: 0 closed, 1 open, 2 half-open",
            upstreams.len(),
        );
        for u in upstreams {
            let id = u.endpoint.to_string();
            pools.push(&[("endpoint", &id), ("state", "idle")], u.idle as f64);
            pools.push(&[("endpoint", &id), ("state", "open")], u.open as f64);
            breakers.push(&[("endpoint", &id)], f64::from(u.breaker));
        }
        self.render_with(vec![pools.finish(), breakers.finish()])
    }

    /// The text exposition format, with families built at scrape time
    /// beside the registry's.
    fn render_with(&self, scraped: Vec<MetricFamily>) -> Vec<u8> {
        let mut families = self.registry.gather();
        families.extend(scraped.into_iter().filter(|f| !f.get_metric().is_empty()));
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut buf = Vec::with_capacity(16 * 1024);
        let _ = TextEncoder::new().encode(&families, &mut buf);
        buf
    }

    /// Forget an endpoint's series when it is deleted, so labels stay bounded.
    pub fn forget_endpoint(&self, id: &str) {
        let _ = self.endpoint_up.remove_label_values(&[id]);
        let _ = self.proxy_bytes_in.remove_label_values(&[id]);
        let _ = self.proxy_bytes_out.remove_label_values(&[id]);
        let _ = self.health_failures.remove_label_values(&[id]);
        let _ = self.health_last_duration.remove_label_values(&[id]);
        for rule in crate::access::DenyRule::ALL {
            let _ = self.access_denied.remove_label_values(&[id, rule.name()]);
        }
        if let Ok(n) = id.parse::<u64>() {
            self.proxy_series.remove(&n);
        }
    }

    /// The proxy's metric handles for one endpoint. `with_label_values`
    /// hashes every label value and takes the vector's lock on each call,
    /// and a proxied request updates four labelled series: the handles are
    /// looked up once per endpoint (and route template) and reused, so a
    /// request costs two map reads and formats no label.
    pub fn proxy_series(&self, endpoint: u64) -> Arc<ProxySeries> {
        if let Some(s) = self.proxy_series.get(&endpoint) {
            return s.clone();
        }
        self.proxy_series
            .entry(endpoint)
            .or_insert_with(|| {
                let label = endpoint.to_string();
                Arc::new(ProxySeries {
                    bytes_in: self.proxy_bytes_in.with_label_values(&[&label]),
                    bytes_out: self.proxy_bytes_out.with_label_values(&[&label]),
                    requests: self.proxy_requests.clone(),
                    duration: self.proxy_duration.clone(),
                    routes: DashMap::new(),
                    label,
                })
            })
            .clone()
    }
}

/// One Docker host's connection pool and breaker as a scrape reads them.
pub struct UpstreamState {
    pub endpoint: u64,
    pub idle: usize,
    pub open: usize,
    /// 0 closed, 1 open, 2 half-open.
    pub breaker: u8,
}

/// A gauge family read from live state when `/metrics` is scraped (pool
/// sizes, breaker states): exact at every scrape, and nothing is kept per
/// endpoint between scrapes, where a registered gauge would keep its series
/// for every endpoint ever scraped.
struct ScrapedGauges {
    family: MetricFamily,
}

impl ScrapedGauges {
    fn new(name: &str, help: &str, expected: usize) -> ScrapedGauges {
        let mut family = MetricFamily::default();
        family.set_name(name.to_owned());
        family.set_help(help.to_owned());
        family.set_field_type(MetricType::GAUGE);
        family.set_metric(Vec::with_capacity(expected));
        ScrapedGauges { family }
    }

    fn push(&mut self, labels: &[(&str, &str)], value: f64) {
        let mut gauge = prometheus::proto::Gauge::default();
        gauge.set_value(value);
        let mut m = Metric::from_gauge(gauge);
        m.set_label(
            labels
                .iter()
                .map(|(k, v)| {
                    let mut l = LabelPair::default();
                    l.set_name((*k).to_owned());
                    l.set_value((*v).to_owned());
                    l
                })
                .collect(),
        );
        self.family.mut_metric().push(m);
    }

    fn finish(self) -> MetricFamily {
        self.family
    }
}

/// One endpoint's proxy series (see [`Metrics::proxy_series`]).
pub struct ProxySeries {
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounter,
    label: String,
    requests: IntCounterVec,
    duration: HistogramVec,
    /// By route template; as bounded as the exported series themselves.
    routes: DashMap<String, Arc<RouteSeries>>,
}

impl ProxySeries {
    /// The endpoint label (its id).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The series of one route template of this endpoint.
    pub fn route(&self, template: &str) -> Arc<RouteSeries> {
        if let Some(r) = self.routes.get(template) {
            return r.clone();
        }
        self.routes
            .entry(template.to_owned())
            .or_insert_with(|| {
                Arc::new(RouteSeries {
                    duration: self.duration.with_label_values(&[&self.label, template]),
                    requests: self.requests.clone(),
                    endpoint: self.label.clone(),
                    template: template.to_owned(),
                    by_class: Default::default(),
                })
            })
            .clone()
    }
}

/// One endpoint and route template: request counters by status class
/// (created on first use, so no zero series appear) and the latency
/// histogram.
pub struct RouteSeries {
    pub duration: Histogram,
    requests: IntCounterVec,
    endpoint: String,
    template: String,
    by_class: [OnceLock<IntCounter>; 5],
}

impl RouteSeries {
    /// The `berth_proxy_requests_total` counter for a response status.
    pub fn requests(&self, status: u16) -> &IntCounter {
        let class = status_class(status);
        let i = match class.as_bytes()[0] {
            b'1' => 0,
            b'2' => 1,
            b'3' => 2,
            b'4' => 3,
            _ => 4,
        };
        self.by_class[i].get_or_init(|| self.requests.with_label_values(&[&self.endpoint, &self.template, class]))
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
/// and names replaced (`/containers/{id}/json`). Runs on every proxied
/// request: it walks the segments once and allocates only the result.
pub fn docker_route_template(path: &str) -> String {
    let path = path.split('?').next().unwrap_or("");
    let mut segs = path.split('/').filter(|s| !s.is_empty());
    let mut first = segs.next();
    if first.is_some_and(is_version) {
        first = segs.next();
    }
    let Some(first) = first else { return "/".into() };
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
    let mut out = String::with_capacity(first.len() + 24);
    out.push('/');
    out.push_str(first);
    let Some(second) = segs.next() else { return out };
    let third = segs.next();
    if third.is_none() && COLLECTION_VERBS.contains(&second) {
        out.push('/');
        out.push_str(second);
        return out;
    }
    match first {
        // Image and plugin names contain slashes: the last segment is the action when known.
        "images" | "plugins" | "distribution" => {
            const ACTIONS: &[&str] = &["json", "history", "push", "tag", "get", "enable", "disable", "upgrade", "set"];
            match third.map(|t| segs.next_back().unwrap_or(t)) {
                Some(last) if ACTIONS.contains(&last) => {
                    out.push_str("/{name}/");
                    out.push_str(last);
                }
                _ => out.push_str("/{name}"),
            }
        }
        _ => {
            out.push_str("/{id}");
            if let Some(rest) = third {
                // Only Docker's own actions name a series: any other
                // segment is the client's to choose, so it is `{other}`.
                let action = if ID_ACTIONS.contains(&rest) { rest } else { "{other}" };
                out.push('/');
                out.push_str(action);
            }
        }
    }
    out
}

/// The actions and sub-resources of `/{kind}/{id}/...` in the Docker API
/// (containers, exec, networks, services, tasks, nodes, secrets, configs).
const ID_ACTIONS: &[&str] = &[
    "archive",
    "attach",
    "changes",
    "connect",
    "disconnect",
    "export",
    "exec",
    "json",
    "kill",
    "logs",
    "pause",
    "rename",
    "resize",
    "restart",
    "start",
    "stats",
    "stop",
    "top",
    "unpause",
    "update",
    "wait",
];

/// The `method` label: the methods of HTTP and WebDAV that Berth's clients
/// use, `other` for anything else, so that a client inventing methods
/// cannot create series.
pub fn method_label(m: &http::Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
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
        assert_eq!(docker_route_template("/v1.41"), "/");
        assert_eq!(docker_route_template("//v1.41//containers//json"), "/containers/json");
        assert_eq!(docker_route_template("/images/busybox"), "/images/{name}");
        assert_eq!(docker_route_template("/images/a/b/c/tag?repo=x"), "/images/{name}/tag");
        assert_eq!(docker_route_template("/plugins/x/y/z"), "/plugins/{name}");
        assert_eq!(docker_route_template("/containers/abc"), "/containers/{id}");
        assert_eq!(docker_route_template("/containers/abc/LOGS"), "/containers/{id}/{other}");
        assert_eq!(docker_route_template("/containers/abc/json/extra"), "/containers/{id}/json");
        assert_eq!(docker_route_template("/containers/json/x"), "/containers/{id}/{other}");
        assert_eq!(docker_route_template("/containers/abc/qwertzuiop"), "/containers/{id}/{other}");
        assert_eq!(docker_route_template("/exec/abc/resize"), "/exec/{id}/resize");
        assert_eq!(docker_route_template("/networks/n/connect"), "/networks/{id}/connect");
    }

    #[test]
    fn methods_are_bounded() {
        use http::Method;
        for m in ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            assert_eq!(method_label(&Method::from_bytes(m.as_bytes()).unwrap()), m);
        }
        for m in ["get", "PROPFIND", "BREW", &"X".repeat(8000)] {
            assert_eq!(method_label(&Method::from_bytes(m.as_bytes()).unwrap()), "other", "{}", &m[..m.len().min(9)]);
        }
    }

    #[test]
    fn proxy_series_handles_feed_the_exported_series() {
        let m = Metrics::new();
        let s = m.proxy_series(7);
        assert!(Arc::ptr_eq(&s, &m.proxy_series(7)), "handles are reused");
        let r = s.route("/containers/json");
        assert!(Arc::ptr_eq(&r, &s.route("/containers/json")));
        r.requests(200).inc();
        r.requests(204).inc();
        r.requests(502).inc();
        r.duration.observe(0.001);
        s.bytes_in.inc_by(10);
        s.bytes_out.inc_by(20);
        let text = String::from_utf8(m.render()).unwrap();
        for line in [
            r#"berth_proxy_requests_total{endpoint="7",route="/containers/json",status_class="2xx"} 2"#,
            r#"berth_proxy_requests_total{endpoint="7",route="/containers/json",status_class="5xx"} 1"#,
            r#"berth_proxy_request_duration_seconds_count{endpoint="7",route="/containers/json"} 1"#,
            r#"berth_proxy_request_bytes_total{endpoint="7"} 10"#,
            r#"berth_proxy_response_bytes_total{endpoint="7"} 20"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(!text.contains("status_class=\"4xx\""), "classes never seen export nothing");
        m.forget_endpoint("7");
        assert!(!String::from_utf8(m.render()).unwrap().contains("berth_proxy_request_bytes_total{endpoint=\"7\"}"));
        assert!(!Arc::ptr_eq(&s, &m.proxy_series(7)), "a forgotten endpoint gets fresh handles");
    }

    #[test]
    fn scraped_gauges_are_exported_beside_the_registry_and_not_kept() {
        let m = Metrics::new();
        m.tunnels_open.set(1);
        let mut pools = ScrapedGauges::new(POOL_CONNECTIONS, "pooled", 2);
        pools.push(&[("endpoint", "3"), ("state", "idle")], 2.0);
        pools.push(&[("endpoint", "3"), ("state", "open")], 5.0);
        let none = ScrapedGauges::new(BREAKER_STATE, "no endpoint: no family, no error", 0);
        let text = String::from_utf8(m.render_with(vec![pools.finish(), none.finish()])).unwrap();
        for line in [
            "# TYPE berth_upstream_pool_connections gauge",
            r#"berth_upstream_pool_connections{endpoint="3",state="idle"} 2"#,
            r#"berth_upstream_pool_connections{endpoint="3",state="open"} 5"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(!text.contains(BREAKER_STATE), "an empty family is left out");
        let (tunnels, pool) = (text.find("berth_tunnels_open").unwrap(), text.find(POOL_CONNECTIONS).unwrap());
        assert!(tunnels < pool, "families in name order, as gathered ones are");
        assert!(!String::from_utf8(m.render()).unwrap().contains(POOL_CONNECTIONS), "nothing kept after the scrape");
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
