//! Configuration: built-in defaults < optional TOML file (`--config`) <
//! `BERTH_*` environment < command-line flags.
//!
//! Every setting has one command-line flag and one environment variable
//! (clap reads both, flag first), and a key in the TOML file's sections.
//! Parsing collects every problem before failing, so a user fixes their
//! file in one pass. Portainer's flag names (`--bind`, `--bind-https`,
//! `--data`, `--sslcert`, `--sslkey`, `--admin-password-file`,
//! `--log-level`) are kept so a command line moves over unchanged.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

/// Defaults, written out once so the example file and the code agree.
pub mod defaults {
    pub const BIND: &str = "0.0.0.0:9000";
    pub const BIND_HTTPS: &str = "0.0.0.0:9443";
    pub const DATA: &str = "./data";
    pub const HEADER_READ_TIMEOUT: &str = "30s";
    pub const MAX_HEADERS: usize = 100;
    pub const MAX_HEADER_BYTES: usize = 64 * 1024;
    pub const MAX_JSON_BODY: usize = 1024 * 1024;
    pub const MAX_UPLOAD_BODY: usize = 64 * 1024 * 1024;
    pub const MAX_CONNECTIONS: usize = 20_000;
    pub const DRAIN_TIMEOUT: &str = "30s";
    pub const BODY_READ_TIMEOUT: &str = "60s";
    pub const SEND_TIMEOUT: &str = "60s";
    pub const MAX_CONNECTIONS_PER_IP: usize = 256;
    pub const STORE_LOCK_TIMEOUT: &str = "10s";
    pub const LOG_LEVEL: &str = "info";
    pub const LOG_FORMAT: &str = "text";
    pub const ADMIN_INIT_WINDOW: &str = "5m";
    pub const BCRYPT_COST: u32 = 10;
    pub const DOCKER_SOCKET: &str = "unix:///var/run/docker.sock";
    pub const CONNECT_TIMEOUT: &str = "5s";
    pub const PING_TIMEOUT: &str = "5s";
    pub const POOL_IDLE_TIMEOUT: &str = "90s";
    pub const POOL_MAX_IDLE: usize = 128;
    pub const RESPONSE_HEADER_TIMEOUT: &str = "5m";
    pub const BREAKER_FAILURES: u32 = 5;
    pub const BREAKER_COOLDOWN: &str = "10s";
    pub const MAX_TUNNELS: usize = 20_000;
    pub const TERMINAL_IDLE_TIMEOUT: &str = "30m";
    pub const TLS_SAN: &[&str] = &["localhost", "127.0.0.1", "::1"];
    pub const BUNDLE_LIFETIME: &str = "90days";
    pub const AUDIT_QUEUE: usize = 4096;
    pub const HEALTH_INTERVAL: &str = "5m";
    pub const HEALTH_TIMEOUT: &str = "5s";
    pub const HEALTH_CONCURRENCY: usize = 64;
    pub const FANOUT_TIMEOUT: &str = "10s";
    pub const FANOUT_CONCURRENCY: usize = 16;
    pub const STACK_DEPLOY_TIMEOUT: &str = "10m";
    pub const GIT_CLONE_TIMEOUT: &str = "2m";
    pub const MAX_STACK_FILE: usize = 4 * 1024 * 1024;
    pub const MAX_CLONE_SIZE: u64 = 256 * 1024 * 1024;
    pub const MAX_STACKS_PER_USER: usize = 50;
    pub const MAX_CONCURRENT_CLONES: usize = 2;
    pub const MAX_CONCURRENT_DEPLOYS: usize = 4;
    pub const DOCKER_BIN: &str = "docker";
    pub const COMPOSE_BIN: &str = "docker-compose";
    pub const GIT_BIN: &str = "git";
}

