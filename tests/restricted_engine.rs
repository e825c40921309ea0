//! Restricted access against the real engine (issue 14): an admin and
//! standard users in different teams on one endpoint each see and touch
//! only their own objects; sharing with a team or the public shows an
//! object to exactly those; deleting an object removes its control; the
//! Docker CLI and docker-py work for a standard user and show a readable
//! error for what the endpoint's (secure default) settings refuse.
//!
//! Skips with a printed reason without an engine. Everything is named
//! `berth-rx-<pid>-<test>-...` and removed through the engine's own socket.

// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use berth_testkit::harness::*;
use berth_testkit::users::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(240);

/// The two tests run at once in one process: each has its own names.
fn named(test: &str, tag: &str) -> String {
    format!("berth-rx-{}-{test}-{tag}", std::process::id())
}

fn unique(tag: &str) -> String {
    named("own", tag)
}

fn cli_name(tag: &str) -> String {
    named("cli", tag)
}

/// Removes every object of this run through the engine's socket.
struct Cleanup(&'static str);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let prefix = format!("name={}", named(self.0, ""));
        let docker = |args: &[&str]| {
            std::process::Command::new("docker").args(args).stdin(Stdio::null()).output().ok().map(|o| o.stdout)
        };
        for (list, rm) in [
            (vec!["ps", "-aq", "--filter", &prefix], vec!["rm", "-f"]),
            (vec!["volume", "ls", "-q", "--filter", &prefix], vec!["volume", "rm", "-f"]),
            (vec!["network", "ls", "-q", "--filter", &prefix], vec!["network", "rm"]),
        ] {
            let ids = docker(&list).unwrap_or_default();
            let ids: Vec<String> = String::from_utf8_lossy(&ids).split_whitespace().map(str::to_owned).collect();
            if !ids.is_empty() {
                let mut args = rm.clone();
                args.extend(ids.iter().map(String::as_str));
                docker(&args);
            }
        }
    }
}

struct Env {
    d: Daemon,
    eid: u64,
    admin: String,
    alice: String,
    bob: String,
    carol: String,
    ids: [u64; 3],
}

/// alice and carol in team "red", bob in team "blue"; all three granted
/// the local engine, whose settings stay Berth's secure default.
async fn env() -> Env {
    let d = Daemon::start().await;
    let admin = d.admin_token().await;
    let eid = d.create_endpoint(&admin, "local", &format!("unix://{DOCKER_SOCKET}")).await;
    let mut ids = [0; 3];
    for (i, n) in ["alice", "bob", "carol"].iter().enumerate() {
        ids[i] = create_user(&d, &admin, n).await;
    }
    create_team(&d, &admin, "red", &[ids[0], ids[2]]).await;
    create_team(&d, &admin, "blue", &[ids[1]]).await;
    grant(&d, &admin, eid, &ids).await;
    let alice = d.login("alice", &password("alice")).await;
    let bob = d.login("bob", &password("bob")).await;
    let carol = d.login("carol", &password("carol")).await;
    Env { d, eid, admin, alice, bob, carol, ids }
}

