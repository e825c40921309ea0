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

use std::future::{poll_fn, Future};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll};

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
/// bytes moved client → host and host → client. Hand-polled rather than
/// two `async fn`s joined, and taken apart before the future is made: an
/// idle session is this future and its two sockets, and nested futures
/// (or ends kept twice, as an `async fn`'s arguments are) would make it
/// several times larger.
pub(crate) fn run<'p, A: Socket + 'p, B: Socket + 'p>(
    pipes: &'p Pipes,
    client: End<A>,
    host: End<B>,
) -> impl Future<Output = io::Result<(u64, u64)>> + 'p {
    let End { socket: a, read_ahead: a_ahead, send_deadline: mut a_deadline } = client;
    let End { socket: b, read_ahead: b_ahead, send_deadline: mut b_deadline } = host;
    let mut to_host = Direction::new(a_ahead);
    let mut to_client = Direction::new(b_ahead);
    let open = pipes.open();
    async move {
        let _open = open;
        poll_fn(|cx| {
            // The first error ends both directions.
            let up = to_host.poll(cx, pipes, &a, &b, b_deadline.as_mut())?;
            let down = to_client.poll(cx, pipes, &b, &a, a_deadline.as_mut())?;
            let (up, down) = (ready!(up), ready!(down));
            Poll::Ready(Ok((up, down)))
        })
        .await
    }
}

enum State {
    /// Sending the bytes hyper had read ahead: `ahead[pos..]` is left.
    Ahead {
        ahead: Bytes,
        pos: usize,
    },
    /// Waiting for the source. A pipe is held only right after a drain,
    /// for one more read attempt; otherwise one is taken when data comes.
    Reading(Option<Pipe>),
    /// Bytes in the pipe, to be written to the destination; the pipe is
    /// closed with them if the direction ends on an error.
    Draining(Pipe, usize),
    Done,
}

/// One direction: the read-ahead bytes first, then everything the source
/// sends, then a shutdown of the destination's write half.
struct Direction {
    state: State,
    moved: u64,
}

impl Direction {
    fn new(ahead: Bytes) -> Direction {
        // Even empty, these bytes keep hyper's whole read buffer (8 KiB or
        // more) alive: an idle session must not hold them.
        let state = if ahead.is_empty() { State::Reading(None) } else { State::Ahead { ahead, pos: 0 } };
        Direction { state, moved: 0 }
    }

    fn poll<R: Socket, W: Socket>(
        &mut self,
        cx: &mut Context<'_>,
        pipes: &Pipes,
        from: &R,
        to: &W,
        mut deadline: Option<&mut IdleDeadline>,
    ) -> Poll<io::Result<u64>> {
        loop {
            match &mut self.state {
                State::Ahead { ahead, pos } => {
                    let r = to
                        .try_io(Interest::WRITABLE, || rustix::io::write(to, &ahead[*pos..]).map_err(io::Error::from));
                    match r {
                        Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                        Ok(n) => {
                            *pos += n;
                            self.moved += n as u64;
                            progress(&mut deadline);
                            if *pos == ahead.len() {
                                self.state = State::Reading(None);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            ready!(poll_writable(cx, to, &mut deadline))?;
                        }
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                }
                State::Reading(held) => {
                    let pipe = match held.take() {
                        Some(p) => p,
                        None => {
                            ready!(from.poll_read_ready(cx))?;
                            pipes.take()?
                        }
                    };
                    match from.try_io(Interest::READABLE, || splice(from, &pipe.write, CHUNK)) {
                        // Nothing to read for now: the pipe goes back to the
                        // pool, empty, and the next turn waits for readiness.
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => pipes.give_back(pipe),
                        Err(e) => return Poll::Ready(Err(e)),
                        Ok(0) => {
                            pipes.give_back(pipe);
                            // EOF, everything before it delivered: half-close.
                            rustix::net::shutdown(to, rustix::net::Shutdown::Write)?;
                            self.state = State::Done;
                        }
                        Ok(n) => self.state = State::Draining(pipe, n),
                    }
                }
                State::Draining(pipe, in_pipe) => {
                    match to.try_io(Interest::WRITABLE, || splice(&pipe.read, to, *in_pipe)) {
                        Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                        Ok(n) => {
                            *in_pipe -= n;
                            self.moved += n as u64;
                            progress(&mut deadline);
                            if *in_pipe == 0 {
                                // Emptied: keep it for one more read at once.
                                if let State::Draining(pipe, _) = std::mem::replace(&mut self.state, State::Done) {
                                    self.state = State::Reading(Some(pipe));
                                }
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            ready!(poll_writable(cx, to, &mut deadline))?;
                        }
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                }
                State::Done => return Poll::Ready(Ok(self.moved)),
            }
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

/// Whether `to` can take more; for the client, an error once it has read
/// nothing for its send timeout.
fn poll_writable<W: Socket>(
    cx: &mut Context<'_>,
    to: &W,
    deadline: &mut Option<&mut IdleDeadline>,
) -> Poll<io::Result<()>> {
    if let Poll::Ready(r) = to.poll_write_ready(cx) {
        return Poll::Ready(r);
    }
    match deadline {
        Some(d) => d.poll_stalled(cx).map(|()| Err(d.client_stalled())),
        None => Poll::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let (proxy_host, host) = UnixStream::pair().unwrap();
        let tunnel = tokio::spawn(run(&PIPES, end(proxy_client, b"early-up;"), end(proxy_host, b"early-down;")));

        let up = crate::proxy::tests::pattern(3_000_000, 251);
        let down = crate::proxy::tests::pattern(2_000_000, 241);
        let up2 = up.clone();
        let host_task = crate::proxy::tests::answer_after_eof(host, down.clone());
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