/// Command line. Each field is optional so that "not given" falls through
/// to the environment (clap), then to the file, then to the default.
#[derive(Parser, Debug, Default, Clone)]
#[command(
    name = "berth",
    version,
    about = "Authenticating, multiplexing edge proxy for Docker hosts, speaking Portainer's HTTP API"
)]
pub struct Cli {
    /// TOML configuration file (see config/berth.example.toml)
    #[arg(long, env = "BERTH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// HTTP listen address (Portainer: --bind)
    #[arg(long, env = "BERTH_BIND", value_name = "ADDR")]
    pub bind: Option<String>,
    /// HTTPS listen address (Portainer: --bind-https); "off" disables HTTPS
    #[arg(long = "bind-https", env = "BERTH_BIND_HTTPS", value_name = "ADDR")]
    pub bind_https: Option<String>,
    /// Data directory: store, TLS material, signing secret (Portainer: --data)
    #[arg(long, env = "BERTH_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// PEM certificate for HTTPS; a self-signed one is generated when absent
    #[arg(long, env = "BERTH_SSLCERT", value_name = "FILE")]
    pub sslcert: Option<PathBuf>,
    /// PEM private key for HTTPS
    #[arg(long, env = "BERTH_SSLKEY", value_name = "FILE")]
    pub sslkey: Option<PathBuf>,
    /// File holding the initial admin password (plain text) to create user "admin" on first start
    #[arg(long = "admin-password-file", env = "BERTH_ADMIN_PASSWORD_FILE", value_name = "FILE")]
    pub admin_password_file: Option<PathBuf>,
    /// Log level: error, warn, info, debug, trace (or a tracing filter)
    #[arg(long = "log-level", env = "BERTH_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log format: text or json
    #[arg(long = "log-format", env = "BERTH_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Time a client has to send its request headers. The timer also runs
    /// while a keep-alive connection waits for its next request, so it is
    /// the idle keep-alive timeout too.
    #[arg(long = "header-read-timeout", env = "BERTH_HEADER_READ_TIMEOUT", value_name = "DURATION")]
    pub header_read_timeout: Option<String>,
    /// Most request headers accepted (431 beyond)
    #[arg(long = "max-headers", env = "BERTH_MAX_HEADERS", value_name = "N")]
    pub max_headers: Option<String>,
    /// Most bytes of request headers accepted (431 beyond)
    #[arg(long = "max-header-bytes", env = "BERTH_MAX_HEADER_BYTES", value_name = "BYTES")]
    pub max_header_bytes: Option<String>,
    /// Largest JSON body accepted on /api/* (413 beyond)
    #[arg(long = "max-json-body", env = "BERTH_MAX_JSON_BODY", value_name = "BYTES")]
    pub max_json_body: Option<String>,
    /// Largest multipart upload accepted on /api/* (endpoint TLS files, stack files)
    #[arg(long = "max-upload-body", env = "BERTH_MAX_UPLOAD_BODY", value_name = "BYTES")]
    pub max_upload_body: Option<String>,
    /// Most client connections open at once; more wait in the accept queue
    #[arg(long = "max-connections", env = "BERTH_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<String>,
    /// Time in-flight requests and tunnels get to finish on SIGTERM/SIGINT
    #[arg(long = "drain-timeout", env = "BERTH_DRAIN_TIMEOUT", value_name = "DURATION")]
    pub drain_timeout: Option<String>,
    /// Longest wait between two reads of a request body (408, or the connection closes, beyond)
    #[arg(long = "body-read-timeout", env = "BERTH_BODY_READ_TIMEOUT", value_name = "DURATION")]
    pub body_read_timeout: Option<String>,
    /// Longest a client may leave a response unread (the connection closes beyond)
    #[arg(long = "send-timeout", env = "BERTH_SEND_TIMEOUT", value_name = "DURATION")]
    pub send_timeout: Option<String>,
    /// Most connections open at once from one client address (IPv6: one /64)
    #[arg(long = "max-connections-per-ip", env = "BERTH_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    pub max_connections_per_ip: Option<String>,
    /// How long start-up waits for a store locked by another process
    #[arg(long = "store-lock-timeout", env = "BERTH_STORE_LOCK_TIMEOUT", value_name = "DURATION")]
    pub store_lock_timeout: Option<String>,
    /// Whether GET /metrics on the public ports needs an admin credential (default true)
    #[arg(long = "metrics-auth", env = "BERTH_METRICS_AUTH", value_name = "BOOL")]
    pub metrics_auth: Option<String>,
    /// Origins besides Berth's own whose pages may send state-changing requests with the session cookie (comma separated, e.g. https://berth.example behind a TLS proxy)
    #[arg(long = "allowed-origins", env = "BERTH_ALLOWED_ORIGINS", value_name = "ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Option<Vec<String>>,
    /// Extra listen address that serves only /metrics (no auth)
    #[arg(long = "metrics-bind", env = "BERTH_METRICS_BIND", value_name = "ADDR")]
    pub metrics_bind: Option<String>,
    /// Names and addresses the generated HTTPS certificate is valid for, so that clients can verify it with a bundle's ca.pem (comma separated; default localhost,127.0.0.1,::1)
    #[arg(long = "tls-san", env = "BERTH_TLS_SAN", value_name = "NAMES", value_delimiter = ',')]
    pub tls_san: Option<Vec<String>>,
    /// Whether the HTTPS listener asks for (never requires) a client certificate of Berth's CA (client bundles; default true)
    #[arg(long = "client-certs", env = "BERTH_CLIENT_CERTS", value_name = "BOOL")]
    pub client_certs: Option<String>,
    /// Default lifetime of a client bundle's certificate (default 90 days)
    #[arg(long = "bundle-lifetime", env = "BERTH_BUNDLE_LIFETIME", value_name = "DURATION")]
    pub bundle_lifetime: Option<String>,
    /// Proxied Docker calls waiting to be written to the audit trail; past it they are dropped and counted (default 4096)
    #[arg(long = "audit-queue", env = "BERTH_AUDIT_QUEUE", value_name = "N")]
    pub audit_queue: Option<String>,
    /// Whether mutating Docker calls through the proxy are recorded in the audit trail (default true)
    #[arg(long = "audit-proxy", env = "BERTH_AUDIT_PROXY", value_name = "BOOL")]
    pub audit_proxy: Option<String>,
    /// Also append every audit event to this JSON-lines file, for log shippers (mode 0600; off by default)
    #[arg(long = "audit-file", env = "BERTH_AUDIT_FILE", value_name = "PATH")]
    pub audit_file: Option<PathBuf>,
    /// Shared store for several replicas: postgres://user@host/db (no password in it); the embedded store when absent
    #[arg(long, env = "BERTH_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// File holding the PostgreSQL password (or set BERTH_STORE_PASSWORD)
    #[arg(long = "store-password-file", env = "BERTH_STORE_PASSWORD_FILE", value_name = "FILE")]
    pub store_password_file: Option<PathBuf>,
    /// PEM CA certificates that PostgreSQL's certificate must chain to (TLS to the store)
    #[arg(long = "store-ca-file", env = "BERTH_STORE_CA_FILE", value_name = "FILE")]
    pub store_ca_file: Option<PathBuf>,
    /// This replica's name in /api/status and the store's change feed (default: host name and a random suffix)
    #[arg(long = "replica-name", env = "BERTH_REPLICA_NAME", value_name = "NAME")]
    pub replica_name: Option<String>,
    /// Addresses of reverse proxies whose X-Forwarded-For is trusted (comma separated)
    #[arg(long = "trusted-proxies", env = "BERTH_TRUSTED_PROXIES", value_name = "IPS", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<String>>,
    /// File holding the JWT signing secret; default <data>/jwt.secret, created on first start
    #[arg(long = "jwt-secret-file", env = "BERTH_JWT_SECRET_FILE", value_name = "FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// How long after first start the first admin may be created
    #[arg(long = "admin-init-window", env = "BERTH_ADMIN_INIT_WINDOW", value_name = "DURATION")]
    pub admin_init_window: Option<String>,
    /// When set, POST /api/users/admin/init must carry this value in X-Berth-Setup-Token
    #[arg(long = "setup-token", env = "BERTH_SETUP_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub setup_token: Option<String>,
    /// bcrypt cost for new password hashes (Portainer uses 10)
    #[arg(long = "bcrypt-cost", env = "BERTH_BCRYPT_COST", value_name = "COST")]
    pub bcrypt_cost: Option<String>,
    /// Docker host used when an endpoint is created with an empty URL
    #[arg(long = "docker-socket", env = "BERTH_DOCKER_SOCKET", value_name = "URL")]
    pub docker_socket: Option<String>,
    /// Time allowed to open a connection to a Docker host (504 beyond)
    #[arg(long = "connect-timeout", env = "BERTH_CONNECT_TIMEOUT", value_name = "DURATION")]
    pub connect_timeout: Option<String>,
    /// Time allowed for the ping that checks a new endpoint
    #[arg(long = "ping-timeout", env = "BERTH_PING_TIMEOUT", value_name = "DURATION")]
    pub ping_timeout: Option<String>,
    /// Idle pooled connections to Docker hosts are closed after this long
    #[arg(long = "pool-idle-timeout", env = "BERTH_POOL_IDLE_TIMEOUT", value_name = "DURATION")]
    pub pool_idle_timeout: Option<String>,
    /// Most idle pooled connections kept per Docker host
    #[arg(long = "pool-max-idle", env = "BERTH_POOL_MAX_IDLE", value_name = "N")]
    pub pool_max_idle: Option<String>,
    /// Time a Docker host has to start its answer once the request is sent (504 beyond)
    #[arg(long = "response-header-timeout", env = "BERTH_RESPONSE_HEADER_TIMEOUT", value_name = "DURATION")]
    pub response_header_timeout: Option<String>,
    /// Consecutive connect failures after which a Docker host gets 503s without dialling (0: never)
    #[arg(long = "breaker-failures", env = "BERTH_BREAKER_FAILURES", value_name = "N")]
    pub breaker_failures: Option<String>,
    /// Time an open circuit breaker waits before letting one trial request through
    #[arg(long = "breaker-cooldown", env = "BERTH_BREAKER_COOLDOWN", value_name = "DURATION")]
    pub breaker_cooldown: Option<String>,
    /// Most hijacked tunnels (attach/exec/websocket) open at once
    #[arg(long = "max-tunnels", env = "BERTH_MAX_TUNNELS", value_name = "N")]
    pub max_tunnels: Option<String>,
    /// A WebSocket terminal (`/api/websocket/exec|attach`) with no traffic either way for this long is closed
    #[arg(long = "terminal-idle-timeout", env = "BERTH_TERMINAL_IDLE_TIMEOUT", value_name = "DURATION")]
    pub terminal_idle_timeout: Option<String>,
    /// How often every endpoint is checked (Portainer: snapshot interval)
    #[arg(long = "health-interval", env = "BERTH_HEALTH_INTERVAL", value_name = "DURATION")]
    pub health_interval: Option<String>,
    /// Per-endpoint time limit of a health check
    #[arg(long = "health-timeout", env = "BERTH_HEALTH_TIMEOUT", value_name = "DURATION")]
    pub health_timeout: Option<String>,
    /// Most endpoint checks running at once
    #[arg(long = "health-concurrency", env = "BERTH_HEALTH_CONCURRENCY", value_name = "N")]
    pub health_concurrency: Option<String>,
    /// Per-endpoint time limit of a fan-out call (`/api/docker/...`): a host that has not answered whole by then is listed as failed
    #[arg(long = "fanout-timeout", env = "BERTH_FANOUT_TIMEOUT", value_name = "DURATION")]
    pub fanout_timeout: Option<String>,
    /// Most endpoints one fan-out call (`/api/docker/...`) asks at once
    #[arg(long = "fanout-concurrency", env = "BERTH_FANOUT_CONCURRENCY", value_name = "N")]
    pub fanout_concurrency: Option<String>,
    /// Worker threads of the async runtime (default: one per core)
    #[arg(long = "workers", env = "BERTH_WORKERS", value_name = "N")]
    pub workers: Option<String>,
    /// per-core: one single-threaded runtime per worker, each accepting on its own socket of the port (SO_REUSEPORT); work-stealing: tokio's shared scheduler
    #[arg(long = "scheduler", env = "BERTH_SCHEDULER", value_name = "per-core|work-stealing")]
    pub scheduler: Option<String>,
    /// Time one stack deployer run (docker stack deploy, compose up/down) may take; then its process group is killed
    #[arg(long = "stack-deploy-timeout", env = "BERTH_STACK_DEPLOY_TIMEOUT", value_name = "DURATION")]
    pub stack_deploy_timeout: Option<String>,
    /// Time a git clone of a stack repository may take, all steps together
    #[arg(long = "git-clone-timeout", env = "BERTH_GIT_CLONE_TIMEOUT", value_name = "DURATION")]
    pub git_clone_timeout: Option<String>,
    /// Largest stack file accepted (string and file methods; 413 beyond)
    #[arg(long = "max-stack-file", env = "BERTH_MAX_STACK_FILE", value_name = "BYTES")]
    pub max_stack_file: Option<String>,
    /// Largest stack repository clone on disk; the clone is stopped beyond
    #[arg(long = "max-clone-size", env = "BERTH_MAX_CLONE_SIZE", value_name = "BYTES")]
    pub max_clone_size: Option<String>,
    /// Most stacks one standard user may own
    #[arg(long = "max-stacks-per-user", env = "BERTH_MAX_STACKS_PER_USER", value_name = "N")]
    pub max_stacks_per_user: Option<String>,
    /// Most stack repository clones one user may run at once (429 beyond)
    #[arg(long = "max-concurrent-clones", env = "BERTH_MAX_CONCURRENT_CLONES", value_name = "N")]
    pub max_concurrent_clones: Option<String>,
    /// Most stack deployer runs one user may have at once (429 beyond)
    #[arg(long = "max-concurrent-deploys", env = "BERTH_MAX_CONCURRENT_DEPLOYS", value_name = "N")]
    pub max_concurrent_deploys: Option<String>,
    /// Git hosts standard users may clone from although they resolve to loopback or private addresses (comma separated)
    #[arg(long = "git-allowed-hosts", env = "BERTH_GIT_ALLOWED_HOSTS", value_name = "HOSTS", value_delimiter = ',')]
    pub git_allowed_hosts: Option<Vec<String>>,
    /// Docker CLI used for swarm stacks (and the `docker compose` plugin)
    #[arg(long = "docker-bin", env = "BERTH_DOCKER_BIN", value_name = "PROGRAM")]
    pub docker_bin: Option<String>,
    /// Standalone Compose used when the `docker compose` plugin is absent
    #[arg(long = "compose-bin", env = "BERTH_COMPOSE_BIN", value_name = "PROGRAM")]
    pub compose_bin: Option<String>,
    /// git used to clone stack repositories
    #[arg(long = "git-bin", env = "BERTH_GIT_BIN", value_name = "PROGRAM")]
    pub git_bin: Option<String>,
}

