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
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(ansi);
    match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
    guard
}

fn main() -> ExitCode {
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
    // One worker: the current-thread scheduler does the same work without
    // the work-stealing machinery (cross-thread wakeups, the injection
    // queue): about 5% less CPU per proxied request (docs/PERFORMANCE.md).
    // Store commits and file I/O still run on the blocking pool's threads,
    // password hashing on its own (auth/password.rs).
    let mut rt = if config.workers == Some(1) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    rt.enable_all();
    if let Some(w) = config.workers.filter(|&w| w > 1) {
        rt.worker_threads(w);
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match rt.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("berth: {e:#}");
            ExitCode::FAILURE
        }
    };
    // Tasks may still log while the runtime shuts down.
    drop(rt);
    drop(log_guard);
    code
}

async fn run(config: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let state = berth::build_state(config, shutdown.clone()).await?;
    let listeners = berth::Listeners::bind(&state.config).await?;
    tokio::spawn(async move {
        wait_for_signal().await;
        shutdown.cancel();
    });
    berth::run(state, listeners).await
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
