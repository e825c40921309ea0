//! Issue 20 (logins under load), against the real daemon: a burst of
//! logins beyond what the password hashing pool can check within its wait
//! budget is answered at once with 503 and `Retry-After`, never left to
//! hang; the logins admitted still succeed.

// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use berth_testkit::harness::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Logins in the burst: far more than a pool of one or two threads can
/// hash within a second at cost 12 (a quarter of a second a hash on a
/// 2020s server core in a release build; more in the tests' debug build).
const BURST: usize = 24;

#[tokio::test]
async fn a_login_burst_beyond_the_pool_gets_503_with_retry_after_at_once() {
    let d = Daemon::builder().args(["--bcrypt-cost", "12", "--trusted-proxies", "127.0.0.1"]).start().await;
    let admin = d.admin_token().await;
    // Each login from its own address, and the limiter opened wide: only
    // the hashing pool's admission is left to refuse them.
    let body = json!({"LoginRateLimit": {"Burst": 1000, "PerSecond": 1000.0}});
    let (st, v) = d.put_json("/api/settings", Some(&admin), &body).await;
    assert_eq!(st, StatusCode::OK, "{v}");

    let logins = (0..BURST).map(|i| {
        let d = &d;
        async move {
            let body = json!({"Username": ADMIN_USER, "Password": ADMIN_PASSWORD});
            let r = d
                .http()
                .post(d.url("/api/auth"))
                .header("X-Forwarded-For", format!("192.0.2.{}", i + 1))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status();
            let retry_after = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            let body: Value = r.json().await.unwrap();
            (status, retry_after, body)
        }
    });
    // A liveness guard, not a speed target: every login must be answered.
    let answers = tokio::time::timeout(Duration::from_secs(120), futures_util::future::join_all(logins))
        .await
        .expect("every login of the burst is answered");

    let ok = answers.iter().filter(|(s, ..)| *s == StatusCode::OK).count();
    let busy: Vec<_> = answers.iter().filter(|(s, ..)| *s == StatusCode::SERVICE_UNAVAILABLE).collect();
    assert_eq!(ok + busy.len(), BURST, "only 200 or 503: {answers:?}");
    assert!(ok >= 1, "a free pool always takes a login");
    assert!(!busy.is_empty(), "the burst overflows the pool: {answers:?}");
    for (_, retry_after, body) in &busy {
        let secs: u64 = retry_after.as_deref().expect("Retry-After on 503").parse().unwrap();
        assert!(secs >= 1);
        assert_eq!(body["message"], "Too many password checks in progress");
        assert!(body["details"].as_str().unwrap().contains("retry in"), "{body}");
    }
    for (_, _, body) in answers.iter().filter(|(s, ..)| *s == StatusCode::OK) {
        assert!(body["jwt"].is_string(), "{body}");
    }

    let metrics = d.request(reqwest::Method::GET, "/metrics", Some(&admin)).send().await.unwrap().text().await.unwrap();
    let line = format!("berth_auth_failures_total{{reason=\"busy\"}} {}", busy.len());
    assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
}
