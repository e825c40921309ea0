//! Issue 19, against the running daemon: cross-site requests with the
//! session cookie are refused (item 4), metric labels stay bounded and
//! `/metrics` wants a credential by default (item 6), and what the Docker
//! proxy passes on and back (item 9: no cookie, no method override, no
//! CORS header of the host; `X-Frame-Options` on every answer).

// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use berth_testkit::endpoints::MockEnv;
use berth_testkit::harness::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LIMIT: Duration = Duration::from_secs(120);

fn bounded<F: std::future::Future>(f: F) -> impl std::future::Future<Output = F::Output> {
    berth_testkit::endpoints::bounded(LIMIT, f)
}

// The shared set-up ([`MockEnv`]) with this binary's helpers.
berth_testkit::mock_env_newtype!(Env);

impl Env {
    async fn start_with(args: &[&str]) -> Env {
        Env(MockEnv::start(args).await)
    }

    fn own_origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.daemon.port())
    }

    fn cookie(&self) -> String {
        format!("portainer_api_key={}", self.token)
    }

    /// `POST /api/users` as a browser would send it with the cookie.
    async fn create_user_with_cookie(&self, name: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
        let mut rb = self.daemon.http().post(self.daemon.url("/api/users")).header("cookie", self.cookie());
        let mut typed = false;
        for (k, v) in headers {
            typed |= k.eq_ignore_ascii_case("content-type");
            rb = rb.header(*k, *v);
        }
        if !typed {
            rb = rb.header("content-type", "application/json");
        }
        let body = json!({"Username": name, "Password": "a-long-password-1", "Role": 1}).to_string();
        read_json(rb.body(body).send().await.unwrap()).await
    }

    async fn user_exists(&self, name: &str) -> bool {
        let (s, users) = self.daemon.get_json("/api/users", Some(&self.token)).await;
        assert_eq!(s, StatusCode::OK);
        users.as_array().unwrap().iter().any(|u| u["Username"] == name)
    }
}

