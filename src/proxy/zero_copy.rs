//! Moving a hijacked session's bytes kernel to kernel with splice(2), when
//! both ends are plain sockets (the client on TCP, the Docker host on a
//! unix socket or TCP): socket → pipe → socket, never through Berth's
//! memory. TLS on either side takes the copy in `splice.rs` instead.
//!
//! Semantics are the copy's, which are `tokio::io::copy_bidirectional`'s:
//! when one side reads EOF, the other side's write half is shut down once
//! everything read before it has been delivered, and the opposite direction
//! keeps going until it ends too (half-close); the first error ends both.
//! Writes to the client keep the connection's send timeout (a client that
//! reads nothing for that long is cut off, as `SendTimeout` does).
//!
//! A direction holds a pipe only while bytes are in flight: it takes one
//! from a small shared pool when its source has data and gives it back,
//! empty, as soon as the source has nothing more for now. An idle session
//! (most attach sessions: a shell waiting for a keystroke) holds no pipe,
//! so 10,000 of them cost no descriptor beyond their two sockets.
//!
//! A pipe is only ever filled while it is empty and only ever drained
//! while it holds bytes, so a `WouldBlock` always comes from the socket,
//! never from the pipe: readiness is cleared only when the socket really
//! has nothing to read or no room to write.

use std::future::poll_fn;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use rustix::pipe::{PipeFlags, SpliceFlags};
use tokio::io::Interest;
use tokio::net::{TcpStream, UnixStream};

use crate::deadline::IdleDeadline;

/// Bytes one splice call may move: a pipe's default capacity (16 pages).
const CHUNK: usize = 64 * 1024;
/// Spare empty pipes kept while tunnels are open (128 descriptors at most).
const SPARE_MAX: usize = 64;
const FLAGS: SpliceFlags = SpliceFlags::MOVE.union(SpliceFlags::NONBLOCK);

struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

/// Empty pipes shared by the tunnels, so a busy session does not make and
/// close a pipe for every burst of bytes. Emptied when the last tunnel
/// ends: with no session open, Berth holds no pipe at all.
pub(crate) struct Pipes {
    state: Mutex<PipesState>,
}

struct PipesState {
    spare: Vec<Pipe>,
    tunnels: usize,
    #[cfg(test)]
    created: usize,
}

/// The pipes of every tunnel of the process.
pub(crate) static PIPES: Pipes = Pipes::new();

impl Pipes {
    pub(crate) const fn new() -> Pipes {
        Pipes {
            state: Mutex::new(PipesState {
                spare: Vec::new(),
                tunnels: 0,
                #[cfg(test)]
                created: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PipesState> {
        // Pushes and pops cannot leave the list inconsistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take(&self) -> io::Result<Pipe> {
        {
            let mut state = self.lock();
            if let Some(p) = state.spare.pop() {
                return Ok(p);
            }
            #[cfg(test)]
            {
                state.created += 1;
            }
        }
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        Ok(Pipe { read, write })
    }

    /// Only for an empty pipe: whoever takes it next assumes so.
    fn give_back(&self, pipe: Pipe) {
        let mut state = self.lock();
        if state.spare.len() < SPARE_MAX && state.tunnels > 0 {
            state.spare.push(pipe);
        }
    }

    fn open(&self) -> TunnelGuard<'_> {
        self.lock().tunnels += 1;
        TunnelGuard(self)
    }
}

struct TunnelGuard<'a>(&'a Pipes);

impl Drop for TunnelGuard<'_> {
    fn drop(&mut self) {
        let spare = {
            let mut state = self.0.lock();
            state.tunnels -= 1;
            if state.tunnels > 0 {
                return;
            }
            std::mem::take(&mut state.spare)
        };
        // Closed outside the lock.
        drop(spare);
    }
}

/// What a direction needs of a socket: readiness, and non-blocking system
/// calls that clear it when they would block.
pub(crate) trait Socket: AsFd {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R>;
}

macro_rules! socket {
    ($t:ty) => {
        impl Socket for $t {
            fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                <$t>::poll_read_ready(self, cx)
            }
            fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                <$t>::poll_write_ready(self, cx)
            }
            fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
                <$t>::try_io(self, interest, f)
            }
        }
    };
}

socket!(TcpStream);
socket!(UnixStream);

