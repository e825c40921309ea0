//! Which registry host an image reference names, the way Docker reads it
//! (distribution/reference's `ParseNormalizedNamed`), and the decoding of
//! the request parts the reference comes from. Registry credentials go to
//! that host, so anything Berth cannot read exactly as Docker does is
//! `None`, and the caller refuses rather than guesses.

/// Docker Hub's canonical name; its aliases are folded into it.
pub const DOCKER_HUB: &str = "docker.io";

/// Longest reference accepted (Docker's name limit is 255; tag and digest
/// add at most 128 and ~135).
const MAX_REFERENCE: usize = 600;

/// The registry host of an image reference (`busybox`, `library/busybox:1`,
/// `localhost:5000/x`, `Reg.Example:5000/a/b@sha256:...`): lower-case,
/// port kept, Docker Hub as [`DOCKER_HUB`]. `None` for anything that is not
/// a valid reference.
pub fn registry_host(reference: &str) -> Option<String> {
    if reference.is_empty() || reference.len() > MAX_REFERENCE {
        return None;
    }
    let (name_tag, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    if digest.is_some_and(|d| !valid_digest(d)) {
        return None;
    }
    // The first component is a host when it has a '.' or a ':', is
    // `localhost`, or has an upper-case letter (newer Docker reads it as a
    // host, older ones refuse the reference: either way it is no Hub path).
    let (domain, remainder) = match name_tag.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':']) || first == "localhost" || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DOCKER_HUB, name_tag),
    };
    let path = match remainder.rsplit_once(':') {
        Some((p, tag)) if !tag.contains('/') => {
            if !valid_tag(tag) {
                return None;
            }
            p
        }
        _ => remainder,
    };
    if path.is_empty() || !path.split('/').all(valid_path_component) {
        return None;
    }
    normalize_host(domain)
}

/// The host part of a registry's configured URL (`reg.example:5000`,
/// `https://reg.example/v2/`, `docker.io`), in [`registry_host`]'s spelling.
pub fn url_host(url: &str) -> Option<String> {
    let url = url.trim();
    let lower = url.to_ascii_lowercase();
    let rest =
        ["https://", "http://"].iter().find_map(|s| lower.starts_with(s).then(|| &url[s.len()..])).unwrap_or(url);
    let host = rest.split('/').next().unwrap_or("");
    normalize_host(host)
}

/// `host[:port]` validated and lower-cased; Docker Hub's aliases folded.
fn normalize_host(domain: &str) -> Option<String> {
    let (host, port) = if let Some(v6) = domain.strip_prefix('[') {
        let (addr, rest) = v6.split_once(']')?;
        addr.parse::<std::net::Ipv6Addr>().ok()?;
        match rest {
            "" => (&domain[..addr.len() + 2], None),
            r => (&domain[..addr.len() + 2], Some(r.strip_prefix(':')?)),
        }
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        }
    };
    if !host.starts_with('[') && (host.is_empty() || !host.split('.').all(valid_label)) {
        return None;
    }
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    let host = domain.to_ascii_lowercase();
    Some(match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_owned(),
        _ => host,
    })
}

