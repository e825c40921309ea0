//! The `berth` binary: parse flags, set up logging, build the runtime, run.

use std::process::ExitCode;

use berth::config::{Cli, Config, LogFormat};
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};

/// mimalloc instead of glibc's malloc: a proxied request allocates and frees
/// a few dozen small objects (header maps, buffers, futures), and glibc's
/// allocator was ~6% of a request's CPU time in profiles (consolidation and
/// free-list walks), mimalloc's thread-local free lists a fraction of that
/// (docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Log lines go through a dedicated writer thread that gathers whatever is
/// queued into one `write`, so the request path never makes a system call
/// for its access log line (docs/PERFORMANCE.md). Lines are never dropped (a stalled stderr slows
/// the daemon rather than losing its audit trail); the guard returned
/// flushes what is queued when `main` ends.
fn init_tracing(config: &Config) -> WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: log files and journald get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("berth-log")
        .finish(std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr()));
    // The access log formats its own lines and hands them to the same
    // writer in batches (server/access_log.rs); on a terminal it keeps
    // `tracing`'s colours instead.
    if !ansi {
        berth::server::access_log::install(config.log_format, Box::new(writer.clone()));
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(ansi);
    match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
    guard
}

/// `berth store ...`: maintenance of the store, not the daemon.
#[derive(clap::Parser, Debug)]
#[command(name = "berth store", about = "Maintenance of Berth's store")]
enum StoreCommand {
    /// Copy a whole store into another: a data directory into PostgreSQL or back
    Copy {
        /// The source: a data directory, or postgres://user@host/db
        #[arg(long, value_name = "DIR|URL")]
        from: String,
        /// The target: a data directory, or postgres://user@host/db; must be empty unless --force
        #[arg(long, value_name = "DIR|URL")]
        to: String,
        /// Copy into a target that already holds data (same ids are replaced)
        #[arg(long)]
        force: bool,
        /// File holding the PostgreSQL password (or set BERTH_STORE_PASSWORD)
        #[arg(long = "store-password-file", env = "BERTH_STORE_PASSWORD_FILE", value_name = "FILE")]
        password_file: Option<std::path::PathBuf>,
        /// PEM CA certificates for TLS to PostgreSQL
        #[arg(long = "store-ca-file", env = "BERTH_STORE_CA_FILE", value_name = "FILE")]
        ca_file: Option<std::path::PathBuf>,
    },
}

fn store_command(args: Vec<std::ffi::OsString>) -> ExitCode {
    use berth::store::copy::{copy, End};
    let cmd = match StoreCommand::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(64) } else { ExitCode::SUCCESS };
        }
    };
    let StoreCommand::Copy { from, to, force, password_file, ca_file } = cmd;
    let password = match password_file {
        Some(f) => match std::fs::read_to_string(&f) {
            Ok(pw) => Some(pw.trim_end_matches(['\n', '\r']).to_string()),
            Err(e) => {
                eprintln!("berth: reading {}: {e}", f.display());
                return ExitCode::from(64);
            }
        },
        None => std::env::var("BERTH_STORE_PASSWORD").ok(),
    };
    let end = |s: &str| {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            End::Postgres(berth::store::PgOptions {
                url: s.to_string(),
                password: password.clone(),
                ca_file: ca_file.clone(),
                replica: "store-copy".into(),
            })
        } else {
            End::Dir(s.into())
        }
    };
    match copy(&end(&from), &end(&to), force) {
        Ok(c) => {
            println!(
                "copied {} records, {} settings and sequences, {} revoked tokens, {} secrets from {from} to {to}",
                c.records, c.meta, c.revoked, c.secrets
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("berth: store copy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "store") {
        return store_command(args.into_iter().skip(1).collect());
    }
    // Usage errors exit 64 (EX_USAGE) like every other configuration error;
    // --help and --version print and exit 0.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            return ExitCode::from(64);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    let config = match Config::load(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth: {e}");
            return ExitCode::from(64);
        }
    };
    let log_guard = init_tracing(&config);
    // Per core (the default) and one worker: this thread runs shard 0 on a
    // current-thread runtime, further shards get threads of their own
    // (runtime.rs). Store commits and file I/O run on the blocking pool's
    // threads, password hashing on its own (auth/password.rs).
    let park = berth::server::access_log::flush_thread;
    let rt = match config.shards() > 1 || berth::runtime::workers(config.workers) == 1 {
        true => berth::runtime::current_thread(park),
        false => berth::runtime::work_stealing(berth::runtime::workers(config.workers), park),
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match rt.block_on(run(config)) {
        Ok(Ended::Drained) => ExitCode::SUCCESS,
        Ok(Ended::Forced(signo)) => {
            // Whatever still runs (in-flight requests, tunnels, a store
            // commit on the blocking pool) is abandoned, not waited for.
            rt.shutdown_background();
            berth::server::access_log::flush_thread();
            drop(log_guard);
            return ExitCode::from(128 + signo);
        }
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("berth: {e:#}");
            ExitCode::FAILURE
        }
    };
    // Tasks may still log while the runtime shuts down.
    drop(rt);
    // This thread's lines (a one-worker runtime runs here); runtime threads
    // handed theirs over as they ended.
    berth::server::access_log::flush_thread();
    drop(log_guard);
    code
}

/// How the server stopped.
enum Ended {
    /// After the graceful drain.
    Drained,
    /// A second SIGINT/SIGTERM during the drain: exit at once with
    /// 128 + that signal's number, as a shell reports a signal death.
    Forced(u8),
}

async fn run(config: Config) -> anyhow::Result<Ended> {
    let shutdown = CancellationToken::new();
    // Installed before the (possibly long) store wait, so a signal then is
    // not the default "die at once".
    let mut signals = Signals::install()?;
    let state = tokio::select! {
        r = berth::build_state(config, shutdown.clone()) => r?,
        signo = signals.next() => return Ok(Ended::Forced(signo)),
    };
    let listeners = berth::Listeners::bind(&state.config)?;
    let (force_tx, force_rx) = tokio::sync::oneshot::channel::<u8>();
    tokio::spawn(async move {
        signals.next().await;
        shutdown.cancel();
        let signo = signals.next().await;
        tracing::warn!("second signal during the drain: exiting without waiting for open requests and tunnels");
        let _ = force_tx.send(signo);
    });
    tokio::select! {
        r = berth::run(state, listeners) => r.map(|()| Ended::Drained),
        Ok(signo) = force_rx => Ok(Ended::Forced(signo)),
    }
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
    }

    /// The next SIGTERM or SIGINT; returns its number.
    async fn next(&mut self) -> u8 {
        tokio::select! {
            _ = self.term.recv() => {
                tracing::info!("SIGTERM received");
                libc::SIGTERM as u8
            }
            _ = self.int.recv() => {
                tracing::info!("SIGINT received");
                libc::SIGINT as u8
            }
        }
    }
}
