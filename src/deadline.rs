//! A timer for "no progress for this long" that costs nothing until
//! something has to wait, and the client-write guard built on it. A leaf:
//! request bodies (`body.rs`), client connections (`server`) and tunnels
//! (`proxy`) use it, without importing one another for it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// An idle deadline that costs nothing until something has to wait: the
/// timer is armed the first time [`IdleDeadline::poll_stalled`] is called,
/// and each later wait that follows [`IdleDeadline::progress`] pushes it out
/// (tokio extends a deadline with an atomic store, not a timer-wheel
/// operation). Shared by request bodies and client writes.
pub struct IdleDeadline {
    idle: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    /// Progress since the deadline was last set.
    progressed: bool,
}

impl IdleDeadline {
    pub fn new(idle: Duration) -> Self {
        IdleDeadline { idle, timer: None, progressed: false }
    }

    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// The error of a client write blocked past the deadline.
    pub fn client_stalled(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the client read nothing for {}", humantime::format_duration(self.idle)),
        )
    }

    /// Data moved; only remembered once the timer exists.
    pub fn progress(&mut self) {
        if self.timer.is_some() {
            self.progressed = true;
        }
    }

    /// Called when the guarded operation would block: `Ready` once it has
    /// waited `idle` without progress, else `Pending` with a wake-up set.
    pub fn poll_stalled(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let idle = self.idle;
        let progressed = std::mem::take(&mut self.progressed);
        let timer = match &mut self.timer {
            Some(t) => {
                if progressed {
                    t.as_mut().reset(Instant::now() + idle);
                }
                t
            }
            None => self.timer.insert(Box::pin(tokio::time::sleep(idle))),
        };
        timer.as_mut().poll(cx)
    }
}

/// A client connection whose writes may not stay blocked longer than
/// `idle`: a client that stops reading (its receive window full) is cut off
/// at the send timeout, like nginx's `send_timeout`, so the response it
/// holds (and the Docker host connection behind it) is released. Only a
/// write that would block arms the timer; a connection whose writes go
/// through never touches it.
pub struct SendTimeout<IO> {
    io: IO,
    deadline: IdleDeadline,
}

impl<IO> SendTimeout<IO> {
    pub fn new(io: IO, idle: Duration) -> Self {
        SendTimeout { io, deadline: IdleDeadline::new(idle) }
    }

    /// The connection and its deadline, for a tunnel that moves the bytes
    /// itself (`proxy::zero_copy`) and keeps applying the deadline.
    pub fn into_parts(self) -> (IO, IdleDeadline) {
        (self.io, self.deadline)
    }

    fn wrote<T>(&mut self, r: Poll<io::Result<T>>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                self.deadline.progress();
                Poll::Ready(r)
            }
            Poll::Pending => match self.deadline.poll_stalled(cx) {
                Poll::Ready(()) => Poll::Ready(Err(self.deadline.client_stalled())),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for SendTimeout<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for SendTimeout<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.wrote(r, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.wrote(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_flush(cx);
        this.wrote(r, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_shutdown(cx);
        this.wrote(r, cx)
    }
}
