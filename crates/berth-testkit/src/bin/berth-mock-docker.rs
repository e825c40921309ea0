//! The mock Docker Engine as a process, for benchmarks and load scripts that
//! need the backend outside the process under test (so its CPU use is
//! separate and it can be pinned, restarted or killed on its own).
//!
//! On start it prints one line per listener, `unix PATH` and/or
//! `tcp ADDR` (with the real port when `:0` was asked for), then runs until
//! SIGINT or SIGTERM. `--unix-count N` serves N sockets (`PATH`, `PATH.1`,
//! ..., `PATH.<N-1>`) from the one process, so that a benchmark can give
//! thousands of endpoints hosts of their own without thousands of
//! processes.

// Test support binary: setup failures stop it loudly.
#![allow(clippy::unwrap_used, clippy::needless_pass_by_value)]

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use berth_testkit::{FailMode, MockDocker, MockOptions};
use clap::Parser;

/// Each socket is a listener and an accept task; more than a benchmark of
/// many hosts needs would only exhaust descriptors.
const MAX_UNIX_COUNT: i64 = 10_000;

#[derive(Parser, Debug)]
#[command(
    name = "berth-mock-docker",
    version,
    about = "A fake Docker Engine (API 1.41) for Berth's tests and benchmarks"
)]
struct Args {
    /// Listen on this unix socket path (a stale socket there is replaced).
    #[arg(long)]
    unix: Option<PathBuf>,
    /// Serve this many unix sockets: PATH, then PATH.1 to PATH.<N-1>.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=MAX_UNIX_COUNT))]
    unix_count: u16,
    /// Listen on this TCP address, e.g. 127.0.0.1:2375 or 127.0.0.1:0.
    #[arg(long)]
    tcp: Option<String>,
    /// Runtime worker threads; 0 runs everything on one thread.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Delay before every response head, in milliseconds.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Failure mode: none, refuse, drop, close-after:N, hang, status:N.
    #[arg(long, default_value = "none")]
    fail: FailMode,
    /// Claim to be a swarm manager.
    #[arg(long)]
    swarm: bool,
    /// Requests to remember; the process never reads them back, so the
    /// default keeps none.
    #[arg(long, default_value_t = 0)]
    log_capacity: usize,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if args.unix.is_none() && args.tcp.is_none() {
        eprintln!("berth-mock-docker: give --unix PATH and/or --tcp ADDR");
        return std::process::ExitCode::from(2);
    }
    let mut rt = if args.workers == 0 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(args.workers);
        b
    };
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth-mock-docker: cannot start runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    rt.block_on(run(args))
}

async fn run(args: Args) -> std::process::ExitCode {
    let mut builder = MockDocker::builder().options(MockOptions {
        delay: Duration::from_millis(args.delay_ms),
        fail: args.fail,
        swarm: args.swarm,
        log_capacity: args.log_capacity,
    });
    if let Some(p) = &args.unix {
        builder = builder.unix(p.clone());
        for k in 1..args.unix_count {
            let mut more = p.clone().into_os_string();
            more.push(format!(".{k}"));
            builder = builder.also_unix(more);
        }
    } else if args.unix_count > 1 {
        eprintln!("berth-mock-docker: --unix-count needs --unix PATH");
        return std::process::ExitCode::from(2);
    }
    if let Some(a) = &args.tcp {
        builder = builder.tcp(a.clone());
    }
    let mock = match builder.start().await {
        Ok(m) => m,
        Err(e) => {
            eprintln!("berth-mock-docker: cannot listen: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    {
        let mut out = std::io::stdout().lock();
        for p in mock.unix_paths() {
            let _ = writeln!(out, "unix {}", p.display());
        }
        if let Some(a) = mock.tcp_addr() {
            let _ = writeln!(out, "tcp {a}");
        }
        let _ = out.flush();
    }
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("berth-mock-docker: cannot watch SIGTERM: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    mock.shutdown().await;
    std::process::ExitCode::SUCCESS
}
