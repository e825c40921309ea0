#![recursion_limit = "256"]
//! Berth: an authenticating, multiplexing edge proxy for Docker hosts that
//! speaks Portainer's HTTP API.
//!
//! # Layout
//! Dependencies point one way (docs/ARCHITECTURE.md draws them; `modcycles.py src` checks):
//! `server` → `openapi` → {`api`, `terminal` → `proxy`, `fanout` → `proxy`}, `replica` → `state` → {`controls`, `access`, `auth`, `endpoints`, `registries`, `stacks`} →
//! {`connector`, `store`} → leaves.
//! - [`server`]: listeners (HTTP, HTTPS, metrics), connection limits ([`server::limits`]),
//!   request-line checks ([`server::protocol`]), graceful drain; its [`server::router`]
//!   classifies each request, authenticates, applies the route policy, and writes the access
//!   log ([`server::access_log`]: per-thread batches) and request metrics.
//! - [`proxy`]: the whole Docker hot path (`/api/endpoints/{id}/docker/*`): route entry
//!   ([`proxy::route`]), registry-auth translation, header rules, forwarding, tunnels, and
//!   what standard users may see of a failure ([`proxy::redact`]).
//! - [`terminal`]: container terminals over WebSocket (`/api/websocket/exec|attach`):
//!   handshake, access (through the restricted proxy's policy), the session bridge.
//! - [`fanout`]: `GET /api/docker/containers/json` and the other fan-out routes: one call
//!   to every endpoint the caller may use, filtered per host by the restricted proxy,
//!   streamed as one document (issue 17).
//! - [`openapi`]: `GET /api/openapi.json`, the OpenAPI 3.1 document generated from the route
//!   table and the descriptions ([`api::doc`]) its routes, and the router's own, carry.
//! - [`api`]: Portainer's `/api/*` routes, one file per resource.
//! - [`state`]: [`state::AppState`], what handlers share (including the one `authenticate`).
//! - [`background`]: periodic tasks (endpoint health rounds, pruning, API-key use).
//! - [`auth`]: JWT, API keys, bcrypt, rate limiting, the in-memory identity tables.
//! - [`endpoints`]: the in-memory [`endpoints::EndpointMap`], the access rule, registering
//!   and updating endpoints, health checks; they take an [`endpoints::Ops`], not `AppState`.
//! - [`registries`]: container registries in memory and who may use them (the
//!   `X-Registry-Auth` translation is in [`proxy::registry_auth`]).
//! - [`audit`]: the audit trail (issue 15): events, the durable writes and the queue of
//!   proxied calls, pruning, the queries behind `/api/useractivity/*`.
//! - [`bundles`]: client bundles (issue 18): Berth's CA, the live bundles a client
//!   certificate must belong to, the zip a user downloads.
//! - [`access`]: restricted access for standard users through the Docker proxy: a pure
//!   policy the proxy asks (issue 14), and what a scoped API key may do ([`access::scope`],
//!   issue 17); it imports only the store's records (and the error type for scope refusals). [`controls`]:
//!   the resource controls it reads (durable, in memory; stacks' own through the stack table).
//! - [`stacks`]: Compose and swarm stacks: deploys, git fetches, child processes.
//! - [`connector`]: transports to Docker hosts (unix, TCP, TLS) and their pools.
//! - [`store`]: the durable store behind one interface, two backends (embedded redb; PostgreSQL
//!   for several replicas, with its change feed), and its records ([`store::model`]).
//! - [`replica`]: with PostgreSQL, applies the other replicas' changes to this one's memory
//!   (issue 16).
//! - Leaves: [`config`] (defaults < TOML file < `BERTH_*` env < flags, validated),
//!   [`error`] (Portainer-shaped errors, one status per kind), [`body`] (response and upstream
//!   bodies), [`metrics`] (the app-owned Prometheus registry), [`table`] (the in-memory table
//!   type), [`fsutil`] (atomic private file writes), [`docker_url`] (Docker host addresses),
//!   [`deadline`] (idle timeouts for bodies and client writes), [`ids`] (ids in paths),
//!   [`strict_json`] (the one JSON reader that refuses repeated keys).
//! - [`runtime`]: the runtime's shape (one current-thread runtime per core on `SO_REUSEPORT`
//!   sockets, or work stealing), the shard a thread serves, binding the listening sockets.
//! - [`sys`]: the system calls std lacks (thread priority, process groups); the only `unsafe`.
//! - [`response`]: turns an [`error::ApiError`] (or a store error) into a response; the
//!   response extensions the access log reads.

