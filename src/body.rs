//! The single response body type of the server: either bytes Berth built
//! itself (JSON answers) or a stream relayed from a Docker host, passed
//! through frame by frame without buffering.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// Polls a relayed body for its next frame, adding the frame's data bytes
/// to `counter` (one atomic add per frame, no copy).
fn poll_counted(
    body: &mut Incoming,
    counter: &prometheus::IntCounter,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
    let r = Pin::new(body).poll_frame(cx);
    if let Poll::Ready(Some(Ok(f))) = &r {
        if let Some(d) = f.data_ref() {
            counter.inc_by(d.len() as u64);
        }
    }
    r
}

/// Boxed error so relayed-stream errors and our own share one type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub enum ResponseBody {
    /// A body we own completely (JSON, metrics text). `None` once sent.
    Full(Option<Bytes>),
    /// A body relayed from upstream; each frame is forwarded as it arrives.
    Stream(Incoming),
    /// A relayed body whose bytes are added to a counter as they pass (the
    /// per-endpoint byte metrics): one atomic add per frame, no copy.
    Counted(Incoming, prometheus::IntCounter),
}

impl ResponseBody {
    pub fn full(b: impl Into<Bytes>) -> Self {
        let b = b.into();
        if b.is_empty() {
            ResponseBody::Full(None)
        } else {
            ResponseBody::Full(Some(b))
        }
    }

    pub fn empty() -> Self {
        ResponseBody::Full(None)
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ResponseBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Stream(s) => Pin::new(s).poll_frame(cx).map_err(|e| e.into()),
            ResponseBody::Counted(s, c) => poll_counted(s, c, cx).map_err(|e| e.into()),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Full(b) => b.is_none(),
            ResponseBody::Stream(s) | ResponseBody::Counted(s, _) => s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ResponseBody::Full(None) => SizeHint::with_exact(0),
            ResponseBody::Stream(s) | ResponseBody::Counted(s, _) => s.size_hint(),
        }
    }
}

impl ResponseBody {
    /// Counts a relayed body's bytes into `counter`; other bodies unchanged.
    pub fn counted(self, counter: prometheus::IntCounter) -> Self {
        match self {
            ResponseBody::Stream(s) => ResponseBody::Counted(s, counter),
            other => other,
        }
    }
}

/// The body sent to a Docker host: nothing (pings, GETs we originate), bytes
/// we built, or the client's own request body streamed through untouched.
pub enum UpstreamBody {
    Full(Option<Bytes>),
    Stream(Incoming),
    /// The client's body, its bytes added to a counter as they pass.
    Counted(Incoming, prometheus::IntCounter),
}

impl UpstreamBody {
    pub fn empty() -> Self {
        UpstreamBody::Full(None)
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            UpstreamBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            UpstreamBody::Stream(s) => Pin::new(s).poll_frame(cx),
            UpstreamBody::Counted(s, c) => poll_counted(s, c, cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Full(b) => b.is_none(),
            UpstreamBody::Stream(s) | UpstreamBody::Counted(s, _) => s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            UpstreamBody::Full(None) => SizeHint::with_exact(0),
            UpstreamBody::Stream(s) | UpstreamBody::Counted(s, _) => s.size_hint(),
        }
    }
}
