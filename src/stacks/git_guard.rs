//! Where a standard user's repository URL may lead: not to Berth's own
//! host or its private networks (loopback, link-local, RFC 1918, ULA,
//! CGNAT, unspecified, multicast and the IPv6 forms that embed such an
//! IPv4 address), unless the operator names the host in
//! `git_allowed_hosts`. Admins reach any address (a git server on the same
//! host is common).
//!
//! The name is resolved once, every address must pass, and git is then
//! pinned to the checked address so DNS cannot answer differently between
//! the check and the connection: `http.curloptResolve` for http(s) (the
//! TLS name stays the host's), the address itself in the URL for `git://`.
//! Redirects are not followed for standard users (one could lead anywhere).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::git::GitError;

/// Longest wait for name resolution.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct AddressGuard {
    allowed: Vec<String>,
}

/// What git must be told so it connects where the check looked.
#[derive(Debug, PartialEq, Eq)]
pub struct Pinned {
    /// The URL to fetch (for `git://`, with the address as host).
    pub url: String,
    /// `-c` settings for git.
    pub config: Vec<String>,
}

/// Scheme, host (brackets removed), port and the rest of a checked URL.
fn split(url: &str) -> Option<(&str, &str, u16, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let default = match scheme {
        "http" => 80,
        "https" => 443,
        "git" => 9418,
        _ => return None,
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default,
            None => return None,
        };
        (h, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (authority, default),
        }
    };
    (!host.is_empty()).then_some((scheme, host, port, path))
}

/// An address on the public internet.
pub fn public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => public_v6(v6),
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b))
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 168)
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 224)
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return public_v4(v4);
    }
    // IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::a.b.c.d).
    if s[..6] == [0; 6] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return s[..6] != [0; 6] && public_v4(embedded(s[6], s[7]));
    }
    // 6to4 (2002:a.b.c.d::).
    if s[0] == 0x2002 {
        return public_v4(embedded(s[1], s[2]));
    }
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] & 0xffc0) == 0xfec0
        || (s[0] == 0x2001 && s[1] == 0)
        || (s[0] == 0x2001 && s[1] == 0xdb8)
        || (s[0] == 0x100 && s[1..4] == [0, 0, 0]))
}

impl AddressGuard {
    pub fn new(allowed: &[String]) -> AddressGuard {
        AddressGuard {
            allowed: allowed.iter().map(|h| h.trim().trim_matches(['[', ']']).to_ascii_lowercase()).collect(),
        }
    }

    /// Resolves the URL's host and checks every address; `None` when the
    /// host is allowed by name (git then connects as it likes).
    pub async fn check(&self, url: &str) -> Result<Option<Pinned>, GitError> {
        let refused = |why: &str| GitError::Refused(format!("the repository host {why}"));
        let (scheme, host, port, path) = split(url).ok_or_else(|| refused("cannot be read from the URL"))?;
        if self.allowed.iter().any(|a| a.eq_ignore_ascii_case(host)) {
            return Ok(None);
        }
        let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => {
                let lookup = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port))).await;
                match lookup {
                    Ok(Ok(it)) => it.map(|a| a.ip()).collect(),
                    Ok(Err(e)) => return Err(GitError::Fetch(format!("cannot resolve {host}: {e}"))),
                    Err(_) => return Err(GitError::Fetch(format!("resolving {host} timed out"))),
                }
            }
        };
        let Some(first) = addrs.first().copied() else {
            return Err(GitError::Fetch(format!("{host} has no address")));
        };
        if addrs.iter().any(|ip| !public(*ip)) {
            return Err(refused(&format!(
                "{host} is on Berth's host or a private network, which standard users may not reach (an \
                 administrator may allow it with git_allowed_hosts)"
            )));
        }
        let literal = match first {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        Ok(Some(match scheme {
            "git" => Pinned { url: format!("git://{literal}:{port}{path}"), config: Vec::new() },
            _ => Pinned { url: url.to_string(), config: vec![format!("http.curloptResolve={host}:{port}:{literal}")] },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "ff02::1",
        ] {
            assert!(!public(bad.parse().unwrap()), "{bad}");
        }
        for good in ["1.1.1.1", "140.82.112.3", "100.128.0.1", "172.32.0.1", "2606:4700::1111", "::ffff:1.1.1.1"] {
            assert!(public(good.parse().unwrap()), "{good}");
        }
    }

    #[test]
    fn urls_split() {
        assert_eq!(split("git://h:1/r"), Some(("git", "h", 1, "/r")));
        assert_eq!(split("https://h/r"), Some(("https", "h", 443, "/r")));
        assert_eq!(split("http://[::1]:8080/r"), Some(("http", "::1", 8080, "/r")));
        assert_eq!(split("http://[::1]/r"), Some(("http", "::1", 80, "/r")));
        assert_eq!(split("http://h:x/r"), None);
    }

    #[tokio::test]
    async fn checks_and_pins() {
        let g = AddressGuard::new(&["git.internal".into(), "[::1]".into()]);
        for url in ["git://127.0.0.1:9418/r", "http://localhost:1/r", "https://[::ffff:7f00:1]/r", "git://10.0.0.1/r"] {
            assert!(matches!(g.check(url).await, Err(GitError::Refused(_))), "{url}");
        }
        assert_eq!(g.check("git://git.internal/r").await.unwrap(), None);
        assert_eq!(g.check("http://[::1]:1/r").await.unwrap(), None);
        assert_eq!(
            g.check("git://1.1.1.1/r").await.unwrap(),
            Some(Pinned { url: "git://1.1.1.1:9418/r".into(), config: vec![] })
        );
        assert_eq!(
            g.check("https://1.1.1.1/r").await.unwrap().unwrap().config,
            ["http.curloptResolve=1.1.1.1:443:1.1.1.1"]
        );
    }
}