pub mod access;
pub mod api;
pub mod audit;
pub mod auth;
pub mod background;
pub mod body;
pub mod bundles;
pub mod config;
pub mod connector;
pub mod controls;
pub mod deadline;
pub mod docker_url;
pub mod endpoints;
pub mod error;
pub mod fanout;
pub mod fsutil;
pub mod ids;
pub mod metrics;
pub mod openapi;
pub mod proxy;
pub mod registries;
pub mod replica;
pub mod response;
pub mod runtime;
pub mod server;
pub mod stacks;
pub mod state;
pub mod store;
pub mod strict_json;
pub mod sys;
pub mod table;
pub mod terminal;

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::state::AppState;
use crate::store::model::Settings;
use crate::store::Store;

/// Opens the store, loads memory, and prepares everything the server needs.
pub async fn build_state(config: Config, shutdown: CancellationToken) -> anyhow::Result<Arc<AppState>> {
    std::fs::create_dir_all(&config.data)
        .with_context(|| format!("creating data directory {}", config.data.display()))?;
    let store = open_store(&config).await?;
    let identity = auth::Identity::load(&store)?;
    let jwt = match (&config.jwt_secret_file, store.is_shared()) {
        // Replicas agree on one secret, made once in the database.
        (None, true) => {
            let secret =
                store.meta_get_or_create(store::copy::JWT_SECRET_KEY, || rand::random::<[u8; 32]>().to_vec())?;
            anyhow::ensure!(secret.len() >= 32, "the store's JWT secret is shorter than 32 bytes");
            auth::jwt::JwtKeys::from_secret(&secret)
        }
        (file, _) => {
            let secret_path = file.clone().unwrap_or_else(|| config.data.join("jwt.secret"));
            auth::jwt::JwtKeys::load_or_create(&secret_path)
                .with_context(|| format!("loading JWT secret {}", secret_path.display()))?
        }
    };
    let settings: Settings = store.load_meta(api::settings::SETTINGS_KEY)?.unwrap_or_default();
    // One instance id however many replicas start at once (Portainer's
    // clients see one instance).
    let raw = store.meta_get_or_create("instance_id", || {
        serde_json::to_vec(&uuid::Uuid::new_v4().to_string()).unwrap_or_default()
    })?;
    let instance_id: String = serde_json::from_slice(&raw).context("reading the instance id")?;
    let metrics = metrics::Metrics::new();
    metrics.register_store(store.stats());
    let endpoints = endpoints::EndpointMap::default();
    endpoints::load::load(&store, &endpoints, &config).await.context("loading endpoints")?;
    let registries = registries::Registries::default();
    for r in store.load_all::<store::model::Registry>(store::REGISTRIES)? {
        registries.put(r.id, Arc::new(r));
    }
    let stacks = stacks::Stacks::load(&store, &config).await.context("loading stacks")?;
    let controls = controls::ControlTable::load(&store).context("loading resource controls")?;
    controls::stack_ids::reserve(&store, &stacks, &controls).await.context("reserving resource control ids")?;
    let (sealer, ca) = if store.is_shared() {
        let key = store.meta_get_or_create(store::copy::SEAL_KEY_KEY, || rand::random::<[u8; 32]>().to_vec())?;
        let sealer = auth::seal::Sealer::from_key(&key).context("the store's sealing key is not a 32-byte key")?;
        let ca = store.meta_get_or_create(store::copy::CA_KEY, || {
            bundles::ca::Ca::generate()
                .map(|(cert, key)| serde_json::json!({"cert": cert, "key": key}).to_string().into_bytes())
                .unwrap_or_default()
        })?;
        #[derive(serde::Deserialize)]
        struct CaPems {
            cert: String,
            key: String,
        }
        let pems: CaPems = serde_json::from_slice(&ca).context("reading Berth's CA from the store")?;
        (sealer, bundles::ca::Ca::from_pems(&pems.cert, &pems.key).context("loading Berth's CA from the store")?)
    } else {
        let sealer = auth::seal::Sealer::load_or_create(&config.data.join("secret.key"))
            .with_context(|| format!("loading {}", config.data.join("secret.key").display()))?;
        (sealer, bundles::ca::Ca::load_or_create(&config.data.join("ca")).context("loading Berth's CA")?)
    };
    let bundles = bundles::Bundles::new(ca, store.load_all::<store::model::Bundle>(store::BUNDLES)?);
    let audit = audit::Trail::new(&config, &metrics).context("setting up the audit trail")?;
    let state = AppState {
        dummy_hash: auth::password::dummy_hash(config.bcrypt_cost)
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.details))?,
        config,
        store,
        metrics,
        identity,
        jwt,
        settings: std::sync::RwLock::new(Arc::new(settings)),
        limiter: auth::ratelimit::RateLimiter::default(),
        started: Instant::now(),
        instance_id,
        shutdown,
        endpoints,
        registries,
        sealer,
        stacks,
        controls,
        bundles,
        audit,
    };
    Ok(Arc::new(state))
}

