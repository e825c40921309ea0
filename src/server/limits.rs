//! Connection-level limits: how many connections one client address may
//! hold, and how long a client may leave an answer unread.

use std::net::IpAddr;
use std::sync::Arc;

pub use crate::deadline::{IdleDeadline, SendTimeout};

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

/// The unit a client is counted in: an IPv4 address, or an IPv6 /64 (one
/// subscriber's network: a client rotating through its own /64 is one
/// client). IPv4-mapped IPv6 peers of a dual-stack listener count as IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientKey {
    V4(u32),
    V6Net(u64),
}

impl ClientKey {
    pub fn of(ip: IpAddr) -> ClientKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => ClientKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => ClientKey::V6Net((u128::from(v6) >> 64) as u64),
        }
    }
}

/// Open connections per client address, capped. Touched once when a
/// connection opens and once when it closes, never per request.
pub struct PerClient {
    max: usize,
    /// Reverse proxies (`--trusted-proxies`) carry many clients on their
    /// connections; they are bounded only by the global cap.
    exempt: Vec<IpAddr>,
    open: DashMap<ClientKey, usize>,
}

impl PerClient {
    pub fn new(max: usize, exempt: Vec<IpAddr>) -> Arc<PerClient> {
        Arc::new(PerClient { max, exempt, open: DashMap::new() })
    }

    /// A slot for one more connection from `ip`, or `None` past the cap.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        if self.exempt.contains(&ip) || self.exempt.contains(&ip.to_canonical()) {
            return Some(ClientSlot { table: None, key: ClientKey::of(ip) });
        }
        let key = ClientKey::of(ip);
        let mut n = self.open.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ClientSlot { table: Some(self.clone()), key })
    }

    /// Client addresses with a connection open (for tests).
    pub fn clients(&self) -> usize {
        self.open.len()
    }
}

/// Released when the connection ends; the address's entry goes with its
/// last connection, so the table holds only clients that are connected.
pub struct ClientSlot {
    table: Option<Arc<PerClient>>,
    key: ClientKey,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let Some(table) = &self.table else { return };
        if let Entry::Occupied(mut e) = table.open.entry(self.key) {
            if *e.get() <= 1 {
                e.remove();
            } else {
                *e.get_mut() -= 1;
            }
        }
    }
}

/// The answer written (best effort, without reading the request) to a
/// connection refused by the per-address cap, before it is closed.
pub const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\n\
content-type: application/json\r\n\
connection: close\r\n\
retry-after: 1\r\n\
content-length: 97\r\n\r\n\
{\"message\":\"Too many connections\",\"details\":\"Too many connections are open from this address\"}";

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ClientKey::of(a), ClientKey::of(b));
        assert_ne!(ClientKey::of(a), ClientKey::of(c));
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        assert_eq!(ClientKey::of(mapped), ClientKey::of(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
        assert_ne!(ClientKey::of(IpAddr::V6(Ipv6Addr::LOCALHOST)), ClientKey::of(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }

    #[test]
    fn cap_per_client_released_on_drop_and_exempt_proxies() {
        let proxy: IpAddr = "10.0.0.9".parse().unwrap();
        let t = PerClient::new(2, vec![proxy]);
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let a2: IpAddr = "2001:db8::2".parse().unwrap();
        let s1 = t.acquire(a).unwrap();
        let s2 = t.acquire(a2).unwrap();
        assert!(t.acquire(a).is_none(), "same /64 is the same client");
        assert!(t.acquire("192.0.2.1".parse().unwrap()).is_some(), "another client is not affected");
        drop(s1);
        let s3 = t.acquire(a).unwrap();
        drop((s2, s3));
        assert_eq!(t.clients(), 0, "entries go with the last connection");
        let held: Vec<_> = (0..10).map(|_| t.acquire(proxy).unwrap()).collect();
        assert_eq!(held.len(), 10);
    }

    #[tokio::test]
    async fn a_write_blocked_past_the_timeout_fails() {
        use tokio::io::AsyncWriteExt;
        // A pipe whose reader never reads: writes block once it is full.
        let (a, _b) = tokio::io::duplex(1024);
        let mut w = SendTimeout::new(a, Duration::from_millis(100));
        let block = vec![0u8; 4096];
        let r = tokio::time::timeout(Duration::from_secs(10), w.write_all(&block)).await.expect("bounded");
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_reader_that_keeps_up_is_never_cut() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (a, mut b) = tokio::io::duplex(1024);
        let mut w = SendTimeout::new(a, Duration::from_millis(100));
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 256];
            let mut total = 0;
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                match b.read(&mut buf).await {
                    Ok(0) | Err(_) => return total,
                    Ok(n) => total += n,
                }
            }
        });
        // 8 KiB through a 1 KiB pipe read slowly: blocked often, for much
        // longer than the timeout in total, never for the timeout at once.
        w.write_all(&vec![1u8; 8192]).await.unwrap();
        drop(w);
        assert_eq!(reader.await.unwrap(), 8192);
    }
}
