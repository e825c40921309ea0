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
        let c = &self.state.config;
        let mut b = http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(c.header_read_timeout)
            .max_headers(c.max_headers)
            .max_buf_size(c.max_header_bytes.max(8192))
            .keep_alive(true)
            .half_close(false);
        b
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
