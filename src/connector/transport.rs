//! Dialling a Docker host: unix socket, plain TCP or TLS over TCP, with one
//! timeout covering everything up to a usable byte stream (DNS, TCP handshake
//! and TLS handshake), so a host that accepts but never answers the handshake
//! is reported as a connect timeout rather than hanging a request.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream, UnixStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::tls;
use super::{Cause, DockerUrl, TlsOptions, UpstreamError};

/// A connected byte stream to a Docker host. An enum rather than a boxed trait
/// object so reads and writes dispatch statically on the hot path.
pub(crate) enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// A connection to a Docker host without TLS: what splice(2) can move
/// bytes to and from directly.
pub enum PlainSocket {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    pub(crate) fn into_plain(self) -> Option<PlainSocket> {
        match self {
            Stream::Unix(s) => Some(PlainSocket::Unix(s)),
            Stream::Tcp(s) => Some(PlainSocket::Tcp(s)),
            Stream::Tls(_) => None,
        }
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Unix($s) => {
                let $s = Pin::new($s);
                $e
            }
            Stream::Tcp($s) => {
                let $s = Pin::new($s);
                $e
            }
            Stream::Tls($s) => {
                let $s = Pin::new(&mut **$s);
                $e
            }
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Unix(s) => s.is_write_vectored(),
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }

    /// Shuts down only our write side: a tunnel relays the client's half-close
    /// (stdin EOF) this way while the container's output keeps flowing back.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
}

enum Target {
    Unix(PathBuf),
    Tcp {
        host: String,
        port: u16,
        /// Pre-parsed when the host is an IP literal, to skip a resolver
        /// round trip (a blocking-pool hop in tokio) on every new connection.
        addr: Option<SocketAddr>,
    },
}

struct TlsSetup {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

/// How to reach one Docker host. Built once per endpoint; `connect` is called
/// for every new pooled connection.
pub(crate) struct Transport {
    target: Target,
    tls: Option<TlsSetup>,
    connect_timeout: Duration,
    /// For error messages: the URL as the user knows it.
    display: String,
}

impl Transport {
    pub(crate) fn new(
        url: &DockerUrl,
        tls: &TlsOptions,
        connect_timeout: Duration,
    ) -> Result<Transport, UpstreamError> {
        let (target, tls) = match url {
            // TLS over a unix socket is not something Docker offers; the
            // socket's file permissions are its access control.
            DockerUrl::Unix(path) => (Target::Unix(path.clone()), None),
            DockerUrl::Tcp { host, port } => {
                let addr = host.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, *port));
                let tls = if tls.enabled {
                    let config = tls::client_config(tls).map_err(|m| UpstreamError::Tls(m.into()))?;
                    let server_name = tls::server_name(host).map_err(|m| UpstreamError::Tls(m.into()))?;
                    Some(TlsSetup { connector: TlsConnector::from(config), server_name })
                } else {
                    None
                };
                (Target::Tcp { host: host.clone(), port: *port, addr }, tls)
            }
        };
        Ok(Transport { target, tls, connect_timeout, display: url.to_string() })
    }

    pub(crate) fn is_plain(&self) -> bool {
        self.tls.is_none()
    }

    pub(crate) async fn connect(&self) -> Result<Stream, UpstreamError> {
        match tokio::time::timeout(self.connect_timeout, self.connect_inner()).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::ConnectTimeout),
        }
    }

    async fn connect_inner(&self) -> Result<Stream, UpstreamError> {
        match &self.target {
            Target::Unix(path) => UnixStream::connect(path).await.map(Stream::Unix).map_err(|e| self.connect_error(e)),
            Target::Tcp { host, port, addr } => {
                let tcp = match addr {
                    Some(addr) => connect_tcp(*addr).await.map_err(|e| self.connect_error(e))?,
                    None => self.resolve_and_connect(host, *port).await?,
                };
                let Some(tls) = &self.tls else {
                    return Ok(Stream::Tcp(tcp));
                };
                tls.connector.connect(tls.server_name.clone(), tcp).await.map(|s| Stream::Tls(Box::new(s))).map_err(
                    |e| UpstreamError::Tls(Cause::with(format!("TLS handshake with {} failed: {e}", self.display), e)),
                )
            }
        }
    }

    async fn resolve_and_connect(&self, host: &str, port: u16) -> Result<TcpStream, UpstreamError> {
        let addrs = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| UpstreamError::ConnectRefused(Cause::with(format!("cannot resolve {host}: {e}"), e)))?;
        let mut last = None;
        for addr in addrs {
            match connect_tcp(addr).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) => self.connect_error(e),
            None => UpstreamError::ConnectRefused(Cause::new(format!("{host} resolved to no address"))),
        })
    }

    fn connect_error(&self, e: io::Error) -> UpstreamError {
        if e.kind() == io::ErrorKind::TimedOut {
            return UpstreamError::ConnectTimeout;
        }
        UpstreamError::ConnectRefused(Cause::with(format!("cannot connect to {}: {e}", self.display), e))
    }
}

async fn connect_tcp(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // Request/response latency matters more than packet count for an API
    // proxy, and interactive attach sessions must not wait on Nagle.
    socket.set_nodelay(true)?;
    // Lets the kernel eventually notice a vanished host under a `logs -f`
    // that would otherwise wait forever on a silent socket.
    socket.set_keepalive(true)?;
    socket.connect(addr).await
}
