//! Several Berth replicas on one PostgreSQL: a throwaway cluster
//! (Debian's `postgresql`, started and stopped by the test) and three
//! `berth` processes on it, driven over HTTP as a load balancer would.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_testkit::endpoints::bounded;
use berth_testkit::harness::{require_docker, test_image, Daemon, ADMIN_PASSWORD, ADMIN_USER, DOCKER_SOCKET};
use berth_testkit::postgres::{require_postgres, PgCluster};
use berth_testkit::stacks::{compose_file, create_string, remove_project};
use berth_testkit::MockDocker;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// "Every replica sees every change within 1 second" (the issue's bound).
const PROPAGATION: Duration = Duration::from_secs(1);

struct Replicas {
    pg: PgCluster,
    ds: Vec<Daemon>,
}

async fn start(n: usize, extra: &[&str]) -> Replicas {
    let pg = PgCluster::start();
    let url = pg.database("berth");
    // Started together: migrations, secrets and the first endpoint group
    // are raced for.
    let starts = (0..n).map(|i| {
        Daemon::builder()
            .args(["--store", &url, "--replica-name", &format!("r{i}"), "--health-interval", "1s"])
            .args(extra)
            .start()
    });
    let ds = futures_util::future::join_all(starts).await;
    Replicas { pg, ds }
}