/// One end of the tunnel: the socket, the bytes hyper had already read
/// from it (sent on before anything else), and, for the client, the send
/// timeout of its connection.
pub(crate) struct End<S> {
    pub socket: S,
    pub read_ahead: Bytes,
    pub send_deadline: Option<IdleDeadline>,
}

/// Moves bytes both ways until both directions have ended; returns the
/// bytes moved client → host and host → client.
pub(crate) async fn run<A: Socket, B: Socket>(pipes: &Pipes, client: End<A>, host: End<B>) -> io::Result<(u64, u64)> {
    let _open = pipes.open();
    let End { socket: a, read_ahead: a_ahead, send_deadline: mut a_deadline } = client;
    let End { socket: b, read_ahead: b_ahead, send_deadline: mut b_deadline } = host;
    let to_host = pump(pipes, &a, &b, a_ahead, b_deadline.as_mut());
    let to_client = pump(pipes, &b, &a, b_ahead, a_deadline.as_mut());
    tokio::try_join!(to_host, to_client)
}

/// One direction: `ahead` first, then everything `from` sends, then a
/// shutdown of `to`'s write half.
async fn pump<R: Socket, W: Socket>(
    pipes: &Pipes,
    from: &R,
    to: &W,
    ahead: Bytes,
    mut deadline: Option<&mut IdleDeadline>,
) -> io::Result<u64> {
    let mut moved = 0u64;
    let mut pos = 0;
    while pos < ahead.len() {
        match to.try_io(Interest::WRITABLE, || rustix::io::write(to, &ahead[pos..]).map_err(io::Error::from)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                pos += n;
                moved += n as u64;
                progress(&mut deadline);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => writable(to, &mut deadline).await?,
            Err(e) => return Err(e),
        }
    }
    // Even empty, these bytes keep hyper's whole read buffer (8 KiB or
    // more) alive: an idle session must not hold it for its lifetime.
    drop(ahead);
    loop {
        poll_fn(|cx| from.poll_read_ready(cx)).await?;
        let pipe = pipes.take()?;
        match from.try_io(Interest::READABLE, || splice(from, &pipe.write, CHUNK)) {
            // Spurious readiness: nothing was read, the pipe is still empty.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => pipes.give_back(pipe),
            Err(e) => return Err(e),
            Ok(0) => {
                pipes.give_back(pipe);
                // EOF, and everything before it delivered: half-close.
                rustix::net::shutdown(to, rustix::net::Shutdown::Write)?;
                return Ok(moved);
            }
            Ok(n) => {
                // Held while its bytes are in flight; dropped (closed) with
                // them if the direction ends on an error.
                let pipe = drain_and_refill(from, to, pipe, n, &mut moved, &mut deadline).await?;
                pipes.give_back(pipe);
            }
        }
    }
}

/// Empties the pipe into `to`, then reads `from` into it again for as
/// long as `from` has data; returns the pipe empty once `from` would
/// block or reached EOF (which the caller's next read sees again).
async fn drain_and_refill<R: Socket, W: Socket>(
    from: &R,
    to: &W,
    pipe: Pipe,
    mut in_pipe: usize,
    moved: &mut u64,
    deadline: &mut Option<&mut IdleDeadline>,
) -> io::Result<Pipe> {
    loop {
        while in_pipe > 0 {
            match to.try_io(Interest::WRITABLE, || splice(&pipe.read, to, in_pipe)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    in_pipe -= n;
                    *moved += n as u64;
                    progress(deadline);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => writable(to, deadline).await?,
                Err(e) => return Err(e),
            }
        }
        match from.try_io(Interest::READABLE, || splice(from, &pipe.write, CHUNK)) {
            Ok(0) => return Ok(pipe),
            Ok(n) => in_pipe = n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(pipe),
            Err(e) => return Err(e),
        }
    }
}

fn splice(from: impl AsFd, to: impl AsFd, len: usize) -> io::Result<usize> {
    rustix::pipe::splice(from, None, to, None, len, FLAGS).map_err(io::Error::from)
}

fn progress(deadline: &mut Option<&mut IdleDeadline>) {
    if let Some(d) = deadline {
        d.progress();
    }
}

