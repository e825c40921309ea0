//! Listeners: accept loops for HTTP, HTTPS and the optional metrics-only
//! port, each connection served by hyper's HTTP/1.1 with upgrades, explicit
//! limits, and graceful drain on shutdown.

pub mod access_log;
pub mod activity;
pub mod csrf;
pub mod limits;
pub mod protocol;
pub mod router;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use crate::state::AppState;
use router::Router;

/// Largest read of a client connection's socket. hyper's read buffer starts
/// at 8 KiB and doubles while reads fill it, up to this size; a request body
/// is handed on in slices of what one read brought. Capped at the header
/// limit (64 KiB by default), an upload took one read, one hand-over to the
/// upstream task and one wake-up of the Docker host per 64 KiB, and cost
/// 1.3 to 2.7 times the CPU per GiB of 256 KiB reads
/// (`scripts/bench/stream.sh` with `BERTH_B`); 1 MiB measured no better.
/// Reads only grow on a connection whose reads keep filling the buffer (a
/// fast upload), so a connection holds at most this much (plus the slice
/// still on its way to the host), against 64 KiB before; the header limit
/// is enforced apart from it (`max_header_size`).
pub const READ_BUF_MAX: usize = 256 * 1024;

/// hyper's HTTP/1 settings for client connections: limits from the
/// configuration, the body read size of [`READ_BUF_MAX`].
fn http1_builder(c: &crate::config::Config) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(c.header_read_timeout)
        .max_headers(c.max_headers)
        .max_header_size(c.max_header_bytes)
        .max_buf_size(READ_BUF_MAX.max(c.max_header_bytes))
        .keep_alive(true)
        .half_close(false);
    b
}

/// What a listener serves: the whole API, or only `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    Api,
    MetricsOnly,
}

/// Connection-level settings shared by every accepted connection.
#[derive(Clone)]
pub struct Server {
    pub state: Arc<AppState>,
    /// Routes, tunnels and the state, shared by every request.
    pub router: Arc<Router>,
    /// Caps concurrent client connections across all listeners.
    pub permits: Arc<Semaphore>,
    /// Every connection task, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Caps connections per client address, so that a few clients cannot
    /// take all of `permits`.
    pub per_client: Arc<limits::PerClient>,
}

impl Server {
    pub fn new(state: Arc<AppState>) -> Server {
        let permits = Arc::new(Semaphore::new(state.config.max_connections));
        let c = &state.config;
        let per_client = limits::PerClient::new(c.max_connections_per_ip, c.trusted_proxies.clone());
        let router = Arc::new(Router::new(state.clone()));
        Server { state, router, permits, tracker: TaskTracker::new(), per_client }
    }

    fn builder(&self) -> http1::Builder {
        http1_builder(&self.state.config)
    }

    /// Accepts until shutdown. Past the cap, an accepted connection waits
    /// for a permit before the next one is accepted, so further clients
    /// queue in the kernel backlog. The permit is taken only once a client
    /// is there: a listener idling in `accept` must not hold a slot that a
    /// client of another listener (HTTP, HTTPS, metrics) is waiting for.
    /// A client address past its own cap is answered 429 and closed at
    /// once, before it can wait for a permit.
    pub async fn run_listener(self, listener: TcpListener, tls: Option<TlsAcceptor>, surface: Surface) {
        let shutdown = self.state.shutdown.clone();
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = listener.accept() => match r {
                    Ok(v) => v,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Some(slot) = self.per_client.acquire(peer.ip()) else {
                self.state.metrics.connections_refused.with_label_values(&["per_ip"]).inc();
                // Best effort: one non-blocking write into an empty socket
                // buffer, then close; the request is never read.
                let _ = stream.try_write(limits::TOO_MANY_CONNECTIONS);
                tracing::debug!(%peer, "connection refused: per-address connection cap reached");
                continue;
            };
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = self.permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            };
            let _ = stream.set_nodelay(true);
            let this = self.clone();
            let tls = tls.clone();
            self.tracker.spawn(async move {
                this.state.metrics.connections_open.inc();
                match tls {
                    Some(acceptor) => {
                        let hs =
                            tokio::time::timeout(this.state.config.header_read_timeout, acceptor.accept(stream)).await;
                        match hs {
                            Ok(Ok(s)) => {
                                // Verified by the handshake; read once per connection.
                                let cert = s.get_ref().1.peer_certificates().and_then(|c| c.first());
                                let cert = cert.and_then(|der| crate::bundles::ClientCert::from_der(der));
                                this.serve_conn(s, peer, Some(cert), surface).await
                            }
                            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    }
                    None => this.serve_conn(stream, peer, None, surface).await,
                }
                this.state.metrics.connections_open.dec();
                drop(permit);
                drop(slot);
            });
        }
    }

