//! Idle keep-alive connections to one Docker host.
//!
//! Every `Upstream` talks to exactly one host, so this is a single LIFO stack
//! rather than a map keyed by authority. The most recently used connection is
//! reused first (it is the least likely to have been closed by the peer);
//! expired ones collect at the front, where the reaper removes them.
//!
//! The lock is per endpoint and is only held to push or pop, never across an
//! await.
//!
//! With one runtime per core ([`crate::runtime`]) the pool keeps one idle
//! list per shard: a connection's task runs on the runtime that dialled
//! it, so a request that took a connection from another shard would wake
//! that thread, and be woken by it, for every exchange. Each shard reuses
//! its own connections, and `max_idle` applies to each.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::SendRequest;

use crate::body::{ConnectionHome, UpstreamBody};

pub(crate) type Sender = SendRequest<UpstreamBody>;

struct Idle {
    tx: Sender,
    since: Instant,
}

#[derive(Default)]
struct State {
    idle: VecDeque<Idle>,
    /// Whether a reaper task is alive. It exits when the pool empties and is
    /// started again by the next check-in, so quiet endpoints cost no timer.
    reaper: bool,
}

pub(crate) struct Pool {
    shards: Box<[Mutex<State>]>,
    idle_timeout: Duration,
    max_idle: usize,
}

impl Pool {
    pub(crate) fn new(idle_timeout: Duration, max_idle: usize, shards: usize) -> Pool {
        let shards = (0..shards.max(1)).map(|_| Mutex::new(State::default())).collect();
        Pool { shards, idle_timeout, max_idle }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.max_idle > 0 && !self.idle_timeout.is_zero()
    }

    /// The calling thread's shard (shard 0 when there are fewer shards than
    /// the thread's index, as in tests).
    fn current(&self) -> usize {
        crate::runtime::shard() % self.shards.len()
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the deque inconsistent
        // (push/pop are atomic from our point of view), so poison is ignored.
        self.shards[shard].lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn checkout(&self) -> Option<Sender> {
        if !self.enabled() {
            return None;
        }
        let now = Instant::now();
        let mut state = self.lock(self.current());
        while let Some(entry) = state.idle.pop_back() {
            if now.saturating_duration_since(entry.since) < self.idle_timeout && entry.tx.is_ready() {
                return Some(entry.tx);
            }
        }
        None
    }

    /// Called once the previous response on `tx` has been fully read and the
    /// connection can carry another request.
    pub(crate) fn checkin(self: &Arc<Self>, tx: Sender) {
        if !self.enabled() || !tx.is_ready() {
            return;
        }
        let now = Instant::now();
        let shard = self.current();
        let start_reaper = {
            let mut state = self.lock(shard);
            self.prune_locked(&mut state, now);
            if state.idle.len() >= self.max_idle {
                state.idle.pop_front();
            }
            state.idle.push_back(Idle { tx, since: now });
            !std::mem::replace(&mut state.reaper, true)
        };
        if start_reaper {
            tokio::spawn(reap(Arc::downgrade(self), shard, self.reap_period()));
        }
    }

    /// Returns a connection whose answer has been read (or will be): at
    /// once when hyper already says it can carry another request, which is
    /// the case when a relayed body is dropped after its last frame with
    /// the connection's task on the same thread (one runtime per core);
    /// otherwise a task waits for that (another thread still finishing the
    /// read, or an answer whose body is read elsewhere, perhaps for days).
    fn take_back_or_wait(self: Arc<Self>, mut tx: Sender) {
        // A body dropped outside any runtime (none is left to drive the
        // connection): the connection is closed instead.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        if tx.is_ready() {
            self.checkin(tx);
            return;
        }
        let pool = Arc::downgrade(&self);
        runtime.spawn(async move {
            if tx.ready().await.is_ok() {
                if let Some(pool) = pool.upgrade() {
                    pool.checkin(tx);
                }
            }
        });
    }

    pub(crate) fn idle_count(&self) -> usize {
        (0..self.shards.len()).map(|i| self.lock(i).idle.len()).sum()
    }

    fn reap_period(&self) -> Duration {
        (self.idle_timeout / 2).max(Duration::from_millis(100))
    }

    fn prune_locked(&self, state: &mut State, now: Instant) {
        while let Some(front) = state.idle.front() {
            let expired = now.saturating_duration_since(front.since) >= self.idle_timeout;
            if !expired && !front.tx.is_closed() {
                break;
            }
            state.idle.pop_front();
        }
        // Connections closed by the peer can also sit behind fresh ones.
        state.idle.retain(|e| !e.tx.is_closed());
    }

    /// Returns whether the reaper should keep running.
    fn prune(&self, shard: usize) -> bool {
        let mut state = self.lock(shard);
        self.prune_locked(&mut state, Instant::now());
        if state.idle.is_empty() {
            state.reaper = false;
            return false;
        }
        true
    }
}

impl ConnectionHome for Pool {
    fn take_back(self: Arc<Self>, conn: Sender) {
        self.take_back_or_wait(conn);
    }
}

/// Holds only a `Weak`, so an endpoint that is deleted or rebuilt drops its
/// pool (closing the idle connections) without waiting for this task.
async fn reap(pool: Weak<Pool>, shard: usize, period: Duration) {
    loop {
        tokio::time::sleep(period).await;
        let Some(pool) = pool.upgrade() else { return };
        if !pool.prune(shard) {
            return;
        }
    }
}