/// Polls `f` until it returns true; the time it took, or a failure after `limit`.
async fn within<F, Fut>(limit: Duration, what: &str, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if f().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn status_of(d: &Daemon, method: Method, path: &str, headers: &[(&str, &str)]) -> StatusCode {
    let mut rb = d.http().request(method, d.url(path));
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.send().await.map(|r| r.status()).unwrap_or(StatusCode::BAD_GATEWAY)
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_keys_endpoints_and_revocations_reach_every_replica() {
    if !require_postgres() {
        return;
    }
    bounded(Duration::from_secs(120), async {
        let r = start(3, &[]).await;
        let (a, b, c) = (&r.ds[0], &r.ds[1], &r.ds[2]);
        let mut instances = Vec::new();
        for (i, d) in r.ds.iter().enumerate() {
            let (s, v) = d.get_json("/api/status", None).await;
            assert_eq!(s, StatusCode::OK);
            assert_eq!(v["Store"]["Backend"], "postgres", "{v}");
            assert_eq!(v["Store"]["Replica"], format!("r{i}"), "{v}");
            instances.push(v["InstanceID"].clone());
        }
        instances.dedup();
        assert_eq!(instances.len(), 1, "one instance id across replicas started together: {instances:?}");
        let token = a.admin_token().await;
        let auth = bearer(&token);
        // A token issued by A works on B and C at once: one signing secret.
        for d in [b, c] {
            assert_eq!(status_of(d, Method::GET, "/api/users/me", &[("Authorization", &auth)]).await, StatusCode::OK);
        }
        // An API key created on B works on A.
        let (s, v) = b
            .post_json("/api/users/1/tokens", Some(&token), &json!({"description": "ci", "password": ADMIN_PASSWORD}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let key = v["rawAPIKey"].as_str().unwrap().to_owned();
        within(PROPAGATION, "B's API key on A", || async {
            status_of(a, Method::GET, "/api/endpoints", &[("X-API-Key", &key)]).await == StatusCode::OK
        })
        .await;

        // An endpoint registered on A is proxied by C.
        let mock = MockDocker::start_unix(a.scratch_dir().join("docker.sock")).await.unwrap();
        let eid = a.create_endpoint(&token, "mock", &mock.unix_url().unwrap()).await;
        let ping = format!("/api/endpoints/{eid}/docker/_ping");
        let took = within(PROPAGATION, "A's endpoint proxied by C", || async {
            status_of(c, Method::GET, &ping, &[("Authorization", &auth)]).await == StatusCode::OK
        })
        .await;
        eprintln!("endpoint visible on C after {took:?}");
        // A TLS endpoint too: its files travel through the store.
        let pki = berth_testkit::Pki::new();
        let (port, _) = berth_testkit::endpoints::tls_relay(a.scratch_dir().join("docker.sock"), &pki).await;
        let tid = berth_testkit::endpoints::create_tls_endpoint(a, &token, "mock-tls", port, &pki).await;
        let tls_ping = format!("/api/endpoints/{tid}/docker/_ping");
        within(PROPAGATION, "A's TLS endpoint proxied by C", || async {
            status_of(c, Method::GET, &tls_ping, &[("Authorization", &auth)]).await == StatusCode::OK
        })
        .await;

        // A standard user, logged in on C; deleted on B: refused by A and C.
        let (s, v) = a
            .post_json("/api/users", Some(&token), &json!({"Username": "bob", "Password": "bobpassword1", "Role": 2}))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let bob_id = v["Id"].as_u64().unwrap();
        within(PROPAGATION, "bob on C", || async {
            c.get_json(&format!("/api/users/{bob_id}"), Some(&token)).await.0 == StatusCode::OK
        })
        .await;
        let bob_token = c.login("bob", "bobpassword1").await;
        let bob_auth = bearer(&bob_token);
        assert_eq!(status_of(a, Method::GET, "/api/users/me", &[("Authorization", &bob_auth)]).await, StatusCode::OK);
        // Logout on B of a session minted on C.
        let admin2 = c.login(ADMIN_USER, ADMIN_PASSWORD).await;
        let admin2_auth = bearer(&admin2);
        assert_eq!(
            status_of(b, Method::POST, "/api/auth/logout", &[("Authorization", &admin2_auth)]).await,
            StatusCode::NO_CONTENT
        );
        for d in [a, c] {
            within(PROPAGATION, "logout on B refused elsewhere", || async {
                status_of(d, Method::GET, "/api/users/me", &[("Authorization", &admin2_auth)]).await
                    == StatusCode::UNAUTHORIZED
            })
            .await;
        }
        // User deletion on B.
        assert_eq!(b.delete(&format!("/api/users/{bob_id}"), Some(&token)).await.0, StatusCode::NO_CONTENT);
        for d in [a, c] {
            within(PROPAGATION, "deleted user refused elsewhere", || async {
                status_of(d, Method::GET, "/api/users/me", &[("Authorization", &bob_auth)]).await
                    == StatusCode::UNAUTHORIZED
            })
            .await;
        }
        // Settings changed on C reach A.
        let (s, v) = c.put_json("/api/settings", Some(&token), &json!({"AuditLogRetentionDays": 7})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        within(PROPAGATION, "settings on A", || async {
            a.get_json("/api/settings", Some(&token)).await.1["AuditLogRetentionDays"] == 7
        })
        .await;
        // The feed's lag is measured.
        let (_, m) = a.get_json("/metrics", Some(&token)).await;
        let text = m.as_str().unwrap_or_default().to_owned();
        assert!(text.contains("berth_store_feed_lag_seconds_count"), "{text}");
        assert!(text.contains("berth_store_feed_up 1"), "{text}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_admin_inits_give_exactly_one_admin() {
    if !require_postgres() {
        return;
    }
    bounded(Duration::from_secs(120), async {
        let r = start(3, &[]).await;
        let inits = (0..20).map(|i| {
            let d = &r.ds[i % 3];
            async move {
                d.post_json(
                    "/api/users/admin/init",
                    None,
                    &json!({"Username": format!("admin{i}"), "Password": "adminpassword"}),
                )
                .await
                .0
            }
        });
        let statuses = futures_util::future::join_all(inits).await;
        let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
        assert_eq!(ok, 1, "{statuses:?}");
        assert!(statuses.iter().all(|s| *s == StatusCode::OK || *s == StatusCode::CONFLICT), "{statuses:?}");
        let n = r.pg.psql("berth", "SELECT count(*) FROM berth_records WHERE tbl = 'users'").unwrap();
        assert_eq!(n, "1");
        // One endpoint name, registered on two replicas at once: one wins.
        let admin = statuses.iter().position(|s| *s == StatusCode::OK).unwrap();
        let token = r.ds[admin % 3].login(&format!("admin{admin}"), "adminpassword").await;
        let mock = MockDocker::start_unix(r.ds[0].scratch_dir().join("docker.sock")).await.unwrap();
        let url = mock.unix_url().unwrap();
        let create = |d: &Daemon| {
            let form = reqwest::multipart::Form::new()
                .text("Name", "same")
                .text("EndpointCreationType", "1")
                .text("URL", url.clone());
            d.request(Method::POST, "/api/endpoints", Some(&token)).multipart(form).send()
        };
        let (x, y) = tokio::join!(create(&r.ds[1]), create(&r.ds[2]));
        let mut got = [x.unwrap().status(), y.unwrap().status()];
        got.sort();
        assert_eq!(got, [StatusCode::OK, StatusCode::CONFLICT]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_stack_name_deploys_once_across_replicas() {
    if !require_postgres() || !require_docker() {
        return;
    }
    let image = test_image();
    bounded(Duration::from_secs(180), async {
        let r = start(2, &[]).await;
        let token = r.ds[0].admin_token().await;
        let eid = r.ds[0].create_endpoint(&token, "local", &format!("unix://{DOCKER_SOCKET}")).await;
        within(PROPAGATION, "endpoint on B", || async {
            r.ds[1].get_json(&format!("/api/endpoints/{eid}"), Some(&token)).await.0 == StatusCode::OK
        })
        .await;
        let name = format!("repl{}", std::process::id());
        let body = json!({"Name": name, "StackFileContent": compose_file(image, "")});
        let (x, y) = tokio::join!(
            create_string(&r.ds[0], &token, "standalone", eid, &body),
            create_string(&r.ds[1], &token, "standalone", eid, &body)
        );
        let mut got = [x.0, y.0];
        got.sort();
        assert_eq!(got, [StatusCode::OK, StatusCode::CONFLICT], "{x:?} {y:?}");
        let n = r.pg.psql("berth", "SELECT count(*) FROM berth_records WHERE tbl = 'stacks'").unwrap();
        assert_eq!(n, "1");
        // The replica that did not deploy it shows its file, stops it and
        // removes it: the project folder came through the store.
        let (winner, other) = if x.0 == StatusCode::OK { (&x.1, &r.ds[1]) } else { (&y.1, &r.ds[0]) };
        let id = winner["Id"].as_u64().unwrap();
        let file = format!("/api/stacks/{id}/file");
        within(Duration::from_secs(2), "the stack file on the other replica", || async {
            other.get_json(&file, Some(&token)).await.1["StackFileContent"] == compose_file(image, "")
        })
        .await;
        let (s, v) =
            other.post_json(&format!("/api/stacks/{id}/stop?endpointId={eid}"), Some(&token), &json!({})).await;
        assert_eq!(s, StatusCode::OK, "stop on the other replica: {v}");
        let (s, v) = other.delete(&format!("/api/stacks/{id}?endpointId={eid}"), Some(&token)).await;
        assert_eq!(s, StatusCode::NO_CONTENT, "delete on the other replica: {v}");
        let n =
            r.pg.psql("berth", "SELECT count(*) FROM berth_records WHERE tbl IN ('stacks', 'stack_files')").unwrap();
        assert_eq!(n, "0");
        remove_project(&name).await;
    })
    .await;
}

/// Sends proxied GETs to every replica in turn until `stop`; counts
/// answers that were not 200 per replica.
fn load(
    ds: Vec<(String, reqwest::Client)>,
    path: String,
    auth: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<(u64, u64)>> {
    tokio::spawn(async move {
        let counts: Vec<(AtomicU64, AtomicU64)> = ds.iter().map(|_| (AtomicU64::new(0), AtomicU64::new(0))).collect();
        while !stop.load(Ordering::Relaxed) {
            for (i, (base, client)) in ds.iter().enumerate() {
                let ok = client
                    .get(format!("{base}{path}"))
                    .header("Authorization", &auth)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == StatusCode::OK);
                let (good, bad) = &counts[i];
                if ok { good } else { bad }.fetch_add(1, Ordering::Relaxed);
            }
        }
        counts.iter().map(|(g, b)| (g.load(Ordering::Relaxed), b.load(Ordering::Relaxed))).collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_down_for_10s_stops_writes_only() {
    if !require_postgres() {
        return;
    }
    bounded(Duration::from_secs(150), async {
        let r = start(3, &[]).await;
        let token = r.ds[0].admin_token().await;
        let auth = bearer(&token);
        let mock = MockDocker::start_unix(r.ds[0].scratch_dir().join("docker.sock")).await.unwrap();
        let eid = r.ds[0].create_endpoint(&token, "mock", &mock.unix_url().unwrap()).await;
        let path = format!("/api/endpoints/{eid}/docker/containers/json");
        for d in &r.ds {
            within(PROPAGATION, "endpoint everywhere", || async {
                status_of(d, Method::GET, &path, &[("Authorization", &auth)]).await == StatusCode::OK
            })
            .await;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let targets = r.ds.iter().map(|d| (d.url(""), d.http().clone())).collect();
        let running = load(targets, path.clone(), auth.clone(), stop.clone());
        tokio::time::sleep(Duration::from_secs(1)).await;
        r.pg.stop();
        let down = Instant::now();
        let mut refused = 0;
        while down.elapsed() < Duration::from_secs(10) {
            for d in &r.ds {
                let (s, v) = d.post_json("/api/tags", Some(&token), &json!({"Name": format!("t{refused}")})).await;
                assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "a write while the database is down: {v}");
                assert_eq!(v["message"], "The store is unavailable", "{v}");
                refused += 1;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        r.pg.run();
        // The first write after the restart may meet a pooled connection
        // that died with the server: it is retried until the pool has
        // reconnected.
        let (s, tag) = loop {
            let (s, v) = r.ds[1].post_json("/api/tags", Some(&token), &json!({"Name": "after"})).await;
            if s == StatusCode::OK || down.elapsed() > Duration::from_secs(40) {
                break (s, v);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(s, StatusCode::OK, "a write after the restart: {tag}");
        stop.store(true, Ordering::Relaxed);
        let counts = running.await.unwrap();
        for (i, (good, bad)) in counts.iter().enumerate() {
            assert_eq!(*bad, 0, "replica {i}: {bad} proxied requests failed while the database was down ({good} ok)");
            assert!(*good > 10, "replica {i} answered only {good}");
        }
        eprintln!("proxied during the outage: {counts:?}; writes refused: {refused}");
        // Nothing half-applied: not one of the refused tags exists.
        let n = r.pg.psql("berth", "SELECT count(*) FROM berth_records WHERE tbl = 'tags'").unwrap();
        assert_eq!(n, "1", "only the tag written after the restart");
        // The feeds reconnect and catch up: the write is seen everywhere.
        let tag_id = tag["ID"].as_u64().or(tag["Id"].as_u64()).unwrap();
        for d in [&r.ds[0], &r.ds[2]] {
            within(Duration::from_secs(5), "the tag after the restart", || async {
                let (_, v) = d.get_json("/api/tags", Some(&token)).await;
                v.as_array().is_some_and(|a| {
                    a.iter().any(|t| t["ID"].as_u64() == Some(tag_id) || t["Id"].as_u64() == Some(tag_id))
                })
            })
            .await;
        }
        // A write on one replica once all are connected again: within 1 s.
        let (s, v) = r.ds[2].post_json("/api/tags", Some(&token), &json!({"Name": "later"})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        within(PROPAGATION, "a later tag on replica 0", || async {
            r.ds[0].get_json("/api/tags", Some(&token)).await.1.to_string().contains("later")
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_costs_the_others_nothing() {
    if !require_postgres() {
        return;
    }
    bounded(Duration::from_secs(120), async {
        let mut r = start(3, &[]).await;
        let token = r.ds[0].admin_token().await;
        let auth = bearer(&token);
        let mock = MockDocker::start_unix(r.ds[0].scratch_dir().join("docker.sock")).await.unwrap();
        let eid = r.ds[0].create_endpoint(&token, "mock", &mock.unix_url().unwrap()).await;
        let path = format!("/api/endpoints/{eid}/docker/_ping");
        for d in &r.ds {
            within(PROPAGATION, "endpoint everywhere", || async {
                status_of(d, Method::GET, &path, &[("Authorization", &auth)]).await == StatusCode::OK
            })
            .await;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let survivors = r.ds[1..].iter().map(|d| (d.url(""), d.http().clone())).collect();
        let running = load(survivors, path.clone(), auth.clone(), stop.clone());
        tokio::time::sleep(Duration::from_secs(1)).await;
        r.ds[0].kill();
        tokio::time::sleep(Duration::from_secs(3)).await;
        // Writes go on too (the dead replica held no lock anyone waits for).
        let (s, v) = r.ds[1].post_json("/api/tags", Some(&token), &json!({"Name": "after-kill"})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        stop.store(true, Ordering::Relaxed);
        for (i, (good, bad)) in running.await.unwrap().iter().enumerate() {
            assert_eq!(*bad, 0, "survivor {i}: {bad} requests failed");
            assert!(*good > 10, "survivor {i} answered only {good}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_store_moves_to_postgres_and_back() {
    if !require_postgres() {
        return;
    }
    bounded(Duration::from_secs(120), async {
        let pg = PgCluster::start();
        let url = pg.database("moved");
        let data = tempfile::tempdir().unwrap();
        let mut d = Daemon::builder().data_dir(data.path()).start().await;
        let token = d.admin_token().await;
        let (s, v) = d.post_json("/api/tags", Some(&token), &json!({"Name": "kept"})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        d.stop_graceful().await;
        let berth = berth_testkit::harness::berth_bin();
        let copy = |from: &str, to: &str, force: bool| {
            let mut c = std::process::Command::new(&berth);
            c.args(["store", "copy", "--from", from, "--to", to]);
            if force {
                c.arg("--force");
            }
            c.output().unwrap()
        };
        let dir = data.path().to_str().unwrap();
        let out = copy(dir, &url, false);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("copied") && said.contains("secrets"), "{said}");
        // A used target is refused unless told.
        let again = copy(dir, &url, false);
        assert!(!again.status.success());
        assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
        // A replica on the copy: the old token still works (same secret), the data is there.
        let p = Daemon::builder().args(["--store", &url]).start().await;
        assert_eq!(
            status_of(&p, Method::GET, "/api/users/me", &[("Authorization", &bearer(&token))]).await,
            StatusCode::OK
        );
        let (_, tags) = p.get_json("/api/tags", Some(&token)).await;
        assert!(tags.to_string().contains("kept"), "{tags}");
        let (s, _) = p.post_json("/api/tags", Some(&token), &json!({"Name": "from-pg"})).await;
        assert_eq!(s, StatusCode::OK);
        drop(p);
        // And back into a fresh data directory.
        let back = tempfile::tempdir().unwrap();
        let out = copy(&url, back.path().to_str().unwrap(), false);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let e = Daemon::builder().data_dir(back.path()).start().await;
        let (_, tags) = e.get_json("/api/tags", Some(&token)).await;
        assert!(tags.to_string().contains("kept") && tags.to_string().contains("from-pg"), "{tags}");
        let _: Value = tags;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_the_database_is_verified_against_the_given_ca() {
    if !require_postgres() {
        return;
    }
    bounded(Duration::from_secs(60), async {
        let pki = berth_testkit::Pki::new();
        let pg = PgCluster::start_tls(&pki);
        let url = format!("{}?sslmode=require", pg.database("tls"));
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &pki.ca_pem).unwrap();
        let d = Daemon::builder().args(["--store", &url, "--store-ca-file", ca.to_str().unwrap()]).start().await;
        d.admin_token().await;
        // Berth's connections to the database are encrypted.
        let ssl = pg
            .psql(
                "postgres",
                "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                 WHERE a.application_name LIKE 'berth %'",
            )
            .unwrap();
        assert_eq!(ssl, "t", "every connection of Berth's uses TLS");
        drop(d);
        // A CA that did not sign the server's certificate: refused.
        std::fs::write(&ca, berth_testkit::Pki::new().ca_pem).unwrap();
        let out = std::process::Command::new(berth_testkit::harness::berth_bin())
            .args(["store", "copy", "--from", dir.path().join("x").to_str().unwrap(), "--to", &url])
            .args(["--store-ca-file", ca.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("certificate") || err.contains("Certificate"), "{err}");
        // sslmode=require without a CA to verify with: refused at start.
        let out = std::process::Command::new(berth_testkit::harness::berth_bin())
            .args(["--store", &url, "--data", dir.path().join("y").to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("--store-ca-file"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_at_a_time_checks_the_endpoints() {
    if !require_postgres() {
        return;
    }
    bounded(Duration::from_secs(90), async {
        let mut r = start(3, &[]).await;
        let token = r.ds[0].admin_token().await;
        let mock = MockDocker::start_unix(r.ds[0].scratch_dir().join("docker.sock")).await.unwrap();
        r.ds[0].create_endpoint(&token, "mock", &mock.unix_url().unwrap()).await;
        let pings = || mock.requests().iter().filter(|q| q.uri.ends_with("/_ping")).count();
        // Health rounds every second on each of three replicas: with the
        // lease, one round a second in all, not three.
        tokio::time::sleep(Duration::from_secs(2)).await;
        mock.clear_requests();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let n = pings();
        assert!((3..=7).contains(&n), "{n} health pings in 5 s from three replicas (one lease holder expected)");
        // The holder dies: another takes the lease over.
        let holder_sql = "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
                          WHERE l.locktype = 'advisory' AND l.granted AND a.datname = 'berth' \
                          AND (l.classid::bigint << 32 | l.objid::bigint) = x'6265727468000003'::bigint";
        let holder = r.pg.psql("postgres", holder_sql).unwrap();
        let i: usize =
            holder.strip_prefix("berth r").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{holder:?}"));
        r.ds[i].kill();
        let took_over = within(Duration::from_secs(10), "another replica takes the lease", || async {
            let now = r.pg.psql("postgres", holder_sql).unwrap();
            !now.is_empty() && now != holder
        })
        .await;
        mock.clear_requests();
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(pings() >= 1, "the new holder checks the endpoint");
        eprintln!("lease passed from {holder} after {took_over:?}");
    })
    .await;
}