/// A DNS label as the reference grammar has it: `[a-zA-Z0-9]` at both ends,
/// `-` inside.
fn valid_label(l: &str) -> bool {
    let b = l.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// `[a-z0-9]+` joined by `.`, `_`, `__` or dashes.
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_lower_alnum(b[0]) || !is_lower_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_lower_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_lower_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[\w][\w.-]{0,127}`.
fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// `algorithm:hex` (at least 32 hex digits).
fn valid_digest(d: &str) -> bool {
    let Some((alg, hex)) = d.split_once(':') else { return false };
    !alg.is_empty()
        && alg.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'+' | b'.' | b'_' | b'-'))
        && hex.len() >= 32
        && hex.bytes().all(|c| c.is_ascii_hexdigit())
}

/// Percent-decoding as Go's `url.PathUnescape` (`plus` false) or
/// `QueryUnescape` (`plus` true), the access policy's own decoder: a
/// malformed escape or invalid UTF-8 is `None`.
pub fn unescape(s: &str, plus: bool) -> Option<String> {
    String::from_utf8(crate::access::path::unescape(s, plus)?).ok()
}

/// The value of query parameter `name`, as Docker's Go reads it: pairs split
/// on `&` and on `;` (which the Go of older engines also split on), names
/// and values unescaped. `Err` when it is there more than once (Go takes the
/// first, and a proxy that reads another one is how credentials get
/// misdirected) or cannot be decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Result<Option<String>, &'static str> {
    let mut found = None;
    for pair in query.unwrap_or("").split(['&', ';']) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if unescape(k, true).as_deref() != Some(name) {
            continue;
        }
        if found.is_some() {
            return Err("the parameter is given more than once");
        }
        found = Some(unescape(v, true).ok_or("the parameter's value is not valid percent-encoding")?);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_references() {
        let cases = [
            ("busybox", "docker.io"),
            ("busybox:1.36", "docker.io"),
            ("library/busybox", "docker.io"),
            ("docker.io/library/busybox:latest", "docker.io"),
            ("index.docker.io/library/busybox", "docker.io"),
            ("registry-1.docker.io/x/y", "docker.io"),
            ("localhost/x", "localhost"),
            ("localhost:5000/x", "localhost:5000"),
            ("127.0.0.1:5000/team/app:1", "127.0.0.1:5000"),
            ("Reg.Example:5000/app", "reg.example:5000"),
            (
                "reg.example/a/b/c@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "reg.example",
            ),
            ("reg.example/a:v1@sha256:0123456789abcdef0123456789abcdef", "reg.example"),
            ("[::1]:5000/x", "[::1]:5000"),
            ("a-b.c/d__e/f-g.h", "a-b.c"),
            // A single name with a "port" is a Hub image with a tag.
            ("localhost:5000", "docker.io"),
            ("Foo/bar", "foo"),
        ];
        for (r, host) in cases {
            assert_eq!(registry_host(r).as_deref(), Some(host), "{r}");
        }
        for bad in [
            "",
            "UPPER",
            "reg.example/UP",
            "reg.example/",
            "reg.example//x",
            "-reg.example/x",
            "reg.example:/x",
            "reg.example:5x/x",
            "x@sha256:short",
            "x:-tag",
            "x y",
            "reg.example/a/../b",
            "[zz]:5000/x",
            "reg.example/x?y",
        ] {
            assert_eq!(registry_host(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hosts_of_registry_urls() {
        assert_eq!(url_host("reg.example:5000").as_deref(), Some("reg.example:5000"));
        assert_eq!(url_host("https://Reg.Example:5000/v2/").as_deref(), Some("reg.example:5000"));
        assert_eq!(url_host("HTTP://127.0.0.1:5000").as_deref(), Some("127.0.0.1:5000"));
        assert_eq!(url_host("docker.io").as_deref(), Some("docker.io"));
        assert_eq!(url_host("index.docker.io").as_deref(), Some("docker.io"));
        assert_eq!(url_host("gitlab.example/group/project").as_deref(), Some("gitlab.example"));
        assert_eq!(url_host(""), None);
        assert_eq!(url_host("user@host"), None);
    }

    #[test]
    fn query_parameters_as_go_reads_them() {
        let q = |s: &str| query_param(Some(s), "fromImage");
        assert_eq!(q("fromImage=reg.example%3A5000%2Fapp&tag=1"), Ok(Some("reg.example:5000/app".into())));
        assert_eq!(q("tag=1&fromImag%65=a"), Ok(Some("a".into())));
        assert_eq!(q("fromImage=a+b"), Ok(Some("a b".into())));
        assert_eq!(q("tag=1"), Ok(None));
        assert_eq!(query_param(None, "fromImage"), Ok(None));
        assert!(q("fromImage=a&fromImage=b").is_err());
        assert!(q("x=1;fromImage=evil.example/x&fromImage=docker.io/x").is_err());
        assert!(q("fromImage=%zz").is_err());
        assert_eq!(unescape("a%2Fb+c", false).as_deref(), Some("a/b+c"));
        assert_eq!(unescape("%ff", false), None);
    }
}
