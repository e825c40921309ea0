//! Hijacked connections (attach, exec, anything answered with `101`): a cap,
//! a gauge, and a task tracker so graceful shutdown can wait for them.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus::IntGauge;
use tokio_util::task::TaskTracker;

struct Inner {
    max: usize,
    /// Upgrade requests in flight plus established tunnels: reserving before
    /// the request is forwarded is what makes the cap exact under races.
    reserved: AtomicUsize,
    gauge: IntGauge,
    tracker: TaskTracker,
}

#[derive(Clone)]
pub struct Tunnels {
    inner: Arc<Inner>,
}

impl Tunnels {
    /// `open_gauge` counts established tunnels; it is only ever incremented
    /// and decremented here.
    pub fn new(max: usize, open_gauge: IntGauge) -> Self {
        Tunnels {
            inner: Arc::new(Inner {
                max,
                reserved: AtomicUsize::new(0),
                gauge: open_gauge,
                tracker: TaskTracker::new(),
            }),
        }
    }

    /// Established tunnels (including ones still completing the client side
    /// of the upgrade).
    pub fn open(&self) -> usize {
        self.inner.tracker.len()
    }

    pub fn max(&self) -> usize {
        self.inner.max
    }

    /// True once `drain` has been called: new tunnels are refused for good.
    pub fn is_draining(&self) -> bool {
        self.inner.tracker.is_closed()
    }

    /// Refuses new tunnels and waits up to `timeout` for the open ones to end
    /// on their own. Returns true if all closed; tunnels still open after that
    /// are left to die with the runtime.
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.inner.tracker.close();
        tokio::time::timeout(timeout, self.inner.tracker.wait()).await.is_ok()
    }

    /// `None` when the cap is reached or shutdown has begun.
    pub(crate) fn reserve(&self) -> Option<Slot> {
        if self.inner.tracker.is_closed() {
            return None;
        }
        let max = self.inner.max;
        self.inner.reserved.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).ok()?;
        Some(Slot { inner: self.inner.clone(), open: false })
    }

    pub(crate) fn spawn<F>(&self, mut slot: Slot, tunnel: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        slot.open = true;
        self.inner.gauge.inc();
        self.inner.tracker.spawn(async move {
            let _slot = slot;
            tunnel.await;
        });
    }
}

/// A reservation against the cap; released on drop, whether the upgrade was
/// refused by the Docker host or the tunnel ran and ended.
pub(crate) struct Slot {
    inner: Arc<Inner>,
    open: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.open {
            self.inner.gauge.dec();
        }
        self.inner.reserved.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cap_gauge_and_drain() {
        let gauge = IntGauge::new("tunnels_open", "open tunnels").unwrap();
        let t = Tunnels::new(2, gauge.clone());
        let a = t.reserve().unwrap();
        let b = t.reserve().unwrap();
        assert!(t.reserve().is_none(), "cap reached");
        drop(b);
        let b = t.reserve().unwrap();

        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        t.spawn(a, async move {
            let _ = rx.await;
        });
        assert_eq!(gauge.get(), 1);
        assert_eq!(t.open(), 1);
        drop(b);

        assert!(!t.drain(Duration::from_millis(50)).await, "tunnel still open");
        assert!(t.reserve().is_none(), "no new tunnels while draining");
        tx.send(()).unwrap();
        assert!(t.drain(Duration::from_secs(5)).await);
        assert_eq!(gauge.get(), 0);
        assert_eq!(t.open(), 0);
    }
}
