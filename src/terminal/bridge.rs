//! One terminal session: the client's WebSocket on one side, Docker's
//! hijacked stream on the other.
//!
//! - Client frames (text or binary) go to Docker byte for byte; a message
//!   over [`MAX_MESSAGE`] ends the session (tungstenite refuses it).
//! - Docker's output goes out as text frames that end on character
//!   boundaries ([`super::text`]).
//! - A ping every [`PING_INTERVAL`] keeps proxies and load balancers from
//!   dropping a quiet terminal; a write to the client that takes longer
//!   than [`WRITE_TIMEOUT`] ends the session; so does no traffic either way
//!   for the configured idle timeout.
//! - Every [`ACCESS_CHECK`], the credentials that opened the session are
//!   authenticated again and the endpoint's access rule asked again: a
//!   logout, a password or role change, the user's or key's deletion, or
//!   the endpoint's access revoked closes the terminal within a second.
//! - Either side ending ends both: the client gets a close frame saying
//!   why, the Docker connection is dropped.
//!
//! Input and output run as two futures of one task, so input stalled on a
//! slow Docker write never stops output from being read (and the reverse).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use http::HeaderMap;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::text::Output;
use super::Kind;
use crate::state::AppState;
use crate::store::model::Id;

/// Largest client message (and frame): keystrokes and pastes, not files.
pub const MAX_MESSAGE: usize = 64 << 10;
/// Portainer's ping interval.
pub const PING_INTERVAL: Duration = Duration::from_secs(50);
/// Portainer's write deadline.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the caller's access is checked again: well within the second
/// the issue allows between a logout and the terminal closing.
pub const ACCESS_CHECK: Duration = Duration::from_millis(200);
/// Bytes read from Docker at a time (one text frame at most this long,
/// plus a carried partial character).
const READ_CHUNK: usize = 8 << 10;

/// What a session needs after the handshake.
pub struct Session {
    pub state: Arc<AppState>,
    pub kind: Kind,
    pub endpoint_id: Id,
    /// The exec instance's or the container's id.
    pub object_id: String,
    /// The container (for an exec: its container, when known).
    pub container_id: String,
    pub user_id: Id,
    pub username: String,
    pub was_admin: bool,
    pub client: IpAddr,
    /// The headers that authenticated the handshake.
    pub credentials: HeaderMap,
    /// The connection's client certificate (a bundle), if it presented one.
    pub cert: Option<crate::bundles::ClientCert>,
    /// Docker multiplexes the output (attach to a container without a TTY).
    pub multiplexed: bool,
}

/// Why a session ended: the `end` label of `berth_terminal_sessions_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    ClientClosed,
    DockerClosed,
    AccessEnded,
    Idle,
    WriteTimeout,
    ClientError,
    DockerError,
    /// Berth is shutting down.
    Shutdown,
}

impl End {
    pub fn label(self) -> &'static str {
        match self {
            End::ClientClosed => "client_closed",
            End::DockerClosed => "docker_closed",
            End::AccessEnded => "access_ended",
            End::Idle => "idle",
            End::WriteTimeout => "write_timeout",
            End::ClientError => "client_error",
            End::DockerError => "docker_error",
            End::Shutdown => "shutdown",
        }
    }

    fn close_frame(self) -> Option<CloseFrame> {
        let (code, reason) = match self {
            End::ClientClosed => return None,
            End::DockerClosed => (CloseCode::Normal, "the session ended"),
            End::AccessEnded => (CloseCode::Policy, "access to this terminal ended"),
            End::Idle => (CloseCode::Away, "idle timeout"),
            End::WriteTimeout => (CloseCode::Away, "the client stopped reading"),
            End::ClientError => (CloseCode::Protocol, "invalid WebSocket message"),
            End::DockerError => (CloseCode::Error, "the Docker stream failed"),
            End::Shutdown => (CloseCode::Away, "the server is shutting down"),
        };
        Some(CloseFrame { code, reason: reason.into() })
    }
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE)).max_frame_size(Some(MAX_MESSAGE))
}

/// Milliseconds since `start` of the last byte either way.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        self.last_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// Runs a session to its end, once both upgrades have completed.
pub async fn run(s: Session, client: OnUpgrade, docker: OnUpgrade) {
    let (client, docker) = tokio::join!(client, docker);
    let (client, docker) = match (client, docker) {
        (Ok(c), Ok(d)) => (c, d),
        (c, d) => {
            tracing::debug!(endpoint_id = s.endpoint_id, client_error = ?c.err(), docker_error = ?d.err(), "terminal could not be established");
            return;
        }
    };
    let ws = WebSocketStream::from_raw_socket(TokioIo::new(client), Role::Server, Some(ws_config())).await;
    let (docker_r, docker_w) = tokio::io::split(TokioIo::new(docker));
    let endpoint = s.endpoint_id.to_string();
    let m = &s.state.metrics;
    let open = m.terminals_open.with_label_values(&[&endpoint]);
    open.inc();
    tracing::info!(
        target: "berth::terminal",
        kind = s.kind.label(),
        endpoint_id = s.endpoint_id,
        object = %s.object_id,
        container = %s.container_id,
        user = s.user_id,
        username = %s.username,
        client = %s.client,
        "terminal opened"
    );
    let at = (s.endpoint_id, s.object_id.as_str());
    let who = (s.user_id, s.username.as_str());
    s.state.audit.enqueue(crate::audit::Event::terminal(s.kind.label(), "start", at, who, s.client, None));
    let started = Instant::now();
    let (end, to_docker, to_client) = pump(&s, ws, docker_r, docker_w).await;
    let mut ended =
        crate::audit::Event::terminal(s.kind.label(), "end", at, who, s.client, Some((to_docker, to_client)));
    ended.payload.insert("end".into(), end.label().into());
    s.state.audit.enqueue(ended);
    open.dec();
    m.terminal_sessions.with_label_values(&[s.kind.label(), end.label()]).inc();
    tracing::info!(
        target: "berth::terminal",
        kind = s.kind.label(),
        endpoint_id = s.endpoint_id,
        object = %s.object_id,
        user = s.user_id,
        end = end.label(),
        to_docker,
        to_client,
        duration_ms = started.elapsed().as_millis() as u64,
        "terminal closed"
    );
}

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;
type DockerRead = tokio::io::ReadHalf<TokioIo<hyper::upgrade::Upgraded>>;
type DockerWrite = tokio::io::WriteHalf<TokioIo<hyper::upgrade::Upgraded>>;

