//! Per-client token buckets for login, API-key creation and password
//! changes. Over the limit the caller gets 429 with `Retry-After`
//! (Portainer answers 403 and bans for an hour).
//!
//! A client is an IPv4 address, or an IPv6 /64: one host is routinely given
//! a whole /64 and can pick a fresh address for every attempt, so counting
//! single IPv6 addresses would not limit anybody. An IPv4 address written as
//! IPv6 (`::ffff:a.b.c.d`) counts as that IPv4 address.

use std::net::{IpAddr, Ipv6Addr};
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
    /// Takes one token for `ip`'s client; on refusal returns how long until
    /// one is available.
    pub fn check(&self, ip: IpAddr, burst: u32, per_second: f64) -> Result<(), Duration> {
        let ip = client_of(ip);
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

/// The bucket key of an address: IPv4 as is, IPv6 cut to its /64.
fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
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

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        let l = RateLimiter::default();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for i in 0..3u32 {
            // A fresh address in the same /64 every time.
            assert!(l.check(ip(&format!("2001:db8:1:2::{i:x}")), 3, 0.001).is_ok());
        }
        assert!(l.check(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), 3, 0.001).is_err(), "same /64, same bucket");
        assert!(l.check(ip("2001:db8:1:3::1"), 3, 0.001).is_ok(), "the next /64 is another client");
        // IPv4, bare or mapped, is one address per client.
        assert!(l.check(ip("192.0.2.1"), 1, 0.001).is_ok());
        assert!(l.check(ip("::ffff:192.0.2.1"), 1, 0.001).is_err());
        assert!(l.check(ip("192.0.2.2"), 1, 0.001).is_ok());
    }
}