/// The TOML file. Unknown keys are errors: a typo must not silently fall
/// back to a default.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: FileServer,
    #[serde(default)]
    pub auth: FileAuth,
    #[serde(default)]
    pub docker: FileDocker,
    #[serde(default)]
    pub log: FileLog,
    #[serde(default)]
    pub stacks: FileStacks,
    #[serde(default)]
    pub store: FileStore,
}

/// `[store]`: the shared PostgreSQL store of several replicas.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileStore {
    pub url: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub replica_name: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileServer {
    pub bind: Option<String>,
    pub bind_https: Option<String>,
    pub data: Option<PathBuf>,
    pub sslcert: Option<PathBuf>,
    pub sslkey: Option<PathBuf>,
    pub header_read_timeout: Option<String>,
    pub max_headers: Option<usize>,
    pub max_header_bytes: Option<usize>,
    pub max_json_body: Option<usize>,
    pub max_upload_body: Option<usize>,
    pub max_connections: Option<usize>,
    pub drain_timeout: Option<String>,
    pub body_read_timeout: Option<String>,
    pub send_timeout: Option<String>,
    pub max_connections_per_ip: Option<usize>,
    pub store_lock_timeout: Option<String>,
    pub metrics_auth: Option<bool>,
    pub metrics_bind: Option<String>,
    pub allowed_origins: Option<Vec<String>>,
    pub trusted_proxies: Option<Vec<String>>,
    pub tls_san: Option<Vec<String>>,
    pub client_certs: Option<bool>,
    pub audit_queue: Option<usize>,
    pub audit_proxy: Option<bool>,
    pub audit_file: Option<PathBuf>,
    pub bundle_lifetime: Option<String>,
    pub workers: Option<usize>,
    pub scheduler: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileAuth {
    pub admin_password_file: Option<PathBuf>,
    pub jwt_secret_file: Option<PathBuf>,
    pub admin_init_window: Option<String>,
    pub setup_token: Option<String>,
    pub bcrypt_cost: Option<u32>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileDocker {
    pub docker_socket: Option<String>,
    pub connect_timeout: Option<String>,
    pub ping_timeout: Option<String>,
    pub pool_idle_timeout: Option<String>,
    pub pool_max_idle: Option<usize>,
    pub response_header_timeout: Option<String>,
    pub breaker_failures: Option<u32>,
    pub breaker_cooldown: Option<String>,
    pub max_tunnels: Option<usize>,
    pub terminal_idle_timeout: Option<String>,
    pub health_interval: Option<String>,
    pub health_timeout: Option<String>,
    pub health_concurrency: Option<usize>,
    pub fanout_timeout: Option<String>,
    pub fanout_concurrency: Option<usize>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileStacks {
    pub stack_deploy_timeout: Option<String>,
    pub git_clone_timeout: Option<String>,
    pub max_stack_file: Option<usize>,
    pub max_clone_size: Option<u64>,
    pub max_stacks_per_user: Option<usize>,
    pub max_concurrent_clones: Option<usize>,
    pub max_concurrent_deploys: Option<usize>,
    pub git_allowed_hosts: Option<Vec<String>>,
    pub docker_bin: Option<String>,
    pub compose_bin: Option<String>,
    pub git_bin: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileLog {
    pub level: Option<String>,
    pub format: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The validated configuration the daemon runs on.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind: SocketAddr,
    pub bind_https: Option<SocketAddr>,
    pub data: PathBuf,
    pub sslcert: Option<PathBuf>,
    pub sslkey: Option<PathBuf>,
    pub admin_password_file: Option<PathBuf>,
    pub log_level: String,
    pub log_format: LogFormat,
    pub header_read_timeout: Duration,
    pub max_headers: usize,
    pub max_header_bytes: usize,
    pub max_json_body: usize,
    pub max_upload_body: usize,
    pub max_connections: usize,
    pub drain_timeout: Duration,
    pub body_read_timeout: Duration,
    pub send_timeout: Duration,
    pub max_connections_per_ip: usize,
    pub store_lock_timeout: Duration,
    pub metrics_auth: bool,
    pub metrics_bind: Option<SocketAddr>,
    /// Normalised `scheme://host:port` (see [`normalize_origin`]).
    pub allowed_origins: Vec<String>,
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Subject alternative names of the generated HTTPS certificate.
    pub tls_san: Vec<String>,
    /// The HTTPS listener asks for a client certificate of Berth's CA.
    pub client_certs: bool,
    /// Default lifetime of a client bundle.
    pub bundle_lifetime: Duration,
    /// Capacity of the audit queue of proxied Docker calls.
    pub audit_queue: usize,
    /// Mutating Docker calls through the proxy are audited.
    pub audit_proxy: bool,
    /// JSON-lines copy of the audit trail.
    pub audit_file: Option<PathBuf>,
    /// The shared PostgreSQL store; `None` for the embedded one.
    pub store: Option<crate::store::PgOptions>,
    /// This replica's name (also given with the embedded store, in `/api/status`).
    pub replica_name: String,
    pub jwt_secret_file: Option<PathBuf>,
    pub admin_init_window: Duration,
    pub setup_token: Option<String>,
    pub bcrypt_cost: u32,
    pub docker_socket: String,
    pub connect_timeout: Duration,
    pub ping_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle: usize,
    pub response_header_timeout: Duration,
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
    pub max_tunnels: usize,
    /// A terminal with no traffic either way for this long is closed.
    pub terminal_idle_timeout: Duration,
    pub health_interval: Duration,
    pub health_timeout: Duration,
    pub health_concurrency: usize,
    /// Per-endpoint time limit of a fan-out call (request, answer and filtering).
    pub fanout_timeout: Duration,
    /// Most endpoints one fan-out call asks at once (bounds its memory too).
    pub fanout_concurrency: usize,
    pub workers: Option<usize>,
    pub scheduler: crate::runtime::Scheduler,
    pub stack_deploy_timeout: Duration,
    pub git_clone_timeout: Duration,
    pub max_stack_file: usize,
    pub max_clone_size: u64,
    /// Stacks one standard user may own.
    pub max_stacks_per_user: usize,
    /// Clones one user may run at once.
    pub max_concurrent_clones: usize,
    /// Deployer runs one user may have at once.
    pub max_concurrent_deploys: usize,
    /// Git hosts standard users may reach although they are private.
    pub git_allowed_hosts: Vec<String>,
    pub docker_bin: String,
    pub compose_bin: String,
    pub git_bin: String,
}

impl Default for Config {
    fn default() -> Self {
        Config::build(Cli::default(), FileConfig::default()).expect("built-in defaults are valid")
    }
}

/// Accepts Portainer's ":9000" (all interfaces) as well as full addresses.
fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let full = if s.starts_with(':') { format!("0.0.0.0{s}") } else { s.to_string() };
    full.parse().map_err(|e| format!("{e}"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

/// Collects every validation problem, naming the field.
struct Problems(Vec<String>);

/// The host name and a random suffix: unique among replicas started from
/// one image on one host.
fn default_replica_name() -> String {
    // Once per process: a process is one replica, however often its
    // configuration is built.
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let host = rustix::system::uname().nodename().to_string_lossy().into_owned();
        format!("{host}-{:06x}", rand::random::<u32>() & 0xff_ffff)
    })
    .clone()
}

impl Problems {
    fn dur(&mut self, field: &str, v: &str) -> Duration {
        parse_duration(v).unwrap_or_else(|e| {
            self.0.push(format!("{field}: invalid duration {v:?}: {e}"));
            Duration::ZERO
        })
    }

    fn positive(&mut self, field: &str, v: usize) -> usize {
        if v == 0 {
            self.0.push(format!("{field}: must be greater than 0"));
        }
        v
    }

    /// A typed flag or environment value. It arrives as text and is parsed
    /// here rather than by clap, so that a bad one is reported together with
    /// every other problem (and with exit code 64).
    fn parse<T>(&mut self, field: &str, v: Option<String>) -> Option<T>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        let v = v?;
        match v.trim().parse() {
            Ok(x) => Some(x),
            Err(e) => {
                self.0.push(format!("{field}: invalid value {v:?}: {e}"));
                None
            }
        }
    }

    fn addr(&mut self, field: &str, v: &str) -> SocketAddr {
        parse_addr(v).unwrap_or_else(|e| {
            self.0.push(format!("{field}: invalid address {v:?}: {e}"));
            SocketAddr::from(([0, 0, 0, 0], 0))
        })
    }
}

/// Every error found, one per line.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigError(pub Vec<String>);

impl Config {
    /// How many runtimes serve connections, each with its own listening
    /// sockets and pool shards: one per worker in the per-core shape, one
    /// shared by every worker with work stealing.
    pub fn shards(&self) -> usize {
        match self.scheduler {
            crate::runtime::Scheduler::PerCore => crate::runtime::workers(self.workers),
            crate::runtime::Scheduler::WorkStealing => 1,
        }
    }

    /// Reads the file named by `--config` (if any) and merges it under the
    /// command line and environment.
    pub fn load(cli: Cli) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(vec![format!("config {}: {e}", path.display())]))?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| ConfigError(vec![format!("config {}: {e}", path.display())]))?
            }
            None => FileConfig::default(),
        };
        Config::build(cli, file)
    }

    pub fn build(cli: Cli, file: FileConfig) -> Result<Config, ConfigError> {
        use defaults as d;
        let mut p = Problems(Vec::new());
        let s = file.server;
        let a = file.auth;
        let k = file.docker;
        let l = file.log;
        let st = file.stacks;

        let bind = p.addr("bind", &cli.bind.or(s.bind).unwrap_or_else(|| d::BIND.into()));
        let bind_https_s = cli.bind_https.or(s.bind_https).unwrap_or_else(|| d::BIND_HTTPS.into());
        let bind_https = match bind_https_s.as_str() {
            "off" | "" => None,
            v => Some(p.addr("bind_https", v)),
        };
        let sslcert = cli.sslcert.or(s.sslcert);
        let sslkey = cli.sslkey.or(s.sslkey);
        if sslcert.is_some() != sslkey.is_some() {
            p.0.push("sslcert/sslkey: give both or neither".into());
        }
        let log_level = cli.log_level.or(l.level).unwrap_or_else(|| d::LOG_LEVEL.into());
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            p.0.push(format!("log_level: invalid level or filter {log_level:?}"));
        }
        let log_format = match cli.log_format.or(l.format).unwrap_or_else(|| d::LOG_FORMAT.into()).as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                p.0.push(format!("log_format: must be \"text\" or \"json\", not {other:?}"));
                LogFormat::Text
            }
        };
        let header_read_timeout = p.dur(
            "header_read_timeout",
            &cli.header_read_timeout.or(s.header_read_timeout).unwrap_or_else(|| d::HEADER_READ_TIMEOUT.into()),
        );
        let max_headers = p.parse("max_headers", cli.max_headers).or(s.max_headers).unwrap_or(d::MAX_HEADERS);
        let max_headers = p.positive("max_headers", max_headers);
        let max_header_bytes =
            p.parse("max_header_bytes", cli.max_header_bytes).or(s.max_header_bytes).unwrap_or(d::MAX_HEADER_BYTES);
        let max_header_bytes = p.positive("max_header_bytes", max_header_bytes);
        if max_header_bytes < 8192 {
            p.0.push("max_header_bytes: must be at least 8192 (hyper's minimum read buffer)".into());
        }
        let max_json_body = p.parse("max_json_body", cli.max_json_body).or(s.max_json_body).unwrap_or(d::MAX_JSON_BODY);
        let max_json_body = p.positive("max_json_body", max_json_body);
        let max_upload_body =
            p.parse("max_upload_body", cli.max_upload_body).or(s.max_upload_body).unwrap_or(d::MAX_UPLOAD_BODY);
        let max_upload_body = p.positive("max_upload_body", max_upload_body);
        let max_connections =
            p.parse("max_connections", cli.max_connections).or(s.max_connections).unwrap_or(d::MAX_CONNECTIONS);
        let max_connections = p.positive("max_connections", max_connections);
        let drain_timeout =
            p.dur("drain_timeout", &cli.drain_timeout.or(s.drain_timeout).unwrap_or_else(|| d::DRAIN_TIMEOUT.into()));
        let body_read_timeout = p.dur(
            "body_read_timeout",
            &cli.body_read_timeout.or(s.body_read_timeout).unwrap_or_else(|| d::BODY_READ_TIMEOUT.into()),
        );
        let send_timeout =
            p.dur("send_timeout", &cli.send_timeout.or(s.send_timeout).unwrap_or_else(|| d::SEND_TIMEOUT.into()));
        let max_connections_per_ip = p
            .parse("max_connections_per_ip", cli.max_connections_per_ip)
            .or(s.max_connections_per_ip)
            .unwrap_or(d::MAX_CONNECTIONS_PER_IP);
        let max_connections_per_ip = p.positive("max_connections_per_ip", max_connections_per_ip);
        let store_lock_timeout = p.dur(
            "store_lock_timeout",
            &cli.store_lock_timeout.or(s.store_lock_timeout).unwrap_or_else(|| d::STORE_LOCK_TIMEOUT.into()),
        );
        // Secure by default: series names, endpoint ids and traffic are not for
        // anyone who can reach the port; `--metrics-auth false` opens it, and
        // the `--metrics-bind` listener is open anyway.
        let metrics_auth = p.parse("metrics_auth", cli.metrics_auth).or(s.metrics_auth).unwrap_or(true);
        let metrics_bind = cli.metrics_bind.or(s.metrics_bind).map(|v| p.addr("metrics_bind", &v));
        let mut allowed_origins = Vec::new();
        for o in cli.allowed_origins.or(s.allowed_origins).unwrap_or_default() {
            let o = o.trim();
            if o.is_empty() {
                continue;
            }
            match normalize_origin(o) {
                Some(v) => allowed_origins.push(v),
                None => p.0.push(format!("allowed_origins: {o:?} is not an origin (scheme://host[:port])")),
            }
        }
        let mut tls_san = Vec::new();
        for n in cli.tls_san.or(s.tls_san).unwrap_or_else(|| d::TLS_SAN.iter().map(|n| n.to_string()).collect()) {
            let n = n.trim();
            if n.is_empty() {
                continue;
            }
            let valid = n.parse::<std::net::IpAddr>().is_ok()
                || (n.len() <= 253
                    && n.split('.').all(|l| {
                        !l.is_empty()
                            && l.len() <= 63
                            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'*')
                    }));
            if valid {
                tls_san.push(n.to_ascii_lowercase());
            } else {
                p.0.push(format!("tls_san: {n:?} is neither a DNS name nor an IP address"));
            }
        }
        let client_certs = p.parse("client_certs", cli.client_certs).or(s.client_certs).unwrap_or(true);
        let bundle_lifetime = p.dur(
            "bundle_lifetime",
            &cli.bundle_lifetime.or(s.bundle_lifetime).unwrap_or_else(|| d::BUNDLE_LIFETIME.into()),
        );
        let audit_queue = p.parse("audit_queue", cli.audit_queue).or(s.audit_queue).unwrap_or(d::AUDIT_QUEUE);
        let audit_queue = p.positive("audit_queue", audit_queue);
        let audit_proxy = p.parse("audit_proxy", cli.audit_proxy).or(s.audit_proxy).unwrap_or(true);
        let audit_file = cli.audit_file.or(s.audit_file);
        let fs = file.store;
        let replica_name = cli.replica_name.or(fs.replica_name).unwrap_or_else(default_replica_name);
        let store = match cli.store.or(fs.url).filter(|u| !u.is_empty()) {
            None => None,
            Some(url) => {
                let password = match cli.store_password_file.or(fs.password_file) {
                    Some(f) => match std::fs::read_to_string(&f) {
                        Ok(pw) => Some(pw.trim_end_matches(['\n', '\r']).to_string()),
                        Err(e) => {
                            p.0.push(format!("store_password_file: reading {}: {e}", f.display()));
                            None
                        }
                    },
                    None => std::env::var("BERTH_STORE_PASSWORD").ok(),
                };
                let o = crate::store::PgOptions {
                    url,
                    password,
                    ca_file: cli.store_ca_file.or(fs.ca_file),
                    replica: replica_name.clone(),
                };
                if let Err(e) = crate::store::postgres::parse_options(&o) {
                    p.0.push(format!("store: {e}"));
                }
                Some(o)
            }
        };
        let mut trusted_proxies = Vec::new();
        for ip in cli.trusted_proxies.or(s.trusted_proxies).unwrap_or_default() {
            let ip = ip.trim();
            if ip.is_empty() {
                continue;
            }
            match ip.parse() {
                Ok(v) => trusted_proxies.push(v),
                Err(_) => p.0.push(format!("trusted_proxies: {ip:?} is not an IP address")),
            }
        }
        let admin_init_window = p.dur(
            "admin_init_window",
            &cli.admin_init_window.or(a.admin_init_window).unwrap_or_else(|| d::ADMIN_INIT_WINDOW.into()),
        );
        let bcrypt_cost = p.parse("bcrypt_cost", cli.bcrypt_cost).or(a.bcrypt_cost).unwrap_or(d::BCRYPT_COST);
        if !(4..=31).contains(&bcrypt_cost) {
            p.0.push(format!("bcrypt_cost: must be between 4 and 31, not {bcrypt_cost}"));
        }
        let docker_socket = cli.docker_socket.or(k.docker_socket).unwrap_or_else(|| d::DOCKER_SOCKET.into());
        if let Err(e) = crate::docker_url::DockerUrl::parse(&docker_socket) {
            p.0.push(format!("docker_socket: {e}"));
        }
        let connect_timeout = p.dur(
            "connect_timeout",
            &cli.connect_timeout.or(k.connect_timeout).unwrap_or_else(|| d::CONNECT_TIMEOUT.into()),
        );
        let ping_timeout =
            p.dur("ping_timeout", &cli.ping_timeout.or(k.ping_timeout).unwrap_or_else(|| d::PING_TIMEOUT.into()));
        let pool_idle_timeout = p.dur(
            "pool_idle_timeout",
            &cli.pool_idle_timeout.or(k.pool_idle_timeout).unwrap_or_else(|| d::POOL_IDLE_TIMEOUT.into()),
        );
        let pool_max_idle = p.parse("pool_max_idle", cli.pool_max_idle).or(k.pool_max_idle).unwrap_or(d::POOL_MAX_IDLE);
        let response_header_timeout = p.dur(
            "response_header_timeout",
            &cli.response_header_timeout
                .or(k.response_header_timeout)
                .unwrap_or_else(|| d::RESPONSE_HEADER_TIMEOUT.into()),
        );
        let breaker_failures =
            p.parse("breaker_failures", cli.breaker_failures).or(k.breaker_failures).unwrap_or(d::BREAKER_FAILURES);
        let breaker_cooldown = p.dur(
            "breaker_cooldown",
            &cli.breaker_cooldown.or(k.breaker_cooldown).unwrap_or_else(|| d::BREAKER_COOLDOWN.into()),
        );
        let max_tunnels = p.parse("max_tunnels", cli.max_tunnels).or(k.max_tunnels).unwrap_or(d::MAX_TUNNELS);
        let max_tunnels = p.positive("max_tunnels", max_tunnels);
        let terminal_idle_timeout = p.dur(
            "terminal_idle_timeout",
            &cli.terminal_idle_timeout.or(k.terminal_idle_timeout).unwrap_or_else(|| d::TERMINAL_IDLE_TIMEOUT.into()),
        );
        let health_interval = p.dur(
            "health_interval",
            &cli.health_interval.or(k.health_interval).unwrap_or_else(|| d::HEALTH_INTERVAL.into()),
        );
        let health_timeout = p.dur(
            "health_timeout",
            &cli.health_timeout.or(k.health_timeout).unwrap_or_else(|| d::HEALTH_TIMEOUT.into()),
        );
        let health_concurrency = p
            .parse("health_concurrency", cli.health_concurrency)
            .or(k.health_concurrency)
            .unwrap_or(d::HEALTH_CONCURRENCY);
        let health_concurrency = p.positive("health_concurrency", health_concurrency);
        let fanout_timeout = p.dur(
            "fanout_timeout",
            &cli.fanout_timeout.or(k.fanout_timeout).unwrap_or_else(|| d::FANOUT_TIMEOUT.into()),
        );
        let fanout_concurrency = p
            .parse("fanout_concurrency", cli.fanout_concurrency)
            .or(k.fanout_concurrency)
            .unwrap_or(d::FANOUT_CONCURRENCY);
        let fanout_concurrency = p.positive("fanout_concurrency", fanout_concurrency);
        let stack_deploy_timeout = p.dur(
            "stack_deploy_timeout",
            &cli.stack_deploy_timeout.or(st.stack_deploy_timeout).unwrap_or_else(|| d::STACK_DEPLOY_TIMEOUT.into()),
        );
        let git_clone_timeout = p.dur(
            "git_clone_timeout",
            &cli.git_clone_timeout.or(st.git_clone_timeout).unwrap_or_else(|| d::GIT_CLONE_TIMEOUT.into()),
        );
        let max_stack_file =
            p.parse("max_stack_file", cli.max_stack_file).or(st.max_stack_file).unwrap_or(d::MAX_STACK_FILE);
        let max_stack_file = p.positive("max_stack_file", max_stack_file);
        let max_clone_size =
            p.parse("max_clone_size", cli.max_clone_size).or(st.max_clone_size).unwrap_or(d::MAX_CLONE_SIZE);
        if max_clone_size == 0 {
            p.0.push("max_clone_size: must be greater than 0".into());
        }
        let max_stacks_per_user = p
            .parse("max_stacks_per_user", cli.max_stacks_per_user)
            .or(st.max_stacks_per_user)
            .unwrap_or(d::MAX_STACKS_PER_USER);
        let max_stacks_per_user = p.positive("max_stacks_per_user", max_stacks_per_user);
        let max_concurrent_clones = p
            .parse("max_concurrent_clones", cli.max_concurrent_clones)
            .or(st.max_concurrent_clones)
            .unwrap_or(d::MAX_CONCURRENT_CLONES);
        let max_concurrent_clones = p.positive("max_concurrent_clones", max_concurrent_clones);
        let max_concurrent_deploys = p
            .parse("max_concurrent_deploys", cli.max_concurrent_deploys)
            .or(st.max_concurrent_deploys)
            .unwrap_or(d::MAX_CONCURRENT_DEPLOYS);
        let max_concurrent_deploys = p.positive("max_concurrent_deploys", max_concurrent_deploys);
        let git_allowed_hosts: Vec<String> = cli
            .git_allowed_hosts
            .or(st.git_allowed_hosts)
            .unwrap_or_default()
            .into_iter()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .collect();
        for h in &git_allowed_hosts {
            if h.contains(['/', '@', ' ']) {
                p.0.push(format!("git_allowed_hosts: {h:?} is not a host name or address"));
            }
        }
        let mut program = |field: &str, v: Option<String>, default: &str| {
            let v = v.unwrap_or_else(|| default.into());
            if v.trim().is_empty() || v.contains('\0') {
                p.0.push(format!("{field}: must name a program"));
            }
            v
        };
        let docker_bin = program("docker_bin", cli.docker_bin.or(st.docker_bin), d::DOCKER_BIN);
        let compose_bin = program("compose_bin", cli.compose_bin.or(st.compose_bin), d::COMPOSE_BIN);
        let git_bin = program("git_bin", cli.git_bin.or(st.git_bin), d::GIT_BIN);
        for (name, v) in [
            ("stack_deploy_timeout", stack_deploy_timeout),
            ("git_clone_timeout", git_clone_timeout),
            ("header_read_timeout", header_read_timeout),
            ("body_read_timeout", body_read_timeout),
            ("send_timeout", send_timeout),
            ("response_header_timeout", response_header_timeout),
            ("breaker_cooldown", breaker_cooldown),
            ("terminal_idle_timeout", terminal_idle_timeout),
            ("bundle_lifetime", bundle_lifetime),
            ("connect_timeout", connect_timeout),
            ("ping_timeout", ping_timeout),
            ("health_interval", health_interval),
            ("health_timeout", health_timeout),
            ("fanout_timeout", fanout_timeout),
        ] {
            if v.is_zero() && !p.0.iter().any(|e| e.starts_with(name)) {
                p.0.push(format!("{name}: must be greater than 0"));
            }
        }
        let workers = p.parse("workers", cli.workers).or(s.workers);
        if workers == Some(0) {
            p.0.push("workers: must be greater than 0".into());
        }
        let scheduler = match cli.scheduler.or(s.scheduler).as_deref() {
            None | Some("per-core") => crate::runtime::Scheduler::PerCore,
            Some("work-stealing") => crate::runtime::Scheduler::WorkStealing,
            Some(other) => {
                p.0.push(format!("scheduler: must be \"per-core\" or \"work-stealing\", not {other:?}"));
                crate::runtime::Scheduler::PerCore
            }
        };
        if !p.0.is_empty() {
            return Err(ConfigError(p.0));
        }
        Ok(Config {
            bind,
            bind_https,
            data: cli.data.or(s.data).unwrap_or_else(|| d::DATA.into()),
            sslcert,
            sslkey,
            admin_password_file: cli.admin_password_file.or(a.admin_password_file),
            log_level,
            log_format,
            header_read_timeout,
            max_headers,
            max_header_bytes,
            max_json_body,
            max_upload_body,
            max_connections,
            drain_timeout,
            body_read_timeout,
            send_timeout,
            max_connections_per_ip,
            store_lock_timeout,
            metrics_auth,
            metrics_bind,
            allowed_origins,
            tls_san,
            client_certs,
            bundle_lifetime,
            audit_queue,
            audit_proxy,
            audit_file,
            store,
            replica_name,
            trusted_proxies,
            jwt_secret_file: cli.jwt_secret_file.or(a.jwt_secret_file),
            admin_init_window,
            setup_token: cli.setup_token.or(a.setup_token).filter(|t| !t.is_empty()),
            bcrypt_cost,
            docker_socket,
            connect_timeout,
            ping_timeout,
            pool_idle_timeout,
            pool_max_idle,
            response_header_timeout,
            breaker_failures,
            breaker_cooldown,
            max_tunnels,
            terminal_idle_timeout,
            health_interval,
            health_timeout,
            health_concurrency,
            fanout_timeout,
            fanout_concurrency,
            workers,
            scheduler,
            stack_deploy_timeout,
            git_clone_timeout,
            max_stack_file,
            max_clone_size,
            max_stacks_per_user,
            max_concurrent_clones,
            max_concurrent_deploys,
            git_allowed_hosts,
            docker_bin,
            compose_bin,
            git_bin,
        })
    }
}

