//! The address of a Docker host as users type it (`unix:///var/run/docker.sock`,
//! `tcp://10.0.7.10:2375`). Parsing is strict because the result is stored and
//! later dialled by the health checker without a human watching: a typo must be
//! rejected with a reason at registration time, not discovered as a dead
//! endpoint hours later.

use std::fmt;
use std::net::Ipv6Addr;
use std::path::PathBuf;

use http::HeaderValue;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DockerUrl {
    Unix(PathBuf),
    Tcp { host: String, port: u16 },
}

const EXPECTED_FORM: &str = "expected unix:///path/to/docker.sock or tcp://host:port";

impl DockerUrl {
    /// The `Err` string is shown to the user as the details of a 400, so it
    /// names the offending part rather than just saying "invalid".
    pub fn parse(s: &str) -> Result<DockerUrl, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err(format!("the Docker host URL is empty ({EXPECTED_FORM})"));
        }
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(format!("invalid Docker host URL {s:?} ({EXPECTED_FORM})"));
        };
        if scheme.eq_ignore_ascii_case("unix") {
            return parse_unix(rest);
        }
        if scheme.eq_ignore_ascii_case("tcp") {
            return parse_tcp(rest);
        }
        Err(format!("unsupported URL scheme {scheme:?} in {s:?}: only unix:// and tcp:// are supported"))
    }

    /// Host header sent upstream. Docker ignores it on a unix socket, but
    /// HTTP/1.1 requires one, and "docker" is what the Docker CLI sends.
    pub(crate) fn host_header(&self) -> HeaderValue {
        match self {
            DockerUrl::Unix(_) => HeaderValue::from_static("docker"),
            DockerUrl::Tcp { host, port } => {
                let v = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
                // Hosts are validated to a safe character set in `parse`, but
                // the enum fields are public, so fall back rather than panic.
                HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("docker"))
            }
        }
    }
}

impl DockerUrl {
    /// For `unix://`, that the path names a socket now: a missing path, a
    /// regular file or a directory would be stored as an endpoint that can
    /// never answer (and a ping would only say "connection refused"). The
    /// `Err` is a 400's details. `tcp://` is not dialled here. This touches
    /// the file system: call it off the async workers.
    pub fn check_socket(&self) -> Result<(), String> {
        use std::os::unix::fs::FileTypeExt;
        let DockerUrl::Unix(path) = self else { return Ok(()) };
        let shown = path.display();
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!("there is no unix socket at {shown}: the path does not exist"))
            }
            Err(e) => return Err(format!("the unix socket path {shown} cannot be checked: {e}")),
        };
        let ft = meta.file_type();
        if ft.is_socket() {
            return Ok(());
        }
        let kind = if ft.is_dir() {
            "a directory"
        } else if ft.is_file() {
            "a regular file"
        } else if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else {
            "not a socket"
        };
        Err(format!("{shown} is {kind}, not a unix socket"))
    }
}

fn parse_unix(rest: &str) -> Result<DockerUrl, String> {
    if rest.is_empty() {
        return Err("the unix socket path is empty".into());
    }
    if !rest.starts_with('/') {
        // A relative path would be resolved against the daemon's working
        // directory, which is almost never what the user meant.
        return Err(format!("the unix socket path {rest:?} must be absolute"));
    }
    if rest.contains('\0') {
        return Err("the unix socket path contains a NUL byte".into());
    }
    Ok(DockerUrl::Unix(PathBuf::from(rest)))
}

fn parse_tcp(rest: &str) -> Result<DockerUrl, String> {
    // A single trailing slash is what people paste from docs; anything more is
    // a path we would silently ignore, so it is refused.
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() {
        return Err("the tcp URL has no host".into());
    }
    if let Some(c) = authority.chars().find(|c| matches!(c, '/' | '?' | '#' | '@')) {
        return Err(format!("the tcp URL must be tcp://host:port, found unexpected {c:?} in {authority:?}"));
    }

    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((h, after)) = bracketed.split_once(']') else {
            return Err(format!("unterminated IPv6 address in {authority:?}"));
        };
        if h.parse::<Ipv6Addr>().is_err() {
            return Err(format!("{h:?} is not a valid IPv6 address"));
        }
        match after.strip_prefix(':') {
            Some(p) => (h, p),
            None if after.is_empty() => return Err(format!("missing port in {authority:?}")),
            None => return Err(format!("unexpected {after:?} after the IPv6 address")),
        }
    } else {
        let Some((h, p)) = authority.rsplit_once(':') else {
            return Err(format!("missing port in {authority:?}"));
        };
        if h.contains(':') {
            return Err(format!("IPv6 addresses must be enclosed in brackets: {authority:?}"));
        }
        (h, p)
    };

    if host.is_empty() {
        return Err("the tcp URL has no host".into());
    }
    if !host.contains(':') {
        if let Some(c) = host.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))) {
            return Err(format!("invalid character {c:?} in host {host:?}"));
        }
    }

    if port.is_empty() {
        return Err(format!("missing port in {authority:?}"));
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {port:?} is not a number"));
    }
    let port: u16 = port.parse().map_err(|_| format!("port {port} is out of range (1-65535)"))?;
    if port == 0 {
        return Err("port 0 is not a valid port (1-65535)".into());
    }

    Ok(DockerUrl::Tcp { host: host.to_owned(), port })
}

