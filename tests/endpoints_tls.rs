//! Endpoints behind TCP + mutual TLS: registration with uploaded PEM files
//! (the seeds' HTTPie walkthrough against the real engine), files on disk,
//! restarts, replacement uploads and TLS changes through `PUT`.

// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::Ordering;

use berth_testkit::endpoints::*;
use berth_testkit::harness::*;
use berth_testkit::MockDocker;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The TLSConfig the seeds show, with this daemon's absolute data path.
fn expected_tls(data: &Path, id: u64) -> Value {
    let dir = canonical(data).join("tls").join(id.to_string());
    let p = |f: &str| dir.join(f).display().to_string();
    json!({"TLS": true, "TLSSkipVerify": false, "TLSCACert": p("ca.pem"), "TLSCert": p("cert.pem"), "TLSKey": p("key.pem")})
}

fn assert_private_copy(path: &str, content: &str) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{path}");
    assert_eq!(std::fs::read_to_string(path).unwrap(), content, "{path}");
}

async fn tls_files(d: &Daemon, token: &str, name: &str, url: &str, pki: &Pki) -> (StatusCode, Value) {
    create_multipart(
        d,
        token,
        &[("Name", name), ("URL", url), ("EndpointCreationType", "1"), ("TLS", "true")],
        &[
            ("TLSCACertFile", pki.ca_pem.clone().into_bytes()),
            ("TLSCertFile", pki.client_cert_pem.clone().into_bytes()),
            ("TLSKeyFile", pki.client_key_pem.clone().into_bytes()),
        ],
    )
    .await
}

async fn upload(
    d: &Daemon,
    token: &str,
    which: &str,
    folder: Option<&str>,
    file: Option<Vec<u8>>,
) -> (StatusCode, Value) {
    let mut form = reqwest::multipart::Form::new();
    if let Some(f) = folder {
        form = form.text("folder", f.to_owned());
    }
    if let Some(bytes) = file {
        form = form.part("file", reqwest::multipart::Part::bytes(bytes).file_name(format!("{which}.pem")));
    }
    let resp =
        d.request(Method::POST, &format!("/api/upload/tls/{which}"), Some(token)).multipart(form).send().await.unwrap();
    read_json(resp).await
}

#[tokio::test]
async fn seed_tls_endpoint_works_with_httpie() {
    if !require_docker() || !require_httpie() {
        return;
    }
    let pki = Pki::new();
    let (port, handshakes) = tls_relay(DOCKER_SOCKET.into(), &pki).await;
    let d = Daemon::start().await;
    let token = d.admin_token().await;
    let (ca, cert, key) = pki.write_client_files(d.scratch_dir()).unwrap();
    let url = format!("tcp://127.0.0.1:{port}");
    for (name, ty) in [("test-remote-tls", "EndpointCreationType=1"), ("test-remote", "EndpointType=1")] {
        let args = vec![
            "--form".to_owned(),
            "POST".to_owned(),
            format!(":{}/api/endpoints", d.port()),
            format!("Authorization: Bearer {token}"),
            format!("Name={name}"),
            format!("URL={url}"),
            ty.to_owned(),
            "TLS=true".to_owned(),
            format!("TLSCACertFile@{}", ca.display()),
            format!("TLSCertFile@{}", cert.display()),
            format!("TLSKeyFile@{}", key.display()),
        ];
        let (code, v) = httpie(args).await;
        assert_eq!(code, 0, "{v}");
        let id = v["Id"].as_u64().unwrap();
        assert_eq!(v["Name"], name);
        assert_eq!(v["Type"], 1);
        assert_eq!(v["URL"], url.as_str());
        assert_eq!(v["GroupId"], 1);
        assert_eq!(v["Status"], 1);
        assert_eq!(v["AuthorizedUsers"], json!([]));
        assert_eq!(v["TLSConfig"], expected_tls(d.data_dir(), id), "{v}");
        assert_private_copy(v["TLSConfig"]["TLSCACert"].as_str().unwrap(), &pki.ca_pem);
        assert_private_copy(v["TLSConfig"]["TLSCert"].as_str().unwrap(), &pki.client_cert_pem);
        assert_private_copy(v["TLSConfig"]["TLSKey"].as_str().unwrap(), &pki.client_key_pem);
        let dir_mode = std::fs::metadata(d.data_dir().join("tls").join(id.to_string())).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let (s, ver) = d.get_json(&format!("/api/endpoints/{id}/docker/version"), Some(&token)).await;
        assert_eq!(s, StatusCode::OK, "{ver}");
        assert!(ver["ApiVersion"].is_string());
    }
    assert!(handshakes.load(Ordering::Relaxed) >= 2, "mutual TLS handshakes happened");
}