    /// Arming a deadline earlier than the timer driver's next planned
    /// wake-up makes tokio wake its I/O driver with an eventfd `write`.
    /// hyper arms a header-read deadline for every request on every
    /// keep-alive connection, and under load the driver often parks with no
    /// timer pending, so arming cost a system call on two of three proxied
    /// requests (docs/PERFORMANCE.md). A tick at half the header timeout keeps
    /// a nearer deadline pending at all times: per-request deadlines then
    /// never move the driver's wake-up. Ends with shutdown.
    pub async fn keep_timer_armed(self) {
        let period = (self.state.config.header_read_timeout / 2).max(Duration::from_millis(10));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown = self.state.shutdown.clone();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
        }
    }

    /// `tls` is `None` for plain HTTP, and for HTTPS the client certificate
    /// the connection presented, if any.
    async fn serve_conn<IO>(
        &self,
        io: IO,
        peer: SocketAddr,
        tls: Option<Option<crate::bundles::ClientCert>>,
        surface: Surface,
    ) where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let router = self.router.clone();
        let is_tls = tls.is_some();
        let cert = tls.flatten();
        let svc = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let router = router.clone();
            if let Some(c) = &cert {
                req.extensions_mut().insert(c.clone());
            }
            async move { Ok::<_, std::convert::Infallible>(router::handle(&router, req, peer, is_tls, surface).await) }
        });
        let io = limits::SendTimeout::new(io, self.state.config.send_timeout);
        let conn = self.builder().serve_connection(TokioIo::new(io), svc).with_upgrades();
        tokio::pin!(conn);
        let shutdown = self.state.shutdown.clone();
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with error");
                }
            }
            _ = shutdown.cancelled() => {
                // Finish the request in flight, then close.
                conn.as_mut().graceful_shutdown();
                if let Err(e) = conn.as_mut().await {
                    tracing::debug!(%peer, error = %e, "connection ended with error during drain");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves one connection over an in-memory pipe with Berth's settings;
    /// the answer's body is the size of the largest request body frame.
    async fn exchange(request: Vec<u8>) -> String {
        let (mut client, server) = tokio::io::duplex(4 << 20);
        let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
            let mut body = req.into_body();
            let mut largest = 0;
            while let Some(frame) = body.frame().await {
                if let Ok(d) = frame?.into_data() {
                    largest = largest.max(d.len());
                }
            }
            Ok::<_, hyper::Error>(hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(
                largest.to_string(),
            ))))
        });
        let conn =
            tokio::spawn(http1_builder(&crate::config::Config::default()).serve_connection(TokioIo::new(server), svc));
        client.write_all(&request).await.unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        let _ = conn.await;
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn a_body_is_read_in_slices_larger_than_the_header_limit() {
        let len = 4 * READ_BUF_MAX;
        let mut req = format!("POST / HTTP/1.1\r\nHost: berth\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
            .into_bytes();
        req.extend(std::iter::repeat_n(7u8, len));
        let answer = exchange(req).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let largest: usize = answer.rsplit("\r\n\r\n").next().unwrap().parse().unwrap();
        let header_limit = crate::config::Config::default().max_header_bytes;
        assert!(largest > header_limit, "largest body slice {largest} bytes, header limit {header_limit}");
    }

    #[tokio::test]
    async fn headers_stay_capped_at_the_header_limit_not_the_read_buffer() {
        let limit = crate::config::Config::default().max_header_bytes;
        assert!(READ_BUF_MAX > limit + 10_000, "the case below is one the read buffer alone would let through");
        // Over the limit and under the read buffer, partial or whole.
        let req = format!(
            "GET / HTTP/1.1\r\nHost: berth\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            "v".repeat(limit + 10_000)
        );
        let answer = exchange(req.into_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 431"), "{}", answer.lines().next().unwrap_or(""));
    }
}
