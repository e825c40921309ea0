//! Reading a Docker API path and query the way the Docker daemon reads them,
//! so that the route Berth checks is the route Docker runs.
//!
//! Docker (gorilla/mux on Go's `net/http`) routes on the *decoded* path: Go
//! percent-decodes every escape, `%2F` included, before matching, so
//! `/containers%2Fjson` is the container list. A path with `.`/`..` segments
//! or repeated slashes is answered with a 301 to its cleaned form. An
//! optional first segment `/v{version:[0-9.]+}` selects the API version;
//! Docker compares versions numerically part by part (`1.040` is 1.40, a
//! missing part is 0), accepts anything between its minimum and maximum,
//! and below 1.24 it still honours legacy bodies (a `HostConfig` on
//! `POST /containers/{id}/start`, which would bypass every create check).
//!
//! Berth decodes once, as Go does, and then refuses everything that is not
//! already canonical (dot segments, empty segments, a decoded `%`, `?`, `#`
//! or any character outside Docker's object-name alphabet) instead of
//! guessing how a redirect would be followed; and it accepts only the plain
//! spelling `v1.N` with 24 <= N <= [`MAX_API_MINOR`].

use super::deny::{Denial, DenyRule, Verdict};

/// The oldest API version policed: below it Docker reads legacy bodies.
pub const MIN_API_MINOR: u32 = 24;
/// The newest API version the rule table was written against.
pub const MAX_API_MINOR: u32 = 47;

/// A Docker API version from a `/v1.N` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion {
    pub major: u32,
    pub minor: u32,
}

/// A request path as Docker routes it: the version prefix split off and the
/// rest decoded and canonical (starts with `/`, no empty or dot segments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerPath {
    pub version: Option<ApiVersion>,
    pub path: String,
}

fn refuse(detail: impl Into<String>) -> Denial {
    Denial::new(DenyRule::Path, detail)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Go's `url.PathUnescape` / `QueryUnescape`: every `%XX` decoded, a bad
/// escape is an error (Go answers 400), `+` is a space only in queries.
pub fn unescape(s: &str, plus_is_space: bool) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hi = hex(*b.get(i + 1)?)?;
                let lo = hex(*b.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

/// Characters of Docker object references (names, ids, image references
/// with registry, tag and digest): anything else in a path is refused.
fn path_char_ok(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b':' | b'@' | b'/')
}

/// Parses Docker's `v{version}` segment; `Ok(None)` when the segment is not
/// a version (Docker's pattern is `v[0-9.]+`).
fn version_segment(seg: &str) -> Verdict<Option<ApiVersion>> {
    let Some(v) = seg.strip_prefix('v') else { return Ok(None) };
    if v.is_empty() || !v.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
        return Ok(None);
    }
    let bad = || {
        Denial::new(
            DenyRule::ApiVersion,
            format!("API version {v:?} is not policed (use 1.{MIN_API_MINOR} to 1.{MAX_API_MINOR})"),
        )
    };
    let (major, minor) = v.split_once('.').ok_or_else(bad)?;
    let canonical = |p: &str| !p.is_empty() && p.len() <= 4 && (p == "0" || !p.starts_with('0')) && !p.contains('.');
    if !canonical(major) || !canonical(minor) {
        return Err(bad());
    }
    let version = ApiVersion { major: major.parse().map_err(|_| bad())?, minor: minor.parse().map_err(|_| bad())? };
    if version.major != 1 || !(MIN_API_MINOR..=MAX_API_MINOR).contains(&version.minor) {
        return Err(bad());
    }
    Ok(Some(version))
}

/// Decodes and checks `raw` (the part after `/api/endpoints/{id}/docker`,
/// without the query) as Docker would route it.
pub fn normalize(raw: &str) -> Verdict<DockerPath> {
    if !raw.starts_with('/') {
        return Err(refuse("the path must start with '/'"));
    }
    let bytes = unescape(raw, false).ok_or_else(|| refuse("invalid percent escape"))?;
    if let Some(c) = bytes.iter().find(|c| !path_char_ok(**c)) {
        return Err(refuse(format!("character {:?} is not allowed in a Docker path (after decoding)", *c as char)));
    }
    // Only ASCII is left, so this cannot fail.
    let decoded = String::from_utf8(bytes).map_err(|_| refuse("not UTF-8"))?;
    let rest = &decoded[1..];
    if rest.is_empty() {
        return Ok(DockerPath { version: None, path: decoded });
    }
    for seg in rest.split('/') {
        match seg {
            "" => return Err(refuse("empty path segment (repeated or trailing '/')")),
            "." | ".." => return Err(refuse("dot segment in path")),
            _ => {}
        }
    }
    let (first, tail) = match rest.split_once('/') {
        Some((f, t)) => (f, Some(t)),
        None => (rest, None),
    };
    match version_segment(first)? {
        Some(version) => Ok(DockerPath {
            version: Some(version),
            path: match tail {
                Some(t) => format!("/{t}"),
                None => "/".to_string(),
            },
        }),
        None => Ok(DockerPath { version: None, path: decoded }),
    }
}