#[tokio::test]
async fn skip_flags_store_only_the_needed_files() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockDocker::start_unix(dir.path().join("docker.sock")).await.unwrap();
    let pki = Pki::new();
    let (port, _) = tls_relay(mock.unix_path().unwrap().to_path_buf(), &pki).await;
    let d = Daemon::start().await;
    let token = d.admin_token().await;
    // The server is not verified, so the CA is ignored even when sent; the
    // relay still checks our client certificate.
    let (s, v) = create_multipart(
        &d,
        &token,
        &[("Name", "skip"), ("URL", &format!("tcp://127.0.0.1:{port}")), ("TLS", "true"), ("TLSSkipVerify", "true")],
        &[
            ("TLSCACertFile", b"ignored, not even PEM".to_vec()),
            ("TLSCertFile", pki.client_cert_pem.clone().into_bytes()),
            ("TLSKeyFile", pki.client_key_pem.clone().into_bytes()),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let tls = &v["TLSConfig"];
    assert_eq!(tls["TLS"], true);
    assert_eq!(tls["TLSSkipVerify"], true);
    assert!(tls.get("TLSCACert").is_none(), "{tls}");
    assert!(tls["TLSKey"].as_str().unwrap().ends_with("/key.pem"));
    let id = v["Id"].as_u64().unwrap();
    assert!(!d.data_dir().join(format!("tls/{id}/ca.pem")).exists());
    let (s, _) = d.get_json(&format!("/api/endpoints/{id}/docker/_ping"), Some(&token)).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn tls_endpoints_survive_restarts_and_missing_files_mark_them_down() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockDocker::start_unix(dir.path().join("docker.sock")).await.unwrap();
    let pki = Pki::new();
    let (port, handshakes) = tls_relay(mock.unix_path().unwrap().to_path_buf(), &pki).await;
    let mut d = Daemon::builder().args(["--health-interval", "1h"]).start().await;
    let token = d.admin_token().await;
    let url = format!("tcp://127.0.0.1:{port}");
    let (s, v) = tls_files(&d, &token, "secure", &url, &pki).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let id = v["Id"].as_u64().unwrap();

    let before = handshakes.load(Ordering::Relaxed);
    d.restart().await;
    let token = d.login(ADMIN_USER, ADMIN_PASSWORD).await;
    let (_, after) = d.get_json(&format!("/api/endpoints/{id}"), Some(&token)).await;
    assert_eq!(after["TLSConfig"], expected_tls(d.data_dir(), id));
    let (s, _) = d.get_json(&format!("/api/endpoints/{id}/docker/_ping"), Some(&token)).await;
    assert_eq!(s, StatusCode::OK, "the TLS pool is rebuilt from the stored files");
    assert!(handshakes.load(Ordering::Relaxed) > before, "new mutual-TLS connections after the restart");

    // A key lost while the daemon was down: it still starts and lists the
    // endpoint, marked down, and says why.
    d.stop_graceful().await;
    std::fs::remove_file(d.data_dir().join(format!("tls/{id}/key.pem"))).unwrap();
    d.restart().await;
    let token = d.login(ADMIN_USER, ADMIN_PASSWORD).await;
    assert_eq!(status_of(&d, &token, id).await, 2);
    assert!(d.logs().contains("key.pem"), "the warning names the missing file");
    let (s, v) = d.get_json(&format!("/api/endpoints/{id}/docker/_ping"), Some(&token)).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "never a plaintext fallback: {v}");

    // Uploading the key again brings it back.
    let (s, v) = upload(&d, &token, "key", Some(&id.to_string()), Some(pki.client_key_pem.clone().into_bytes())).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, _) = d.get_json(&format!("/api/endpoints/{id}/docker/_ping"), Some(&token)).await;
    assert_eq!(s, StatusCode::OK);
    let resp = d.request(Method::POST, &format!("/api/endpoints/{id}/snapshot"), Some(&token)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(status_of(&d, &token, id).await, 1);

    // Deleting removes the files.
    let (s, _) = d.delete(&format!("/api/endpoints/{id}"), Some(&token)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(!d.data_dir().join(format!("tls/{id}")).exists());
}

#[tokio::test]
async fn tls_material_is_replaced_by_upload_and_put() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockDocker::start_unix(dir.path().join("docker.sock")).await.unwrap();
    let sock = mock.unix_path().unwrap().to_path_buf();
    let pki = Pki::new();
    let (tls_port, _) = tls_relay(sock.clone(), &pki).await;
    let (plain_port, plain_conns) = tcp_relay(sock).await;
    let d = Daemon::builder().args(["--health-interval", "1h"]).start().await;
    let token = d.admin_token().await;
    let t = Some(token.as_str());
    let tls_url = format!("tcp://127.0.0.1:{tls_port}");
    let (s, v) = tls_files(&d, &token, "secure", &tls_url, &pki).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let id = v["Id"].as_u64().unwrap();
    let folder = id.to_string();
    let ping = |d: &Daemon, token: String| {
        let url = d.url(&format!("/api/endpoints/{id}/docker/_ping"));
        let c = d.http().clone();
        async move { c.get(url).bearer_auth(token).send().await.unwrap().status() }
    };

    // Refused uploads.
    let cert = pki.client_cert_pem.clone().into_bytes();
    /// (route value, folder, file, expected status, message substring)
    type Case<'a> = (&'a str, Option<&'a str>, Option<Vec<u8>>, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        ("crt", Some(&folder), Some(cert.clone()), StatusCode::BAD_REQUEST, "Invalid certificate route value"),
        ("cert", None, Some(cert.clone()), StatusCode::BAD_REQUEST, "Invalid folder"),
        ("cert", Some("../../etc"), Some(cert.clone()), StatusCode::BAD_REQUEST, "Invalid folder"),
        ("cert", Some(&folder), None, StatusCode::BAD_REQUEST, "Invalid certificate file"),
        ("cert", Some(&folder), Some(b"garbage".to_vec()), StatusCode::BAD_REQUEST, "Invalid certificate file"),
        ("key", Some(&folder), Some(cert.clone()), StatusCode::BAD_REQUEST, "Invalid certificate file"),
        ("cert", Some("999"), Some(cert.clone()), StatusCode::NOT_FOUND, "environment"),
    ];
    for (which, f, file, status, msg) in cases {
        let (s, v) = upload(&d, &token, which, f, file).await;
        assert_eq!(s, status, "{which} {f:?}: {v}");
        assert!(v["message"].as_str().unwrap().contains(msg), "{which} {f:?}: {v}");
    }
    assert_eq!(
        std::fs::read_to_string(d.data_dir().join(format!("tls/{id}/cert.pem"))).unwrap(),
        pki.client_cert_pem,
        "refused uploads changed nothing"
    );

    // Rotating the client pair: after the certificate alone the set does
    // not match, and the working connection is kept; after the key, the
    // new pair is in use.
    let (new_cert, new_key) = pki.new_client();
    let (s, v) = upload(&d, &token, "cert", Some(&folder), Some(new_cert.clone().into_bytes())).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    assert_eq!(ping(&d, token.clone()).await, StatusCode::OK);
    let (s, _) = upload(&d, &token, "key", Some(&folder), Some(new_key.clone().into_bytes())).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(ping(&d, token.clone()).await, StatusCode::OK);
    let key_path = d.data_dir().join(format!("tls/{id}/key.pem"));
    assert_eq!(std::fs::read_to_string(&key_path).unwrap(), new_key);
    assert_eq!(std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777, 0o600);

    // TLS off: files deleted, URL moved to the plain relay, pool rebuilt.
    let plain_url = format!("tcp://127.0.0.1:{plain_port}");
    let (s, v) = d.put_json(&format!("/api/endpoints/{id}"), t, &json!({"TLS": false, "URL": plain_url})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["TLSConfig"], json!({"TLS": false, "TLSSkipVerify": false}));
    assert_eq!(v["URL"], plain_url.as_str());
    assert!(!d.data_dir().join(format!("tls/{id}")).exists(), "TLS:false deletes tls/<id>/");
    let before = plain_conns.load(Ordering::Relaxed);
    assert_eq!(ping(&d, token.clone()).await, StatusCode::OK);
    assert!(plain_conns.load(Ordering::Relaxed) > before, "the new URL is used");

    // TLS back on without files: refused, nothing changes.
    let (s, v) = d.put_json(&format!("/api/endpoints/{id}"), t, &json!({"TLS": true, "URL": tls_url})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["details"].as_str().unwrap().contains("cannot be read"), "{v}");
    let (_, v) = d.get_json(&format!("/api/endpoints/{id}"), t).await;
    assert_eq!(v["URL"], plain_url.as_str());

    // Upload the three files, then switch.
    for (which, pem) in [("ca", &pki.ca_pem), ("cert", &pki.client_cert_pem), ("key", &pki.client_key_pem)] {
        let (s, v) = upload(&d, &token, which, Some(&folder), Some(pem.clone().into_bytes())).await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{which}: {v}");
    }
    let (s, v) = d
        .put_json(
            &format!("/api/endpoints/{id}"),
            t,
            &json!({"TLS": true, "TLSSkipVerify": false, "TLSSkipClientVerify": false, "URL": tls_url}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["TLSConfig"], expected_tls(d.data_dir(), id));
    assert_eq!(ping(&d, token.clone()).await, StatusCode::OK);
}
