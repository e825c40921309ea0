//! The PostgreSQL backend: several Berth replicas on one database.
//!
//! Records keep the embedded store's shape (a table name, a u64 id, the
//! record's JSON bytes), so both backends hold the same data and `berth
//! store copy` moves it either way unchanged.
//!
//! Every write transaction first takes one transaction-scoped advisory
//! lock, so writes are serialised across replicas exactly as redb
//! serialises them within one process: the checks a write makes inside its
//! transaction (the first admin, unique names, the last administrator)
//! hold across replicas too. Writes are small and rare next to proxied
//! traffic, which never touches the store.
//!
//! Each transaction announces what it changed with `pg_notify` before it
//! commits; PostgreSQL delivers the notifications only if, and once, it
//! commits. Every replica listens on a connection of its own and applies
//! the changes to its memory (see `crate::replica`); a lost listening
//! connection is followed by a full reload, so a missed notification
//! cannot leave a replica stale.
//!
//! The driver runs on a small runtime of its own: the store's sync write
//! closures (see [`super::Tx`]) wait for it from the blocking pool, and
//! start-up loads wait for it from any thread, whatever runtime (if any)
//! the caller is on.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use super::{table_name, Change, FeedEvent, Stats, StoreError, Table};

/// The channel the change feed uses.
const CHANNEL: &str = "berth_changes";
/// Advisory lock keys (one 64-bit space per database; Berth's start with
/// the ASCII of "berth").
const WRITE_LOCK: i64 = 0x6265_7274_6800_0001;
const MIGRATE_LOCK: i64 = 0x6265_7274_6800_0002;
const HEALTH_LOCK: i64 = 0x6265_7274_6800_0003;
/// A notification payload must stay under PostgreSQL's 8000 bytes.
const MAX_PAYLOAD: usize = 7000;
/// Bound on every database round trip: a write against an unreachable
/// database answers 503 within this, never hangs.
const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the listener waits before reconnecting.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// The schema, one migration per entry, applied in order once each.
const MIGRATIONS: &[&str] = &[r"
CREATE TABLE berth_records (
    tbl   text   NOT NULL,
    id    bigint NOT NULL,
    value bytea  NOT NULL,
    PRIMARY KEY (tbl, id)
);
CREATE TABLE berth_meta (
    key   text  PRIMARY KEY,
    value bytea NOT NULL
);
CREATE TABLE berth_revoked (
    jti text   PRIMARY KEY,
    exp bigint NOT NULL
);
"];

/// How to reach the database: everything but the password comes from the
/// URL; the password from a file or the environment (never argv, where
/// every local user can read it).
#[derive(Clone, Debug)]
pub struct PgOptions {
    pub url: String,
    pub password: Option<String>,
    /// PEM CA certificates that the server's certificate must chain to
    /// when the URL asks for TLS (`sslmode=require`).
    pub ca_file: Option<std::path::PathBuf>,
    /// This replica's name in notifications and `/api/status`.
    pub replica: String,
}

pub(super) struct Pg {
    rt: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    pool: Pool,
    config: tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    pub replica: String,
    /// The connection holding the health-check lease, when this replica holds it.
    health: Mutex<Option<tokio_postgres::Client>>,
    pub stats: Arc<Stats>,
}

impl Drop for Pg {
    fn drop(&mut self) {
        // A runtime may not be dropped (that waits) inside another one.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// An error and its causes on one line: a driver's "error performing TLS
/// handshake" alone does not tell the operator which certificate failed.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

fn unavailable(e: impl std::error::Error) -> StoreError {
    StoreError::Unavailable(chain(&e))
}

fn unavailable_msg(m: &str) -> StoreError {
    StoreError::Unavailable(m.to_string())
}

/// A database error (constraint, syntax, a lock timeout) is the store's
/// answer; anything else (refused, closed, timed out) means the database
/// cannot be reached.
fn pg_err(e: tokio_postgres::Error) -> StoreError {
    match e.code() {
        Some(c) if *c == tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE => unavailable(e),
        Some(c) if *c == tokio_postgres::error::SqlState::QUERY_CANCELED => unavailable(e),
        Some(c) if c.code().starts_with("57") || c.code().starts_with("08") => unavailable(e),
        Some(_) => StoreError::Db(e.to_string()),
        None => unavailable(e),
    }
}

fn id_i64(id: u64) -> Result<i64, StoreError> {
    i64::try_from(id).map_err(|_| StoreError::Encoding(format!("id {id} is out of range")))
}

fn rustls_connector(ca_file: &std::path::Path) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| StoreError::Db(format!("reading {}: {e}", ca_file.display())))?;
    for c in certs {
        let c = c.map_err(|e| StoreError::Db(format!("parsing {}: {e}", ca_file.display())))?;
        roots.add(c).map_err(|e| StoreError::Db(format!("{}: {e}", ca_file.display())))?;
    }
    let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Parses and checks the URL: a password in it is refused (it would sit
/// in argv, the environment of every child, and logs).
pub fn parse_options(o: &PgOptions) -> Result<tokio_postgres::Config, StoreError> {
    let mut config: tokio_postgres::Config =
        o.url.parse().map_err(|e| StoreError::Db(format!("the store URL is not a PostgreSQL URL: {e}")))?;
    if config.get_password().is_some() {
        return Err(StoreError::Db(
            "the store URL must not carry a password: set BERTH_STORE_PASSWORD or --store-password-file".into(),
        ));
    }
    if let Some(pw) = &o.password {
        config.password(pw.as_bytes());
    }
    if config.get_application_name().is_none() {
        config.application_name(format!("berth {}", o.replica));
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(3));
    }
    config.keepalives(true).keepalives_idle(Duration::from_secs(10));
    // A write waits at most this long for another replica's write, and a
    // statement runs at most this long: then 503, never a hung request.
    config.options("-c lock_timeout=10000 -c statement_timeout=30000");
    Ok(config)
}

impl Pg {
    /// Connects, runs the migrations (once, whichever replica gets there
    /// first), and returns the backend and its change feed.
    pub fn open(o: &PgOptions) -> Result<(Pg, mpsc::Receiver<FeedEvent>), StoreError> {
        let config = parse_options(o)?;
        let tls = match (&o.ca_file, config.get_ssl_mode()) {
            (Some(f), _) => Some(rustls_connector(f)?),
            (None, tokio_postgres::config::SslMode::Require) => {
                return Err(StoreError::Db(
                    "sslmode=require needs the CA that signs the server's certificate: --store-ca-file".into(),
                ))
            }
            (None, _) => None,
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("berth-store")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Db(format!("starting the store's runtime: {e}")))?;
        let handle = rt.handle().clone();
        let mgr_config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let mgr = match &tls {
            Some(t) => Manager::from_config(config.clone(), t.clone(), mgr_config),
            None => Manager::from_config(config.clone(), NoTls, mgr_config),
        };
        let pool = {
            let _enter = handle.enter();
            Pool::builder(mgr)
                .max_size(8)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(OP_TIMEOUT))
                .create_timeout(Some(OP_TIMEOUT))
                .recycle_timeout(Some(OP_TIMEOUT))
                .build()
                .map_err(|e| StoreError::Db(format!("building the store's pool: {e}")))?
        };
        let pg = Pg {
            rt: Some(rt),
            handle,
            pool,
            config,
            tls,
            replica: o.replica.clone(),
            health: Mutex::new(None),
            stats: Arc::new(Stats::new()),
        };
        pg.block_anywhere(pg.migrate())?;
        let (tx, rx) = mpsc::channel(1024);
        pg.handle.spawn(listen(pg.config.clone(), pg.tls.clone(), tx, pg.stats.clone()));
        Ok((pg, rx))
    }

    /// Waits for `fut` on the store's runtime, bounded by [`OP_TIMEOUT`].
    /// Callable from any thread that is not an async worker; from one, use
    /// [`Pg::run`].
    pub fn block<T>(&self, fut: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        self.handle.block_on(async {
            tokio::time::timeout(OP_TIMEOUT, fut)
                .await
                .unwrap_or_else(|_| Err(unavailable_msg("the database did not answer in time")))
        })
    }

    /// Runs `fut` on the store's runtime from async code.
    pub async fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.handle
            .spawn(async move {
                tokio::time::timeout(OP_TIMEOUT, fut)
                    .await
                    .unwrap_or_else(|_| Err(unavailable_msg("the database did not answer in time")))
            })
            .await
            .unwrap_or_else(|e| Err(StoreError::Db(format!("store task failed: {e}"))))
    }

    /// Waits for `fut` from synchronous code on any thread, even an async
    /// worker (start-up loads): the wait happens on a thread of its own.
    pub fn block_anywhere<T: Send>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>> + Send,
    ) -> Result<T, StoreError> {
        std::thread::scope(|s| {
            s.spawn(|| self.block(fut)).join().unwrap_or_else(|_| Err(StoreError::Db("store thread panicked".into())))
        })
    }

    pub fn pool(&self) -> Pool {
        self.pool.clone()
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.pool.get().await.map_err(unavailable)?;
        client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATE_LOCK]).await.map_err(pg_err)?;
        let r = async {
            client
                .batch_execute("CREATE TABLE IF NOT EXISTS berth_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
                .await
                .map_err(pg_err)?;
            let row = client.query_one("SELECT COALESCE(MAX(version), 0) FROM berth_schema", &[]).await.map_err(pg_err)?;
            let have: i32 = row.get(0);
            for (i, sql) in MIGRATIONS.iter().enumerate() {
                let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
                if version <= have {
                    continue;
                }
                let txn = client.transaction().await.map_err(pg_err)?;
                txn.batch_execute(sql).await.map_err(pg_err)?;
                txn.execute("INSERT INTO berth_schema (version) VALUES ($1)", &[&version]).await.map_err(pg_err)?;
                txn.commit().await.map_err(pg_err)?;
                tracing::info!(version, "store schema migrated");
            }
            if have > i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX) {
                return Err(StoreError::Db(format!(
                    "the database's schema (version {have}) is newer than this Berth knows ({}): upgrade Berth",
                    MIGRATIONS.len()
                )));
            }
            Ok(())
        }
        .await;
        let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATE_LOCK]).await;
        r
    }

    /// Every record of a table, by id.
    pub async fn load_all_raw(pool: Pool, table: &'static str) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let client = pool.get().await.map_err(unavailable)?;
        let rows = client
            .query("SELECT id, value FROM berth_records WHERE tbl = $1 ORDER BY id", &[&table])
            .await
            .map_err(pg_err)?;
        Ok(rows.iter().map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, Vec<u8>>(1))).collect())
    }

    /// The records of `table` with these ids (absent ones are left out).
    pub async fn load_some_raw(
        pool: Pool,
        table: &'static str,
        ids: Vec<u64>,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let client = pool.get().await.map_err(unavailable)?;
        let ids: Vec<i64> = ids.into_iter().filter_map(|i| i64::try_from(i).ok()).collect();
        let rows = client
            .query("SELECT id, value FROM berth_records WHERE tbl = $1 AND id = ANY($2)", &[&table, &ids])
            .await
            .map_err(pg_err)?;
        Ok(rows.iter().map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, Vec<u8>>(1))).collect())
    }

    pub async fn load_meta_raw(pool: Pool, key: String) -> Result<Option<Vec<u8>>, StoreError> {
        let client = pool.get().await.map_err(unavailable)?;
        let row = client.query_opt("SELECT value FROM berth_meta WHERE key = $1", &[&key]).await.map_err(pg_err)?;
        Ok(row.map(|r| r.get(0)))
    }

    pub async fn load_all_meta(pool: Pool) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let client = pool.get().await.map_err(unavailable)?;
        let rows = client.query("SELECT key, value FROM berth_meta ORDER BY key", &[]).await.map_err(pg_err)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub async fn load_revoked(pool: Pool) -> Result<Vec<(String, u64)>, StoreError> {
        let client = pool.get().await.map_err(unavailable)?;
        let rows = client.query("SELECT jti, exp FROM berth_revoked", &[]).await.map_err(pg_err)?;
        Ok(rows.iter().map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1).max(0) as u64)).collect())
    }

    /// Stores `make()` under `key` unless a value is there already, and
    /// returns the value that won: replicas starting together agree on one.
    pub async fn meta_get_or_insert(pool: Pool, key: String, value: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        let client = pool.get().await.map_err(unavailable)?;
        client
            .execute(
                "INSERT INTO berth_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                &[&key, &value],
            )
            .await
            .map_err(pg_err)?;
        let row = client.query_one("SELECT value FROM berth_meta WHERE key = $1", &[&key]).await.map_err(pg_err)?;
        Ok(row.get(0))
    }

    /// Whether the database holds any record, meta entry or revocation.
    pub async fn is_empty(pool: Pool) -> Result<bool, StoreError> {
        let client = pool.get().await.map_err(unavailable)?;
        let row = client
            .query_one(
                "SELECT NOT EXISTS (SELECT 1 FROM berth_records) AND NOT EXISTS (SELECT 1 FROM berth_meta) AND NOT EXISTS (SELECT 1 FROM berth_revoked)",
                &[],
            )
            .await
            .map_err(pg_err)?;
        Ok(row.get(0))
    }

    /// Runs one write transaction: the global write lock, `f`'s
    /// operations, the notification of what changed, the commit. Called
    /// on the blocking pool.
    pub fn write<R>(&self, f: impl FnOnce(&PgTx<'_>) -> Result<(R, Vec<Change>), StoreError>) -> Result<R, StoreError> {
        let mut client = self.block(async { self.pool.get().await.map_err(unavailable) })?;
        let txn = self.block(async { client.transaction().await.map_err(pg_err) })?;
        self.block(async { txn.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK]).await.map_err(pg_err) })?;
        let tx = PgTx { pg: self, txn: &txn };
        let r = f(&tx);
        match r {
            Ok((v, changes)) => {
                for payload in payloads(&self.replica, &changes) {
                    self.block(async {
                        txn.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload]).await.map_err(pg_err)
                    })?;
                }
                self.block(async { txn.commit().await.map_err(pg_err) })?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.block(async { txn.rollback().await.map_err(pg_err) });
                Err(e)
            }
        }
    }

    /// Takes or keeps the health-check lease: a session advisory lock held
    /// on a connection of its own. A replica that dies drops the
    /// connection, so the lease passes to another at its next round.
    pub async fn health_lease(self: &Arc<Self>) -> bool {
        let pg = self.clone();
        let r = self
            .run(async move {
                let held = pg.health.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(client) = held {
                    if !client.is_closed() && client.simple_query("SELECT 1").await.is_ok() {
                        *pg.health.lock().unwrap_or_else(|e| e.into_inner()) = Some(client);
                        return Ok(true);
                    }
                }
                let client = connect(&pg.config, pg.tls.as_ref(), None).await?;
                let row = client.query_one("SELECT pg_try_advisory_lock($1)", &[&HEALTH_LOCK]).await.map_err(pg_err)?;
                let got: bool = row.get(0);
                if got {
                    *pg.health.lock().unwrap_or_else(|e| e.into_inner()) = Some(client);
                }
                Ok(got)
            })
            .await;
        r.unwrap_or(false)
    }

    /// A lock across replicas (a session advisory lock on a connection
    /// taken from the pool for as long as it is held), waited for.
    pub async fn shared_lock(self: &Arc<Self>, key: i64) -> Result<SharedLock, StoreError> {
        let pool = self.pool.clone();
        let client = self
            .handle
            .spawn(async move {
                let client = pool.get().await.map_err(unavailable)?;
                loop {
                    let row = client.query_one("SELECT pg_try_advisory_lock($1)", &[&key]).await.map_err(pg_err)?;
                    if row.get::<_, bool>(0) {
                        return Ok(client);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await
            .unwrap_or_else(|e| Err(StoreError::Db(format!("store task failed: {e}"))))?;
        Ok(SharedLock { client: Some(client), key, handle: self.handle.clone() })
    }
}

/// Released when dropped (or when its connection ends).
pub struct SharedLock {
    client: Option<deadpool_postgres::Object>,
    key: i64,
    handle: tokio::runtime::Handle,
}

impl Drop for SharedLock {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let key = self.key;
            self.handle.spawn(async move {
                if client.execute("SELECT pg_advisory_unlock($1)", &[&key]).await.is_err() {
                    // The session is gone or unsure: never pool it again.
                    drop(deadpool_postgres::Object::take(client));
                }
            });
        }
    }
}

/// A connection of its own (the listener's, the health lease's), driven on
/// the current runtime; notifications go to `notes`.
async fn connect(
    config: &tokio_postgres::Config,
    tls: Option<&tokio_postgres_rustls::MakeRustlsConnect>,
    notes: Option<mpsc::UnboundedSender<tokio_postgres::Notification>>,
) -> Result<tokio_postgres::Client, StoreError> {
    macro_rules! drive {
        ($conn:expr) => {{
            let mut conn = $conn;
            tokio::spawn(async move {
                let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
                use futures_util::StreamExt;
                while let Some(m) = messages.next().await {
                    match m {
                        Ok(AsyncMessage::Notification(n)) => {
                            if let Some(tx) = &notes {
                                let _ = tx.send(n);
                            }
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            });
        }};
    }
    match tls {
        Some(t) => {
            let (client, conn) = config.connect(t.clone()).await.map_err(pg_err)?;
            drive!(conn);
            Ok(client)
        }
        None => {
            let (client, conn) = config.connect(NoTls).await.map_err(pg_err)?;
            drive!(conn);
            Ok(client)
        }
    }
}

/// The change feed: listens, and after every (re)connection asks for a
/// full reload first, so what was missed while disconnected is caught up.
async fn listen(
    config: tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    out: mpsc::Sender<FeedEvent>,
    stats: Arc<Stats>,
) {
    let mut first = true;
    loop {
        let (ntx, mut nrx) = mpsc::unbounded_channel();
        match connect(&config, tls.as_ref(), Some(ntx)).await {
            Ok(client) => match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                Ok(()) => {
                    stats.feed_up.set(1);
                    if !first {
                        tracing::info!("store change feed reconnected: reloading");
                    }
                    if out.send(FeedEvent::Resync).await.is_err() {
                        return;
                    }
                    first = false;
                    while let Some(n) = nrx.recv().await {
                        if let Some(ev) = parse_payload(n.payload()) {
                            if out.send(ev).await.is_err() {
                                return;
                            }
                        }
                    }
                    stats.feed_up.set(0);
                    stats.reconnects.inc();
                    tracing::warn!("store change feed lost its connection; reconnecting");
                }
                Err(e) => tracing::warn!(error = %e, "store change feed: LISTEN failed"),
            },
            Err(e) => {
                stats.feed_up.set(0);
                tracing::debug!(error = %e, "store change feed: cannot connect yet");
            }
        }
        if out.is_closed() {
            return;
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

/// One write transaction on PostgreSQL.
pub(super) struct PgTx<'a> {
    pg: &'a Pg,
    txn: &'a deadpool_postgres::Transaction<'a>,
}

impl PgTx<'_> {
    fn b<T>(&self, fut: impl Future<Output = Result<T, tokio_postgres::Error>>) -> Result<T, StoreError> {
        self.pg.block(async { fut.await.map_err(pg_err) })
    }

    pub fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = self.b(self.txn.query_opt("SELECT value FROM berth_meta WHERE key = $1", &[&key]))?;
        Ok(row.map(|r| r.get(0)))
    }

    pub fn meta_put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.b(self.txn.execute(
            "INSERT INTO berth_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            &[&key, &value],
        ))?;
        Ok(())
    }

    pub fn put(&self, table: Table, id: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let (t, id) = (table_name(table), id_i64(id)?);
        self.b(self.txn.execute(
            "INSERT INTO berth_records (tbl, id, value) VALUES ($1, $2, $3) ON CONFLICT (tbl, id) DO UPDATE SET value = EXCLUDED.value",
            &[&t, &id, &bytes],
        ))?;
        Ok(())
    }

    pub fn get(&self, table: Table, id: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let (t, id) = (table_name(table), id_i64(id)?);
        let row =
            self.b(self.txn.query_opt("SELECT value FROM berth_records WHERE tbl = $1 AND id = $2", &[&t, &id]))?;
        Ok(row.map(|r| r.get(0)))
    }

    pub fn delete(&self, table: Table, id: u64) -> Result<bool, StoreError> {
        let (t, id) = (table_name(table), id_i64(id)?);
        let n = self.b(self.txn.execute("DELETE FROM berth_records WHERE tbl = $1 AND id = $2", &[&t, &id]))?;
        Ok(n > 0)
    }

    pub fn all(&self, table: Table) -> Result<Vec<Vec<u8>>, StoreError> {
        let t = table_name(table);
        let rows = self.b(self.txn.query("SELECT value FROM berth_records WHERE tbl = $1 ORDER BY id", &[&t]))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub fn len(&self, table: Table) -> Result<u64, StoreError> {
        let t = table_name(table);
        let row = self.b(self.txn.query_one("SELECT count(*) FROM berth_records WHERE tbl = $1", &[&t]))?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }

    pub fn oldest(&self, table: Table, max: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let t = table_name(table);
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let rows = self.b(self
            .txn
            .query("SELECT id, value FROM berth_records WHERE tbl = $1 ORDER BY id LIMIT $2", &[&t, &limit]))?;
        Ok(rows.iter().map(|r| (r.get::<_, i64>(0) as u64, r.get(1))).collect())
    }

    pub fn delete_many(&self, table: Table, ids: &[u64]) -> Result<(), StoreError> {
        let t = table_name(table);
        let ids: Vec<i64> = ids.iter().filter_map(|i| i64::try_from(*i).ok()).collect();
        self.b(self.txn.execute("DELETE FROM berth_records WHERE tbl = $1 AND id = ANY($2)", &[&t, &ids]))?;
        Ok(())
    }

    pub fn revoke(&self, jti: &str, exp: u64) -> Result<(), StoreError> {
        let exp = i64::try_from(exp).unwrap_or(i64::MAX);
        self.b(self.txn.execute(
            "INSERT INTO berth_revoked (jti, exp) VALUES ($1, $2) ON CONFLICT (jti) DO UPDATE SET exp = EXCLUDED.exp",
            &[&jti, &exp],
        ))?;
        Ok(())
    }

    pub fn prune_revoked(&self, now: u64) -> Result<usize, StoreError> {
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        let n = self.b(self.txn.execute("DELETE FROM berth_revoked WHERE exp < $1", &[&now]))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

/// The notifications announcing `changes`, each under PostgreSQL's limit.
fn payloads(replica: &str, changes: &[Change]) -> Vec<String> {
    if changes.is_empty() {
        return Vec::new();
    }
    let at =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let mut out = Vec::new();
    let mut batch: Vec<&Change> = Vec::new();
    let mut size = 0;
    for c in changes {
        let n = serde_json::to_string(c).map(|s| s.len()).unwrap_or(0) + 1;
        if !batch.is_empty() && size + n > MAX_PAYLOAD {
            out.push(serde_json::json!({"o": replica, "at": at, "c": batch}).to_string());
            batch.clear();
            size = 0;
        }
        batch.push(c);
        size += n;
    }
    out.push(serde_json::json!({"o": replica, "at": at, "c": batch}).to_string());
    out
}

fn parse_payload(s: &str) -> Option<FeedEvent> {
    #[derive(serde::Deserialize)]
    struct P {
        o: String,
        at: u64,
        c: Vec<Change>,
    }
    let p: P = serde_json::from_str(s).ok()?;
    Some(FeedEvent::Changes { origin: p.o, at_ms: p.at, changes: p.c })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_stay_under_the_limit_and_round_trip() {
        let changes: Vec<Change> = (0..2000).map(|i| Change::Record { table: "users".into(), id: i }).collect();
        let ps = payloads("r1", &changes);
        assert!(ps.len() > 1);
        let mut seen = 0;
        for p in &ps {
            assert!(p.len() < 8000, "{}", p.len());
            match parse_payload(p) {
                Some(FeedEvent::Changes { origin, changes, .. }) => {
                    assert_eq!(origin, "r1");
                    seen += changes.len();
                }
                _ => panic!("unparsed"),
            }
        }
        assert_eq!(seen, 2000);
        assert!(payloads("r1", &[]).is_empty());
    }

    #[test]
    fn a_password_in_the_url_is_refused() {
        let o = PgOptions {
            url: "postgres://berth:secret@localhost/berth".into(),
            password: None,
            ca_file: None,
            replica: "r".into(),
        };
        let e = parse_options(&o).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("must not carry a password"), "{e}");
        let o = PgOptions { url: "postgres://berth@localhost/berth".into(), password: Some("pw".into()), ..o };
        assert!(parse_options(&o).is_ok());
    }
}
