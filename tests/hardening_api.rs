//! Issue 19 (items 8 and 9), the management API's part, against the real
//! daemon: ambiguous or malformed input is a 400 that names the problem
//! (repeated JSON keys, repeated form fields, non-canonical ids, malformed
//! `Authorization`, PEM files with trailing data, `unix://` paths that are
//! not sockets), and what standard users may learn or try is bounded
//! (endpoint URLs and TLS paths, other teams' memberships, tags of
//! endpoints they were not granted, password guesses through
//! `PUT /api/users/{id}`, API keys surviving a password reset, the login
//! limiter per IPv6 /64).

mod common;
mod endpoints_support;

use berth::testkit::{MockDocker, Pki};
use common::*;
use endpoints_support::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A daemon with cheap bcrypt, its admin's token and a mock engine
/// registered as endpoint `local`.
struct Setup {
    d: Daemon,
    admin: String,
    endpoint: u64,
    mock: MockDocker,
    dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockDocker::start_unix(dir.path().join("docker.sock")).await.expect("mock engine");
    let d = Daemon::builder().args(["--bcrypt-cost", "4"]).start().await;
    let admin = d.admin_token().await;
    let endpoint = d.create_endpoint(&admin, "local", &mock.unix_url().unwrap()).await;
    Setup { d, admin, endpoint, mock, dir }
}

/// Sends `body` verbatim as JSON.
async fn raw_json(d: &Daemon, method: Method, path: &str, token: Option<&str>, body: &str) -> (StatusCode, Value) {
    let r = d
        .request(method, path, token)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    read_json(r).await
}

async fn with_authorization(d: &Daemon, path: &str, value: &str) -> (StatusCode, Value) {
    let r = d.http().get(d.url(path)).header("Authorization", value).send().await.unwrap();
    read_json(r).await
}

// ------------------------------------------------------------------ item 9

