//! Forwarding one client request to a Docker host: the transparent part of
//! `/api/endpoints/{id}/docker/...`.
//!
//! The request is rewritten in place (hop-by-hop headers and Berth's own
//! credentials removed), its body streamed to the host as it arrives, and the
//! host's response streamed back frame by frame: nothing is buffered, so
//! `logs -f`, `events` and `stats` reach the client as Docker writes them.
//!
//! # Hijacked streams (attach, exec)
//!
//! Modern clients send `Upgrade: tcp` + `Connection: Upgrade`; Docker answers
//! `101` and both connections become raw byte pipes. We forward the handshake,
//! and on a `101` splice the two upgraded connections in a tracked task (see
//! [`Tunnels`]). Half-close passes through: when the client shuts down its
//! write side (stdin EOF), the Docker side's write half is shut down too,
//! while output keeps flowing back until the container closes its side.
//!
//! Docker's older behaviour (no `Upgrade` header; Docker answers `200` with
//! `Content-Type: application/vnd.docker.raw-stream` and takes the connection
//! over) cannot be hijacked through an HTTP/1.1 server: hyper only hands over
//! a connection after a `101`. What is done instead: the host's output is
//! relayed as an ordinary streamed response (read until the host closes; to
//! an HTTP/1.1 client hyper frames it as chunked, so a client that reads the
//! raw socket after the headers sees chunk markers), and the client's request
//! body keeps streaming to the host for as long as the client frames it
//! (chunked or Content-Length). Input written after the request without such
//! framing cannot be carried. Current Docker CLIs and SDKs always send the
//! `Upgrade` header, so this only affects very old clients.
//!
//! # Errors
//!
//! Before response headers: connection failures become a 502 (504 for a
//! connect timeout) in Portainer's JSON error shape, naming the endpoint.
//! After the headers have been sent, an upstream failure can only end the
//! stream, which hyper turns into an aborted response body.

mod headers;
pub mod image_ref;
pub mod redact;
pub mod registry_auth;
pub mod restrict;
pub mod route;
mod splice;
mod tunnel;
mod zero_copy;

#[cfg(test)]
mod tests;

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::{ClientBody, ResponseBody, UpstreamBody};
use crate::connector::{PlainSocket, Upstream, UpstreamError};
use crate::deadline::SendTimeout;
use crate::error::ApiError;

pub use headers::SESSION_COOKIE;
pub use tunnel::Tunnels;

/// Set in the extensions of every response `forward` generated itself instead
/// of relaying the Docker host's, so metrics and the access log can tell "the
/// host was unreachable" from a 502 that the host (or a proxy in front of it)
/// returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyFailure {
    /// The path left after the route prefix is not a valid request target (400).
    BadPath,
    /// The hijacked-connection cap is reached or shutdown has begun (503).
    TunnelLimit,
    /// Connecting (TCP, unix socket or TLS handshake) failed (502).
    Unreachable,
    /// Connecting took longer than the connect timeout (504).
    ConnectTimeout,
    /// The host's circuit breaker is open: no dial was made (503).
    CircuitOpen,
    /// The request was sent and no response headers came in time (504).
    ResponseTimeout,
    /// The client's request body stalled past the body read timeout (408).
    ClientBodyTimeout,
    /// The connection broke after it was established, before response headers (502).
    Upstream,
    /// The host answered 101 to a request that did not ask to upgrade (502).
    Protocol,
}

impl ProxyFailure {
    /// A short metric label.
    pub fn label(self) -> &'static str {
        match self {
            ProxyFailure::BadPath => "bad_path",
            ProxyFailure::TunnelLimit => "tunnel_limit",
            ProxyFailure::Unreachable => "unreachable",
            ProxyFailure::ConnectTimeout => "timeout",
            ProxyFailure::CircuitOpen => "circuit_open",
            ProxyFailure::ResponseTimeout => "response_timeout",
            ProxyFailure::ClientBodyTimeout => "client_body_timeout",
            ProxyFailure::Upstream => "upstream",
            ProxyFailure::Protocol => "protocol",
        }
    }
}

fn failure(e: ApiError, kind: ProxyFailure) -> Response<ResponseBody> {
    let mut resp = e.into_response();
    resp.extensions_mut().insert(kind);
    resp
}

pub struct ProxyTarget<'a> {
    pub endpoint_id: u64,
    pub endpoint_name: &'a str,
    pub upstream: &'a Upstream,
    pub tunnels: &'a Tunnels,
    /// Counts the request body bytes sent to the host, when metrics want them.
    pub bytes_in: Option<prometheus::IntCounter>,
    /// Longest pause allowed between two reads of the client's body.
    pub body_read_timeout: Duration,
    /// The request body, when Berth had to read it before forwarding (a
    /// service spec whose image decides the registry credentials); sent in
    /// place of the consumed stream.
    pub read_body: Option<Bytes>,
}

