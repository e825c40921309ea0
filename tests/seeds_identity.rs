//! The first steps of the seed documents ("Portainer HTTP API by example"),
//! run exactly as written with HTTPie, and the same steps with curl:
//! initialise the admin, log in, then call the API with
//! `Authorization: Bearer <jwt>`.

// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use berth_testkit::harness::*;
use serde_json::Value;

/// What a command-line client printed and how it exited.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `program args...` with no proxy settings and a private HTTPie
/// configuration, killed after 30 s.
async fn run(program: &str, args: &[String], config_dir: &std::path::Path) -> Run {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env("HTTPIE_CONFIG_DIR", config_dir)
        .env("NO_PROXY", "*")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"] {
        cmd.env_remove(var);
    }
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} timed out"))
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn json_of(r: &Run, what: &str) -> Value {
    assert!(r.ok, "{what} failed:\n{}\n{}", r.stdout, r.stderr);
    serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| panic!("{what}: not JSON ({e}):\n{}", r.stdout))
}

fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn seed_first_steps_work_with_httpie() {
    if !require_httpie() {
        return;
    }
    let d = Daemon::builder().args(["--bcrypt-cost", "4"]).start().await;
    let cfg = tempfile::tempdir().unwrap();
    let host = format!(":{}", d.port());
    // Portainer's seeds run `http`; a test has no TTY, so stdin is ignored
    // explicitly (that flag only changes how stdin is treated).
    let http = |rest: &[&str]| {
        let mut args = owned(&["--ignore-stdin"]);
        args.extend(owned(rest));
        args
    };

    // $ http POST :9000/api/users/admin/init Username="admin" Password="adminpassword"
    let init = format!("{host}/api/users/admin/init");
    let r = run("http", &http(&["POST", &init, "Username=admin", "Password=adminpassword"]), cfg.path()).await;
    let user = json_of(&r, "admin init");
    assert_eq!(user["Username"], "admin", "{user}");
    assert_eq!(user["Role"], 1, "{user}");
    assert!(user.get("Password").is_none(), "{user}");

    // $ http POST :9000/api/auth Username="admin" Password="adminpassword"
    let auth = format!("{host}/api/auth");
    let r = run("http", &http(&["POST", &auth, "Username=admin", "Password=adminpassword"]), cfg.path()).await;
    let v = json_of(&r, "login");
    let jwt = v["jwt"].as_str().unwrap_or_else(|| panic!("no jwt: {v}")).to_owned();
    assert_eq!(jwt.split('.').count(), 3, "{jwt}");

    // The value of the Authorization header must be of the form Bearer <JWT_TOKEN>.
    let bearer = format!("Authorization: Bearer {jwt}");
    let r = run("http", &http(&["GET", &format!("{host}/api/users/me"), &bearer]), cfg.path()).await;
    let me = json_of(&r, "GET /api/users/me");
    assert_eq!(me["Username"], "admin", "{me}");
    let r = run("http", &http(&["GET", &format!("{host}/api/users"), &bearer]), cfg.path()).await;
    let users = json_of(&r, "GET /api/users");
    assert_eq!(users.as_array().map(Vec::len), Some(1), "{users}");

    // Without the header the same call is refused, in Portainer's words.
    let r = run("http", &http(&["GET", &format!("{host}/api/users/me")]), cfg.path()).await;
    let err = json_of(&r, "GET /api/users/me without a token");
    assert_eq!(err["message"], "A valid authorization token is missing", "{err}");
    // And a second init is refused.
    let r = run("http", &http(&["POST", &init, "Username=admin", "Password=adminpassword"]), cfg.path()).await;
    let err = json_of(&r, "second admin init");
    assert_eq!(err["details"], "An administrator user already exists", "{err}");
    // --check-status turns HTTP errors into exit codes: 4xx is exit 4.
    let mut args = http(&["--check-status", "POST", &auth, "Username=admin", "Password=wrong-password"]);
    args.insert(0, "--quiet".into());
    let r = run("http", &args, cfg.path()).await;
    assert!(!r.ok, "a bad login passed --check-status");
}

#[tokio::test]
async fn seed_first_steps_work_with_curl() {
    if !run("curl", &owned(&["--version"]), std::path::Path::new("/tmp")).await.ok {
        eprintln!("SKIP seed_first_steps_work_with_curl: no curl on PATH");
        return;
    }
    let d = Daemon::builder().args(["--bcrypt-cost", "4"]).start().await;
    let cfg = tempfile::tempdir().unwrap();
    let curl = |method: &str, path: &str, extra: &[&str]| {
        let mut a = owned(&["-sS", "--noproxy", "*", "--max-time", "10", "-X", method]);
        a.extend(owned(extra));
        a.push(d.url(path));
        a
    };
    let json_body =
        ["-H", "Content-Type: application/json", "-d", r#"{"Username":"admin","Password":"adminpassword"}"#];
    let r = run("curl", &curl("POST", "/api/users/admin/init", &json_body), cfg.path()).await;
    assert_eq!(json_of(&r, "admin init")["Username"], "admin");
    let r = run("curl", &curl("POST", "/api/auth", &json_body), cfg.path()).await;
    let jwt = json_of(&r, "login")["jwt"].as_str().expect("jwt").to_owned();
    let bearer = format!("Authorization: Bearer {jwt}");
    let r = run("curl", &curl("GET", "/api/users/me", &["-H", &bearer]), cfg.path()).await;
    assert_eq!(json_of(&r, "GET /api/users/me")["Username"], "admin");
    // curl's -u style is not a Portainer credential: a malformed
    // Authorization header, answered 400 with the expected form.
    let r = run("curl", &curl("GET", "/api/users/me", &["-u", "admin:adminpassword"]), cfg.path()).await;
    let v = json_of(&r, "basic auth");
    assert_eq!(v["message"], "Invalid Authorization header", "{v}");
    assert!(v["details"].as_str().unwrap_or("").contains("Bearer <token>"), "{v}");
}