/// The configured store: PostgreSQL when `--store` names it (waiting up to
/// `--store-lock-timeout` for a database that is still starting, as
/// replicas started together with it find it), else the embedded one.
async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let Some(o) = &config.store else {
        return Ok(Store::open_waiting(&config.data, config.store_lock_timeout).await?);
    };
    let deadline = tokio::time::Instant::now() + config.store_lock_timeout;
    loop {
        let o2 = o.clone();
        match tokio::task::spawn_blocking(move || Store::connect(&o2)).await? {
            Ok(s) => {
                tracing::info!(replica = %o.replica, "connected to the shared PostgreSQL store");
                return Ok(s);
            }
            Err(store::StoreError::Unavailable(e)) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "the PostgreSQL store is not reachable yet; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e).context("opening the PostgreSQL store"),
        }
    }
}

/// Creates user "admin" from `--admin-password-file` when no user exists.
async fn bootstrap_admin(state: &AppState) -> anyhow::Result<()> {
    let Some(path) = &state.config.admin_password_file else { return Ok(()) };
    if !state.identity.users().is_empty() {
        return Ok(());
    }
    let pw = tokio::fs::read_to_string(path).await.with_context(|| format!("reading {}", path.display()))?;
    let pw = pw.trim_end_matches(['\n', '\r']).to_string();
    if pw.is_empty() {
        anyhow::bail!("{} is empty", path.display());
    }
    let hash =
        auth::password::hash(pw, state.config.bcrypt_cost).await.map_err(|e| anyhow::anyhow!("{}", e.details))?;
    let user = state
        .store
        .write(move |tx| {
            let id = tx.next_id(store::USERS)?;
            let u = store::model::User::new(id, "admin", hash, store::model::ROLE_ADMIN);
            tx.put(store::USERS, id, &u)?;
            Ok(u)
        })
        .await?;
    state.identity.put_user(user);
    tracing::info!("administrator \"admin\" created from the admin password file");
    Ok(())
}

/// The daemon's listening sockets, bound before the state is served (so a
/// taken port fails the start). HTTP and HTTPS have one socket per runtime
/// shard, sharing the port (see [`runtime::bind`]).
pub struct Listeners {
    pub http: Vec<std::net::TcpListener>,
    pub https: Vec<std::net::TcpListener>,
    pub metrics: Option<std::net::TcpListener>,
}

impl Listeners {
    pub fn bind(config: &Config) -> anyhow::Result<Listeners> {
        let shards = config.shards();
        let http = runtime::bind(config.bind, shards).with_context(|| format!("binding HTTP on {}", config.bind))?;
        let https = match config.bind_https {
            Some(a) => runtime::bind(a, shards).with_context(|| format!("binding HTTPS on {a}"))?,
            None => Vec::new(),
        };
        let metrics = match config.metrics_bind {
            Some(a) => runtime::bind(a, 1).with_context(|| format!("binding metrics on {a}"))?.pop(),
            None => None,
        };
        Ok(Listeners { http, https, metrics })
    }
}

