//! List answers (and the event stream) filtered as they stream: each item
//! is parsed, kept or dropped by [`access::list::filter_item`], decorated,
//! and written on. Memory: one item (at most [`MAX_LIST_ITEM`]) plus one
//! frame from the host, whatever the list's length.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use serde_json::Value;

use super::Names;
use crate::access::control::{Caller, Scope};
use crate::access::list::{filter_item, ListError, ListRewriter, Shape};
use crate::access::ResourceKind;
use crate::body::{BoxError, ResponseBody};
use crate::controls::WithStacks;
use crate::endpoints::EndpointEntry;
use crate::state::AppState;
use crate::store::model::Id;

/// Cap on one list item (a container's list entry is a few KiB).
pub const MAX_LIST_ITEM: usize = 1 << 20;
/// Cap on a whole list answer read from the host (events excepted: a
/// stream has no end). 10,000 containers are about 20 MiB.
pub const MAX_LIST_ANSWER: u64 = 256 << 20;

/// Who the list is filtered for.
pub struct ListFilter {
    pub state: Arc<AppState>,
    pub user_id: Id,
    pub teams: Vec<Id>,
    pub admin: bool,
    pub endpoint_id: Id,
    pub docker_id: Arc<str>,
    pub kind: ResourceKind,
    /// Label-built controls this answer may still store (see [`MAX_LABEL_STORES`]).
    pub stores_left: usize,
}

/// Controls built from access-control labels are stored as Portainer does,
/// at most this many per list answer: each is a durable write, and the
/// verdict does not wait for them (the labels decide until they exist).
pub const MAX_LABEL_STORES: usize = 32;

impl ListFilter {
    /// An admin's filter (keeps everything, decorates); `None` when the
    /// engine id volumes need cannot be learnt (the answer then goes
    /// undecorated).
    pub async fn admin(state: &Arc<AppState>, entry: &EndpointEntry, kind: ResourceKind) -> Option<ListFilter> {
        let docker_id = match kind {
            ResourceKind::Volume => super::objects::engine_id(state, entry).await.ok()?,
            _ => Arc::from(""),
        };
        Some(ListFilter {
            state: state.clone(),
            user_id: 0,
            teams: Vec::new(),
            admin: true,
            endpoint_id: entry.record.id,
            docker_id,
            kind,
            stores_left: MAX_LABEL_STORES,
        })
    }

    fn keep(&mut self, item: &mut Value) -> bool {
        let caller = Caller { user_id: self.user_id, teams: &self.teams, admin: self.admin };
        let scope = Scope { endpoint_id: self.endpoint_id, docker_id: &self.docker_id };
        let controls = WithStacks { table: &self.state.controls, stacks: &self.state.stacks };
        let out = filter_item(self.kind, item, &caller, &scope, &controls, &Names(&self.state.identity));
        if let Some(rc) = out.store.filter(|_| self.stores_left > 0) {
            self.stores_left -= 1;
            // Portainer stores the control an object's labels describe; the
            // next list finds it. A concurrent twin is refused as a conflict.
            let state = self.state.clone();
            tokio::spawn(async move {
                let _ = state.controls.create(&state.store, rc).await;
            });
        }
        out.keep
    }
}

/// The answer with its body filtered; errors and empty answers untouched.
pub(super) fn filtered(resp: Response<ResponseBody>, filter: ListFilter) -> Response<ResponseBody> {
    if resp.status() != StatusCode::OK {
        return resp;
    }
    let (mut parts, inner) = resp.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let shape = Shape::of(filter.kind);
    let body = Filtered {
        inner,
        rewriter: ListRewriter::new(shape, MAX_LIST_ITEM),
        cap: (shape != Shape::Stream).then_some(MAX_LIST_ANSWER),
        read: 0,
        filter,
        done: false,
    };
    Response::from_parts(parts, ResponseBody::Rewritten(body.boxed()))
}

struct Filtered {
    inner: ResponseBody,
    rewriter: ListRewriter,
    cap: Option<u64>,
    read: u64,
    filter: ListFilter,
    done: bool,
}

#[derive(Debug, thiserror::Error)]
enum FilterError {
    #[error("the list answer exceeds {0} bytes")]
    TooLarge(u64),
    #[error("a list item exceeds {MAX_LIST_ITEM} bytes")]
    ItemTooLarge,
    #[error("malformed list answer: {0}")]
    Malformed(String),
}

impl From<ListError> for FilterError {
    fn from(e: ListError) -> Self {
        match e {
            ListError::ItemTooLarge => FilterError::ItemTooLarge,
            ListError::Malformed(m) => FilterError::Malformed(m),
        }
    }
}

impl Filtered {
    /// The rest must not pass unfiltered: an error ends the answer (hyper
    /// aborts it, so the client sees a cut answer, not a shorter list).
    fn fail(&mut self, e: FilterError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.done = true;
        tracing::warn!(endpoint = self.filter.endpoint_id, error = %e, "filtering a list answer failed");
        Poll::Ready(Some(Err(Box::new(e))))
    }
}

impl Body for Filtered {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    this.done = true;
                    return match this.rewriter.finish() {
                        Ok(()) => Poll::Ready(None),
                        Err(e) => this.fail(e.into()),
                    };
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(frame))) => frame,
            };
            // Trailers (Docker sends none on lists) are dropped.
            let Ok(data) = frame.into_data() else { continue };
            this.read += data.len() as u64;
            if let Some(cap) = this.cap.filter(|c| this.read > *c) {
                return this.fail(FilterError::TooLarge(cap));
            }
            let filter = &mut this.filter;
            match this.rewriter.push(&data, &mut |item| filter.keep(item)) {
                Ok(out) if out.is_empty() => continue,
                Ok(out) => return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out))))),
                Err(e) => return this.fail(e.into()),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