/// `docker_path_and_query` is what remains of the request target after
/// stripping `/api/endpoints/{id}/docker`, byte for byte: it starts with '/'
/// and includes `?query` if any. Never panics; every failure is a response.
pub async fn forward(
    target: ProxyTarget<'_>,
    req: Request<Incoming>,
    docker_path_and_query: &str,
) -> Response<ResponseBody> {
    let (timeout, counter) = (target.body_read_timeout, target.bytes_in.clone());
    let read = target.read_body.clone();
    let req = req.map(|body| match (read, counter) {
        (Some(read), counter) => {
            if let Some(c) = counter {
                c.inc_by(read.len() as u64);
            }
            UpstreamBody::Full((!read.is_empty()).then_some(read))
        }
        (None, Some(counter)) => UpstreamBody::Counted(ClientBody::new(body, timeout), counter),
        (None, None) => UpstreamBody::Stream(ClientBody::new(body, timeout)),
    });
    forward_body(target, req, docker_path_and_query).await
}

/// [`forward`] of a request whose body is already an [`UpstreamBody`] (the
/// restricted proxy forwards the bytes it inspected; counting them is its
/// part; `target.read_body` is not consulted).
pub async fn forward_body(
    target: ProxyTarget<'_>,
    mut req: Request<UpstreamBody>,
    docker_path_and_query: &str,
) -> Response<ResponseBody> {
    let uri = match upstream_uri(docker_path_and_query) {
        Ok(uri) => uri,
        Err(e) => {
            return failure(ApiError::bad_request("Invalid Docker API path", e.to_string()), ProxyFailure::BadPath)
        }
    };

    // hyper only offers upgrades on HTTP/1.1, where it treats any Upgrade
    // header as a request to switch; mirror that exactly.
    let wants_upgrade = req.version() == Version::HTTP_11 && req.headers().contains_key(header::UPGRADE);
    let mut upgrade = None;
    if wants_upgrade {
        let Some(slot) = target.tunnels.reserve() else {
            let e = if target.tunnels.is_draining() {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Unable to open an attach/exec session",
                    "the server is shutting down",
                )
            } else {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Too many open attach/exec sessions",
                    format!(
                        "the limit of {} concurrent hijacked connections is reached, retry later",
                        target.tunnels.max()
                    ),
                )
                .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
            };
            return failure(e, ProxyFailure::TunnelLimit);
        };
        upgrade = Some((slot, hyper::upgrade::on(&mut req)));
    }

    let (mut parts, body) = req.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, wants_upgrade);
    headers::strip_credentials(&mut parts.headers);
    // hyper's server already answered `Expect: 100-continue` to the client
    // (when we started reading the body); the host must not answer it again.
    parts.headers.remove(header::EXPECT);
    parts.uri = uri;
    parts.extensions.clear();
    let upstream_req = Request::from_parts(parts, body);

    let (mut resp, lease) = match target.upstream.request_leased(upstream_req).await {
        Ok(answer) => answer,
        Err(e) => return unreachable_host(&target, &e),
    };

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some((slot, client_upgrade)) = upgrade else {
            // hyper's server cannot switch a connection that did not ask to.
            let e = ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!(
                    "Invalid answer from the Docker host of environment {} ({})",
                    target.endpoint_id, target.endpoint_name
                ),
                "the Docker host switched protocols on a request that did not ask for it",
            );
            return failure(e, ProxyFailure::Protocol);
        };
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        let endpoint_id = target.endpoint_id;
        let plain = target.upstream.is_plain();
        target.tunnels.spawn(slot, splice(endpoint_id, client_upgrade, upstream_upgrade, plain));
        let (mut parts, _empty) = resp.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers, true);
        headers::strip_response(&mut parts.headers);
        return Response::from_parts(parts, ResponseBody::empty());
    }

    // Anything else, including a refused upgrade: an ordinary response, and
    // the client connection stays an ordinary HTTP connection.
    let (mut parts, body) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, false);
    headers::strip_response(&mut parts.headers);
    Response::from_parts(parts, ResponseBody::Stream(lease.relay(body)))
}

fn upstream_uri(path_and_query: &str) -> Result<Uri, http::uri::InvalidUri> {
    if path_and_query.starts_with('/') {
        return Uri::from_maybe_shared(Bytes::copy_from_slice(path_and_query.as_bytes()));
    }
    // "/api/endpoints/1/docker" or "...docker?x": the Docker API root.
    let mut s = String::with_capacity(path_and_query.len() + 1);
    s.push('/');
    s.push_str(path_and_query);
    Uri::from_maybe_shared(Bytes::from(s))
}