/// Waits until `to` can take more, for at most the send timeout when `to`
/// is the client.
async fn writable<W: Socket>(to: &W, deadline: &mut Option<&mut IdleDeadline>) -> io::Result<()> {
    poll_fn(|cx| {
        if let Poll::Ready(r) = to.poll_write_ready(cx) {
            return Poll::Ready(r);
        }
        match deadline {
            Some(d) => d.poll_stalled(cx).map(|()| Err(d.client_stalled())),
            None => Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), l.accept());
        (a.unwrap(), b.unwrap().0)
    }

    fn end<S>(socket: S, ahead: &'static [u8]) -> End<S> {
        End { socket, read_ahead: Bytes::from_static(ahead), send_deadline: None }
    }

    /// Read-ahead bytes first, megabytes both ways, the client's half-close
    /// reaching the host while the host's bytes keep coming, exact counts.
    #[tokio::test]
    async fn splices_both_ways_with_half_close() {
        let (mut client, proxy_client) = tcp_pair().await;
        let (proxy_host, mut host) = UnixStream::pair().unwrap();
        let tunnel = tokio::spawn(run(&PIPES, end(proxy_client, b"early-up;"), end(proxy_host, b"early-down;")));

        let up: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let down: Vec<u8> = (0..2_000_000u32).map(|i| (i % 241) as u8).collect();
        let (up2, down2) = (up.clone(), down.clone());
        let host_task = tokio::spawn(async move {
            let mut got = Vec::new();
            host.read_to_end(&mut got).await.unwrap(); // ends when the client half-closes
            host.write_all(&down2).await.unwrap();
            host.shutdown().await.unwrap();
            got
        });
        client.write_all(&up2).await.unwrap();
        client.shutdown().await.unwrap();
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();

        let mut want_up = b"early-up;".to_vec();
        want_up.extend_from_slice(&up);
        let mut want_down = b"early-down;".to_vec();
        want_down.extend_from_slice(&down);
        assert_eq!(host_task.await.unwrap(), want_up);
        assert_eq!(back, want_down);
        assert_eq!(tunnel.await.unwrap().unwrap(), (want_up.len() as u64, want_down.len() as u64));
    }

    /// An idle session holds no pipe: both directions wait on their socket
    /// with their pipes back in the pool.
    #[tokio::test]
    async fn idle_sessions_hold_no_pipe() {
        let (mut client, proxy_client) = tcp_pair().await;
        let (proxy_host, mut host) = UnixStream::pair().unwrap();
        let pipes = Pipes::new();
        let mut tunnel = Box::pin(run(&pipes, end(proxy_client, b""), end(proxy_host, b"")));
        // Some traffic each way, then silence.
        client.write_all(b"ping").await.unwrap();
        let mut b = [0u8; 4];
        tokio::select! {
            r = &mut tunnel => panic!("tunnel ended: {r:?}"),
            r = host.read_exact(&mut b) => { r.unwrap(); }
        }
        host.write_all(b"pong").await.unwrap();
        tokio::select! {
            r = &mut tunnel => panic!("tunnel ended: {r:?}"),
            r = client.read_exact(&mut b) => { r.unwrap(); }
        }
        assert_eq!(&b, b"pong");
        // Nothing more to read on either side: one poll parks both
        // directions, and every pipe made is back in the pool.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(tunnel.as_mut().poll(&mut cx).is_pending());
        let (created, spare) = {
            let state = pipes.lock();
            (state.created, state.spare.len())
        };
        assert!(created >= 1);
        assert_eq!(spare, created, "an idle session holds no pipe");
        drop(tunnel);
        assert_eq!(pipes.lock().spare.len(), 0, "with no tunnel open, no pipe is kept");
    }

    /// A client that reads nothing is cut off at its send timeout, as
    /// through the copy.
    #[tokio::test]
    async fn a_client_that_stops_reading_is_cut_off() {
        let (_client, proxy_client) = tcp_pair().await;
        let (proxy_host, mut host) = UnixStream::pair().unwrap();
        let client_end = End {
            socket: proxy_client,
            read_ahead: Bytes::new(),
            send_deadline: Some(IdleDeadline::new(Duration::from_millis(200))),
        };
        let tunnel = tokio::spawn(run(&PIPES, client_end, end(proxy_host, b"")));
        // The host writes until the client's socket buffers are full.
        let writer = tokio::spawn(async move {
            let block = vec![7u8; 1 << 16];
            while host.write_all(&block).await.is_ok() {}
        });
        let r = tokio::time::timeout(Duration::from_secs(20), tunnel).await.expect("bounded").unwrap();
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::TimedOut);
        writer.abort();
    }
}