/// A query string decoded as Go's `url.ParseQuery` reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Go splits on `&` only and refuses `;` (Docker then answers 400);
    /// keys are case-sensitive; a bad escape is refused.
    pub fn parse(raw: Option<&str>) -> Verdict<Query> {
        let mut pairs = Vec::new();
        let Some(raw) = raw else { return Ok(Query { pairs }) };
        if raw.contains(';') {
            return Err(Denial::new(DenyRule::Query, "';' in the query string"));
        }
        for part in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let dec = |s: &str| {
                unescape(s, true)
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| Denial::new(DenyRule::Query, "invalid escape in the query string"))
            };
            pairs.push((dec(k)?, dec(v)?));
        }
        Ok(Query { pairs })
    }

    /// The one value of `key` (Docker reads the first; a second one is
    /// refused so that no proxy in between can read another).
    pub fn unique(&self, key: &str) -> Verdict<Option<&str>> {
        let mut found = None;
        for (k, v) in &self.pairs {
            if k == key {
                if found.is_some() {
                    return Err(Denial::new(DenyRule::Query, format!("query parameter {key:?} given twice")));
                }
                found = Some(v.as_str());
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> (Option<u32>, String) {
        let p = normalize(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
        (p.version.map(|v| v.minor), p.path)
    }

    fn rule(raw: &str) -> DenyRule {
        normalize(raw).expect_err(raw).rule
    }

    #[test]
    fn version_prefix_is_split_off() {
        assert_eq!(ok("/containers/json"), (None, "/containers/json".into()));
        assert_eq!(ok("/v1.41/containers/json"), (Some(41), "/containers/json".into()));
        assert_eq!(ok("/v1.24/_ping"), (Some(24), "/_ping".into()));
        assert_eq!(ok("/v1.47"), (Some(47), "/".into()));
        // Not Docker's version pattern: an ordinary (unmatched) segment.
        assert_eq!(ok("/v1.41x/containers/json"), (None, "/v1.41x/containers/json".into()));
        assert_eq!(ok("/version"), (None, "/version".into()));
    }

    #[test]
    fn odd_versions_are_refused() {
        // Legacy semantics (HostConfig on start) and unknown future routes.
        for v in ["/v1.23/containers/x/start", "/v1.12/containers/create", "/v1.48/containers/json", "/v2.0/info"] {
            assert_eq!(rule(v), DenyRule::ApiVersion, "{v}");
        }
        // Spellings Docker reads numerically as some other version.
        for v in ["/v1.041/info", "/v01.41/info", "/v1.41.0/info", "/v1/info", "/v1./info", "/v./info", "/v1..41/info"]
        {
            assert_eq!(rule(v), DenyRule::ApiVersion, "{v}");
        }
        // Percent-encoded version prefix decodes like Docker does.
        assert_eq!(ok("/%761.41/containers/json"), (Some(41), "/containers/json".into()));
        assert_eq!(rule("/v1%2e23/containers/x/start"), DenyRule::ApiVersion);
    }

    #[test]
    fn percent_encoding_is_decoded_once() {
        assert_eq!(ok("/containers%2Fjson"), (None, "/containers/json".into()));
        assert_eq!(ok("/v1.41%2Fcontainers%2fjson"), (Some(41), "/containers/json".into()));
        assert_eq!(ok("/%63ontainers/json"), (None, "/containers/json".into()));
        assert_eq!(rule("/containers/%zz/json"), DenyRule::Path);
        assert_eq!(rule("/containers/%2"), DenyRule::Path);
        // Double encoding would leave a literal '%' for Docker: refused.
        assert_eq!(rule("/containers/%252e%252e/json"), DenyRule::Path);
    }

    #[test]
    fn dot_segments_and_repeated_slashes_are_refused() {
        for p in [
            "/containers/../plugins",
            "/containers/x/../../plugins/pull",
            "/containers/./json",
            "/containers/%2e%2e/plugins",
            "/containers/%2E%2E/%2E%2E/swarm/leave",
            "/v1.41/containers/%2e/json",
            "//containers/json",
            "/containers//json",
            "/containers/json/",
            "/containers%2F%2Fjson",
            "/v1.41//swarm/init",
            "/..",
        ] {
            assert_eq!(rule(p), DenyRule::Path, "{p}");
        }
        assert_eq!(rule("containers/json"), DenyRule::Path);
    }

    #[test]
    fn unexpected_characters_are_refused() {
        for p in [
            "/containers/a%3Fb/json",
            "/containers/a%23/json",
            "/containers/a%00/json",
            "/containers/%C3%A9/json",
            "/containers/a b/json",
            "/containers/a\\b/json",
        ] {
            assert_eq!(rule(p), DenyRule::Path, "{p}");
        }
        // Image references keep their registry, tag and digest characters.
        assert_eq!(ok("/images/reg.example:5000/a/b@sha256:00/json").1, "/images/reg.example:5000/a/b@sha256:00/json");
    }

    #[test]
    fn query_reads_like_go() {
        let q = Query::parse(Some("networkmode=host&t=a+b&x=%41")).unwrap();
        assert_eq!(q.unique("networkmode").unwrap(), Some("host"));
        assert_eq!(q.unique("t").unwrap(), Some("a b"));
        assert_eq!(q.unique("x").unwrap(), Some("A"));
        assert_eq!(q.unique("NetworkMode").unwrap(), None, "keys are case-sensitive in Go");
        assert_eq!(Query::parse(Some("a=1;networkmode=host")).unwrap_err().rule, DenyRule::Query);
        assert_eq!(Query::parse(Some("a=%zz")).unwrap_err().rule, DenyRule::Query);
        let twice = Query::parse(Some("networkmode=bridge&networkmode=host")).unwrap();
        assert_eq!(twice.unique("networkmode").unwrap_err().rule, DenyRule::Query);
        assert_eq!(Query::parse(None).unwrap().unique("a").unwrap(), None);
        let enc = Query::parse(Some("network%6dode=host")).unwrap();
        assert_eq!(enc.unique("networkmode").unwrap(), Some("host"));
    }
}