/// Moves bytes both ways until one side ends; returns why and the bytes
/// sent each way (to Docker, to the client).
async fn pump(s: &Session, ws: Ws, mut docker_r: DockerRead, mut docker_w: DockerWrite) -> (End, u64, u64) {
    let endpoint = s.endpoint_id.to_string();
    let bytes_to_docker = s.state.metrics.terminal_bytes.with_label_values(&[&endpoint, "to_docker"]);
    let bytes_to_client = s.state.metrics.terminal_bytes.with_label_values(&[&endpoint, "to_client"]);
    let activity = Activity { start: Instant::now(), last_ms: AtomicU64::new(0) };
    let (to_docker, to_client) = (AtomicU64::new(0), AtomicU64::new(0));
    let (mut ws_tx, mut ws_rx) = ws.split();

    let input = async {
        while let Some(msg) = ws_rx.next().await {
            let data = match msg {
                Ok(Message::Text(t)) => bytes::Bytes::from(t),
                Ok(Message::Binary(b)) => b,
                // tungstenite answers pings itself.
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
                Ok(Message::Close(_)) => return End::ClientClosed,
                Err(e) => {
                    tracing::debug!(endpoint_id = s.endpoint_id, error = %e, "terminal client error");
                    return End::ClientError;
                }
            };
            activity.touch();
            if docker_w.write_all(&data).await.is_err() {
                return End::DockerError;
            }
            to_docker.fetch_add(data.len() as u64, Ordering::Relaxed);
            bytes_to_docker.inc_by(data.len() as u64);
        }
        End::ClientClosed
    };

    let output = async {
        let mut decoder = Output::new(s.multiplexed);
        let mut buf = vec![0u8; READ_CHUNK];
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
        loop {
            let msg = tokio::select! {
                read = docker_r.read(&mut buf) => match read {
                    Ok(0) => {
                        let rest = decoder.finish();
                        if !rest.is_empty() && send(&mut ws_tx, Message::text(rest)).await.is_err() {
                            return End::WriteTimeout;
                        }
                        return End::DockerClosed;
                    }
                    Ok(n) => {
                        activity.touch();
                        to_client.fetch_add(n as u64, Ordering::Relaxed);
                        bytes_to_client.inc_by(n as u64);
                        let text = decoder.push(&buf[..n]);
                        if text.is_empty() {
                            continue;
                        }
                        Message::text(text)
                    }
                    Err(_) => return End::DockerError,
                },
                _ = ping.tick() => Message::Ping(bytes::Bytes::new()),
            };
            if send(&mut ws_tx, msg).await.is_err() {
                return End::WriteTimeout;
            }
        }
    };

    let watch = async {
        let idle_limit = s.state.config.terminal_idle_timeout;
        let mut tick = tokio::time::interval(ACCESS_CHECK);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = s.state.shutdown.cancelled() => return End::Shutdown,
            }
            if !still_allowed(s) {
                return End::AccessEnded;
            }
            if activity.idle() >= idle_limit {
                return End::Idle;
            }
        }
    };

    let end = tokio::select! {
        e = input => e,
        e = output => e,
        e = watch => e,
    };
    drop(docker_w);
    drop(docker_r);
    if let Some(frame) = end.close_frame() {
        let _ = send(&mut ws_tx, Message::Close(Some(frame))).await;
    }
    let _ = tokio::time::timeout(WRITE_TIMEOUT, ws_tx.close()).await;
    (end, to_docker.into_inner(), to_client.into_inner())
}

/// A write to the client, bounded by [`WRITE_TIMEOUT`].
async fn send(tx: &mut futures_util::stream::SplitSink<Ws, Message>, msg: Message) -> Result<(), ()> {
    match tokio::time::timeout(WRITE_TIMEOUT, tx.send(msg)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// Whether the session's credentials still authenticate the same user
/// with the same role, and that user may still use the endpoint. Memory
/// reads only (the identity tables and the endpoint map).
fn still_allowed(s: &Session) -> bool {
    let state = &s.state;
    let (headers, cert) = (&s.credentials, s.cert.as_ref());
    let Ok(p) =
        crate::auth::extract::authenticate_with_cert(headers, None, cert, &state.identity, &state.jwt, &state.bundles)
    else {
        return false;
    };
    // A standard user's object check was made at the handshake; an admin
    // demoted since (by API key, whose token survives) never had one.
    if p.id() != s.user_id || p.is_admin() != s.was_admin {
        return false;
    }
    let Some(entry) = state.endpoints.get(s.endpoint_id) else {
        return false;
    };
    // A key's scope does not change, but it is asked again like the rest,
    // so that nothing here depends on that.
    if let Some(scope) = p.scope() {
        let in_scope = crate::access::scope::endpoint(scope, s.endpoint_id, Some(entry.record.group_id))
            .and_then(|()| crate::access::scope::terminal(scope));
        if in_scope.is_err() {
            return false;
        }
    }
    p.is_admin() || state.endpoints.may_access(&p, &entry.record, &state.identity.teams_of(p.id()))
}