// ------------------------------------------------------------ item 4: CSRF

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_requests_from_other_origins_are_refused() {
    bounded(async {
        let env = Env::start_with(&["--allowed-origins", "https://ui.example"]).await;
        let own = env.own_origin();
        let other_port = format!("http://127.0.0.1:{}", env.daemon.port().wrapping_add(1).max(1));
        let refused: [(&str, Vec<(&str, &str)>); 6] = [
            ("another site", vec![("origin", "http://evil.example")]),
            ("another port of the same host", vec![("origin", other_port.as_str())]),
            ("same host over https", vec![("origin", "https://127.0.0.1")]),
            ("Origin null", vec![("origin", "null")]),
            ("same-site fetch", vec![("sec-fetch-site", "same-site")]),
            ("neither Origin nor Sec-Fetch-Site", vec![]),
        ];
        for (i, (what, headers)) in refused.iter().enumerate() {
            let name = format!("refused{i}");
            let (s, v) = env.create_user_with_cookie(&name, headers).await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{what}: {v}");
            assert_eq!(v["message"], "Cross-site request refused", "{what}: {v}");
            assert!(v["details"].as_str().is_some_and(|d| !d.is_empty()), "{what}: a reason: {v}");
            assert!(!env.user_exists(&name).await, "{what}: the user was created");
        }
        // JSON route, JSON parsed whatever the type before: text/plain is
        // what a cross-site form can send, so it is refused under the cookie.
        let (s, v) =
            env.create_user_with_cookie("plain", &[("origin", own.as_str()), ("content-type", "text/plain")]).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        assert!(v["details"].as_str().unwrap().contains("application/json"), "{v}");
        assert!(!env.user_exists("plain").await);

        let accepted: [(&str, Vec<(&str, &str)>); 5] = [
            ("same origin", vec![("origin", own.as_str())]),
            ("Sec-Fetch-Site same-origin", vec![("sec-fetch-site", "same-origin")]),
            ("Sec-Fetch-Site none", vec![("sec-fetch-site", "none")]),
            ("an allowed origin", vec![("origin", "https://ui.example")]),
            (
                "JSON with parameters",
                vec![("origin", own.as_str()), ("content-type", "application/json; charset=utf-8")],
            ),
        ];
        for (i, (what, headers)) in accepted.iter().enumerate() {
            let name = format!("accepted{i}");
            let (s, v) = env.create_user_with_cookie(&name, headers).await;
            assert_eq!(s, StatusCode::OK, "{what}: {v}");
            assert!(env.user_exists(&name).await, "{what}");
        }

        // Safe methods with the cookie are not concerned.
        let resp = env.daemon.http().get(env.daemon.url("/api/users/me")).header("cookie", env.cookie()).send().await;
        assert_eq!(resp.unwrap().status(), StatusCode::OK);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_with_bearer_or_api_key_work_without_origin_or_content_type() {
    bounded(async {
        let env = Env::start_with(&[]).await;
        let body = |n: &str| json!({"Username": n, "Password": "a-long-password-1", "Role": 2}).to_string();
        // curl -H "Authorization: Bearer ..." -d '{...}': no Origin, and
        // curl's default form type (or none at all).
        for (name, ty) in [("curl1", None), ("curl2", Some("application/x-www-form-urlencoded"))] {
            let mut rb = env.daemon.http().post(env.daemon.url("/api/users")).bearer_auth(&env.token).body(body(name));
            if let Some(t) = ty {
                rb = rb.header("content-type", t);
            }
            let (s, v) = read_json(rb.send().await.unwrap()).await;
            assert_eq!(s, StatusCode::OK, "{name}: {v}");
        }
        // With a stale cookie beside the header too: the header decides.
        let rb = env
            .daemon
            .http()
            .post(env.daemon.url("/api/users"))
            .bearer_auth(&env.token)
            .header("cookie", "portainer_api_key=stale")
            .header("origin", "http://evil.example")
            .body(body("curl3"));
        let (s, v) = read_json(rb.send().await.unwrap()).await;
        assert_ne!(s, StatusCode::FORBIDDEN, "{v}");

        let (s, key) = env
            .daemon
            .post_json(
                "/api/users/1/tokens",
                Some(&env.token),
                &json!({"password": ADMIN_PASSWORD, "description": "k"}),
            )
            .await;
        assert!(s.is_success(), "{key}");
        let raw = key["rawAPIKey"].as_str().unwrap();
        let rb = env.daemon.http().post(env.daemon.url("/api/users")).header("x-api-key", raw).body(body("curl4"));
        let (s, v) = read_json(rb.send().await.unwrap()).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_requests_to_the_docker_proxy_need_our_origin() {
    bounded(async {
        let env = Env::start_with(&[]).await;
        let path = format!("/api/endpoints/{}/docker/v1.41/containers/create?name=x", env.id);
        let send = |origin: &'static str, ty: &'static str| {
            let rb = env
                .daemon
                .http()
                .post(env.daemon.url(&path))
                .header("cookie", env.cookie())
                .header("content-type", ty)
                .body(r#"{"Image":"busybox"}"#);
            let rb = if origin.is_empty() { rb } else { rb.header("origin", origin) };
            async move { read_json(rb.send().await.unwrap()).await }
        };
        for (origin, ty) in [("http://evil.example", "application/json"), ("", "application/json")] {
            let (s, v) = send(origin, ty).await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{origin:?}: {v}");
        }
        let own: &'static str = Box::leak(env.own_origin().into_boxed_str());
        let (s, v) = send(own, "text/plain").await;
        assert_eq!(s, StatusCode::FORBIDDEN, "text/plain under the cookie: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(env.mock.requests().is_empty(), "nothing may reach Docker: {:?}", env.mock.requests().len());

        let (s, v) = send(own, "application/json").await;
        assert_ne!(s, StatusCode::FORBIDDEN, "same origin goes through: {v}");
        let seen =
            env.mock.wait_for_request(|r| r.path().ends_with("/containers/create"), Duration::from_secs(5)).await;
        assert!(seen.is_some(), "the same-origin request reached Docker");
    })
    .await
}

// ------------------------------------------------------------ item 6: metrics

fn series(text: &str) -> usize {
    text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count()
}

async fn scrape(d: &Daemon, token: &str) -> String {
    let resp = d.http().get(d.url("/metrics")).bearer_auth(token).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_methods_and_paths_create_no_series() {
    bounded(async {
        let env = Env::start_with(&[]).await;
        // Every label value the traffic below can produce, once, so that
        // what is measured afterwards is growth.
        let warm = [
            format!("/api/endpoints/{}/docker/containers/warm/warm", env.id),
            format!("/api/endpoints/{}/docker/warm", env.id),
            "/api/warm".to_owned(),
            "/api/users".to_owned(),
        ];
        for p in &warm {
            for m in [Method::from_bytes(b"WARMUP").unwrap(), Method::GET] {
                let _ = env.daemon.http().request(m, env.daemon.url(p)).bearer_auth(&env.token).send().await.unwrap();
            }
        }
        let before = scrape(&env.daemon, &env.token).await;
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for i in 0..200 {
            let letters: String = (0..8000).map(|_| (b'A' + (rand() % 26) as u8) as char).collect();
            let method = Method::from_bytes(letters.as_bytes()).unwrap();
            let word = format!("{:x}{:x}", rand(), rand());
            let path = match i % 4 {
                0 => format!("/api/endpoints/{}/docker/containers/{word}/{word}", env.id),
                1 => format!("/api/endpoints/{}/docker/{word}", env.id),
                2 => format!("/api/{word}"),
                _ => "/api/users".to_owned(),
            };
            let resp = env.daemon.http().request(method, env.daemon.url(&path)).bearer_auth(&env.token).send().await;
            let _ = resp.unwrap().bytes().await;
        }
        let after = scrape(&env.daemon, &env.token).await;
        let (grown, added) = (after.len().saturating_sub(before.len()), series(&after).saturating_sub(series(&before)));
        assert!(grown < 32 * 1024, "/metrics grew by {grown} bytes ({} → {})", before.len(), after.len());
        assert!(added <= 40, "{added} new series");
        assert!(after.lines().all(|l| l.len() < 512), "a label value is as long as a client made it");
        assert!(after.contains(r#"method="other""#), "invented methods are counted as other");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_on_the_public_port_want_an_admin_by_default() {
    bounded(async {
        let env = Env::start_with(&[]).await;
        let resp = env.daemon.http().get(env.daemon.url("/metrics")).send().await.unwrap();
        let (s, v) = read_json(resp).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
        let (_, bob_token) = {
            let (s, v) = env
                .daemon
                .post_json(
                    "/api/users",
                    Some(&env.token),
                    &json!({"Username": "bob", "Password": "bobpassword12", "Role": 2}),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{v}");
            (v, env.daemon.login("bob", "bobpassword12").await)
        };
        let resp = env.daemon.http().get(env.daemon.url("/metrics")).bearer_auth(&bob_token).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert!(scrape(&env.daemon, &env.token).await.contains("berth_http_requests_total"));
    })
    .await
}

// ------------------------------------------------------------ item 9: headers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_refuses_framing() {
    bounded(async {
        let env = Env::start_with(&[]).await;
        let d = &env.daemon;
        for (path, token) in [
            ("/api/status".to_owned(), None),
            ("/api/no-such-route".to_owned(), None),
            ("/api/users".to_owned(), None),
            (format!("/api/endpoints/{}/docker/containers/json", env.id), Some(env.token.as_str())),
        ] {
            let resp = d.request(Method::GET, &path, token).send().await.unwrap();
            assert_eq!(resp.headers().get("x-frame-options").map(|v| v.to_str().unwrap()), Some("DENY"), "{path}");
            assert_eq!(resp.headers()["x-content-type-options"], "nosniff", "{path}");
        }
    })
    .await
}

/// An engine that answers every request with CORS headers, as dockerd does
/// when started with `--api-cors-header`.
async fn spawn_cors_engine() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_cors(stream));
        }
    });
    port
}

async fn serve_cors(mut s: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            s.write_all(
                b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: text/plain\r\n\
                  Access-Control-Allow-Origin: *\r\nAccess-Control-Allow-Credentials: true\r\n\
                  Access-Control-Allow-Headers: Authorization\r\nAccess-Control-Allow-Methods: GET, POST\r\n\
                  Content-Length: 2\r\n\r\nOK",
            )
            .await?;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_headers_of_the_docker_host_are_dropped() {
    bounded(async {
        let port = spawn_cors_engine().await;
        let d = Daemon::start().await;
        let token = d.admin_token().await;
        let id = d.create_endpoint(&token, "cors", &format!("tcp://127.0.0.1:{port}")).await;
        for path in ["/_ping", "/v1.41/containers/json"] {
            let resp = d
                .request(Method::GET, &format!("/api/endpoints/{id}/docker{path}"), Some(&token))
                .header("origin", "http://evil.example")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            assert_eq!(resp.headers()["api-version"], "1.41", "the host's other headers come back");
            let cors: Vec<_> =
                resp.headers().keys().filter(|k| k.as_str().starts_with("access-control-")).cloned().collect();
            assert!(cors.is_empty(), "{path}: {cors:?} reached the client");
        }
    })
    .await
}