impl Env {
    async fn docker(&self, token: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut rb = self.d.request(method.clone(), &format!("/api/endpoints/{}/docker{path}", self.eid), Some(token));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        read_json(rb.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"))).await
    }

    async fn create_container(&self, token: &str, name: &str, labels: Value) -> String {
        let body = json!({"Image": test_image(), "Cmd": ["sleep", "300"], "Labels": labels});
        let (s, v) = self.docker(token, Method::POST, &format!("/containers/create?name={name}"), Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "create {name}: {v}");
        v["Id"].as_str().unwrap().to_owned()
    }

    /// The names of this run's objects a caller sees in a list.
    async fn names(&self, token: &str, path: &str) -> BTreeSet<String> {
        let (s, v) = self.docker(token, Method::GET, path, None).await;
        assert_eq!(s, StatusCode::OK, "{path}: {v}");
        let items = v.get("Volumes").unwrap_or(&v).as_array().cloned().unwrap_or_default();
        let mine = unique("");
        items
            .iter()
            .filter_map(|i| i["Names"][0].as_str().or(i["Name"].as_str()))
            .map(|n| n.trim_start_matches('/').to_owned())
            .filter(|n| n.starts_with(&mine))
            .collect()
    }
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| unique(n)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_sees_and_touches_only_what_is_theirs_or_shared_with_them() {
    if !require_docker() {
        return;
    }
    let _clean = Cleanup("own");
    tokio::time::timeout(LIMIT, async {
        let e = env().await;
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() - 1;
        let a_id = e.create_container(&e.alice, &unique("a"), json!({})).await;
        e.create_container(&e.bob, &unique("b"), json!({})).await;
        e.create_container(&e.admin, &unique("adm"), json!({})).await;
        e.create_container(&e.alice, &unique("team"), json!({"io.portainer.accesscontrol.teams": "red"})).await;
        e.create_container(&e.bob, &unique("pub"), json!({"io.portainer.accesscontrol.public": "true"})).await;
        // bob may not give his object to a team he is not in.
        let body = json!({"Image": test_image(), "Labels": {"io.portainer.accesscontrol.teams": "red"}});
        let (s, v) =
            e.docker(&e.bob, Method::POST, &format!("/containers/create?name={}", unique("x")), Some(body)).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");

        let list = "/containers/json?all=1";
        assert_eq!(e.names(&e.alice, list).await, set(&["a", "team", "pub"]));
        assert_eq!(e.names(&e.bob, list).await, set(&["b", "pub"]));
        assert_eq!(e.names(&e.carol, list).await, set(&["team", "pub"]));
        assert_eq!(e.names(&e.admin, list).await, set(&["a", "b", "adm", "team", "pub"]));
        // Admins' lists carry Portainer's decoration.
        let (_, all) = e.docker(&e.admin, Method::GET, list, None).await;
        let a = all.as_array().unwrap().iter().find(|c| c["Id"] == json!(a_id)).unwrap();
        assert_eq!(a["Portainer"]["ResourceControl"]["UserAccesses"][0]["UserId"], json!(e.ids[0]), "{a}");

        // The event stream holds only what each may see.
        let until = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 1;
        let events = format!("/events?since={since}&until={until}&filters=%7B%22type%22%3A%5B%22container%22%5D%7D");
        for (token, mine) in [(&e.bob, set(&["b", "pub"])), (&e.alice, set(&["a", "team", "pub"]))] {
            let resp = e.d.request(Method::GET, &format!("/api/endpoints/{}/docker{events}", e.eid), Some(token));
            let text = resp.send().await.unwrap().text().await.unwrap();
            let seen: BTreeSet<String> = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter_map(|ev| ev["Actor"]["Attributes"]["name"].as_str().map(str::to_owned))
                .filter(|n| n.starts_with(&unique("")))
                .collect();
            assert_eq!(seen, mine, "{text}");
        }

        // bob cannot touch alice's container, by name, id or id prefix.
        for target in [unique("a"), a_id.clone(), a_id[..12].to_owned()] {
            for (m, p) in [
                (Method::GET, format!("/containers/{target}/json")),
                (Method::POST, format!("/v1.41/containers/{target}/start")),
                (Method::POST, format!("/containers/{target}/stop")),
                (Method::GET, format!("/containers/{target}/logs?stdout=1")),
                (Method::DELETE, format!("/containers/{target}?force=1")),
            ] {
                let (s, v) = e.docker(&e.bob, m.clone(), &p, None).await;
                assert_eq!(
                    (s, v["message"].as_str()),
                    (StatusCode::FORBIDDEN, Some("Access denied to resource")),
                    "{m} {p}: {v}"
                );
            }
        }
        let (s, v) = e.docker(&e.bob, Method::POST, &format!("/containers/{}/stop", unique("adm")), None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        let (s, _) = e.docker(&e.bob, Method::GET, &format!("/containers/{}-nope/json", unique("a")), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);

        // alice can: start, inspect (decorated), stop, delete.
        let (s, v) = e.docker(&e.alice, Method::POST, &format!("/containers/{}/start", unique("a")), None).await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
        let (s, v) = e.docker(&e.alice, Method::GET, &format!("/containers/{}/json", &a_id[..12]), None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["Portainer"]["ResourceControl"]["UserAccesses"][0]["UserId"], json!(e.ids[0]), "{v}");
        let (s, _) = e.docker(&e.alice, Method::POST, &format!("/containers/{}/stop?t=1", unique("a")), None).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        // carol uses the team's container; bob does not.
        let (s, _) = e.docker(&e.carol, Method::GET, &format!("/containers/{}/json", unique("team")), None).await;
        assert_eq!(s, StatusCode::OK);
        let (s, _) = e.docker(&e.bob, Method::GET, &format!("/containers/{}/json", unique("team")), None).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, _) = e.docker(&e.alice, Method::DELETE, &format!("/containers/{}", unique("a")), None).await;
        assert_eq!(s, StatusCode::NO_CONTENT);

        // Volumes and networks.
        let (s, v) = e.docker(&e.alice, Method::POST, "/volumes/create", Some(json!({"Name": unique("va")}))).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let (s, v) = e.docker(&e.alice, Method::POST, "/networks/create", Some(json!({"Name": unique("na")}))).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let net_id = v["Id"].as_str().unwrap().to_owned();
        assert_eq!(e.names(&e.alice, "/volumes").await, set(&["va"]));
        assert_eq!(e.names(&e.bob, "/volumes").await, set(&[]));
        assert_eq!(e.names(&e.alice, "/networks").await, set(&["na"]));
        assert_eq!(e.names(&e.bob, "/networks").await, set(&[]));
        assert_eq!(e.names(&e.admin, "/volumes").await, set(&["va"]));
        for (m, p) in [
            (Method::GET, format!("/volumes/{}", unique("va"))),
            (Method::DELETE, format!("/volumes/{}", unique("va"))),
            (Method::GET, format!("/networks/{net_id}")),
            (Method::DELETE, format!("/networks/{}", unique("na"))),
        ] {
            assert_eq!(e.docker(&e.bob, m.clone(), &p, None).await.0, StatusCode::FORBIDDEN, "{m} {p}");
        }
        // bob cannot claim alice's volume by "creating" it again.
        let (s, v) = e.docker(&e.bob, Method::POST, "/volumes/create", Some(json!({"Name": unique("va")}))).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        assert_eq!(
            e.docker(&e.alice, Method::DELETE, &format!("/networks/{}", unique("na")), None).await.0,
            StatusCode::NO_CONTENT
        );

        // Deleting removes the control: a volume the admin makes later under
        // the same name is not alice's.
        let (s, _) = e.docker(&e.alice, Method::DELETE, &format!("/volumes/{}", unique("va")), None).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let (s, _) = e.docker(&e.admin, Method::POST, "/volumes/create", Some(json!({"Name": unique("va")}))).await;
        assert_eq!(s, StatusCode::CREATED);
        assert_eq!(e.names(&e.alice, "/volumes").await, set(&[]));
        let (s, _) = e.docker(&e.alice, Method::GET, &format!("/volumes/{}", unique("va")), None).await;
        assert_eq!(s, StatusCode::FORBIDDEN);

        // Made public through /api/resource_controls: visible to all at once.
        let shr = e.create_container(&e.bob, &unique("shr"), json!({})).await;
        assert!(!e.names(&e.alice, list).await.contains(&unique("shr")));
        let (_, v) = e.docker(&e.bob, Method::GET, &format!("/containers/{shr}/json"), None).await;
        let rc = v["Portainer"]["ResourceControl"]["Id"].as_u64().expect("decorated");
        let (s, v) =
            e.d.put_json(&format!("/api/resource_controls/{rc}"), Some(&e.bob), &json!({"Public": true})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert!(e.names(&e.alice, list).await.contains(&unique("shr")));
        assert!(e.names(&e.carol, list).await.contains(&unique("shr")));
        assert_eq!(e.docker(&e.carol, Method::GET, &format!("/containers/{shr}/json"), None).await.0, StatusCode::OK);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docker_cli_and_docker_py_work_for_a_standard_user() {
    if !require_docker() {
        return;
    }
    let _clean = Cleanup("cli");
    tokio::time::timeout(LIMIT, async {
        let e = env().await;
        let image = test_image();
        e.create_container(&e.admin, &cli_name("admins"), json!({})).await;
        let cli = DockerCli::new(&e.d, e.eid, &e.bob);
        let ps = cli.run(&["ps", "-a", "--format", "{{.Names}}"]).await;
        ps.assert_success();
        assert!(!ps.stdout.contains(&cli_name("admins")), "bob sees the admin's container: {ps}");

        let run = cli.run(&["run", "--rm", "--name", &cli_name("once"), image, "echo", "hi"]).await;
        run.assert_success();
        assert_eq!(run.stdout.trim(), "hi", "{run}");
        let det = cli_name("det");
        cli.run(&["run", "-d", "--name", &det, image, "sh", "-c", "echo started; sleep 120"]).await.assert_success();
        let ps = cli.run(&["ps", "--format", "{{.Names}}"]).await;
        assert!(ps.stdout.lines().any(|l| l == det), "{ps}");
        let mut logs = String::new();
        for _ in 0..50 {
            logs = cli.run(&["logs", &det]).await.stdout;
            if logs.contains("started") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(logs.contains("started"), "{logs}");
        let exec = cli.run(&["exec", &det, "sh", "-c", "echo $((6 * 7))"]).await;
        exec.assert_success();
        assert_eq!(exec.stdout.trim(), "42", "{exec}");

        // Refused by the endpoint's secure default, with a readable reason.
        for (args, reason) in [
            (vec!["run", "--rm", "--privileged", image, "true"], "forbidden to use privileged mode"),
            (vec!["run", "--rm", "-v", "/:/host", image, "true"], "forbidden to use bind mounts"),
        ] {
            let out = cli.run(&args).await;
            assert!(!out.success() && out.stderr.contains(reason), "{out}");
        }
        // Another user's container is out of reach for the CLI too.
        let carol = DockerCli::new(&e.d, e.eid, &e.carol);
        let out = carol.run(&["logs", &det]).await;
        assert!(!out.success() && out.stderr.contains("Access denied to resource"), "{out}");
        cli.run(&["rm", "-f", &det]).await.assert_success();

        docker_py(&e).await;
    })
    .await
    .expect("test timed out");
}

/// tests/docker_sdk.py as bob, with its restricted-user checks.
async fn docker_py(e: &Env) {
    match std::process::Command::new("python3").args(["-c", "import docker"]).output() {
        Ok(o) if o.status.success() => {}
        _ => {
            eprintln!("SKIP docker-py part: python3 cannot import docker");
            return;
        }
    }
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(repo_path("tests/docker_sdk.py")).env_remove("DOCKER_HOST").stdin(Stdio::null()).kill_on_drop(true);
    for (k, v) in [
        ("URL", format!("tcp://127.0.0.1:{}/api/endpoints/{}/docker", e.d.port(), e.eid)),
        ("TOKEN", e.bob.clone()),
        ("IMAGE", test_image().to_owned()),
        ("CONTAINER", cli_name("sdk")),
        ("RESTRICTED", "1".to_owned()),
    ] {
        cmd.env(format!("BERTH_SDK_{k}"), v);
    }
    let out = cmd.output();
    let out = tokio::time::timeout(Duration::from_secs(120), out).await.expect("python timed out").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("SDK OK"),
        "docker_sdk.py as a standard user failed ({})\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A stack's containers are governed by the stack's own control (kept in
/// the stack record): its owner sees and uses them, nobody else does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stacks_containers_follow_the_stacks_control() {
    if !require_docker() {
        return;
    }
    let _clean = Cleanup("stk");
    tokio::time::timeout(LIMIT, async {
        let e = env().await;
        let settings = json!({"allowStackManagementForRegularUsers": true});
        let (s, v) = e.d.put_json(&format!("/api/endpoints/{}/settings", e.eid), Some(&e.admin), &settings).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let name = named("stk", "app");
        let body = json!({"Name": name, "StackFileContent": berth_testkit::stacks::compose_file(test_image(), "")});
        let (s, v) = berth_testkit::stacks::create_string(&e.d, &e.alice, "standalone", e.eid, &body).await;
        assert_eq!(s, StatusCode::OK, "{v}");

        let filter = format!("%7B%22label%22%3A%5B%22com.docker.compose.project%3D{name}%22%5D%7D");
        let list = format!("/containers/json?all=1&filters={filter}");
        let (_, mine) = e.docker(&e.alice, Method::GET, &list, None).await;
        let mine = mine.as_array().cloned().unwrap_or_default();
        assert_eq!(mine.len(), 1, "alice sees her stack's container: {mine:?}");
        assert_eq!(mine[0]["Portainer"]["ResourceControl"]["Type"], json!(6), "{:?}", mine[0]);
        let id = mine[0]["Id"].as_str().unwrap().to_owned();
        let (_, theirs) = e.docker(&e.bob, Method::GET, &list, None).await;
        assert_eq!(theirs, json!([]));
        assert_eq!(e.docker(&e.alice, Method::GET, &format!("/containers/{id}/json"), None).await.0, StatusCode::OK);
        let (s, v) = e.docker(&e.bob, Method::POST, &format!("/containers/{id}/stop"), None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        berth_testkit::stacks::remove_project(&name).await;
    })
    .await
    .expect("test timed out");
}