/// Serves until shutdown, then drains. Shard 0's sockets and the metrics
/// port are served on the calling runtime; every further shard
/// gets a thread with a current-thread runtime of its own, kept alive until
/// the drain is over so that its connections and tunnels can finish.
pub async fn run(state: Arc<AppState>, listeners: Listeners) -> anyhow::Result<()> {
    bootstrap_admin(&state).await?;
    let server = server::Server::new(state.clone());
    let tls =
        if listeners.https.is_empty() { None } else { Some(server::tls::acceptor(&state.config, &state.bundles.ca)?) };
    let mut http = listeners.http.into_iter();
    let mut https = listeners.https.into_iter();
    let addr = |l: &std::net::TcpListener| l.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let mut tasks = tokio::task::JoinSet::new();
    let first = http.next().context("no HTTP socket")?;
    tracing::info!(addr = %addr(&first), shards = state.config.shards(), scheduler = ?state.config.scheduler, "HTTP listening");
    let first_https = https.next();
    if let Some(l) = &first_https {
        tracing::info!(addr = %addr(l), "HTTPS listening");
    }
    serve_sockets(&mut tasks, &server, first, first_https, tls.clone())?;
    if let Some(l) = listeners.metrics {
        tracing::info!(addr = %addr(&l), "metrics listening");
        tasks.spawn(server.clone().run_listener(TcpListener::from_std(l)?, None, server::Surface::MetricsOnly));
    }
    let drained = CancellationToken::new();
    let mut shards = Vec::new();
    for (i, h) in http.enumerate() {
        let shard = Shard { index: i + 1, http: h, https: https.next(), tls: tls.clone() };
        shards.push(shard.spawn(server.clone(), drained.clone())?);
    }
    let background = spawn_background(&state, drained.clone())?;
    tokio::spawn(server.clone().keep_timer_armed());
    state.shutdown.cancelled().await;
    tracing::info!("shutting down: draining connections and tunnels");
    while tasks.join_next().await.is_some() {}
    server.tracker.close();
    let drain = state.config.drain_timeout;
    let conns = tokio::time::timeout(drain, server.tracker.wait()).await.is_ok();
    let tunnels = server.router.tunnels.drain(drain).await;
    if !conns || !tunnels {
        tracing::warn!("drain time exceeded; closing remaining connections");
    }
    drained.cancel();
    tokio::task::spawn_blocking(move || {
        for t in shards.into_iter().chain(background) {
            let _ = t.join();
        }
    })
    .await?;
    Ok(())
}

/// Health checks, housekeeping, the audit writer and the change feed. With
/// one runtime per core they get a thread and a runtime of their own: the
/// kernel gives every shard its share of connections whatever else that
/// shard does, so a health round over thousands of endpoints (a ping and a
/// snapshot each) on a serving shard would delay its requests, while on its
/// own thread the scheduler interleaves it with them. Otherwise they run on
/// the calling runtime. Kept alive until the drain is over, like a shard.
fn spawn_background(
    state: &Arc<AppState>,
    drained: CancellationToken,
) -> anyhow::Result<Option<std::thread::JoinHandle<()>>> {
    if state.config.shards() == 1 {
        background::spawn_all(state);
        replica::spawn(state);
        return Ok(None);
    }
    let rt = runtime::current_thread(server::access_log::flush_thread).context("building the background runtime")?;
    let state = state.clone();
    let thread = std::thread::Builder::new().name("berth-background".into()).spawn(move || {
        rt.block_on(async move {
            background::spawn_all(&state);
            replica::spawn(&state);
            drained.cancelled().await;
        });
    })?;
    Ok(Some(thread))
}

/// Starts the API's accept loops of one shard on the current runtime (a
/// tokio listener registers with the runtime that makes it).
fn serve_sockets(
    tasks: &mut tokio::task::JoinSet<()>,
    server: &server::Server,
    http: std::net::TcpListener,
    https: Option<std::net::TcpListener>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::io::Result<()> {
    tasks.spawn(server.clone().run_listener(TcpListener::from_std(http)?, None, server::Surface::Api));
    if let Some(l) = https {
        tasks.spawn(server.clone().run_listener(TcpListener::from_std(l)?, tls, server::Surface::Api));
    }
    Ok(())
}

/// One further per-core runtime's sockets.
struct Shard {
    index: usize,
    http: std::net::TcpListener,
    https: Option<std::net::TcpListener>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Shard {
    /// The runtime is built here, so a failure stops the start instead of
    /// leaving a socket in the port's group that nobody accepts on.
    fn spawn(self, server: server::Server, drained: CancellationToken) -> anyhow::Result<std::thread::JoinHandle<()>> {
        let rt = runtime::current_thread(server::access_log::flush_thread).context("building a worker runtime")?;
        let index = self.index;
        let thread = std::thread::Builder::new().name(format!("berth-worker-{index}")).spawn(move || {
            runtime::enter_shard(index);
            rt.block_on(async move {
                let mut tasks = tokio::task::JoinSet::new();
                if let Err(e) = serve_sockets(&mut tasks, &server, self.http, self.https, self.tls) {
                    tracing::error!(shard = index, error = %e, "cannot serve this shard's sockets");
                }
                tokio::spawn(server.clone().keep_timer_armed());
                while tasks.join_next().await.is_some() {}
                // Accepting is over; this runtime's connections and tunnels
                // live until the main runtime's drain says they are done.
                drained.cancelled().await;
            });
            server::access_log::flush_thread();
        })?;
        Ok(thread)
    }
}
