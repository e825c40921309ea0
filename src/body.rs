//! The single response body type of the server: either bytes Berth built
//! itself (JSON answers) or a stream relayed from a Docker host, passed
//! through frame by frame without buffering.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;

use crate::deadline::IdleDeadline;

/// Polls a relayed body for its next frame, adding the frame's data bytes
/// to `counter` (one atomic add per frame, no copy).
fn poll_counted<B: Body<Data = Bytes> + Unpin>(
    body: &mut B,
    counter: &prometheus::IntCounter,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
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

/// Where a relayed body's connection to the Docker host goes once the body
/// has been read to its end: the endpoint's keep-alive pool
/// (`connector/pool.rs`). A trait so that this module needs nothing from
/// the connector, which builds on it.
pub trait ConnectionHome: Send + Sync {
    fn take_back(self: Arc<Self>, conn: SendRequest<UpstreamBody>);
}

/// A Docker host's response body, relayed frame by frame, holding the
/// connection it came on. When the body is dropped after its last frame
/// passed (or it had none), the connection goes home at once: no task per
/// request waits for the connection to become ready again, and a body
/// abandoned half way closes its connection (the host is still writing).
pub struct Relayed {
    body: Incoming,
    lease: Option<(SendRequest<UpstreamBody>, Weak<dyn ConnectionHome>)>,
    ended: bool,
}

impl Relayed {
    pub fn new(body: Incoming, lease: Option<(SendRequest<UpstreamBody>, Weak<dyn ConnectionHome>)>) -> Relayed {
        Relayed { body, lease, ended: false }
    }
}

impl Body for Relayed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.body).poll_frame(cx);
        match &r {
            Poll::Ready(None) => this.ended = true,
            Poll::Ready(Some(Err(_))) => this.lease = None,
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Relayed {
    fn drop(&mut self) {
        if let Some((conn, home)) = self.lease.take() {
            if self.ended || self.body.is_end_stream() {
                if let Some(home) = home.upgrade() {
                    home.take_back(conn);
                }
            }
        }
    }
}

pub enum ResponseBody {
    /// A body we own completely (JSON, metrics text). `None` once sent.
    Full(Option<Bytes>),
    /// A body relayed from upstream; each frame is forwarded as it arrives.
    Stream(Relayed),
    /// A relayed body whose bytes are added to a counter as they pass (the
    /// per-endpoint byte metrics): one atomic add per frame, no copy.
    Counted(Relayed, prometheus::IntCounter),
    /// A relayed body Berth rewrites as it streams (standard users' list
    /// answers, filtered item by item).
    Rewritten(http_body_util::combinators::BoxBody<Bytes, BoxError>),
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
            ResponseBody::Rewritten(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Full(b) => b.is_none(),
            ResponseBody::Stream(s) | ResponseBody::Counted(s, _) => s.is_end_stream(),
            ResponseBody::Rewritten(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ResponseBody::Full(None) => SizeHint::with_exact(0),
            ResponseBody::Stream(s) | ResponseBody::Counted(s, _) => s.size_hint(),
            ResponseBody::Rewritten(b) => b.size_hint(),
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

/// A request body that stalled: no data for longer than the body read
/// timeout (`--body-read-timeout`, nginx's `client_body_timeout`). Found in
/// an error's source chain, it turns the answer into a 408.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub Duration);

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the client sent no request body data for {}", humantime::format_duration(self.0))
    }
}

impl std::error::Error for BodyTimeout {}

impl BodyTimeout {
    /// The stalled body in `e`'s source chain, if that is what `e` is about.
    pub fn find(e: &(dyn std::error::Error + 'static)) -> Option<BodyTimeout> {
        let mut cur = Some(e);
        while let Some(err) = cur {
            if let Some(t) = err.downcast_ref::<BodyTimeout>() {
                return Some(*t);
            }
            cur = err.source();
        }
        None
    }
}

/// The client's request body, wherever Berth reads or forwards it, with an
/// idle deadline between reads. The timer is armed only the first time the
/// body has to wait for the network, so a body that arrived with its
/// headers (or an empty one) never touches it; afterwards each wait that
/// follows new data pushes the deadline out, which tokio does with an
/// atomic store rather than a timer-wheel operation.
pub struct ClientBody {
    inner: Incoming,
    deadline: IdleDeadline,
    timed_out: bool,
    sent: Option<SentFlag>,
}

impl ClientBody {
    pub fn new(inner: Incoming, idle: Duration) -> Self {
        ClientBody { inner, deadline: IdleDeadline::new(idle), timed_out: false, sent: None }
    }

    /// A flag raised when this body has ended (read whole, failed or
    /// dropped); `None` when it already has, which costs nothing.
    pub fn sent_flag(&mut self) -> Option<SentFlag> {
        if self.is_end_stream() {
            return None;
        }
        Some(self.sent.get_or_insert_with(SentFlag::default).clone())
    }

    fn ended(&self) {
        if let Some(f) = &self.sent {
            f.set();
        }
    }
}

impl Drop for ClientBody {
    fn drop(&mut self) {
        self.ended();
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let idle = this.deadline.idle();
        if this.timed_out {
            return Poll::Ready(Some(Err(BodyTimeout(idle).into())));
        }
        if let Poll::Ready(r) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.deadline.progress();
            if matches!(r, None | Some(Err(_))) {
                this.ended();
            }
            return Poll::Ready(r.map(|r| r.map_err(BoxError::from)));
        }
        if this.deadline.poll_stalled(cx).is_ready() {
            this.timed_out = true;
            this.ended();
            return Poll::Ready(Some(Err(BodyTimeout(idle).into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        !self.timed_out && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Raised once a body sent to a Docker host has ended, so the
/// response-header timeout can count from there: an upload that takes
/// longer than the timeout is not a silent host.
#[derive(Clone, Default)]
pub struct SentFlag(Arc<AtomicBool>);

impl SentFlag {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn set(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// The body sent to a Docker host: nothing (pings, GETs we originate), bytes
/// we built, or the client's own request body streamed through untouched.
pub enum UpstreamBody {
    Full(Option<Bytes>),
    Stream(ClientBody),
    /// The client's body, its bytes added to a counter as they pass.
    Counted(ClientBody, prometheus::IntCounter),
}

impl UpstreamBody {
    pub fn empty() -> Self {
        UpstreamBody::Full(None)
    }

    /// See [`ClientBody::sent_flag`]; bodies Berth built are sent at once.
    pub fn sent_flag(&mut self) -> Option<SentFlag> {
        match self {
            UpstreamBody::Full(_) => None,
            UpstreamBody::Stream(s) | UpstreamBody::Counted(s, _) => s.sent_flag(),
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
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
