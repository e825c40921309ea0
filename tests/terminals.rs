//! Terminals over WebSocket (issue 15): `/api/websocket/exec` and
//! `/api/websocket/attach`.
//!
//! Against the mock Docker backend: every refusal before the upgrade
//! (credentials, `?token=`, query, endpoint, handshake, cross-site cookie
//! sessions), what Berth asks Docker, characters split between frames, and
//! sessions closed within a second when the user's access ends (logout,
//! password and role change, deletion, API key removal).
//!
//! Against the real engine (skipped with a printed reason without one):
//! `echo` over unix, TCP and TLS; an interactive `sh`; attaching to a
//! running container without a TTY; multi-byte output intact across frame
//! boundaries; standard users refused other users' containers and allowed
//! their own; revoking a standard user's endpoint access closes their
//! terminal.

// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use berth_testkit::endpoints::{create_tls_endpoint, tcp_relay, tls_relay, with_local_engine, with_mock_engine, Pki};
use berth_testkit::harness::*;
use berth_testkit::terminal::*;
use berth_testkit::users::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

fn exec_path(eid: u64, id: &str) -> String {
    format!("/api/websocket/exec?endpointId={eid}&id={id}")
}

/// Asserts that the server closes the session within `limit`, and returns
/// the close code.
async fn closed_within(ws: &mut Terminal, limit: Duration) -> Option<u16> {
    let start = Instant::now();
    let t = read_to_end(ws, limit + Duration::from_secs(5)).await;
    let took = start.elapsed();
    assert!(t.ended, "the terminal is still open after {took:?}");
    assert!(took <= limit, "the terminal closed after {took:?}, more than {limit:?}");
    t.close.flatten().map(|f| u16::from(f.code))
}

#[tokio::test]
async fn refusals_come_before_the_upgrade_as_json_errors() {
    let (_mock, d, admin, eid) = with_mock_engine().await;
    let bearer = format!("Bearer {admin}");
    let ok = exec_path(eid, "abc123");

    assert_eq!(open(&d, &ok, &[]).await.err().map(|e| e.0), Some(401), "no credentials");
    let with_token = format!("{ok}&token={admin}");
    assert_eq!(open(&d, &with_token, &[]).await.err().map(|e| e.0), Some(401), "?token= never authenticates");
    for bad in [
        format!("/api/websocket/exec?endpointId={eid}&id=not-hex"),
        format!("/api/websocket/exec?endpointId={eid}"),
        "/api/websocket/attach?id=abc".to_string(),
        format!("/api/websocket/exec?endpointId={eid}&id=abc&id=def"),
    ] {
        let (s, body) = open(&d, &bad, &[("Authorization", &bearer)]).await.err().unwrap();
        assert_eq!(s, 400, "{bad}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["message"].as_str().unwrap().starts_with("Invalid query parameter"), "{v}");
    }
    let (s, _) = open(&d, &exec_path(99, "abc"), &[("Authorization", &bearer)]).await.err().unwrap();
    assert_eq!(s, 404);

    // Not a WebSocket handshake, or not a GET.
    let (s, v) = read_json(d.request(Method::GET, &ok, Some(&admin)).send().await.unwrap()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _) = read_json(d.request(Method::POST, &ok, Some(&admin)).send().await.unwrap()).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);

    // A standard user without access to the endpoint.
    create_user(&d, &admin, "bob").await;
    let bob = d.login("bob", &password("bob")).await;
    let (s, _) = open(&d, &ok, &[("Authorization", &format!("Bearer {bob}"))]).await.err().unwrap();
    assert_eq!(s, 403);
}

#[tokio::test]
async fn cookie_sessions_must_come_from_berths_own_origin() {
    let (_mock, d, admin, eid) = with_mock_engine().await;
    let cookie = format!("portainer_api_key={admin}");
    let path = exec_path(eid, "abc123");
    for origin in [Some("http://evil.example"), Some("null"), None] {
        let mut headers = vec![("Cookie", cookie.as_str())];
        if let Some(o) = origin {
            headers.push(("Origin", o));
        }
        let (s, body) = open(&d, &path, &headers).await.err().unwrap_or_else(|| panic!("{origin:?} was upgraded"));
        assert_eq!(s, 403, "{origin:?}: {body}");
        assert!(body.contains("Cross-site WebSocket request refused"), "{body}");
    }
    let own = format!("http://{}", d.addr());
    let mut ws = open(&d, &path, &[("Cookie", &cookie), ("Origin", &own)]).await.unwrap();
    type_text(&mut ws, "same origin\n").await;
    let t = read_until(&mut ws, WAIT, |s| s.contains("same origin")).await;
    assert!(t.text.contains("same origin"), "{t:?}");
}

