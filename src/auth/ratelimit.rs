//! Per-client token buckets for login, API-key creation and password
//! changes. Over the limit the caller gets 429 with `Retry-After`
//! (Portainer answers 403 and bans for an hour).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;

struct Bucket {
    tokens: f64,
    last: Instant,
}

pub struct RateLimiter {
    buckets: DashMap<IpAddr, Bucket>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter { buckets: DashMap::new() }
    }
}

impl RateLimiter {
    /// Takes one token for `ip`; on refusal returns how long until one is
    /// available.
    pub fn check(&self, ip: IpAddr, burst: u32, per_second: f64) -> Result<(), Duration> {
        let now = Instant::now();
        let burst = f64::from(burst.max(1));
        let per_second = if per_second > 0.0 { per_second } else { 1.0 };
        let mut b = self.buckets.entry(ip).or_insert(Bucket { tokens: burst, last: now });
        let elapsed = now.duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * per_second).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / per_second))
        }
    }

    /// Drops buckets that have refilled completely, so memory stays bounded
    /// by the clients seen recently.
    pub fn prune(&self, burst: u32, per_second: f64) {
        let full_after = Duration::from_secs_f64(f64::from(burst.max(1)) / per_second.max(0.001));
        let now = Instant::now();
        self.buckets.retain(|_, b| now.duration_since(b.last) < full_after);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refusal_with_wait() {
        let l = RateLimiter::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..10 {
            assert!(l.check(ip, 10, 1.0).is_ok());
        }
        let wait = l.check(ip, 10, 1.0).unwrap_err();
        assert!(wait <= Duration::from_secs(1));
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(l.check(other, 10, 1.0).is_ok());
    }
}
