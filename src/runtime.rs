//! The shape of the async runtime: one current-thread runtime per core,
//! each with a listening socket of its own (`SO_REUSEPORT`), or tokio's
//! work-stealing scheduler over all cores.
//!
//! Per core is the default because a proxied request is short and wants
//! nothing from other threads: with work stealing, a connection's task, its
//! upstream connection's task and the pool's check-in wake each other
//! across threads (an `eventfd` write and a context switch each), and the
//! shared run queue is contended; per core, the kernel spreads accepted
//! connections over the shards and a request never leaves the thread that
//! accepted it, as nginx's workers do (docs/PERFORMANCE.md, "as users run
//! it"). Work stealing balances better when a few connections carry most of
//! the load, so it stays available (`--scheduler work-stealing`).
//!
//! Background work (health checks, housekeeping, the audit writer, the
//! change feed) runs on a thread and runtime of its own beside the shards
//! (`lib.rs`, `spawn_background`).

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;

use rustix::net::{sockopt, AddressFamily, SocketType};

/// How the daemon's async work is scheduled (`--scheduler`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheduler {
    PerCore,
    WorkStealing,
}

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(0) };
}

/// The shard this thread serves: its index among the per-core runtimes, 0
/// on the main thread and on every thread of the work-stealing shape.
/// Upstream connection pools keep one idle list per shard, so a request
/// reuses a connection whose task runs on its own thread.
pub fn shard() -> usize {
    SHARD.with(Cell::get)
}

/// Marks the calling thread as serving `shard`.
pub fn enter_shard(shard: usize) {
    SHARD.with(|s| s.set(shard));
}

/// The number of runtime threads: `--workers`, else one per core.
pub fn workers(configured: Option<usize>) -> usize {
    configured.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1)
}

/// A current-thread runtime (the per-core shape's, and `--workers 1`'s).
/// `on_park` runs whenever the thread is about to sleep.
pub fn current_thread(on_park: fn()) -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().on_thread_park(on_park).build()
}

/// Tokio's work-stealing runtime over `workers` threads.
pub fn work_stealing(workers: usize, on_park: fn()) -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().on_thread_park(on_park).build()
}

/// Binds `count` listening sockets on `addr`. With more than one, each has
/// `SO_REUSEPORT`, so the kernel spreads incoming connections over them;
/// Linux lets only sockets of the same user join such a group, so another
/// user's process cannot bind the port to steal connections. A port of 0
/// is resolved by the first socket and the others join that port. Every
/// socket has `SO_REUSEADDR` (a restart binds again at once despite
/// connections in `TIME_WAIT`), is non-blocking, and listens with a backlog
/// of 1024, as tokio's own `bind` does.
pub fn bind(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let mut out = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count.max(1) {
        let family = if addr.is_ipv4() { AddressFamily::INET } else { AddressFamily::INET6 };
        let fd = rustix::net::socket_with(family, SocketType::STREAM, rustix::net::SocketFlags::CLOEXEC, None)?;
        sockopt::set_socket_reuseaddr(&fd, true)?;
        if count > 1 {
            sockopt::set_socket_reuseport(&fd, true)?;
        }
        rustix::net::bind(&fd, &addr)?;
        rustix::net::listen(&fd, 1024)?;
        let listener = std::net::TcpListener::from(fd);
        listener.set_nonblocking(true)?;
        addr = listener.local_addr()?;
        out.push(listener);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn sockets_share_one_port_and_the_kernel_spreads_connections() {
        let ls = bind("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let port = ls[0].local_addr().unwrap().port();
        assert_ne!(port, 0);
        assert_eq!(ls[1].local_addr().unwrap().port(), port);
        // Many connections from different source ports: both sockets get some.
        let mut clients = Vec::new();
        for _ in 0..64 {
            clients.push(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
        }
        let accepted: Vec<usize> = ls.iter().map(|l| std::iter::from_fn(|| l.accept().ok()).count()).collect();
        assert_eq!(accepted.iter().sum::<usize>(), 64, "{accepted:?}");
        assert!(accepted.iter().all(|&n| n > 0), "one socket got every connection: {accepted:?}");
    }

    #[test]
    fn one_socket_needs_no_reuseport_and_a_taken_port_is_refused() {
        let ls = bind("127.0.0.1:0".parse().unwrap(), 1).unwrap();
        assert!(!sockopt::socket_reuseport(&ls[0]).unwrap());
        assert!(sockopt::socket_reuseaddr(&ls[0]).unwrap());
        let taken = ls[0].local_addr().unwrap();
        assert!(bind(taken, 1).is_err());
        assert!(bind(taken, 2).is_err(), "a reuseport group cannot join a socket that is not in one");
        // The sockets really listen.
        let mut c = std::net::TcpStream::connect(taken).unwrap();
        c.write_all(b"x").unwrap();
        let (mut s, _) = loop {
            match ls[0].accept() {
                Ok(v) => break v,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        };
        let mut b = [0u8; 1];
        s.set_nonblocking(false).unwrap();
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"x");
    }

    #[test]
    fn shards_are_per_thread() {
        enter_shard(3);
        assert_eq!(shard(), 3);
        assert_eq!(std::thread::spawn(shard).join().unwrap(), 0);
    }
}