#[tokio::test]
async fn berth_starts_the_exec_with_a_tty_and_keeps_characters_whole() {
    let (mock, d, admin, eid) = with_mock_engine().await;
    let mut ws = open_with_token(&d, &exec_path(eid, "ABC123"), &admin).await;
    let start = mock.wait_for_request(|r| r.path().ends_with("/start"), WAIT).await.unwrap();
    assert_eq!(start.path(), "/exec/abc123/start");
    assert_eq!(start.header("upgrade"), Some("tcp"));
    let tty_body = r#"{"Tty":true,"Detach":false}"#;
    assert_eq!(start.header("content-length"), Some(tty_body.len().to_string().as_str()));
    assert!(start.header("authorization").is_none(), "Berth's credentials reach Docker");

    // The mock echoes: "€" sent in two binary frames comes back as text,
    // whole, never as a broken or dropped character.
    use futures_util::SinkExt;
    let euro = "\u{20ac}".as_bytes();
    ws.send(tokio_tungstenite::tungstenite::Message::binary(euro[..1].to_vec())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    ws.send(tokio_tungstenite::tungstenite::Message::binary(euro[1..].to_vec())).await.unwrap();
    type_text(&mut ws, "\u{e9}!").await;
    let t = read_until(&mut ws, WAIT, |s| s.ends_with('!')).await;
    assert_eq!(t.text, "\u{20ac}\u{e9}!");
    assert_eq!(t.binary_frames, 0);
    assert!(!t.text.contains('\u{fffd}'));

    let metrics = d.request(Method::GET, "/metrics", Some(&admin)).send().await.unwrap().text().await.unwrap();
    assert_eq!(metric(&metrics, &format!("berth_terminals_open{{endpoint=\"{eid}\"}}")), Some(1.0), "{metrics}");
    let sent = metric(&metrics, &format!("berth_terminal_bytes_total{{direction=\"to_docker\",endpoint=\"{eid}\"}}"));
    assert_eq!(sent, Some(6.0), "{metrics}");
}

#[tokio::test]
async fn a_logout_closes_an_open_terminal_within_a_second() {
    let (_mock, d, admin, eid) = with_mock_engine().await;
    let mut ws = open_with_token(&d, &exec_path(eid, "abc"), &admin).await;
    type_text(&mut ws, "ping\n").await;
    assert!(read_until(&mut ws, WAIT, |s| s.contains("ping")).await.text.contains("ping"));
    let (s, _) = read_json(d.request(Method::POST, "/api/auth/logout", Some(&admin)).send().await.unwrap()).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(closed_within(&mut ws, Duration::from_secs(1)).await, Some(1008));
    let fresh = d.login(ADMIN_USER, ADMIN_PASSWORD).await;
    let metrics = d.request(Method::GET, "/metrics", Some(&fresh)).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    let ended = "berth_terminal_sessions_total{end=\"access_ended\",kind=\"exec\"}";
    assert_eq!(metric(&metrics, ended), Some(1.0), "{metrics}");
    // The audit trail has the session's start and end, with its bytes.
    let trail = berth_testkit::endpoints::eventually(WAIT, "the terminal's end in the trail", || {
        let (d, fresh) = (&d, fresh.clone());
        async move {
            let (_, v) = d.get_json("/api/useractivity/logs?keyword=exec", Some(&fresh)).await;
            let logs = v["logs"].as_array().cloned().unwrap_or_default();
            logs.iter().any(|e| e["action"] == "exec end").then_some(logs)
        }
    })
    .await;
    let end = trail.iter().find(|e| e["action"] == "exec end").unwrap();
    assert_eq!((end["username"].as_str(), end["object"].as_str()), (Some("admin"), Some("abc")), "{end}");
    assert_eq!(end["payload"]["bytesToDocker"], 5, "{end}");
    assert_eq!(end["payload"]["end"], "access_ended");
    assert!(trail.iter().any(|e| e["action"] == "exec start"));
}

#[tokio::test]
async fn password_role_and_account_changes_close_terminals() {
    let (_mock, d, admin, eid) = with_mock_engine().await;
    // A second administrator, so that the first can change and delete it.
    let (s, v) = d
        .post_json("/api/users", Some(&admin), &json!({"Username": "ops", "Password": password("ops"), "Role": 1}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let ops_id = v["Id"].as_u64().unwrap();
    let ops = || async { d.login("ops", &password("ops")).await };

    // Password change.
    let mut ws = open_with_token(&d, &exec_path(eid, "a1"), &ops().await).await;
    let body = json!({"NewPassword": "ops-new-password-1"});
    let (s, v) = d.put_json(&format!("/api/users/{ops_id}"), Some(&admin), &body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    closed_within(&mut ws, Duration::from_secs(1)).await;

    // Role change (admin → standard).
    let token = d.login("ops", "ops-new-password-1").await;
    let mut ws = open_with_token(&d, &exec_path(eid, "a2"), &token).await;
    let (s, v) = d.put_json(&format!("/api/users/{ops_id}"), Some(&admin), &json!({"Role": 2})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    closed_within(&mut ws, Duration::from_secs(1)).await;

    // An API key's removal, then the user's deletion.
    let (s, v) = d.put_json(&format!("/api/users/{ops_id}"), Some(&admin), &json!({"Role": 1})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let token = d.login("ops", "ops-new-password-1").await;
    let body = json!({"password": "ops-new-password-1", "description": "terminal"});
    let (s, v) = d.post_json(&format!("/api/users/{ops_id}/tokens"), Some(&token), &body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (key, key_id) = (v["rawAPIKey"].as_str().unwrap().to_owned(), v["apiKey"]["id"].as_u64().unwrap());
    let mut by_key = open(&d, &exec_path(eid, "a3"), &[("X-API-Key", &key)]).await.unwrap();
    let (s, _) = d.delete(&format!("/api/users/{ops_id}/tokens/{key_id}"), Some(&token)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    closed_within(&mut by_key, Duration::from_secs(1)).await;

    let mut ws = open_with_token(&d, &exec_path(eid, "a4"), &token).await;
    let (s, _) = d.delete(&format!("/api/users/{ops_id}"), Some(&admin)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    closed_within(&mut ws, Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_silent_terminal_is_closed_by_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mock = berth_testkit::MockDocker::start_unix(dir.path().join("docker.sock")).await.unwrap();
    let d = Daemon::builder().args(["--terminal-idle-timeout", "1s"]).start().await;
    let admin = d.admin_token().await;
    let eid = d.create_endpoint(&admin, "mock", &mock.unix_url().unwrap()).await;
    let mut ws = open_with_token(&d, &exec_path(eid, "abc"), &admin).await;
    // Traffic keeps it open past the timeout...
    for i in 0..3 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        type_text(&mut ws, &format!("{i}")).await;
        assert!(read_until(&mut ws, WAIT, |s| s.contains(&i.to_string())).await.text.contains(&i.to_string()));
    }
    // ...silence closes it, with "going away".
    assert_eq!(closed_within(&mut ws, Duration::from_secs(3)).await, Some(1001));
}

// ------------------------------------------------------------ real engine

/// Names of this run's containers (removed through the engine on drop).
struct Containers(String);

impl Containers {
    fn new(test: &str) -> Containers {
        Containers(format!("berth-term-{}-{test}", std::process::id()))
    }

    fn name(&self, tag: &str) -> String {
        format!("{}-{tag}", self.0)
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        let filter = format!("name={}", self.0);
        let out = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .stdin(Stdio::null())
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default();
        let ids: Vec<String> = String::from_utf8_lossy(&out).split_whitespace().map(str::to_owned).collect();
        if !ids.is_empty() {
            let mut cmd = std::process::Command::new("docker");
            cmd.args(["rm", "-f"]).args(&ids).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
            let _ = cmd.status();
        }
    }
}

struct Engine<'a> {
    d: &'a Daemon,
    eid: u64,
}

impl Engine<'_> {
    async fn docker(&self, token: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut rb = self.d.request(method, &format!("/api/endpoints/{}/docker{path}", self.eid), Some(token));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        read_json(rb.send().await.unwrap()).await
    }

    /// Creates and starts a container; returns its id.
    async fn run(&self, token: &str, name: &str, config: Value) -> String {
        let mut body = json!({"Image": test_image(), "Cmd": ["sleep", "300"]});
        body.as_object_mut().unwrap().extend(config.as_object().unwrap().clone());
        let (s, v) = self.docker(token, Method::POST, &format!("/containers/create?name={name}"), Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "create {name}: {v}");
        let id = v["Id"].as_str().unwrap().to_owned();
        let (s, v) = self.docker(token, Method::POST, &format!("/containers/{id}/start"), None).await;
        assert_eq!(s, StatusCode::NO_CONTENT, "start {name}: {v}");
        id
    }

    async fn exec(&self, token: &str, container: &str, cmd: &[&str]) -> String {
        let body = json!({"Cmd": cmd, "AttachStdin": true, "AttachStdout": true, "AttachStderr": true, "Tty": true});
        let (s, v) = self.docker(token, Method::POST, &format!("/containers/{container}/exec"), Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "exec {cmd:?}: {v}");
        v["Id"].as_str().unwrap().to_owned()
    }

    fn exec_path(&self, exec: &str) -> String {
        exec_path(self.eid, exec)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_runs_through_exec_over_unix_tcp_and_tls() {
    if !require_docker() {
        return;
    }
    let names = Containers::new("transports");
    let d = Daemon::start().await;
    let admin = d.admin_token().await;
    let pki = Pki::new();
    let (tcp_port, _) = tcp_relay(DOCKER_SOCKET.into()).await;
    let (tls_port, tls_handshakes) = tls_relay(DOCKER_SOCKET.into(), &pki).await;
    let unix = d.create_endpoint(&admin, "unix", &format!("unix://{DOCKER_SOCKET}")).await;
    let tcp = d.create_endpoint(&admin, "tcp", &format!("tcp://127.0.0.1:{tcp_port}")).await;
    let tls = create_tls_endpoint(&d, &admin, "tls", tls_port, &pki).await;
    let container = Engine { d: &d, eid: unix }.run(&admin, &names.name("c"), json!({})).await;
    for (transport, eid) in [("unix", unix), ("tcp", tcp), ("tls", tls)] {
        let e = Engine { d: &d, eid };
        let exec = e.exec(&admin, &container, &["echo", &format!("hello over {transport}")]).await;
        let mut ws = open_with_token(&d, &e.exec_path(&exec), &admin).await;
        let t = read_to_end(&mut ws, WAIT).await;
        assert!(t.text.contains(&format!("hello over {transport}")), "{transport}: {t:?}");
        assert!(t.ended, "{transport}: the session did not end with the command");
        assert_eq!(t.close.flatten().map(|f| u16::from(f.code)), Some(1000), "{transport}");
    }
    assert!(tls_handshakes.load(std::sync::atomic::Ordering::Relaxed) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interactive_shell_takes_input_and_exits() {
    if !require_docker() {
        return;
    }
    let names = Containers::new("shell");
    let (d, admin, eid) = with_local_engine().await;
    let e = Engine { d: &d, eid };
    let container = e.run(&admin, &names.name("c"), json!({})).await;
    let exec = e.exec(&admin, &container, &["sh"]).await;
    let mut ws = open_with_token(&d, &e.exec_path(&exec), &admin).await;
    type_text(&mut ws, "echo answer=$((6*7))\n").await;
    let t = read_until(&mut ws, WAIT, |s| s.contains("answer=42")).await;
    assert!(t.text.contains("answer=42"), "{t:?}");
    // A resize goes through the Docker proxy, as Portainer's clients do it.
    let (s, v) = e.docker(&admin, Method::POST, &format!("/exec/{exec}/resize?h=40&w=120"), None).await;
    assert!(s.is_success(), "resize: {s} {v}");
    type_text(&mut ws, "stty size; exit\n").await;
    let t = read_to_end(&mut ws, WAIT).await;
    assert!(t.text.contains("40 120"), "{t:?}");
    assert!(t.ended, "exit did not end the session: {t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_and_multibyte_output_arrive_intact() {
    if !require_docker() {
        return;
    }
    let names = Containers::new("utf8");
    let (d, admin, eid) = with_local_engine().await;
    let e = Engine { d: &d, eid };

    // Far more than one read of output, made of 2-, 3- and 4-byte
    // characters: reads end inside characters, frames must not.
    let unit = "\u{e9}\u{20ac}\u{1f600}x";
    let expected = unit.repeat(4000);
    let container = e.run(&admin, &names.name("exec"), json!({})).await;
    let exec = e.exec(&admin, &container, &["printf", "%s", &expected]).await;
    let mut ws = open_with_token(&d, &e.exec_path(&exec), &admin).await;
    let t = read_to_end(&mut ws, WAIT).await;
    assert!(t.text_frames > 1, "one frame only: the test would not cross a boundary");
    assert_eq!(t.text.len(), expected.len(), "bytes lost or replaced");
    assert!(t.text == expected, "the output changed on its way");

    // Attach to a running container without a TTY: Docker multiplexes its
    // output, Berth sends the text alone.
    let config =
        json!({"Cmd": ["sh", "-c", "while read l; do echo \"got:$l\"; done"], "OpenStdin": true, "Tty": false});
    let reader = e.run(&admin, &names.name("attach"), config).await;
    let path = format!("/api/websocket/attach?endpointId={}&id={reader}", e.eid);
    let mut ws = open_with_token(&d, &path, &admin).await;
    type_text(&mut ws, "h\u{e9}llo \u{1f600}\n").await;
    let t = read_until(&mut ws, WAIT, |s| s.contains("got:h\u{e9}llo \u{1f600}")).await;
    assert!(t.text.contains("got:h\u{e9}llo \u{1f600}"), "{t:?}");
    assert!(!t.text.contains('\u{1}') && !t.text.contains('\u{0}'), "stream headers leaked: {:?}", t.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_users_open_terminals_on_their_own_containers_only() {
    if !require_docker() {
        return;
    }
    let names = Containers::new("owners");
    let (d, admin, eid) = with_local_engine().await;
    let e = Engine { d: &d, eid };
    let bob_id = create_user(&d, &admin, "bob").await;
    grant(&d, &admin, e.eid, &[bob_id]).await;
    let bob = d.login("bob", &password("bob")).await;
    let bearer = format!("Bearer {bob}");

    let admins = e.run(&admin, &names.name("admin"), json!({})).await;
    let admins_exec = e.exec(&admin, &admins, &["echo", "secret"]).await;
    let (s, body) = open(&d, &e.exec_path(&admins_exec), &[("Authorization", &bearer)]).await.err().unwrap();
    assert_eq!(s, 403, "{body}");
    let attach = format!("/api/websocket/attach?endpointId={}&id={admins}", e.eid);
    let (s, body) = open(&d, &attach, &[("Authorization", &bearer)]).await.err().unwrap();
    assert_eq!(s, 403, "{body}");
    // A prefix names the same object (or none): no way around the check.
    let (s, _) = open(&d, &attach[..attach.len() - 52], &[("Authorization", &bearer)]).await.err().unwrap();
    assert_eq!(s, 403);
    let (s, _) = open(&d, &e.exec_path(&admins_exec[..12]), &[("Authorization", &bearer)]).await.err().unwrap();
    assert!(s == 403 || s == 404, "{s}");

    let own = e.run(&bob, &names.name("bob"), json!({})).await;
    let exec = e.exec(&bob, &own, &["sh"]).await;
    let mut ws = open_with_token(&d, &e.exec_path(&exec), &bob).await;
    type_text(&mut ws, "echo mine\n").await;
    assert!(read_until(&mut ws, WAIT, |s| s.contains("mine")).await.text.contains("mine"));

    // Revoking bob's access to the endpoint closes his open terminal.
    let (s, v) =
        d.put_json(&format!("/api/endpoints/{}", e.eid), Some(&admin), &json!({"UserAccessPolicies": {}})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(closed_within(&mut ws, Duration::from_secs(1)).await, Some(1008));
}
