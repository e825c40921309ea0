//! A throwaway PostgreSQL cluster for the replica tests and for running the
//! suite on the PostgreSQL store (`BERTH_TEST_STORE=postgres`): Debian's
//! `postgresql` package's `initdb` and `postgres`, in a temporary
//! directory, on a free loopback port, with `trust` authentication (it
//! listens on 127.0.0.1 only and lives as long as the test process).
//!
//! PostgreSQL refuses to run as root; as root (CI), the cluster runs as
//! the `postgres` user the package creates. A watcher shell stops the
//! server when the test process is gone, even after a panic or SIGKILL, so
//! no server outlives its test.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A running cluster. Dropping it stops the server and removes its files.
pub struct PgCluster {
    dir: TempDir,
    bin: PathBuf,
    pub port: u16,
    as_user: Option<String>,
    /// The watcher shells of each start, reaped on drop.
    watchers: std::sync::Mutex<Vec<std::process::Child>>,
    /// Extra server options (`-c ssl=on ...`).
    options: String,
}

/// Where `initdb` and `postgres` are: PATH, else Debian's versioned folder.
fn pg_bin_dir() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists() && p.join("postgres").exists())
        .collect();
    found.sort();
    found.pop()
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Whether a cluster can be started here; when not, why.
pub fn postgres_missing() -> Option<String> {
    if pg_bin_dir().is_none() {
        return Some("PostgreSQL's server programs are not installed (apt-get install postgresql)".into());
    }
    if is_root() && Command::new("id").arg("postgres").stdout(Stdio::null()).status().map_or(true, |s| !s.success()) {
        return Some("running as root and there is no `postgres` user to run PostgreSQL as".into());
    }
    None
}

/// `true` when PostgreSQL can be used; otherwise prints `SKIP <test>: ...`
/// and returns false, or panics when `BERTH_REQUIRE_POSTGRES=1` (CI
/// installs it: there, missing means broken CI).
pub fn require_postgres() -> bool {
    match postgres_missing() {
        None => true,
        Some(why) if std::env::var("BERTH_REQUIRE_POSTGRES").as_deref() == Ok("1") => {
            panic!("{}: {why}, but BERTH_REQUIRE_POSTGRES=1", crate::harness::test_name())
        }
        Some(why) => {
            eprintln!("SKIP {}: {why}", crate::harness::test_name());
            false
        }
    }
}

impl PgCluster {
    /// Creates and starts a cluster. Panics when it cannot (call
    /// [`require_postgres`] first).
    pub fn start() -> PgCluster {
        PgCluster::start_with(None)
    }

    /// A cluster that also speaks TLS with `pki`'s server certificate
    /// (for 127.0.0.1), so clients can verify it against `pki.ca_pem`.
    pub fn start_tls(pki: &crate::Pki) -> PgCluster {
        PgCluster::start_with(Some(pki))
    }

    fn start_with(pki: Option<&crate::Pki>) -> PgCluster {
        let bin = pg_bin_dir().expect("PostgreSQL installed");
        let dir = tempfile::Builder::new().prefix("berth-pg-").tempdir().expect("temp dir");
        let as_user = is_root().then(|| "postgres".to_string());
        if as_user.is_some() {
            // The package's user must own the cluster's files.
            let out = Command::new("chown").arg("-R").arg("postgres:postgres").arg(dir.path()).status().unwrap();
            assert!(out.success(), "chown of the cluster directory failed");
        }
        let data = dir.path().join("data");
        let out = run_as(&as_user, &bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "-D"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let mut options = String::new();
        if let Some(pki) = pki {
            use std::os::unix::fs::PermissionsExt;
            for (name, pem) in [("server.crt", &pki.server_cert_pem), ("server.key", &pki.server_key_pem)] {
                let path = data.join(name);
                std::fs::write(&path, pem).unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
                if as_user.is_some() {
                    let ok = Command::new("chown").arg("postgres:postgres").arg(&path).status().unwrap();
                    assert!(ok.success(), "chown {name}");
                }
            }
            options = "-c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key".into();
        }
        let port = crate::harness::free_ports().0;
        let c = PgCluster { dir, bin, port, as_user, watchers: Default::default(), options };
        c.run();
        c
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn run(&self) {
        let log = self.dir.path().join("server.log");
        // The watcher ends the server when this test process is gone.
        let script = format!(
            "{postgres} -D {data} -p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c max_connections=300 -c shared_buffers=16MB {options} >>{log} 2>&1 & pg=$!; \
             while [ -d /proc/{me} ] && kill -0 $pg 2>/dev/null; do sleep 0.5; done; \
             kill -INT $pg 2>/dev/null; wait $pg",
            postgres = self.bin.join("postgres").display(),
            data = self.data().display(),
            port = self.port,
            sock = self.dir.path().display(),
            log = log.display(),
            me = std::process::id(),
            options = self.options,
        );
        let watcher = run_as(&self.as_user, Path::new("/bin/sh"))
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        self.watchers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(watcher);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.psql("postgres", "SELECT 1").is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("PostgreSQL did not start: {}", std::fs::read_to_string(log).unwrap_or_default());
    }

    /// Stops the server at once (as a crash would), keeping its data.
    pub fn stop(&self) {
        let out = run_as(&self.as_user, &self.bin.join("pg_ctl"))
            .args(["-m", "immediate", "-w", "stop", "-D"])
            .arg(self.data())
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl stop: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Runs one SQL statement with `psql`; its output, or its error.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new("psql")
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(self.port.to_string())
            .args(["-d", db, "-c", sql])
            .env_remove("PGPASSWORD")
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Creates a database (if new) and returns Berth's `--store` URL for it.
    pub fn database(&self, name: &str) -> String {
        if self.psql("postgres", &format!("SELECT 1 FROM pg_database WHERE datname = '{name}'")).unwrap_or_default()
            != "1"
        {
            self.psql("postgres", &format!("CREATE DATABASE \"{name}\"")).expect("create database");
        }
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = run_as(&self.as_user, &self.bin.join("pg_ctl"))
            .args(["-m", "immediate", "stop", "-D"])
            .arg(self.data())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // Each watcher ends within half a second of its server.
        for mut w in self.watchers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain(..) {
            let _ = w.wait();
        }
    }
}

fn run_as(user: &Option<String>, program: &Path) -> Command {
    match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// The one cluster of this test process that `BERTH_TEST_STORE=postgres`
/// puts every daemon's store in (a database per data directory).
pub fn shared_cluster() -> &'static PgCluster {
    static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        if let Some(why) = postgres_missing() {
            panic!("BERTH_TEST_STORE=postgres, but {why}");
        }
        PgCluster::start()
    })
}

/// With `BERTH_TEST_STORE=postgres`, the `--store` URL for a daemon on
/// `data_dir` (the same database each time, so restarts find their data).
pub fn test_store_for(data_dir: &Path) -> Option<String> {
    if std::env::var("BERTH_TEST_STORE").as_deref() != Ok("postgres") {
        return None;
    }
    Some(shared_cluster().database(&test_db_name(data_dir)))
}

/// The database of the daemon on `data_dir` under `BERTH_TEST_STORE=postgres`.
pub fn test_db_name(data_dir: &Path) -> String {
    let mut h = crate::Fnv1a64::default();
    h.update(data_dir.to_string_lossy().as_bytes());
    format!("t_{:016x}", h.finish())
}
