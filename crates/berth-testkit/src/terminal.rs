//! A WebSocket client for Berth's terminals (`/api/websocket/exec|attach`),
//! as a browser would open them: a plain TCP connection to the daemon, the
//! RFC 6455 handshake with whatever credential headers the test chooses.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error, Message};
use tokio_tungstenite::WebSocketStream;

use crate::harness::Daemon;

pub type Terminal = WebSocketStream<TcpStream>;

/// Opens `path_and_query` on the daemon with these extra headers. `Err`
/// holds the refusal's status and body when the daemon did not upgrade.
pub async fn open(d: &Daemon, path_and_query: &str, headers: &[(&str, &str)]) -> Result<Terminal, (u16, String)> {
    let mut req = format!("ws://{}{path_and_query}", d.addr()).into_client_request().expect("a valid request");
    for (k, v) in headers {
        req.headers_mut().append(
            HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            HeaderValue::from_str(v).expect("header value"),
        );
    }
    let tcp = TcpStream::connect(d.addr()).await.expect("connect to the daemon");
    match tokio_tungstenite::client_async(req, tcp).await {
        Ok((ws, _)) => Ok(ws),
        Err(Error::Http(resp)) => {
            let status = resp.status().as_u16();
            let body = resp.body().as_deref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            Err((status, body))
        }
        Err(e) => panic!("WebSocket handshake with {path_and_query}: {e}"),
    }
}

/// Opens a terminal with a bearer token, panicking on a refusal.
pub async fn open_with_token(d: &Daemon, path_and_query: &str, token: &str) -> Terminal {
    let auth = format!("Bearer {token}");
    open(d, path_and_query, &[("Authorization", &auth)])
        .await
        .unwrap_or_else(|(s, b)| panic!("open {path_and_query}: {s} {b}"))
}

/// What a session showed: its text, and how it ended (if it did).
#[derive(Debug, Default)]
pub struct Transcript {
    pub text: String,
    /// Binary frames: Berth sends only text, so this stays 0.
    pub binary_frames: usize,
    pub text_frames: usize,
    /// The close frame, when the server closed the session.
    pub close: Option<Option<CloseFrame>>,
    /// The connection ended (close frame, EOF or error).
    pub ended: bool,
}

/// Reads frames until `done(text so far)` holds, the session ends, or
/// `timeout` passes.
pub async fn read_until(ws: &mut Terminal, timeout: Duration, done: impl Fn(&str) -> bool) -> Transcript {
    let mut t = Transcript::default();
    let deadline = Instant::now() + timeout;
    while !done(&t.text) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => break,
            Ok(None) | Ok(Some(Err(_))) => {
                t.ended = true;
                break;
            }
            Ok(Some(Ok(msg))) => match msg {
                Message::Text(s) => {
                    t.text_frames += 1;
                    t.text.push_str(&s);
                }
                Message::Binary(_) => t.binary_frames += 1,
                Message::Close(f) => {
                    t.close = Some(f);
                    t.ended = true;
                    break;
                }
                _ => {}
            },
        }
    }
    t
}

/// Reads until the server ends the session (or `timeout` passes).
pub async fn read_to_end(ws: &mut Terminal, timeout: Duration) -> Transcript {
    read_until(ws, timeout, |_| false).await
}

/// Sends keystrokes as one text frame.
pub async fn type_text(ws: &mut Terminal, text: &str) {
    ws.send(Message::text(text)).await.expect("send to the terminal");
}