fn unreachable_host(target: &ProxyTarget<'_>, e: &UpstreamError) -> Response<ResponseBody> {
    match e {
        UpstreamError::ClientBody(t) => {
            let e = ApiError::new(StatusCode::REQUEST_TIMEOUT, "Request body timeout", t.to_string())
                .with_header(header::CONNECTION, HeaderValue::from_static("close"));
            return failure(e, ProxyFailure::ClientBodyTimeout);
        }
        UpstreamError::CircuitOpen(_) => {
            let e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "The Docker host of environment {} ({}) is unreachable",
                    target.endpoint_id, target.endpoint_name
                ),
                e.to_string(),
            )
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return failure(e, ProxyFailure::CircuitOpen);
        }
        UpstreamError::ResponseTimeout(_) => {
            let e = ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "The Docker host of environment {} ({}) did not answer in time",
                    target.endpoint_id, target.endpoint_name
                ),
                e.to_string(),
            );
            return failure(e, ProxyFailure::ResponseTimeout);
        }
        _ => {}
    }
    let (status, kind) = if e.is_timeout() {
        (StatusCode::GATEWAY_TIMEOUT, ProxyFailure::ConnectTimeout)
    } else if e.is_connect() {
        (StatusCode::BAD_GATEWAY, ProxyFailure::Unreachable)
    } else {
        (StatusCode::BAD_GATEWAY, ProxyFailure::Upstream)
    };
    tracing::debug!(
        endpoint_id = target.endpoint_id,
        endpoint = target.endpoint_name,
        error = %e,
        "docker proxy request failed"
    );
    let e = ApiError::new(
        status,
        format!("Unable to reach the Docker host of environment {} ({})", target.endpoint_id, target.endpoint_name),
        e.to_string(),
    );
    failure(e, kind)
}

/// Both upgrades complete independently: the host's is already done (we hold
/// its 101), the client's completes once hyper has written our 101 to it.
/// `plain`: the host's connection is a plain socket (no TLS).
async fn splice(endpoint_id: u64, client: OnUpgrade, upstream: OnUpgrade, plain: bool) {
    let (client, upstream) = tokio::join!(client, upstream);
    let (client, upstream) = match (client, upstream) {
        (Ok(c), Ok(u)) => (c, u),
        (c, u) => {
            tracing::debug!(
                endpoint_id,
                client_error = ?c.err(),
                upstream_error = ?u.err(),
                "tunnel could not be established"
            );
            return;
        }
    };
    let moved = match plain_client(client, plain) {
        // Both ends plain sockets: kernel to kernel (see zero_copy.rs).
        Ok(client) => match crate::connector::plain_socket(upstream) {
            Some((PlainSocket::Unix(socket), read_ahead)) => {
                zero_copy::run(&zero_copy::PIPES, client, zero_copy::End { socket, read_ahead, send_deadline: None })
                    .await
            }
            Some((PlainSocket::Tcp(socket), read_ahead)) => {
                zero_copy::run(&zero_copy::PIPES, client, zero_copy::End { socket, read_ahead, send_deadline: None })
                    .await
            }
            // Every host connection is a plain or a TLS `Stream`, and this
            // host's transport has no TLS: not reached.
            None => Err(std::io::Error::other("the Docker host's upgraded connection is not a plain socket")),
        },
        // TLS on either side: the bytes go through rustls, so through a
        // copy. Like tokio's copy_bidirectional (one side's EOF shuts down
        // the other's writer, the opposite direction keeps flowing: exactly
        // half-close), but an idle session holds no copy buffer (see
        // splice.rs).
        Err(client) => {
            let mut client = TokioIo::new(client);
            let mut upstream = TokioIo::new(upstream);
            splice::copy_bidirectional(&mut client, &mut upstream).await
        }
    };
    match moved {
        Ok((to_host, to_client)) => {
            tracing::debug!(endpoint_id, to_host, to_client, "tunnel closed")
        }
        Err(e) => tracing::debug!(endpoint_id, error = %e, "tunnel ended with an error"),
    }
}

/// The client's plain TCP socket, its send timeout and the bytes hyper had
/// read past its request, when the host's side is plain too; the upgraded
/// connection untouched otherwise (HTTPS client or TLS host).
fn plain_client(client: Upgraded, plain_host: bool) -> Result<zero_copy::End<TcpStream>, Upgraded> {
    if !plain_host {
        return Err(client);
    }
    let parts = client.downcast::<TokioIo<SendTimeout<TcpStream>>>()?;
    let (socket, deadline) = parts.io.into_inner().into_parts();
    Ok(zero_copy::End { socket, read_ahead: parts.read_buf, send_deadline: Some(deadline) })
}
