//! Client bundles (issue 18): Docker's own TLS client certificates as
//! Berth credentials.
//!
//! Against the mock backend (curl as the TLS client): a bundle alone
//! authenticates its user over HTTPS; revoked and expired bundles, another
//! CA's certificate and a header of another user are refused; header
//! clients are unaffected; who may create, list and revoke; the archive's
//! files; `berth_auth_total`.
//!
//! Against the real engine (skipped with a printed reason without one):
//! the Docker CLI with nothing but `DOCKER_HOST`, `DOCKER_TLS_VERIFY` and
//! `DOCKER_CERT_PATH` runs ps, run -i, exec -i, attach, logs -f, cp and a
//! classic build; docker-py's `attach_socket` with `TLSConfig`; a standard
//! user's bundle is bound by the restricted-access policy.

// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use berth_testkit::endpoints::{with_local_engine, with_mock_engine, Pki};
use berth_testkit::harness::*;
use berth_testkit::users::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A bundle unpacked into a directory (the `DOCKER_CERT_PATH`).
struct Unpacked {
    dir: tempfile::TempDir,
    id: u64,
}

impl Unpacked {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn text(&self, name: &str) -> String {
        std::fs::read_to_string(self.file(name)).unwrap()
    }
}

async fn create_bundle(d: &Daemon, token: &str, user: u64, body: Value) -> Result<Unpacked, (StatusCode, Value)> {
    let resp = d.request(Method::POST, &format!("/api/users/{user}/bundles"), Some(token)).json(&body).send().await;
    let resp = resp.unwrap();
    if resp.status() != StatusCode::CREATED {
        return Err(read_json(resp).await);
    }
    assert_eq!(resp.headers()["content-type"], "application/zip");
    let id = resp.headers()["x-berth-bundle-id"].to_str().unwrap().parse().unwrap();
    let bytes = resp.bytes().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let mut content = Vec::new();
        f.read_to_end(&mut content).unwrap();
        std::fs::write(dir.path().join(f.name()), content).unwrap();
    }
    Ok(Unpacked { dir, id })
}

async fn bundle(d: &Daemon, token: &str, user: u64, password: &str) -> Unpacked {
    create_bundle(d, token, user, json!({"password": password, "description": "test"})).await.unwrap()
}

