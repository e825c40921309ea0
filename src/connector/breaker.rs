//! A circuit breaker per Docker host, after Envoy's outlier detection: once
//! `threshold` connection attempts in a row have failed, requests that need
//! a new connection fail at once (503) instead of each waiting for a refused
//! or timed-out dial. After `cooldown` one trial request dials again
//! (half-open); its success closes the breaker, its failure opens it for
//! another cooldown. A dead host then costs one dial per cooldown, not one
//! per request.
//!
//! Closed, the check is one relaxed atomic load; no clock is read.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What a caller may do before dialling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Closed: dial.
    Dial,
    /// Half-open: dial, and report the outcome; others are refused meanwhile.
    Trial,
    /// Open: do not dial.
    Refuse,
}

/// For the metrics: 0 closed, 1 open, 2 half-open (a trial is under way or
/// may start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

pub(crate) struct Breaker {
    /// Zero disables the breaker.
    threshold: u32,
    cooldown: Duration,
    failures: AtomicU32,
    /// When the open breaker lets a trial through, in nanoseconds since
    /// [`epoch`].
    retry_at: AtomicU64,
    trial: AtomicBool,
}

/// A process-wide origin, so deadlines fit in an atomic.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_nanos() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            threshold,
            cooldown,
            failures: AtomicU32::new(0),
            retry_at: AtomicU64::new(0),
            trial: AtomicBool::new(false),
        }
    }

    pub(crate) fn threshold(&self) -> u32 {
        self.threshold
    }

    fn tripped(&self) -> bool {
        self.threshold > 0 && self.failures.load(Ordering::Relaxed) >= self.threshold
    }

    pub(crate) fn admit(&self) -> Admit {
        if !self.tripped() {
            return Admit::Dial;
        }
        if now_nanos() < self.retry_at.load(Ordering::Acquire) {
            return Admit::Refuse;
        }
        match self.trial.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Admit::Trial,
            Err(_) => Admit::Refuse,
        }
    }

    /// A connection was made: the host is back.
    pub(crate) fn success(&self, admitted: Admit) {
        if self.failures.swap(0, Ordering::AcqRel) >= self.threshold && self.threshold > 0 {
            tracing::info!("Docker host reachable again: circuit breaker closed");
        }
        if admitted == Admit::Trial {
            self.trial.store(false, Ordering::Release);
        }
    }

    /// A connection attempt failed.
    pub(crate) fn failure(&self, admitted: Admit) {
        if self.threshold == 0 {
            return;
        }
        let n = self.failures.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        if n >= self.threshold {
            self.retry_at.store(now_nanos() + self.cooldown.as_nanos() as u64, Ordering::Release);
            if n == self.threshold {
                tracing::warn!(
                    failures = n,
                    cooldown = %humantime::format_duration(self.cooldown),
                    "Docker host unreachable: circuit breaker open"
                );
            }
        }
        if admitted == Admit::Trial {
            self.trial.store(false, Ordering::Release);
        }
    }

    /// A trial that ended without a verdict (its request was dropped).
    pub(crate) fn abandon(&self, admitted: Admit) {
        if admitted == Admit::Trial {
            self.trial.store(false, Ordering::Release);
        }
    }

    pub(crate) fn state(&self) -> BreakerState {
        if !self.tripped() {
            BreakerState::Closed
        } else if now_nanos() < self.retry_at.load(Ordering::Acquire) {
            BreakerState::Open
        } else {
            BreakerState::HalfOpen
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_half_opens_after_cooldown() {
        let b = Breaker::new(3, Duration::from_millis(50));
        for _ in 0..2 {
            assert_eq!(b.admit(), Admit::Dial);
            b.failure(Admit::Dial);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        b.failure(Admit::Dial);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.admit(), Admit::Refuse);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.admit(), Admit::Trial);
        assert_eq!(b.admit(), Admit::Refuse, "one trial at a time");
        b.failure(Admit::Trial);
        assert_eq!(b.admit(), Admit::Refuse, "a failed trial opens it again");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(b.admit(), Admit::Trial);
        b.success(Admit::Trial);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.admit(), Admit::Dial);
    }

    #[test]
    fn an_abandoned_trial_lets_the_next_one_through() {
        let b = Breaker::new(1, Duration::ZERO);
        b.failure(Admit::Dial);
        assert_eq!(b.admit(), Admit::Trial);
        b.abandon(Admit::Trial);
        assert_eq!(b.admit(), Admit::Trial);
    }

    #[test]
    fn zero_threshold_never_trips() {
        let b = Breaker::new(0, Duration::from_secs(60));
        for _ in 0..100 {
            b.failure(Admit::Dial);
        }
        assert_eq!(b.admit(), Admit::Dial);
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
