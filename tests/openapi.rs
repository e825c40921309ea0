//! `GET /api/openapi.json` against the real binary: served without
//! credentials, valid OpenAPI 3.1 by a validator from PyPI
//! (`openapi-spec-validator`, run as a child process), and in agreement
//! with what the routes answer. The schemathesis run of `.ci/run`
//! (scripts/ci/schemathesis.sh) then fuzzes every operation against it.

// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use berth_testkit::harness::*;
use reqwest::{header, Method, StatusCode};
use serde_json::Value;

/// The validator, strict about the version: the 3.1 validator, not
/// whichever the document's `openapi` field would pick.
const VALIDATE: &str = r#"
import json, sys
from openapi_spec_validator import OpenAPIV31SpecValidator
with open(sys.argv[1]) as f:
    doc = json.load(f)
OpenAPIV31SpecValidator(doc).validate()
print("valid OpenAPI", doc["openapi"], "with", len(doc["paths"]), "paths")
"#;

/// Whether `python3` can import the validator. Missing, the test is
/// skipped on a developer's machine and fails in CI (`CI` set), where
/// `.ci/run` installs it.
fn validator_available(test: &str) -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return true;
    }
    let why = "python3 cannot import openapi_spec_validator (pip install openapi-spec-validator)";
    assert!(std::env::var_os("CI").is_none(), "{test}: {why}, and CI is set");
    eprintln!("SKIP {test}: {why}");
    false
}

async fn fetch(d: &Daemon) -> (Vec<u8>, Value) {
    let resp = d.request(Method::GET, "/api/openapi.json", None).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
    let bytes = resp.bytes().await.unwrap().to_vec();
    let v = serde_json::from_slice(&bytes).unwrap();
    (bytes, v)
}

#[tokio::test]
async fn the_document_is_public_and_valid_openapi_3_1() {
    let d = Daemon::builder().args(["--bcrypt-cost", "4"]).start().await;
    // Before any administrator exists, without credentials.
    let (bytes, doc) = fetch(&d).await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/auth"]["post"].is_object());
    // Built once: the same bytes again.
    assert_eq!(fetch(&d).await.0, bytes);
    let head = d.request(Method::HEAD, "/api/openapi.json", None).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    let (s, v) = d.post_json("/api/openapi.json", None, &serde_json::json!({})).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{v}");

    if !validator_available("the_document_is_public_and_valid_openapi_3_1") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &bytes).unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("python3").arg("-c").arg(VALIDATE).arg(&file).stdin(Stdio::null()).output(),
    )
    .await
    .expect("the validator finishes within two minutes")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", stdout.trim());
}

/// The property names of a schema, following `$ref` and `allOf`.
fn properties(doc: &Value, schema: &Value) -> BTreeSet<String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        return properties(doc, &doc["components"]["schemas"][name]);
    }
    let mut out: BTreeSet<String> =
        schema["properties"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        out.extend(properties(doc, part));
    }
    out
}

fn response_schema<'a>(doc: &'a Value, path: &str, method: &str, status: &str) -> &'a Value {
    let s = &doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"];
    assert!(s.is_object(), "no JSON schema for {method} {path} {status}");
    s
}

/// A live answer has exactly the fields its schema names: the document is
/// made from the types the handlers encode, and this shows it.
#[tokio::test]
async fn live_answers_have_the_documented_fields() {
    let d = Daemon::builder().args(["--bcrypt-cost", "4"]).start().await;
    let (_, doc) = fetch(&d).await;
    let token = d.admin_token().await;
    for (path, documented) in [
        ("/api/status", "/api/status"),
        ("/api/settings/public", "/api/settings/public"),
        ("/api/settings", "/api/settings"),
        ("/api/users/me", "/api/users/me"),
        ("/api/users/1", "/api/users/{id}"),
        ("/api/system/version", "/api/system/version"),
    ] {
        let (s, live) = d.get_json(path, Some(&token)).await;
        assert_eq!(s, StatusCode::OK, "{path}: {live}");
        let keys: BTreeSet<String> = live.as_object().unwrap().keys().cloned().collect();
        let schema = response_schema(&doc, documented, "get", "200");
        assert_eq!(keys, properties(&doc, schema), "GET {path}");
    }
    let (s, e) = d.get_json("/api/users/99", Some(&token)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let keys: BTreeSet<String> = e.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, properties(&doc, response_schema(&doc, "/api/users/{id}", "get", "404")));
}