impl fmt::Display for DockerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DockerUrl::Unix(p) => write!(f, "unix://{}", p.display()),
            DockerUrl::Tcp { host, port } if host.contains(':') => {
                write!(f, "tcp://[{host}]:{port}")
            }
            DockerUrl::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> DockerUrl {
        DockerUrl::Tcp { host: host.into(), port }
    }

    #[test]
    fn parses_good_urls() {
        let cases = [
            ("unix:///var/run/docker.sock", DockerUrl::Unix("/var/run/docker.sock".into())),
            ("UNIX:///run/user/1000/docker.sock", DockerUrl::Unix("/run/user/1000/docker.sock".into())),
            ("tcp://10.0.7.10:2375", tcp("10.0.7.10", 2375)),
            ("tcp://10.0.7.10:2376/", tcp("10.0.7.10", 2376)),
            ("  tcp://docker-host.internal:2376  ", tcp("docker-host.internal", 2376)),
            ("tcp://my_host:1", tcp("my_host", 1)),
            ("tcp://[::1]:2375", tcp("::1", 2375)),
            ("tcp://[fe80::1]:65535", tcp("fe80::1", 65535)),
        ];
        for (input, want) in cases {
            assert_eq!(DockerUrl::parse(input).as_ref(), Ok(&want), "{input}");
        }
    }

    #[test]
    fn rejects_bad_urls_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("10.0.7.10:2375", "expected"),
            ("http://10.0.7.10:2375", "unsupported URL scheme"),
            ("https://10.0.7.10:2376", "unsupported URL scheme"),
            ("npipe:////./pipe/docker_engine", "unsupported URL scheme"),
            ("unix://", "empty"),
            ("unix://docker.sock", "absolute"),
            ("tcp://", "no host"),
            ("tcp://:2375", "no host"),
            ("tcp://10.0.7.10", "missing port"),
            ("tcp://10.0.7.10:", "missing port"),
            ("tcp://10.0.7.10:0", "port 0"),
            ("tcp://10.0.7.10:abc", "not a number"),
            ("tcp://10.0.7.10:-1", "not a number"),
            ("tcp://10.0.7.10:65536", "out of range"),
            ("tcp://10.0.7.10:99999999999", "out of range"),
            ("tcp://10.0.7.10:2375/v1.41", "unexpected"),
            ("tcp://user@10.0.7.10:2375", "unexpected"),
            ("tcp://10.0.7.10:2375?x=1", "unexpected"),
            ("tcp://::1:2375", "brackets"),
            ("tcp://[::1]", "missing port"),
            ("tcp://[::1:2375", "unterminated"),
            ("tcp://[zz]:2375", "IPv6"),
            ("tcp://bad host:2375", "invalid character"),
        ];
        for (input, needle) in cases {
            match DockerUrl::parse(input) {
                Ok(u) => panic!("{input:?} parsed as {u:?}"),
                Err(e) => assert!(e.contains(needle), "{input:?}: {e:?} lacks {needle:?}"),
            }
        }
    }

    #[test]
    fn only_sockets_pass_the_socket_check() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("d.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        let check = |p: &std::path::Path| DockerUrl::Unix(p.to_path_buf()).check_socket();
        check(&sock).unwrap();
        assert!(check(&dir.path().join("missing")).unwrap_err().contains("does not exist"));
        assert!(check(&file).unwrap_err().contains("a regular file, not a unix socket"));
        assert!(check(dir.path()).unwrap_err().contains("a directory, not a unix socket"));
        tcp("10.0.7.10", 2375).check_socket().unwrap();
    }

    #[test]
    fn display_round_trips_and_host_header() {
        for s in ["unix:///var/run/docker.sock", "tcp://10.0.7.10:2375", "tcp://[::1]:2375"] {
            let u = DockerUrl::parse(s).unwrap();
            assert_eq!(u.to_string(), s);
            assert_eq!(DockerUrl::parse(&u.to_string()).unwrap(), u);
        }
        assert_eq!(DockerUrl::parse("unix:///x").unwrap().host_header(), "docker");
        assert_eq!(tcp("10.0.7.10", 2375).host_header(), "10.0.7.10:2375");
        assert_eq!(tcp("::1", 2375).host_header(), "[::1]:2375");
    }
}