#[tokio::test]
async fn a_json_body_with_a_repeated_key_is_400_on_every_management_route() {
    let s = setup().await;
    let (d, t, e) = (&s.d, Some(s.admin.as_str()), s.endpoint);
    let (st, v) = d.post_json("/api/teams", t, &json!({"Name": "t1"})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let cases: Vec<(Method, String, &str)> = vec![
        (Method::POST, "/api/auth".into(), r#"{"Username":"admin","Username":"nobody","Password":"x"}"#),
        (Method::POST, "/api/users/admin/init".into(), r#"{"Username":"a","username":"b","Password":"p"}"#),
        (Method::POST, "/api/users".into(), r#"{"Username":"u1","Password":"longenough123","Role":2,"role":1}"#),
        (Method::PUT, "/api/users/1".into(), r#"{"UseCache":true,"usecache":false}"#),
        (Method::PUT, "/api/users/1".into(), r#"{"Theme":{"color":"dark","color":"light"}}"#),
        (Method::PUT, "/api/users/1/passwd".into(), r#"{"Password":"a","Password":"b","NewPassword":"c"}"#),
        (Method::POST, "/api/teams".into(), r#"{"Name":"t2","NAME":"t3"}"#),
        (Method::POST, "/api/team_memberships".into(), r#"{"UserID":1,"TeamID":1,"Role":2,"Role":1}"#),
        (Method::POST, "/api/tags".into(), r#"{"Name":"a","Name":"b"}"#),
        (Method::POST, "/api/endpoint_groups".into(), r#"{"Name":"g","Description":"x","description":"y"}"#),
        (Method::PUT, format!("/api/endpoints/{e}"), r#"{"Name":"n1","Name":"n2"}"#),
        (Method::PUT, format!("/api/endpoints/{e}"), r#"{"UserAccessPolicies":{"2":{"RoleId":1},"2":{}}}"#),
        (
            Method::PUT,
            format!("/api/endpoints/{e}/settings"),
            r#"{"allowPrivilegedModeForRegularUsers":true,"AllowPrivilegedModeForRegularUsers":false}"#,
        ),
        (Method::DELETE, "/api/endpoints".into(), r#"{"endpoints":[{"id":1,"id":2}]}"#),
        (Method::PUT, "/api/settings".into(), r#"{"SnapshotInterval":"5m","snapshotInterval":"1m"}"#),
        (Method::POST, "/api/registries".into(), r#"{"Name":"r","Type":3,"URL":"a:1","URL":"b:1"}"#),
        (
            Method::POST,
            format!("/api/stacks/create/standalone/string?endpointId={e}"),
            r#"{"Name":"s","StackFileContent":"services: {}","stackFileContent":"x"}"#,
        ),
    ];
    for (method, path, body) in cases {
        let (st, v) = raw_json(d, method.clone(), &path, t, body).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{method} {path} {body}: {v}");
        assert_eq!(v["message"], "Invalid request payload", "{method} {path}: {v}");
        assert!(v["details"].as_str().unwrap().contains("appears twice"), "{method} {path}: {v}");
    }
    // Nothing was changed by any of them.
    let (_, tags) = d.get_json("/api/tags", t).await;
    assert_eq!(tags, json!([]));
    let (_, ep) = d.get_json(&format!("/api/endpoints/{e}"), t).await;
    assert_eq!(ep["Name"], "local");
    let (_, users) = d.get_json("/api/users", t).await;
    assert_eq!(users.as_array().unwrap().len(), 1);
    // The same bodies without the repetition work.
    let (st, v) = raw_json(d, Method::POST, "/api/tags", t, r#"{"Name":"a"}"#).await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn a_non_canonical_environment_id_is_400_on_the_api_and_the_proxy() {
    let s = setup().await;
    let (d, t) = (&s.d, Some(s.admin.as_str()));
    assert_eq!(s.endpoint, 1);
    for raw in ["01", "+1", "%201", "1%20", "1.0", "0x1", "18446744073709551616"] {
        let (st, v) = d.get_json(&format!("/api/endpoints/{raw}"), t).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{raw}: {v}");
        assert_eq!(v["message"], "Invalid environment identifier route variable", "{raw}: {v}");
        let (st, v) = d.get_json(&format!("/api/endpoints/{raw}/docker/_ping"), t).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "proxy {raw}: {v}");
        assert_eq!(v["message"], "Invalid environment identifier route variable", "proxy {raw}: {v}");
    }
    assert_eq!(d.get_json("/api/endpoints/1", t).await.0, StatusCode::OK);
    let r = d.request(Method::GET, "/api/endpoints/1/docker/_ping", t).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn malformed_authorization_headers_are_400_with_a_reason() {
    let s = setup().await;
    let d = &s.d;
    let bearer = format!("Bearer {}", s.admin);
    assert_eq!(with_authorization(d, "/api/users/me", &bearer).await.0, StatusCode::OK);
    let two_spaces = format!("Bearer  {}", s.admin);
    let trailing_junk = format!("Bearer {} x", s.admin);
    for value in [two_spaces.as_str(), trailing_junk.as_str(), "Bearer", "Basic YWRtaW46eA==", "Token abc"] {
        for path in ["/api/users/me", "/api/endpoints/1/docker/_ping"] {
            let (st, v) = with_authorization(d, path, value).await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{path} {value:?}: {v}");
            assert_eq!(v["message"], "Invalid Authorization header", "{v}");
            assert!(v["details"].as_str().unwrap().contains("Bearer <token>"), "{v}");
        }
    }
}

#[tokio::test]
async fn a_form_field_given_twice_is_400() {
    let s = setup().await;
    let (d, t) = (&s.d, s.admin.as_str());
    let url = s.mock.unix_url().unwrap();
    let (st, v) = create_urlencoded(d, t, &[("Name", "a"), ("Name", "b"), ("URL", &url)]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["details"].as_str().unwrap().contains("\"Name\" has more than one value"), "{v}");
    let (st, v) = create_multipart(d, t, &[("Name", "a"), ("URL", &url), ("URL", &url)], &[]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["details"].as_str().unwrap().contains("\"URL\" has more than one value"), "{v}");
    let resp = d
        .request(Method::POST, "/api/endpoints?Name=from-query", Some(t))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("Name=from-body&URL={}", url.replace('/', "%2F")))
        .send()
        .await
        .unwrap();
    let (st, v) = read_json(resp).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (_, list) = d.get_json("/api/endpoints", Some(t)).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "nothing was registered: {list}");
}

#[tokio::test]
async fn pem_files_with_trailing_data_are_400() {
    let s = setup().await;
    let (d, t) = (&s.d, s.admin.as_str());
    let pki = Pki::new();
    let ca_glued = format!("{}#!/bin/sh\nid\n", pki.ca_pem);
    let fields = [("Name", "tls"), ("URL", "tcp://127.0.0.1:1"), ("TLS", "true")];
    let files = vec![
        ("TLSCACertFile", ca_glued.clone().into_bytes()),
        ("TLSCertFile", pki.client_cert_pem.clone().into_bytes()),
        ("TLSKeyFile", pki.client_key_pem.clone().into_bytes()),
    ];
    let (st, v) = create_multipart(d, t, &fields, &files).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["message"], "Invalid TLS files");
    assert!(v["details"].as_str().unwrap().contains("follow its last END line"), "{v}");

    let upload = |which: &'static str, bytes: Vec<u8>| async move {
        let form = reqwest::multipart::Form::new()
            .text("folder", "1")
            .part("file", reqwest::multipart::Part::bytes(bytes).file_name(format!("{which}.pem")));
        let r = d.request(Method::POST, &format!("/api/upload/tls/{which}"), Some(t)).multipart(form).send().await;
        read_json(r.unwrap()).await
    };
    let (st, v) = upload("ca", ca_glued.into_bytes()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["details"].as_str().unwrap().contains("follow its last END line"), "{v}");
    let (st, v) = upload("key", format!("{}x", pki.client_key_pem).into_bytes()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(!d.data_dir().join("tls/1/ca.pem").exists() && !d.data_dir().join("tls/1/key.pem").exists());
    // Trailing whitespace is fine.
    let (st, v) = upload("ca", format!("{}\n\n", pki.ca_pem).into_bytes()).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
}

#[tokio::test]
async fn a_unix_url_that_is_not_a_socket_is_400_on_update() {
    let s = setup().await;
    let (d, t) = (&s.d, Some(s.admin.as_str()));
    let file = s.dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let path = format!("/api/endpoints/{}", s.endpoint);
    for (url, why) in [
        (format!("unix://{}", file.display()), "a regular file, not a unix socket"),
        (format!("unix://{}", s.dir.path().display()), "a directory, not a unix socket"),
        (format!("unix://{}", s.dir.path().join("gone.sock").display()), "does not exist"),
    ] {
        let (st, v) = d.put_json(&path, t, &json!({"URL": url})).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{url}: {v}");
        assert_eq!(v["message"], "Invalid environment URL");
        assert!(v["details"].as_str().unwrap().contains(why), "{url}: {v}");
    }
    let (_, v) = d.get_json(&path, t).await;
    assert_eq!(v["URL"], s.mock.unix_url().unwrap(), "the URL is unchanged");
}
