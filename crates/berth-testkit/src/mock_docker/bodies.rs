//! Response bodies the mock needs beyond "some bytes": a paced generated
//! stream, an echo of the request body, and a body that dies part-way. Each
//! is a plain `http_body::Body` state machine so no task or channel sits
//! between the socket and the data, which keeps the mock cheap under load.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Sleep;

use crate::BoxError;

/// The generated stream repeats with this period. A prime, so that a proxy
/// which drops, duplicates or reorders a chunk of any power-of-two size
/// produces bytes that no longer match [`pattern_bytes`].
pub const PATTERN_PERIOD: u64 = 251;

/// Largest chunk `/mock/stream` hands out in one frame.
pub const MAX_CHUNK: usize = 1 << 20;

fn pattern_buf() -> &'static Bytes {
    static BUF: OnceLock<Bytes> = OnceLock::new();
    BUF.get_or_init(|| {
        let len = MAX_CHUNK + PATTERN_PERIOD as usize;
        Bytes::from((0..len).map(|i| (i as u64 % PATTERN_PERIOD) as u8).collect::<Vec<u8>>())
    })
}

/// The bytes `/mock/stream` sends at stream offset `offset..offset+len`, for
/// tests to compare what came through the proxy against.
pub fn pattern_bytes(offset: u64, len: usize) -> Vec<u8> {
    (0..len as u64).map(|i| ((offset + i) % PATTERN_PERIOD) as u8).collect()
}

/// `remaining` bytes of the pattern in `chunk`-sized frames, sleeping
/// `interval` between frames. The first frame goes out at once, so a test can
/// see it arrive while the mock is provably still holding the second.
pub struct PatternBody {
    offset: u64,
    remaining: u64,
    chunk: usize,
    interval: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    exact_len: bool,
}

impl PatternBody {
    pub fn new(total: u64, chunk: usize, interval: Duration, exact_len: bool) -> Self {
        PatternBody { offset: 0, remaining: total, chunk: chunk.clamp(1, MAX_CHUNK), interval, sleep: None, exact_len }
    }
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        if let Some(s) = self.sleep.as_mut() {
            ready!(s.as_mut().poll(cx));
            self.sleep = None;
        }
        let len = (self.chunk as u64).min(self.remaining) as usize;
        let start = (self.offset % PATTERN_PERIOD) as usize;
        let data = pattern_buf().slice(start..start + len);
        self.offset += len as u64;
        self.remaining -= len as u64;
        if self.remaining > 0 && !self.interval.is_zero() {
            self.sleep = Some(Box::pin(tokio::time::sleep(self.interval)));
        }
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        if self.exact_len {
            SizeHint::with_exact(self.remaining)
        } else {
            // Without an exact hint hyper uses chunked encoding, which is what
            // Docker does for logs and events.
            SizeHint::default()
        }
    }
}

/// The request body sent straight back, then `trailer`. Used for attach and
/// exec when the client did not ask to upgrade: hyper reads and writes a
/// connection concurrently, so this is a full-duplex echo inside HTTP framing
/// (not a raw hijack), and the trailer shows the client's end of body
/// reached the mock.
pub struct EchoBody {
    inner: Incoming,
    trailer: Option<Bytes>,
}

impl EchoBody {
    pub fn new(inner: Incoming, trailer: &'static [u8]) -> Self {
        EchoBody { inner, trailer: Some(Bytes::from_static(trailer)) }
    }
}

impl Body for EchoBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if self.trailer.is_none() {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        }
                    }
                    // Request trailers are not echoed: loop for more data.
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => return Poll::Ready(self.trailer.take().map(|t| Ok(Frame::data(t)))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.trailer.is_none()
    }
}

/// Passes through the first `limit` bytes of `inner`, then fails, which makes
/// hyper drop the connection mid-body. Keeps the inner size hint so that a
/// `Content-Length` still promises the whole body and the client can tell it
/// was cut short.
pub struct TruncatedBody<B> {
    inner: B,
    remaining: u64,
    /// A frame was shortened, so the body certainly goes on past the limit.
    cut: bool,
    state: TruncState,
}

enum TruncState {
    Passing,
    /// The limit is reached. Wait a moment before failing: hyper discards
    /// unflushed output when a body errors, and returning `Pending` first
    /// lets it flush the bytes already handed over.
    Flushing(Pin<Box<Sleep>>),
    Done,
}

impl<B> TruncatedBody<B> {
    pub fn new(inner: B, limit: u64) -> Self {
        TruncatedBody { inner, remaining: limit, cut: false, state: TruncState::Passing }
    }
}

impl<B> Body for TruncatedBody<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                TruncState::Done => return Poll::Ready(None),
                TruncState::Flushing(sleep) => {
                    ready!(sleep.as_mut().poll(cx));
                    this.state = TruncState::Done;
                    return Poll::Ready(Some(Err("berth-mock-docker: connection cut by FailMode::CloseAfter".into())));
                }
                TruncState::Passing if this.remaining == 0 => {
                    if !this.cut && this.inner.is_end_stream() {
                        // Exactly `limit` bytes long: nothing to cut.
                        this.state = TruncState::Done;
                        continue;
                    }
                    this.state = TruncState::Flushing(Box::pin(tokio::time::sleep(Duration::from_millis(50))));
                }
                TruncState::Passing => {
                    let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                        None => {
                            // The whole body fitted under the limit.
                            this.state = TruncState::Done;
                            return Poll::Ready(None);
                        }
                        Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                        Some(Ok(f)) => f,
                    };
                    let mut data = match frame.into_data() {
                        Ok(d) => d,
                        Err(other) => return Poll::Ready(Some(Ok(other))),
                    };
                    if data.len() as u64 > this.remaining {
                        data.truncate(this.remaining as usize);
                        this.cut = true;
                    }
                    this.remaining -= data.len() as u64;
                    if !data.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
