//! A timer for "no progress for this long" that costs nothing until
//! something has to wait. A leaf: request bodies (`body.rs`) and client
//! writes (`server/limits.rs`) both use it, and neither may import the other.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

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