/// One HTTPS request through curl: `Ok((status, body))`, or `Err(exit
/// code)` when curl got no HTTP answer (a refused handshake).
async fn curl(
    d: &Daemon,
    path: &str,
    cert: Option<(&Path, &Path)>,
    ca: &Path,
    headers: &[&str],
) -> Result<(u16, String), i32> {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-sS", "--max-time", "20", "--cacert"]).arg(ca);
    if let Some((c, k)) = cert {
        cmd.arg("--cert").arg(c).arg("--key").arg(k);
    }
    for h in headers {
        cmd.args(["-H", h]);
    }
    cmd.args(["-w", "\n%{http_code}"]).arg(d.https_url(path)).stdin(Stdio::null());
    let out = cmd.kill_on_drop(true).output().await.expect("run curl");
    if !out.status.success() {
        return Err(out.status.code().unwrap_or(-1));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    Ok((code.parse().unwrap(), body.to_string()))
}

fn with(b: &Unpacked) -> Option<(PathBuf, PathBuf)> {
    Some((b.file("cert.pem"), b.file("key.pem")))
}

fn pair(p: &Option<(PathBuf, PathBuf)>) -> Option<(&Path, &Path)> {
    p.as_ref().map(|(c, k)| (c.as_path(), k.as_path()))
}

#[tokio::test]
async fn a_certificate_alone_is_its_users_credential_and_refusals_are_clear() {
    let (_mock, d, admin, eid) = with_mock_engine().await;
    let bob_id = create_user(&d, &admin, "bob").await;
    grant(&d, &admin, eid, &[bob_id]).await;
    let bob = d.login("bob", &password("bob")).await;
    let b = bundle(&d, &bob, bob_id, &password("bob")).await;
    let ca = b.file("ca.pem");
    let cert = with(&b);

    // The archive: Docker's three files, the scripts naming the endpoint.
    assert!(b.text("ca.pem").starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(b.text("key.pem").contains("PRIVATE KEY"));
    let env = b.text("env.sh");
    assert!(env.contains("export DOCKER_TLS_VERIFY=1"), "{env}");
    assert!(env.contains(&format!(":{}/api/endpoints/{eid}/docker", d.https_port())), "{env}");
    assert!(b.text("contexts.sh").contains("docker context create"));

    // The certificate alone: bob, through the proxy and the API.
    let (s, body) = curl(&d, &format!("/api/endpoints/{eid}/docker/_ping"), pair(&cert), &ca, &[]).await.unwrap();
    assert_eq!((s, body.as_str()), (200, "OK"));
    let (s, body) = curl(&d, &format!("/api/users/{bob_id}"), pair(&cert), &ca, &[]).await.unwrap();
    assert_eq!(s, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["Username"], "bob");
    // The access log names the bundle.
    let logged = format!("bundle={}", b.id);
    berth_testkit::endpoints::eventually(Duration::from_secs(10), "the access log line", || {
        let found = d.logs().contains(&logged);
        async move { found.then_some(()) }
    })
    .await;
    // Bob is a standard user: admin routes stay closed to his certificate.
    let (s, _) = curl(&d, "/api/users", pair(&cert), &ca, &[]).await.unwrap();
    assert_eq!(s, 403);

    // Header clients on HTTPS are unaffected; a header of the same user is
    // fine, of another user refused.
    let (s, _) = curl(&d, "/api/users", None, &ca, &[&format!("Authorization: Bearer {admin}")]).await.unwrap();
    assert_eq!(s, 200);
    let (s, _) =
        curl(&d, "/api/endpoints", pair(&cert), &ca, &[&format!("Authorization: Bearer {bob}")]).await.unwrap();
    assert_eq!(s, 200);
    let (s, body) =
        curl(&d, "/api/endpoints", pair(&cert), &ca, &[&format!("Authorization: Bearer {admin}")]).await.unwrap();
    assert_eq!(s, 401, "{body}");
    assert!(body.contains("different users"), "{body}");

    // A certificate of another CA fails the handshake.
    let other = Pki::new();
    let (oc, ok) = other.write_client_files(d.scratch_dir()).map(|(_, c, k)| (c, k)).unwrap();
    assert!(
        curl(&d, "/api/status", Some((&oc, &ok)), &ca, &[]).await.is_err(),
        "another CA's certificate was accepted"
    );

    // A change made with the certificate names the bundle in the audit trail.
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-X", "POST", "-o", "/dev/null", "--cacert"])
        .arg(&ca)
        .arg("--cert")
        .arg(b.file("cert.pem"))
        .arg("--key")
        .arg(b.file("key.pem"))
        .arg(d.https_url(&format!("/api/users/{bob_id}/tokens")))
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let (s, v) = d.get_json("/api/useractivity/logs?keyword=bob", Some(&admin)).await;
    assert_eq!(s, StatusCode::OK);
    let by_bundle = v["logs"].as_array().unwrap().iter().find(|e| e["action"] == "POST /api/users/{id}/tokens");
    let by_bundle = by_bundle.unwrap_or_else(|| panic!("the bundle's call is not in the trail: {v:#}"));
    assert_eq!((by_bundle["bundleId"].as_u64(), by_bundle["username"].as_str()), (Some(b.id), Some("bob")));
    // A bundle cannot mint an API key (that key would escape its scope).
    assert_eq!(by_bundle["status"], 401, "{by_bundle}");

    // Revoked: refused at once on the next request.
    let (s, v) = d.delete(&format!("/api/users/{bob_id}/bundles/{}", b.id), Some(&bob)).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, body) = curl(&d, &format!("/api/endpoints/{eid}/docker/_ping"), pair(&cert), &ca, &[]).await.unwrap();
    assert_eq!(s, 401, "{body}");
    assert!(body.contains("revoked"), "{body}");

    // Expired: a bundle that ends in two seconds.
    let soon = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 2;
    let body = json!({"password": password("bob"), "description": "short", "expiresAt": soon});
    let short = create_bundle(&d, &bob, bob_id, body).await.unwrap();
    let (s, _) = curl(&d, "/api/endpoints", pair(&with(&short)), &ca, &[]).await.unwrap();
    assert_eq!(s, 200);
    tokio::time::sleep(Duration::from_secs(3)).await;
    match curl(&d, "/api/endpoints", pair(&with(&short)), &ca, &[]).await {
        Err(_) => {} // the handshake already refuses an expired certificate
        Ok((s, body)) => assert_eq!(s, 401, "expired bundle: {body}"),
    }

    let metrics = d.request(Method::GET, "/metrics", Some(&admin)).send().await.unwrap().text().await.unwrap();
    assert!(metric(&metrics, "berth_auth_total{method=\"bundle\"}").unwrap() >= 4.0, "{metrics}");
    assert!(metric(&metrics, "berth_auth_failures_total{reason=\"bundle_revoked\"}") == Some(1.0), "{metrics}");
}

#[tokio::test]
async fn who_may_create_list_and_revoke_bundles() {
    let (_mock, d, admin, _) = with_mock_engine().await;
    let bob_id = create_user(&d, &admin, "bob").await;
    let eve_id = create_user(&d, &admin, "eve").await;
    let bob = d.login("bob", &password("bob")).await;
    let eve = d.login("eve", &password("eve")).await;

    let create = |token: String, user: u64, body: Value| {
        let d = &d;
        async move { create_bundle(d, &token, user, body).await.err().map(|e| e.0) }
    };
    let wrong = json!({"password": "nope", "description": "x"});
    assert_eq!(create(bob.clone(), bob_id, wrong).await, Some(StatusCode::FORBIDDEN));
    let no_desc = json!({"password": password("bob"), "description": " "});
    assert_eq!(create(bob.clone(), bob_id, no_desc).await, Some(StatusCode::BAD_REQUEST));
    let past = json!({"password": password("bob"), "description": "x", "expiresAt": 1});
    assert_eq!(create(bob.clone(), bob_id, past).await, Some(StatusCode::BAD_REQUEST));
    let csr = json!({"password": password("bob"), "description": "x", "csr": "not a csr"});
    assert_eq!(create(bob.clone(), bob_id, csr).await, Some(StatusCode::BAD_REQUEST));
    // Eve cannot make a bundle for bob; the admin can (with the admin's password).
    let eves = json!({"password": password("eve"), "description": "x"});
    assert_eq!(create(eve.clone(), bob_id, eves).await, Some(StatusCode::FORBIDDEN));
    let by_admin = bundle(&d, &admin, bob_id, ADMIN_PASSWORD).await;

    // A bundle from a CSR: the archive has no key.
    let key = rcgen::KeyPair::generate().unwrap();
    let pem = rcgen::CertificateParams::new(vec![]).unwrap().serialize_request(&key).unwrap().pem().unwrap();
    let body = json!({"password": password("bob"), "description": "from a csr", "csr": pem});
    let from_csr = create_bundle(&d, &bob, bob_id, body).await.unwrap();
    assert!(!from_csr.file("key.pem").exists());
    assert!(from_csr.file("cert.pem").exists());

    let (s, v) = d.get_json(&format!("/api/users/{bob_id}/bundles"), Some(&bob)).await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<u64> = v.as_array().unwrap().iter().map(|b| b["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![by_admin.id, from_csr.id]);
    assert!(v[0]["serial"].as_str().unwrap().len() == 32 && v[0]["expiresAt"].as_u64().unwrap() > 0, "{v}");
    let (s, _) = d.get_json(&format!("/api/users/{bob_id}/bundles"), Some(&eve)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = d.delete(&format!("/api/users/{bob_id}/bundles/{}", from_csr.id), Some(&eve)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = d.delete(&format!("/api/users/{eve_id}/bundles/{}", from_csr.id), Some(&eve)).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a bundle is revoked through its own user only");

    // Deleting the user ends their bundles.
    let ca = by_admin.file("ca.pem");
    let (s, _) = curl(&d, "/api/endpoints", pair(&with(&by_admin)), &ca, &[]).await.unwrap();
    assert_eq!(s, 200);
    let (s, _) = d.delete(&format!("/api/users/{bob_id}"), Some(&admin)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = curl(&d, "/api/endpoints", pair(&with(&by_admin)), &ca, &[]).await.unwrap();
    assert_eq!(s, 401);
}

#[tokio::test]
async fn a_demoted_users_bundle_loses_what_the_user_lost() {
    let (_mock, d, admin, _) = with_mock_engine().await;
    let body = json!({"Username": "ops", "Password": password("ops"), "Role": 1});
    let (s, v) = d.post_json("/api/users", Some(&admin), &body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let ops_id = v["Id"].as_u64().unwrap();
    let b = bundle(&d, &admin, ops_id, ADMIN_PASSWORD).await;
    let (ca, cert) = (b.file("ca.pem"), with(&b));
    assert_eq!(curl(&d, "/api/users", pair(&cert), &ca, &[]).await.unwrap().0, 200);
    let (s, v) = d.put_json(&format!("/api/users/{ops_id}"), Some(&admin), &json!({"Role": 2})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(curl(&d, "/api/users", pair(&cert), &ca, &[]).await.unwrap().0, 403);
}

#[tokio::test]
async fn a_scoped_bundle_stays_in_its_scope() {
    let (mock, d, admin, eid) = with_mock_engine().await;
    let other = d.create_endpoint(&admin, "other", &mock.unix_url().unwrap()).await;
    let body = json!({"password": ADMIN_PASSWORD, "description": "ep1 read", "endpointIds": [eid], "access": "read"});
    let b = create_bundle(&d, &admin, 1, body).await.unwrap();
    let (ca, cert) = (b.file("ca.pem"), with(&b));
    // env.sh names only the endpoint in scope.
    assert!(!b.text("env.sh").contains(&format!("/api/endpoints/{other}/docker")));
    let ping = |e: u64| format!("/api/endpoints/{e}/docker/_ping");
    assert_eq!(curl(&d, &ping(eid), pair(&cert), &ca, &[]).await.unwrap().0, 200);
    let (s, body) = curl(&d, &ping(other), pair(&cert), &ca, &[]).await.unwrap();
    assert_eq!(s, 403, "{body}");
    let (s, body) = curl(&d, "/api/endpoints", pair(&cert), &ca, &[]).await.unwrap();
    assert_eq!(s, 200);
    let listed: Vec<u64> = serde_json::from_str::<Value>(&body)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Id"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, vec![eid]);
    // read: no POST through the proxy, even for an admin's bundle.
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-X", "POST", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(&ca)
        .arg("--cert")
        .arg(b.file("cert.pem"))
        .arg("--key")
        .arg(b.file("key.pem"))
        .arg(d.https_url(&format!("/api/endpoints/{eid}/docker/containers/abc/stop")))
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403");
    let (s, v) = d.get_json("/api/users/1/bundles", Some(&admin)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v[0]["access"], "read");
    assert_eq!(v[0]["endpointIds"], json!([eid]));
}

// ------------------------------------------------------------ real engine

/// The Docker CLI with a bundle and no header at all.
fn bundle_cli(d: &Daemon, eid: u64, b: &Unpacked) -> DockerCli {
    let host = format!("tcp://127.0.0.1:{}/api/endpoints/{eid}/docker", d.https_port());
    DockerCli::with_host(host, None)
        .timeout(Duration::from_secs(180))
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", b.path().to_str().unwrap())
}

fn engine_rm(names: &[String]) {
    let mut cmd = std::process::Command::new("docker");
    cmd.args(["rm", "-f"]).args(names).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let _ = cmd.status();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docker_cli_works_with_a_bundle_and_no_headers() {
    if !require_docker() {
        return;
    }
    let image = test_image();
    let (d, admin, eid) = with_local_engine().await;
    let b = bundle(&d, &admin, 1, ADMIN_PASSWORD).await;
    let cli = bundle_cli(&d, eid, &b);
    assert!(!std::fs::read_to_string(cli.config_dir().join("config.json")).unwrap().contains("Header"));
    let tag = format!("berth-bundle-{}", std::process::id());
    let names: Vec<String> = ["exec", "attach", "logs", "cp"].iter().map(|n| format!("{tag}-{n}")).collect();
    struct Gone(Vec<String>, String);
    impl Drop for Gone {
        fn drop(&mut self) {
            engine_rm(&self.0);
            let _ = std::process::Command::new("docker").args(["rmi", "-f", &self.1]).stdin(Stdio::null()).output();
        }
    }
    let _gone = Gone(names.clone(), format!("{tag}-built:1"));

    let out = cli.run(&["ps", "-a"]).await;
    out.assert_success();
    let out = cli.run_with_stdin(&["run", "--rm", "-i", image, "cat"], b"through run -i\n").await;
    out.assert_success();
    assert!(out.stdout.contains("through run -i"), "{out}");

    cli.run(&["run", "-d", "--name", &names[0], image, "sleep", "300"]).await.assert_success();
    let out = cli.run_with_stdin(&["exec", "-i", &names[0], "cat"], b"through exec -i\n").await;
    out.assert_success();
    assert!(out.stdout.contains("through exec -i"), "{out}");

    // attach: the CLI returns at stdin's end without waiting for output (as
    // against the engine directly), so stdin stays open until the
    // container has answered and exited.
    cli.run(&["run", "-d", "-i", "--name", &names[1], image, "sh", "-c", "read l; echo got:$l"]).await.assert_success();
    let mut attach = tokio::process::Command::new("docker")
        .arg("--config")
        .arg(cli.config_dir())
        .args(["-H", cli.host(), "attach", "--sig-proxy=false", &names[1]])
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", b.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = attach.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, b"attached\n").await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), attach.wait_with_output()).await.unwrap().unwrap();
    drop(stdin);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("got:attached"), "{stdout} {}", String::from_utf8_lossy(&out.stderr));

    let script = "echo one; sleep 1; echo two";
    cli.run(&["run", "-d", "--name", &names[2], image, "sh", "-c", script]).await.assert_success();
    let out = cli.run(&["logs", "-f", &names[2]]).await;
    out.assert_success();
    assert!(out.stdout.contains("one") && out.stdout.contains("two"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "copied both ways").unwrap();
    cli.run(&["run", "-d", "--name", &names[3], image, "sleep", "300"]).await.assert_success();
    let src = dir.path().join("in.txt");
    cli.run(&["cp", src.to_str().unwrap(), &format!("{}:/tmp/in.txt", names[3])]).await.assert_success();
    let back = dir.path().join("back.txt");
    cli.run(&["cp", &format!("{}:/tmp/in.txt", names[3]), back.to_str().unwrap()]).await.assert_success();
    assert_eq!(std::fs::read_to_string(back).unwrap(), "copied both ways");

    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), format!("FROM {image}\nRUN echo built > /marker\n")).unwrap();
    let built = format!("{tag}-built:1");
    let out = bundle_cli(&d, eid, &b)
        .env("DOCKER_BUILDKIT", "0")
        .run(&["build", "--rm", "-t", &built, ctx.path().to_str().unwrap()])
        .await;
    out.assert_success();
    assert!(out.stdout.contains("Successfully tagged"), "{out}");

    // docker-py: attach_socket sends no header of the config; the
    // certificate is the credential.
    let script = r#"
import os, socket, sys, time, docker
tls = docker.tls.TLSConfig(client_cert=(os.environ["B"] + "/cert.pem", os.environ["B"] + "/key.pem"),
                           ca_cert=os.environ["B"] + "/ca.pem", verify=True)
api = docker.APIClient(base_url=os.environ["URL"], tls=tls, version="1.41", timeout=60)
c = api.create_container(os.environ["IMAGE"], ["sh", "-c", "read l; echo sdk:$l"], stdin_open=True, name=os.environ["NAME"])
api.start(c)
s = api.attach_socket(c, params={"stdin": 1, "stdout": 1, "stream": 1})
sock = s._sock if hasattr(s, "_sock") else s
sock.sendall(b"hello\n")
data = b""
deadline = time.time() + 30
while b"sdk:hello" not in data and time.time() < deadline:
    chunk = sock.recv(4096)
    if not chunk:
        break
    data += chunk
api.remove_container(c, force=True)
print("OUT", data)
sys.exit(0 if b"sdk:hello" in data else 1)
"#;
    let url = format!("https://127.0.0.1:{}/api/endpoints/{eid}/docker", d.https_port());
    let name = format!("{tag}-sdk");
    let out = tokio::process::Command::new("python3")
        .args(["-c", script])
        .env("B", b.path())
        .env("URL", &url)
        .env("IMAGE", image)
        .env("NAME", &name)
        // requests lets these override docker-py's own `verify` (its issue 3829).
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), out).await.expect("python timed out").unwrap();
    engine_rm(std::slice::from_ref(&name));
    assert!(
        out.status.success(),
        "docker-py attach_socket failed\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standard_users_bundle_is_bound_by_restricted_access() {
    if !require_docker() {
        return;
    }
    let image = test_image();
    let (d, admin, eid) = with_local_engine().await;
    let bob_id = create_user(&d, &admin, "bob").await;
    grant(&d, &admin, eid, &[bob_id]).await;
    let bob = d.login("bob", &password("bob")).await;
    let b = bundle(&d, &bob, bob_id, &password("bob")).await;
    let tag = format!("berth-bundle-rx-{}", std::process::id());
    let (admins, bobs) = (format!("{tag}-admin"), format!("{tag}-bob"));
    let _gone = scopeguard(vec![admins.clone(), bobs.clone()]);
    let admin_cli = DockerCli::new(&d, eid, &admin);
    admin_cli.run(&["run", "-d", "--name", &admins, image, "sleep", "300"]).await.assert_success();

    let cli = bundle_cli(&d, eid, &b);
    cli.run(&["run", "-d", "--name", &bobs, image, "sleep", "300"]).await.assert_success();
    let out = cli.run(&["ps", "-a", "--format", "{{.Names}}"]).await;
    out.assert_success();
    assert!(out.stdout.contains(&bobs) && !out.stdout.contains(&admins), "{out}");
    let out = cli.run(&["rm", "-f", &admins]).await;
    assert!(!out.success(), "bob removed the admin's container: {out}");
    let out = cli.run(&["run", "--rm", "--privileged", image, "true"]).await;
    assert!(!out.success(), "bob ran a privileged container: {out}");
    assert!(out.stderr.to_lowercase().contains("privileged"), "{out}");
}

/// Removes these containers through the engine when dropped.
fn scopeguard(names: Vec<String>) -> impl Drop {
    struct G(Vec<String>);
    impl Drop for G {
        fn drop(&mut self) {
            engine_rm(&self.0);
        }
    }
    G(names)
}