/// Shared with the cross-site check (`server/csrf.rs`), which compares a
/// request's `Origin` with the configured ones in this same spelling.
/// `scheme://host:port` in one spelling: lower-case scheme and host, the
/// default port written out. `None` for anything that is not exactly an
/// origin (a path, user info, another scheme, `null`).
pub fn normalize_origin(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return None;
    }
    let authority: http::uri::Authority = rest.parse().ok()?;
    let host = authority.host().to_ascii_lowercase();
    // Anything after the host must be exactly ":port" with a valid port.
    let port = match &rest[authority.host().len()..] {
        "" => default_port,
        tail => tail.strip_prefix(':')?.parse::<u16>().ok().filter(|p| *p != 0)?,
    };
    if host.is_empty() {
        return None;
    }
    Some(format!("{scheme}://{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_portainer() {
        let c = Config::default();
        assert_eq!(c.bind.port(), 9000);
        assert_eq!(c.bind_https.unwrap().port(), 9443);
        assert_eq!(c.header_read_timeout, Duration::from_secs(30));
        assert_eq!(c.max_headers, 100);
        assert_eq!(c.max_json_body, 1 << 20);
        assert_eq!(c.admin_init_window, Duration::from_secs(300));
    }

    #[test]
    fn cli_beats_file() {
        let file: FileConfig = toml::from_str("[server]\nbind = \"127.0.0.1:1\"\nmax_headers = 5").unwrap();
        let cli = Cli { bind: Some(":7000".into()), ..Cli::default() };
        let c = Config::build(cli, file).unwrap();
        assert_eq!(c.bind.port(), 7000);
        assert_eq!(c.max_headers, 5);
    }

    #[test]
    fn every_error_is_reported_with_its_field() {
        let file: FileConfig =
            toml::from_str("[server]\nbind = \"nope\"\nmax_headers = 0\ndrain_timeout = \"forever\"").unwrap();
        let err = Config::build(Cli::default(), file).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("bind:"), "{text}");
        assert!(text.contains("max_headers:"), "{text}");
        assert!(text.contains("drain_timeout:"), "{text}");
    }

    #[test]
    fn bad_typed_flags_are_reported_with_everything_else() {
        let cli = Cli {
            max_connections: Some("many".into()),
            metrics_auth: Some("yes".into()),
            bcrypt_cost: Some("-1".into()),
            drain_timeout: Some("forever".into()),
            ..Cli::default()
        };
        let text = Config::build(cli, FileConfig::default()).unwrap_err().to_string();
        for field in ["max_connections:", "metrics_auth:", "bcrypt_cost:", "drain_timeout:"] {
            assert!(text.contains(field), "{field} missing from {text}");
        }
        let cli = Cli { max_connections: Some(" 7 ".into()), metrics_auth: Some("true".into()), ..Cli::default() };
        let c = Config::build(cli, FileConfig::default()).unwrap();
        assert_eq!((c.max_connections, c.metrics_auth), (7, true));
    }

    #[test]
    fn stack_limits_and_git_hosts() {
        let file: FileConfig = toml::from_str(
            "[stacks]\nmax_stacks_per_user = 3\nmax_concurrent_clones = 1\ngit_allowed_hosts = [\"git.lan\", \"10.0.0.5\"]",
        )
        .unwrap();
        let c = Config::build(Cli::default(), file).unwrap();
        assert_eq!((c.max_stacks_per_user, c.max_concurrent_clones, c.max_concurrent_deploys), (3, 1, 4));
        assert_eq!(c.git_allowed_hosts, ["git.lan", "10.0.0.5"]);
        let cli = Cli {
            git_allowed_hosts: Some(vec!["http://x/".into()]),
            max_concurrent_deploys: Some("0".into()),
            ..Cli::default()
        };
        let text = Config::build(cli, FileConfig::default()).unwrap_err().to_string();
        assert!(text.contains("git_allowed_hosts:") && text.contains("max_concurrent_deploys:"), "{text}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<FileConfig>("[server]\nbnd = \"x\"").is_err());
    }

    #[test]
    fn example_file_parses_and_matches_defaults() {
        let text = include_str!("../config/berth.example.toml");
        let file: FileConfig = toml::from_str(text).expect("example parses");
        let c = Config::build(Cli::default(), file).expect("example validates");
        let d = Config::default();
        assert_eq!(format!("{c:?}"), format!("{d:?}"));
    }
}
