//! Copying both ways between the two sides of a hijacked connection
//! (attach, exec) without holding a buffer while the session is idle.
//!
//! `tokio::io::copy_bidirectional` gives every session two 8 KiB buffers for
//! its whole life: 16 KiB resident per idle attach session (most of them
//! are idle: a shell waiting for a keystroke), and 8 KiB reads and writes,
//! so many system calls, for a busy one. Here a direction borrows a 64 KiB
//! buffer from a small per-thread pool only for a read attempt: a read that
//! finds nothing hands it straight back, so an idle session holds none, and
//! a buffer stays with a direction only while bytes it read wait to be
//! written.
//!
//! Semantics are `copy_bidirectional`'s: when one side reads EOF, the other
//! side's write half is shut down (after a flush) and the opposite direction
//! keeps going until it ends too (half-close); the first error ends both.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes moved per read and write while a session is busy.
const BUF_SIZE: usize = 64 * 1024;
/// Spare buffers kept per thread (1 MiB at most).
const POOL_MAX: usize = 16;

thread_local! {
    static POOL: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

fn take_buf() -> Box<[u8]> {
    POOL.with(|p| p.borrow_mut().pop()).unwrap_or_else(|| vec![0u8; BUF_SIZE].into_boxed_slice())
}

fn give_back(buf: Box<[u8]>) {
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        if pool.len() < POOL_MAX {
            pool.push(buf);
        }
    });
}

enum State {
    /// Waiting for data; no buffer held.
    Reading,
    /// `buf[pos..end]` still to be written.
    Writing {
        buf: Box<[u8]>,
        pos: usize,
        end: usize,
    },
    /// The reader hit EOF: flush and shut down the writer.
    ShuttingDown,
    Done,
}

struct Direction {
    state: State,
    /// Bytes written since the last flush.
    need_flush: bool,
    moved: u64,
}

impl Direction {
    fn new() -> Self {
        Direction { state: State::Reading, need_flush: false, moved: 0 }
    }

    fn poll_copy<R, W>(&mut self, cx: &mut Context<'_>, mut r: Pin<&mut R>, mut w: Pin<&mut W>) -> Poll<io::Result<u64>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        loop {
            match &mut self.state {
                State::Reading => {
                    let mut buf = take_buf();
                    let mut rb = ReadBuf::new(&mut buf);
                    match r.as_mut().poll_read(cx, &mut rb) {
                        Poll::Pending => {
                            give_back(buf);
                            // Nothing more to read for now: make sure what was
                            // written is not sitting in a writer's buffer (TLS).
                            if self.need_flush {
                                ready!(w.as_mut().poll_flush(cx))?;
                                self.need_flush = false;
                            }
                            return Poll::Pending;
                        }
                        Poll::Ready(Err(e)) => {
                            give_back(buf);
                            return Poll::Ready(Err(e));
                        }
                        Poll::Ready(Ok(())) => {
                            let end = rb.filled().len();
                            if end == 0 {
                                give_back(buf);
                                self.state = State::ShuttingDown;
                            } else {
                                self.state = State::Writing { buf, pos: 0, end };
                            }
                        }
                    }
                }
                State::Writing { buf, pos, end } => {
                    while *pos < *end {
                        let n = ready!(w.as_mut().poll_write(cx, &buf[*pos..*end]))?;
                        if n == 0 {
                            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                        }
                        *pos += n;
                        self.moved += n as u64;
                    }
                    self.need_flush = true;
                    if let State::Writing { buf, .. } = std::mem::replace(&mut self.state, State::Reading) {
                        give_back(buf);
                    }
                }
                State::ShuttingDown => {
                    ready!(w.as_mut().poll_shutdown(cx))?;
                    self.state = State::Done;
                }
                State::Done => return Poll::Ready(Ok(self.moved)),
            }
        }
    }
}

/// Copies `a` → `b` and `b` → `a` until both directions have ended; returns
/// the bytes moved each way, like `tokio::io::copy_bidirectional`.
pub(crate) async fn copy_bidirectional<A, B>(a: &mut A, b: &mut B) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    CopyBidirectional { a, b, a_to_b: Direction::new(), b_to_a: Direction::new() }.await
}

struct CopyBidirectional<'a, A: ?Sized, B: ?Sized> {
    a: &'a mut A,
    b: &'a mut B,
    a_to_b: Direction,
    b_to_a: Direction,
}

impl<A, B> Future for CopyBidirectional<'_, A, B>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    type Output = io::Result<(u64, u64)>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let a_to_b = this.a_to_b.poll_copy(cx, Pin::new(&mut *this.a), Pin::new(&mut *this.b))?;
        let b_to_a = this.b_to_a.poll_copy(cx, Pin::new(&mut *this.b), Pin::new(&mut *this.a))?;
        let a_to_b = ready!(a_to_b);
        let b_to_a = ready!(b_to_a);
        Poll::Ready(Ok((a_to_b, b_to_a)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn copies_both_ways_with_half_close() {
        let (mut client, mut proxy_a) = tokio::io::duplex(1024);
        let (mut proxy_b, host) = tokio::io::duplex(1024);
        let copy = tokio::spawn(async move { copy_bidirectional(&mut proxy_a, &mut proxy_b).await });

        // More than a buffer's worth each way, through 1 KiB pipes.
        let up = crate::proxy::tests::pattern(300_000, 251);
        let down = crate::proxy::tests::pattern(200_000, 241);
        let up2 = up.clone();
        let host_task = crate::proxy::tests::answer_after_eof(host, down.clone());
        let writer = async {
            client.write_all(&up2).await.unwrap();
            client.shutdown().await.unwrap();
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.unwrap();
            back
        };
        let back = writer.await;
        assert_eq!(host_task.await.unwrap(), up, "client → host bytes, then EOF");
        assert_eq!(back, down, "host → client bytes after the client's half-close");
        assert_eq!(copy.await.unwrap().unwrap(), (up.len() as u64, down.len() as u64));
    }

    #[tokio::test]
    async fn idle_sessions_hold_no_buffer() {
        let (_client, mut proxy_a) = tokio::io::duplex(64);
        let (mut proxy_b, _host) = tokio::io::duplex(64);
        let mut copy = Box::pin(copy_bidirectional(&mut proxy_a, &mut proxy_b));
        // Poll once: both directions find nothing to read.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(copy.as_mut().poll(&mut cx).is_pending());
        // Both read attempts returned their buffer to this thread's pool.
        assert!(POOL.with(|p| p.borrow().len()) >= 1);
    }

    #[tokio::test]
    async fn an_error_ends_the_copy() {
        let (client, mut proxy_a) = tokio::io::duplex(64);
        let (mut proxy_b, host) = tokio::io::duplex(64);
        drop(host);
        drop(client);
        // Reads see EOF on both sides; writes to closed pipes fail or the
        // shutdowns complete: either way the copy ends.
        let r = copy_bidirectional(&mut proxy_a, &mut proxy_b).await;
        assert!(matches!(r, Ok((0, 0)) | Err(_)));
    }
}
