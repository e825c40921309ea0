//! Tests of the test harness itself (`berth_testkit::harness`, the mock engine, the test
//! image), using only what exists without Berth's API: a stand-in process
//! plays the daemon, and the mock or the real engine plays Docker.

// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use berth_testkit::harness::*;
use berth_testkit::{FailMode, MockDocker};

/// Plays `berth` for the harness: serves `GET /api/status` on `--bind`,
/// counts its runs in `--data`, echoes its arguments and one env var, exits
/// 0 on SIGTERM. With `STUB_FAIL_FIRST=1` its first run fails the way a
/// daemon whose port was taken does.
const STUB_DAEMON: &str = r#"
import http.server, os, signal, sys
args = sys.argv[1:]
def opt(name):
    return args[args.index(name) + 1]
host, port = opt("--bind").rsplit(":", 1)
data = opt("--data")
with open(os.path.join(data, "runs"), "a") as f:
    f.write("run\n")
runs = open(os.path.join(data, "runs")).read().count("run")
if os.environ.get("STUB_FAIL_FIRST") == "1" and runs == 1:
    print("Error: bind: Address already in use (os error 98)", file=sys.stderr, flush=True)
    sys.exit(1)
print("stub args: " + " ".join(args), file=sys.stderr, flush=True)
print("stub env: " + os.environ.get("STUB_ECHO", "<unset>"), flush=True)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == "/api/status"
        body = (b'{"stub":true,"runs":%d}' % runs) if ok else b'{"message":"no"}'
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
http.server.HTTPServer((host, int(port)), H).serve_forever()
"#;

fn stub() -> DaemonBuilder {
    Daemon::builder().program("python3", ["-c", STUB_DAEMON])
}

#[tokio::test]
async fn mock_backend_answers_ping_over_unix() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    let mock = MockDocker::start_unix(&sock).await.unwrap();
    let r = unix_http_client(&sock).get("http://docker/_ping").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["api-version"], "1.41");
    assert_eq!(r.text().await.unwrap(), "OK");
    assert_eq!(mock.last_request().unwrap().path(), "/_ping");
}

#[tokio::test]
async fn test_image_exists_and_runs_when_docker_is_present() {
    if !require_docker() {
        return;
    }
    let image = test_image();
    let out = std::process::Command::new("docker").args(["run", "--rm", image, "echo", "ok"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");

    // The CLI helper against the real engine, with input on stdin.
    let cli = DockerCli::with_host(format!("unix://{DOCKER_SOCKET}"), None);
    let out = cli.run_with_stdin(&["run", "--rm", "-i", image, "tr", "a-z", "A-Z"], b"piped in\n").await;
    out.assert_success();
    assert_eq!(out.stdout, "PIPED IN\n");
}

#[tokio::test]
async fn docker_cli_helper_sends_the_token_from_its_config() {
    if !docker_cli_available() {
        eprintln!("SKIP docker_cli_helper_sends_the_token_from_its_config: no docker CLI");
        return;
    }
    let mock = MockDocker::start_tcp("127.0.0.1:0").await.unwrap();
    let cli = DockerCli::with_host(mock.tcp_url().unwrap(), Some("tok-123"));
    let out = cli.run(&["version", "--format", "{{.Server.Version}}"]).await;
    out.assert_success();
    assert_eq!(out.stdout.trim(), "20.10.24");
    let out = cli.run(&["ps", "-a", "--format", "{{.Names}}"]).await;
    out.assert_success();
    assert!(out.stdout.contains("berth-mock-web"), "{out}");

    let requests = mock.requests();
    assert!(requests.iter().any(|r| r.path().ends_with("/containers/json")));
    for r in &requests {
        assert_eq!(r.header("authorization"), Some("Bearer tok-123"), "{} {}", r.method, r.uri);
    }
}

#[tokio::test]
async fn docker_cli_helper_kills_a_command_that_hangs() {
    if !docker_cli_available() {
        eprintln!("SKIP docker_cli_helper_kills_a_command_that_hangs: no docker CLI");
        return;
    }
    let mock = MockDocker::start_tcp("127.0.0.1:0").await.unwrap();
    mock.set_fail(FailMode::Hang).await;
    let start = Instant::now();
    let out =
        DockerCli::with_host(mock.tcp_url().unwrap(), None).timeout(Duration::from_secs(2)).run(&["version"]).await;
    assert!(out.timed_out, "{out}");
    assert!(!out.success());
    assert!(start.elapsed() < Duration::from_secs(15), "took {:?}", start.elapsed());
}

#[tokio::test]
async fn daemon_harness_starts_restarts_and_stops_a_stand_in() {
    let mut d = stub().arg("--extra-flag").env("STUB_ECHO", "hello-from-env").start().await;
    let (status, v) = d.get_json("/api/status", None).await;
    assert_eq!(status, 200);
    assert_eq!(v["runs"], 1);
    let (status, _) = d.get_json("/nope", Some("tok")).await;
    assert_eq!(status, 404);

    let logs = d.logs();
    assert!(logs.contains("stub env: hello-from-env"), "{logs}");
    assert!(logs.contains("--extra-flag"), "{logs}");
    assert!(logs.contains(&format!("--bind 127.0.0.1:{}", d.port())), "{logs}");
    assert!(logs.contains(&format!("--bind-https 127.0.0.1:{}", d.https_port())), "{logs}");
    assert!(logs.contains("--log-level info"), "{logs}");
    assert!(d.data_dir().join("runs").exists());

    let data = d.data_dir().to_path_buf();
    d.restart().await;
    assert_eq!(d.data_dir(), data);
    let (status, v) = d.get_json("/api/status", None).await;
    assert_eq!(status, 200);
    assert_eq!(v["runs"], 2, "restart must keep the data dir");

    let exit = d.stop_graceful().await;
    assert!(exit.success(), "{exit}");
    assert!(!d.is_running());
    d.relaunch().await;
    assert_eq!(d.get_json("/api/status", None).await.1["runs"], 3);
}

#[tokio::test]
async fn daemon_harness_retries_when_the_port_was_taken() {
    let d = stub().env("STUB_FAIL_FIRST", "1").start().await;
    let (status, v) = d.get_json("/api/status", None).await;
    assert_eq!(status, 200);
    assert_eq!(v["runs"], 2);
    assert!(d.stderr_log().contains("Address already in use"));
}

#[tokio::test]
async fn daemon_harness_reuses_a_given_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    for expected in [1, 2] {
        let d = stub().data_dir(dir.path()).start().await;
        assert_eq!(d.get_json("/api/status", None).await.1["runs"], expected);
    }
}

#[tokio::test]
#[should_panic(expected = "boom-marker")]
async fn daemon_harness_reports_the_stderr_of_a_failed_start() {
    Daemon::builder().program("sh", ["-c", "echo boom-marker >&2; exit 3", "sh"]).start().await;
}

#[tokio::test]
async fn dropping_the_daemon_handle_ends_the_process() {
    let d = stub().start().await;
    let pid = d.pid().unwrap();
    let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    assert!(proc_dir.exists());
    let scratch = d.scratch_dir().to_path_buf();
    drop(d);
    // Reaped by the drop, so not even a zombie remains.
    assert!(!proc_dir.exists());
    assert!(!scratch.exists());
}
