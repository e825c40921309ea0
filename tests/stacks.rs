//! Compose stacks against the real engine: created from a string, an
//! upload and git repositories (plain `git daemon`, and smart HTTP with
//! basic auth), through the unix socket and the TCP and mutual-TLS
//! transports; stop, start, update, redeploy, delete; every bad input; the
//! deployer's timeout, environment and registry logins; name locking and
//! collisions; standard users' ownership.

// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use berth_testkit::endpoints::*;
use berth_testkit::harness::*;
use berth_testkit::stacks::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Names unique to this run, so leftovers of an aborted run never clash.
fn unique(prefix: &str) -> String {
    format!("{prefix}{}x{}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

async fn daemon_with_local(args: &[&str]) -> (Daemon, String, u64) {
    let d = Daemon::builder().args(args).start().await;
    let token = d.admin_token().await;
    let id = d.create_endpoint(&token, "local", &format!("unix://{DOCKER_SOCKET}")).await;
    (d, token, id)
}

fn running(containers: &[Value]) -> bool {
    !containers.is_empty() && containers.iter().all(|c| c["State"] == "running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_string_lifecycle() {
    if !require_docker() {
        return;
    }
    let image = test_image();
    let (mut d, token, eid) = daemon_with_local(&[]).await;
    let t = Some(token.as_str());
    let name = unique("web");
    let file = compose_file(image, "");
    let (s, v) = create_string(
        &d,
        &token,
        "standalone",
        eid,
        &json!({"Name": format!("  {}!", name.to_uppercase()), "StackFileContent": file, "Env": [{"name": "GREETING", "value": "hello"}]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let id = v["Id"].as_u64().unwrap();
    let project = canonical(d.data_dir()).join("compose").join(id.to_string());
    let expected = json!({
        "Id": id, "Name": name, "Type": 2, "EndpointId": eid, "SwarmId": "", "EntryPoint": "docker-compose.yml",
        "Env": [{"name": "GREETING", "value": "hello"}], "Status": 1,
        "ProjectPath": project.display().to_string(), "CreatedBy": "admin", "UpdateDate": 0, "UpdatedBy": "",
        "AdditionalFiles": null, "AutoUpdate": null, "Option": null, "GitConfig": null,
        "FromAppTemplate": false, "Namespace": "", "IsComposeFormat": false,
        "ResourceControl": {
            "Id": id, "ResourceId": format!("{eid}_{name}"), "SubResourceIds": [], "Type": 6,
            "UserAccesses": [{"UserId": 1, "AccessLevel": 1}], "TeamAccesses": [], "Public": false,
            "AdministratorsOnly": true, "System": false
        },
    });
    let mut got = v.clone();
    assert!(got["CreationDate"].as_i64().unwrap() > 1_700_000_000, "{v}");
    got.as_object_mut().unwrap().remove("CreationDate");
    assert_eq!(got, expected);
    let mode = std::fs::metadata(project.join("docker-compose.yml")).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the stack file is private");

    let cs = project_containers(&name).await;
    assert!(running(&cs), "{cs:?}");
    let env = container_env(cs[0]["Id"].as_str().unwrap()).await;
    assert!(env.contains(&"GREETING=hello".to_string()), "{env:?}");

    // Reads.
    let (s, list) = d.get_json("/api/stacks", t).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["Id"], id);
    assert_eq!(d.get_json(&filtered(json!({"EndpointID": eid})), t).await.1.as_array().unwrap().len(), 1);
    assert_eq!(d.get_json(&filtered(json!({"EndpointID": 999})), t).await.1, json!([]));
    assert_eq!(d.get_json(&filtered(json!({"SwarmID": "abc"})), t).await.1, json!([]));
    assert_eq!(d.get_json("/api/stacks?filters=notjson", t).await.0, StatusCode::BAD_REQUEST);
    let (s, one) = d.get_json(&format!("/api/stacks/{id}"), t).await;
    assert_eq!((s, &one), (StatusCode::OK, &v));
    let (s, fv) = d.get_json(&format!("/api/stacks/{id}/file"), t).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(fv, json!({"StackFileContent": file}));
    assert_eq!(d.get_json("/api/stacks/999", t).await.0, StatusCode::NOT_FOUND);
    assert_eq!(d.get_json("/api/stacks/abc", t).await.0, StatusCode::BAD_REQUEST);

    // Stop and start.
    let (s, v) = stack_post(&d, &token, &format!("/api/stacks/{id}/stop?endpointId={eid}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["Status"], 2);
    assert!(project_containers(&name).await.is_empty(), "compose down on stop");
    let (s, v) = stack_post(&d, &token, &format!("/api/stacks/{id}/stop?endpointId={eid}")).await;
    assert_eq!((s, v["message"].as_str()), (StatusCode::BAD_REQUEST, Some("Stack is already inactive")));
    let (s, v) = stack_post(&d, &token, &format!("/api/stacks/{id}/start?endpointId={eid}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["Status"], 1);
    assert!(running(&project_containers(&name).await));
    let (s, v) = stack_post(&d, &token, &format!("/api/stacks/{id}/start?endpointId={eid}")).await;
    assert_eq!((s, v["message"].as_str()), (StatusCode::BAD_REQUEST, Some("Stack is already active")));
    let (s, _) = stack_post(&d, &token, &format!("/api/stacks/{id}/start")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "endpointId is required");

    // Update: new file and environment, redeployed.
    let file2 = compose_file(image, "    labels: [berth.version=2]\n");
    let (s, v) = d
        .put_json(
            &format!("/api/stacks/{id}?endpointId={eid}"),
            t,
            &json!({"StackFileContent": file2, "Env": [{"name": "GREETING", "value": "bye"}], "Prune": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["UpdatedBy"], "admin");
    assert!(v["UpdateDate"].as_i64().unwrap() > 0);
    assert_eq!(v["Env"], json!([{"name": "GREETING", "value": "bye"}]));
    let cs = project_containers(&name).await;
    assert!(running(&cs), "{cs:?}");
    assert_eq!(cs[0]["Labels"]["berth.version"], "2");
    assert!(container_env(cs[0]["Id"].as_str().unwrap()).await.contains(&"GREETING=bye".to_string()));

    // A broken update restores the previous file and keeps the stack up.
    let (s, v) =
        d.put_json(&format!("/api/stacks/{id}?endpointId={eid}"), t, &json!({"StackFileContent": "services: ["})).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
    assert_eq!(v["message"], "Unable to update stack");
    assert!(v["details"].as_str().unwrap().to_lowercase().contains("yaml"), "{v}");
    assert_eq!(d.get_json(&format!("/api/stacks/{id}/file"), t).await.1["StackFileContent"], file2);
    assert!(running(&project_containers(&name).await));
    let (s, _) = d.put_json(&format!("/api/stacks/{id}"), t, &json!({"StackFileContent": file2})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "endpointId is required");
    let (s, v) = d.put_json(&format!("/api/stacks/{id}?endpointId=77"), t, &json!({"StackFileContent": file2})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _) = d.put_json(&format!("/api/stacks/{id}?endpointId={eid}"), t, &json!({"Env": []})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "StackFileContent is required");

    let (_, m) = d.get_json("/metrics", t).await;
    let m = m.as_str().unwrap_or_default().to_string();
    for line in [
        r#"berth_stack_deploys_total{method="string",outcome="ok",type="compose"} 1"#,
        r#"berth_stack_deploys_total{method="update",outcome="error",type="compose"} 1"#,
        r#"berth_stack_deploys_total{method="stop",outcome="ok",type="compose"} 1"#,
    ] {
        assert!(m.contains(line), "{line} missing from\n{m}");
    }

    // Durable: a restarted daemon still knows it.
    d.restart().await;
    let token = d.login(ADMIN_USER, ADMIN_PASSWORD).await;
    let t = Some(token.as_str());
    let (s, v) = d.get_json(&format!("/api/stacks/{id}"), t).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["Env"], json!([{"name": "GREETING", "value": "bye"}]));

    // Delete.
    let (s, _) = d.delete(&format!("/api/stacks/{id}"), t).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "endpointId is required");
    let (s, v) = d.delete(&format!("/api/stacks/{id}?endpointId={eid}"), t).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    assert!(project_containers(&name).await.is_empty());
    assert_eq!(d.get_json(&format!("/api/stacks/{id}"), t).await.0, StatusCode::NOT_FOUND);
    assert!(!project.exists());
    assert_nothing_left(&d, &token).await;

    let (_, m) = d.get_json("/metrics", Some(&token)).await;
    let line = r#"berth_stack_deploys_total{method="remove",outcome="ok",type="compose"} 1"#;
    assert!(m.as_str().unwrap_or_default().contains(line), "{line} missing from\n{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_file_upload_and_the_legacy_route() {
    if !require_docker() {
        return;
    }
    let image = test_image();
    let (d, token, eid) = daemon_with_local(&[]).await;
    let file = compose_file(image, "");
    let (n1, n2) = (unique("upload"), unique("legacy"));
    let env = r#"[{"name":"GREETING","value":"from-form"}]"#;
    let (s, a) = create_file(
        &d,
        &token,
        &format!("/api/stacks/create/standalone/file?endpointId={eid}"),
        &[("Name", &n1), ("Env", env)],
        Some(file.clone().into_bytes()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    // The seeds' form: type and method in the query; values in the query
    // string count too (Go's FormValue).
    let (s, b) = create_file(
        &d,
        &token,
        &format!("/api/stacks?type=2&method=file&endpointId={eid}&Name={n2}"),
        &[],
        Some(file.clone().into_bytes()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["Name"], n2);
    assert_eq!(b["Env"], Value::Null);
    let cs = project_containers(&n1).await;
    assert!(running(&cs));
    assert!(container_env(cs[0]["Id"].as_str().unwrap()).await.contains(&"GREETING=from-form".to_string()));
    assert!(running(&project_containers(&n2).await));
    assert_eq!(a["Env"], json!([{"name": "GREETING", "value": "from-form"}]));
    let (s, f) = d.get_json(&format!("/api/stacks/{}/file", b["Id"]), Some(&token)).await;
    assert_eq!((s, f["StackFileContent"].as_str()), (StatusCode::OK, Some(file.as_str())));
    // Legacy string route too, answered by the same code (a name clash here).
    let (s, v) = d
        .post_json(
            &format!("/api/stacks?type=2&method=string&endpointId={eid}"),
            Some(&token),
            &json!({"Name": n1, "StackFileContent": file}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["message"], format!("A stack with the normalized name '{n1}' already exists"));
    // Uploaded stacks stop, start and update like any other.
    let (aid, bid) = (a["Id"].as_u64().unwrap(), b["Id"].as_u64().unwrap());
    let (s, v) = stack_post(&d, &token, &format!("/api/stacks/{bid}/stop?endpointId={eid}")).await;
    assert_eq!((s, &v["Status"]), (StatusCode::OK, &json!(2)), "{v}");
    assert!(project_containers(&n2).await.is_empty());
    let (s, v) = stack_post(&d, &token, &format!("/api/stacks/{bid}/start?endpointId={eid}")).await;
    assert_eq!((s, &v["Status"]), (StatusCode::OK, &json!(1)), "{v}");
    assert!(running(&project_containers(&n2).await));
    let updated = compose_file(image, "    labels: [berth.updated=yes]\n");
    let (s, v) = d
        .put_json(&format!("/api/stacks/{aid}?endpointId={eid}"), Some(&token), &json!({"StackFileContent": updated}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["Env"], Value::Null, "an update replaces Env, as in Portainer");
    assert_eq!(project_containers(&n1).await[0]["Labels"]["berth.updated"], "yes");
    for id in [aid, bid] {
        let (s, v) = d.delete(&format!("/api/stacks/{id}?endpointId={eid}"), Some(&token)).await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    }
    assert!(project_containers(&n1).await.is_empty() && project_containers(&n2).await.is_empty());
    assert_nothing_left(&d, &token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_repository_deploy_redeploy_and_credentials() {
    if !require_docker() {
        return;
    }
    let image = test_image();
    let git = GitServer::start();
    let app = compose_file(image, "");
    let extra = |v: u32| format!("services:\n  app:\n    labels:\n      berth.extra: \"{v}\"\n");
    let first = {
        git.repo(
            "app",
            &[
                ("stacks/web/docker-compose.yml", &app),
                ("stacks/web/extra.yml", &extra(1)),
                ("docker-compose.yml", &app),
            ],
        );
        git.head("app")
    };
    let (d, token, eid) = daemon_with_local(&[]).await;
    let t = Some(token.as_str());

    // git daemon, a full reference, a compose file in a subfolder and an
    // additional file.
    let name = unique("repo");
    let (s, v) = d
        .post_json(
            &format!("/api/stacks/create/standalone/repository?endpointId={eid}"),
            t,
            &json!({
                "Name": name, "RepositoryURL": format!("{}/", git.url("app")),
                "RepositoryReferenceName": "refs/heads/main",
                "ComposeFile": "stacks/web/docker-compose.yml", "AdditionalFiles": ["stacks/web/extra.yml"],
            }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let id = v["Id"].as_u64().unwrap();
    assert_eq!(v["EntryPoint"], "stacks/web/docker-compose.yml");
    assert_eq!(v["AdditionalFiles"], json!(["stacks/web/extra.yml"]));
    assert_eq!(
        v["GitConfig"],
        json!({"URL": git.url("app"), "ReferenceName": "refs/heads/main", "ConfigFilePath": "stacks/web/docker-compose.yml",
               "Authentication": null, "ConfigHash": first, "TLSSkipVerify": false})
    );
    let project = canonical(d.data_dir()).join("compose").join(id.to_string());
    assert!(project.join("stacks/web/extra.yml").is_file() && !project.join(".git").exists());
    let cs = project_containers(&name).await;
    assert!(running(&cs), "{cs:?}");
    assert_eq!(cs[0]["Labels"]["berth.extra"], "1");
    let (_, f) = d.get_json(&format!("/api/stacks/{id}/file"), t).await;
    assert_eq!(f["StackFileContent"], app);

    // A new commit, redeployed.
    let second = git.commit("app", &[("stacks/web/extra.yml", &extra(2))]);
    let (s, v) = d.put_json(&format!("/api/stacks/{id}/git/redeploy?endpointId={eid}"), t, &json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["GitConfig"]["ConfigHash"], second);
    assert_eq!(project_containers(&name).await[0]["Labels"]["berth.extra"], "2");
    // A reference that does not exist fails and keeps what runs.
    let (s, v) = d
        .put_json(
            &format!("/api/stacks/{id}/git/redeploy?endpointId={eid}"),
            t,
            &json!({"RepositoryReferenceName": "refs/heads/nope"}),
        )
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
    assert_eq!(v["message"], "Unable to clone git repository");
    assert_eq!(d.get_json(&format!("/api/stacks/{id}"), t).await.1["GitConfig"]["ConfigHash"], second);
    assert!(project.join("stacks/web/extra.yml").is_file());
    // Stop, start; an edit detaches the stack from git, as in Portainer.
    let (s, v) = stack_post(&d, &token, &format!("/api/stacks/{id}/stop?endpointId={eid}")).await;
    assert_eq!((s, &v["Status"]), (StatusCode::OK, &json!(2)), "{v}");
    assert!(project_containers(&name).await.is_empty());
    let (s, v) = stack_post(&d, &token, &format!("/api/stacks/{id}/start?endpointId={eid}")).await;
    assert_eq!((s, &v["Status"]), (StatusCode::OK, &json!(1)), "{v}");
    assert_eq!(project_containers(&name).await[0]["Labels"]["berth.extra"], "2", "additional files kept");
    let edited = compose_file(image, "    labels: [berth.edited=yes]\n");
    let (s, v) =
        d.put_json(&format!("/api/stacks/{id}?endpointId={eid}"), t, &json!({"StackFileContent": edited})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["GitConfig"], Value::Null);
    assert_eq!(project_containers(&name).await[0]["Labels"]["berth.edited"], "yes");
    assert_eq!(std::fs::read_to_string(project.join("stacks/web/docker-compose.yml")).unwrap(), edited);
    let (s, v) = d.put_json(&format!("/api/stacks/{id}/git/redeploy?endpointId={eid}"), t, &json!({})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "no longer a git stack: {v}");
    let (s, _) = d.delete(&format!("/api/stacks/{id}?endpointId={eid}"), t).await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // Smart HTTP behind basic auth; ComposeFile defaults to
    // docker-compose.yml.
    let password = "s3cret-git-pw";
    let http = GitHttp::start(git.root.path().to_path_buf(), "bob", password).await;
    let name = unique("auth");
    let body = |pw: &str| {
        json!({"Name": name, "RepositoryURL": http.url("app"), "RepositoryAuthentication": true,
               "RepositoryUsername": "bob", "RepositoryPassword": pw})
    };
    let path = format!("/api/stacks/create/standalone/repository?endpointId={eid}");
    let (s, v) = d.post_json(&path, t, &body("wrong-password-x")).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
    assert_eq!(v["message"], "Unable to clone git repository");
    assert!(!v.to_string().contains("wrong-password-x"), "{v}");
    let (s, v) = d.post_json(&path, t, &json!({"Name": name, "RepositoryURL": http.url("app")})).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "no credentials, no clone: {v}");
    let (s, v) = d.post_json(&path, t, &body(password)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let id = v["Id"].as_u64().unwrap();
    assert_eq!(v["EntryPoint"], "docker-compose.yml");
    assert_eq!(v["GitConfig"]["Authentication"], json!({"Username": "bob", "Password": "", "GitCredentialID": 0}));
    assert_eq!(v["GitConfig"]["ConfigHash"], second);
    assert!(running(&project_containers(&name).await));
    // The stored credentials serve a redeploy.
    let (s, v) =
        d.put_json(&format!("/api/stacks/{id}/git/redeploy?endpointId={eid}"), t, &json!({"PullImage": false})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let seen = http.seen.lock().unwrap().clone();
    assert!(seen.iter().any(|(_, a)| a.is_some()), "git sent credentials: {seen:?}");
    // The password is nowhere: answers, logs, the store file.
    let (_, all) = d.get_json("/api/stacks", t).await;
    assert!(!all.to_string().contains(password));
    assert!(!d.logs().contains(password), "password in the logs");
    let db = d.stored_bytes();
    assert!(!db.windows(password.len()).any(|w| w == password.as_bytes()), "password stored in clear");
    let (s, _) = d.delete(&format!("/api/stacks/{id}?endpointId={eid}"), t).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(project_containers(&name).await.is_empty());
    assert_nothing_left(&d, &token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_clear_errors_and_leave_nothing() {
    if !require_docker() {
        return;
    }
    let image = test_image();
    let git = GitServer::start();
    let good = compose_file(image, "");
    git.repo("ok", &[("docker-compose.yml", &good)]);
    git.repo("evil", &[("README", "x")]);
    git.symlink("evil", "docker-compose.yml", "/etc/passwd");
    git.repo("evil2", &[("docker-compose.yml", &good)]);
    git.symlink("evil2", "secrets", "/etc");
    // Incompressible, larger than --max-clone-size below.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let noise: String = (0..600_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    git.repo("huge", &[("docker-compose.yml", &good), ("noise.txt", &noise)]);
    let mock_dir = tempfile::tempdir().unwrap();
    let mock = berth_testkit::MockDocker::start_unix(mock_dir.path().join("docker.sock")).await.unwrap();
    let (d, token, eid) = daemon_with_local(&["--max-stack-file", "1048576", "--max-clone-size", "300000"]).await;
    let mock_id = d.create_endpoint(&token, "mock", &mock.unix_url().unwrap()).await;
    let t = Some(token.as_str());
    let pwned = std::env::temp_dir().join(format!("berth-pwned-{}", std::process::id()));
    let _ = std::fs::remove_file(&pwned);
    let pw = pwned.display().to_string();
    let (closed, _) = free_ports();
    let name = unique("bad");
    let yaml_name = unique("yaml");
    let half_name = unique("half");
    let port = free_ports().0;
    let half = format!(
        "services:\n  a:\n    image: {image}\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 3600 & wait\"]\n    \
         ports: [\"127.0.0.1:{port}:80\"]\n  b:\n    image: {image}\n    command: [\"sleep\", \"3600\"]\n    \
         depends_on: [a]\n    ports: [\"127.0.0.1:{port}:80\"]\n"
    );
    let string = |e: &str| format!("/api/stacks/create/standalone/string{e}");
    let repo = format!("/api/stacks/create/standalone/repository?endpointId={eid}");
    let r = |url: &str| json!({"Name": name, "RepositoryURL": url});
    let sbody = json!({"Name": name, "StackFileContent": good});
    #[rustfmt::skip]
    let cases: Vec<(String, Value, u16, &str, String)> = vec![
        (string(""), sbody.clone(), 400, "Invalid query parameter: endpointId", "".into()),
        (string("?endpointId=abc"), sbody.clone(), 400, "Invalid query parameter: endpointId", "".into()),
        (string("?endpointId=999"), sbody.clone(), 404, "Unable to find an environment", "".into()),
        (format!("/api/stacks/create/cluster/string?endpointId={eid}"), sbody.clone(), 400, "Invalid stack type", "".into()),
        (format!("/api/stacks/create/standalone/url?endpointId={eid}"), sbody.clone(), 400, "Invalid query parameter: method", "".into()),
        (format!("/api/stacks/create/kubernetes/string?endpointId={eid}"), sbody.clone(), 400, "Kubernetes stacks are not supported", "".into()),
        (format!("/api/stacks?type=7&method=string&endpointId={eid}"), sbody.clone(), 400, "Invalid query parameter: type", "".into()),
        (format!("/api/stacks?method=string&endpointId={eid}"), sbody.clone(), 400, "Invalid query parameter: type", "".into()),
        (format!("/api/stacks?type=2&method=zip&endpointId={eid}"), sbody.clone(), 400, "Invalid query parameter: method", "".into()),
        (string(&format!("?endpointId={eid}")), json!({"Name": "", "StackFileContent": good}), 400, "Invalid request payload", "Invalid stack name".into()),
        (string(&format!("?endpointId={eid}")), json!({"Name": "!!!", "StackFileContent": good}), 400, "Invalid request payload", "Invalid stack name".into()),
        (string(&format!("?endpointId={eid}")), json!({"StackFileContent": good}), 400, "Invalid request payload", "Invalid stack name".into()),
        (string(&format!("?endpointId={eid}")), json!({"Name": "-x", "StackFileContent": good}), 400, "Invalid request payload", "must start with a letter".into()),
        (string(&format!("?endpointId={eid}")), json!({"Name": name}), 400, "Invalid request payload", "Invalid stack file content".into()),
        (string(&format!("?endpointId={eid}")), json!({"Name": name, "StackFileContent": good, "Env": [{"name": "1A", "value": "x"}]}), 400, "Invalid request payload", "Invalid environment variable name".into()),
        (string(&format!("?endpointId={eid}")), json!({"Name": name, "StackFileContent": good, "Env": [{"name": "DOCKER_HOST", "value": "tcp://x"}]}), 400, "Invalid request payload", "configure the deployer".into()),
        (string(&format!("?endpointId={eid}")), json!("not an object"), 400, "Invalid request payload", "".into()),
        (format!("/api/stacks/create/swarm/string?endpointId={mock_id}"), json!({"Name": name, "SwarmID": "abc", "StackFileContent": good}), 400, "Unable to deploy a swarm stack on this environment", "not a Swarm manager".into()),
        (format!("/api/stacks/create/swarm/string?endpointId={mock_id}"), json!({"Name": name, "StackFileContent": good}), 400, "Invalid request payload", "Invalid Swarm ID".into()),
        (string(&format!("?endpointId={eid}")), json!({"Name": yaml_name, "StackFileContent": "services:\n  app: [\n"}), 500, "Unable to deploy stack", "yaml".into()),
        (string(&format!("?endpointId={eid}")), json!({"Name": half_name, "StackFileContent": half}), 500, "Unable to deploy stack", "port is already allocated".into()),
        (repo.clone(), json!({"Name": name, "RepositoryURL": git.url("ok"), "ComposeFile": "stacks/none.yml"}), 400, "Invalid repository content", "does not exist in the repository".into()),
        (repo.clone(), json!({"Name": name, "RepositoryURL": git.url("ok"), "ComposeFilePathInRepository": "../../etc/passwd"}), 400, "Invalid request payload", "Invalid compose file path".into()),
        (repo.clone(), json!({"Name": name, "RepositoryURL": git.url("ok"), "ComposeFile": "/etc/passwd"}), 400, "Invalid request payload", "Invalid compose file path".into()),
        (repo.clone(), json!({"Name": name, "RepositoryURL": git.url("ok"), "AdditionalFiles": ["../x.yml"]}), 400, "Invalid request payload", "Invalid additional file path".into()),
        (repo.clone(), json!({"Name": name, "RepositoryURL": git.url("ok"), "RepositoryReferenceName": "--upload-pack=x"}), 400, "Invalid request payload", "not a valid git reference".into()),
        (repo.clone(), json!({"Name": name, "RepositoryURL": git.url("ok"), "AutoUpdate": {"Interval": "5m"}}), 400, "Invalid request payload", "not supported".into()),
        (repo.clone(), json!({"Name": name, "RepositoryURL": git.url("ok"), "RepositoryAuthentication": true, "RepositoryUsername": "x"}), 400, "Invalid request payload", "Password must be specified".into()),
        (repo.clone(), r(&format!("git://127.0.0.1:{closed}/nothing")), 500, "Unable to clone git repository", "".into()),
        (repo.clone(), r(&git.url("missing")), 500, "Unable to clone git repository", "".into()),
        (repo.clone(), r(&format!("ext::sh -c touch% {pw}")), 400, "Invalid request payload", "Invalid repository URL".into()),
        (repo.clone(), r(&format!("--upload-pack=touch {pw}")), 400, "Invalid request payload", "Invalid repository URL".into()),
        (repo.clone(), r("file:///etc"), 400, "Invalid request payload", "Invalid repository URL".into()),
        (repo.clone(), r("/etc"), 400, "Invalid request payload", "Invalid repository URL".into()),
        (repo.clone(), r("https://user:pw@example.invalid/x"), 400, "Invalid request payload", "credentials".into()),
        (repo.clone(), r(""), 400, "Invalid request payload", "Invalid repository URL".into()),
        (repo.clone(), r(&git.url("huge")), 400, "Unable to clone git repository", "larger than the limit of 300000 bytes".into()),
        (repo.clone(), r(&git.url("evil")), 400, "Invalid repository content", "symbolic link docker-compose.yml".into()),
        (repo.clone(), r(&git.url("evil2")), 400, "Invalid repository content", "symbolic link secrets".into()),
    ];
    for (i, (path, body, status, message, details)) in cases.into_iter().enumerate() {
        let (s, v) = d.post_json(&path, t, &body).await;
        assert_eq!(s.as_u16(), status, "case {i} {path}: {v}");
        let m = v["message"].as_str().unwrap_or_else(|| panic!("case {i}: no message in {v}"));
        assert!(m.contains(message), "case {i}: message {m:?} lacks {message:?}");
        let det = v["details"].as_str().unwrap_or("");
        assert!(det.to_lowercase().contains(&details.to_lowercase()), "case {i}: details {det:?} lack {details:?}");
    }
    assert!(!pwned.exists(), "a hostile URL ran a command");
    // The half-started project was rolled back.
    assert!(project_containers(&half_name).await.is_empty(), "compose down after a failed up");
    assert!(project_containers(&yaml_name).await.is_empty());

    // Oversized stack files: 413 from the body limit, before anything runs.
    let big = "#".repeat(100 * 1024 * 1024);
    let resp = d
        .request(Method::POST, &string(&format!("?endpointId={eid}")), t)
        .json(&json!({"Name": name, "StackFileContent": big}))
        .send()
        .await;
    match resp {
        Ok(r) => assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE),
        // The server may close the connection before the client finished
        // sending 100 MB; then the client never reads the answer.
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
    drop(big);
    let just_over = format!("{}\n", "#".repeat(1024 * 1024 + 10));
    let (s, v) =
        create_string(&d, &token, "standalone", eid, &json!({"Name": name, "StackFileContent": just_over})).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    let (s, v) = create_file(
        &d,
        &token,
        &format!("/api/stacks/create/standalone/file?endpointId={eid}"),
        &[("Name", &name)],
        Some(vec![b'#'; 3 * 1024 * 1024]),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    let (s, v) = create_file(
        &d,
        &token,
        &format!("/api/stacks/create/standalone/file?endpointId={eid}"),
        &[("Name", &name)],
        None,
    )
    .await;
    assert_eq!((s, v["details"].as_str()), (StatusCode::BAD_REQUEST, Some("Invalid stack file content")));

    // Still usable afterwards, and nothing was left.
    assert_nothing_left(&d, &token).await;
    let (s, v) = d.get_json("/api/status", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["Compose"]["Flavor"].is_string(), "{v}");
    mock.shutdown().await;
}

/// A fake Compose: answers `version`, hangs (with a grandchild) on `up`
/// for projects named `slow*`, and otherwise runs the real one.
fn fake_compose(dir: &std::path::Path) -> std::path::PathBuf {
    let real = std::process::Command::new("sh").args(["-c", "command -v docker-compose"]).output().unwrap();
    let real = String::from_utf8_lossy(&real.stdout).trim().to_string();
    let script = dir.join("fake-compose");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             case \"$*\" in\n\
             *version*) echo 1.29.2; exit 0;;\n\
             *project-name=slow*\" up \"*)\n\
               sleep 300 &\n\
               echo $! >> {dir}/pids\n\
               echo $$ >> {dir}/pids\n\
               echo 'starting slowly' >&2\n\
               wait;;\n\
             esac\n\
             exec {real} \"$@\"\n",
            dir = dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit(") ").next().and_then(|s| s.chars().next());
    !stat.is_empty() && state != Some('Z')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_deploy_times_out_alone() {
    if !require_docker() {
        return;
    }
    let image = test_image();
    let dir = tempfile::tempdir().unwrap();
    let compose = fake_compose(dir.path());
    let (d, token, eid) = daemon_with_local(&[
        "--stack-deploy-timeout",
        "5s",
        "--docker-bin",
        "/nonexistent/docker",
        "--compose-bin",
        compose.to_str().unwrap(),
    ])
    .await;
    // Detection runs in the background from start-up.
    let st = eventually(Duration::from_secs(10), "Compose detection", || async {
        let (_, st) = d.get_json("/api/status", None).await;
        (st["Compose"]["Flavor"] != "detecting").then_some(st)
    })
    .await;
    assert_eq!(st["Compose"]["Flavor"], "v1");
    assert_eq!(st["Compose"]["Version"], "1.29.2");
    assert!(d.logs().contains("docker-compose 1.29.2 (v1)"), "the log tells which Compose");

    // A slow deploy and a normal one at once: the normal one does not wait
    // for the slow one's lock (locks are per name, not global).
    let slow = unique("slow");
    let quick = unique("quick");
    let file = compose_file(image, "");
    let started = Instant::now();
    let slow_body = json!({"Name": slow, "StackFileContent": file});
    let slow_req = create_string(&d, &token, "standalone", eid, &slow_body);
    let quick_req = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = create_string(&d, &token, "standalone", eid, &json!({"Name": quick, "StackFileContent": file})).await;
        (r, started.elapsed())
    };
    let ((s, v), ((qs, qv), quick_done)) = tokio::join!(slow_req, quick_req);
    let slow_done = started.elapsed();
    assert_eq!(qs, StatusCode::OK, "{qv}");
    assert!(quick_done < Duration::from_secs(5), "the quick deploy waited for the slow one: {quick_done:?}");
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
    assert_eq!(v["message"], "Unable to deploy stack");
    let det = v["details"].as_str().unwrap();
    assert!(det.contains("did not finish within 5s") && det.contains("starting slowly"), "{det}");
    assert!(slow_done >= Duration::from_secs(5) && slow_done < Duration::from_secs(20), "{slow_done:?}");
    // The fake and its grandchild were killed with their process group.
    let pids: Vec<u32> =
        std::fs::read_to_string(dir.path().join("pids")).unwrap().lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(pids.len(), 2);
    wait_until(Duration::from_secs(3), "the deployer's processes to die", || async { pids.iter().all(|p| !alive(*p)) })
        .await;
    assert!(project_containers(&slow).await.is_empty());
    let (_, m) = d.get_json("/metrics", Some(&token)).await;
    let m = m.as_str().unwrap_or_default().to_string();
    assert!(m.contains(r#"berth_stack_deploys_total{method="string",outcome="timeout",type="compose"} 1"#), "{m}");
    assert!(m.contains("berth_stack_deploy_duration_seconds_bucket"), "{m}");

    let (s, v) = d.delete(&format!("/api/stacks/{}?endpointId={eid}", qv["Id"]), Some(&token)).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    assert!(project_containers(&quick).await.is_empty());
    assert_nothing_left(&d, &token).await;
}

/// Wraps a real program: records its arguments, environment and the
/// deploy's docker config, then runs it.
fn recorder(dir: &std::path::Path, name: &str, real: &str) -> std::path::PathBuf {
    let script = dir.join(name);
    let log = dir.join(format!("{name}.log"));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             {{ echo \"ARGS $*\"; env | sed 's/^/ENV /'; echo \"CONFIG $(cat \"$DOCKER_CONFIG/config.json\")\"; \
             echo \"CONFIGDIR $DOCKER_CONFIG\"; echo END; }} >> {log}\n\
             exec {real} \"$@\"\n",
            log = log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployers_get_a_clean_environment_and_only_allowed_logins() {
    if !require_docker() {
        return;
    }
    let image = test_image();
    let dir = tempfile::tempdir().unwrap();
    let which = |p: &str| {
        let o = std::process::Command::new("sh").args(["-c", &format!("command -v {p}")]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let docker = recorder(dir.path(), "docker", &which("docker"));
    let compose = recorder(dir.path(), "compose", &which("docker-compose"));
    let d = Daemon::builder()
        .args(["--docker-bin", docker.to_str().unwrap(), "--compose-bin", compose.to_str().unwrap()])
        .env("BERTH_SECRET_CANARY", "should-not-leak")
        .start()
        .await;
    let token = d.admin_token().await;
    let t = Some(token.as_str());
    let eid = d.create_endpoint(&token, "local", &format!("unix://{DOCKER_SOCKET}")).await;
    let (s, v) = d
        .post_json(
            "/api/registries",
            t,
            &json!({"Name": "private", "Type": 3, "URL": "registry.example:5000", "Authentication": true,
                    "Username": "bob", "Password": "reg-pass"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = d
        .post_json(
            "/api/registries",
            t,
            &json!({"Name": "open", "Type": 3, "URL": "open.example:5000", "Authentication": false}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let name = unique("clean");
    let (s, v) = create_string(
        &d,
        &token,
        "standalone",
        eid,
        &json!({"Name": name, "StackFileContent": compose_file(image, ""), "Env": [{"name": "GREETING", "value": "a b;$(id)"}]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let cs = project_containers(&name).await;
    assert!(container_env(cs[0]["Id"].as_str().unwrap()).await.contains(&"GREETING=a b;$(id)".to_string()));
    let (s, _) = d.delete(&format!("/api/stacks/{}?endpointId={eid}", v["Id"]), t).await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    let log = std::fs::read_to_string(dir.path().join("compose.log")).unwrap();
    let runs: Vec<&str> = log.split("END\n").filter(|r| r.contains("ARGS")).collect();
    let deploys: Vec<&&str> = runs.iter().filter(|r| r.contains(" up -d")).collect();
    let downs: Vec<&&str> = runs.iter().filter(|r| r.contains(" down --remove-orphans")).collect();
    assert_eq!((deploys.len(), downs.len()), (1, 1), "{log}");
    let up = deploys[0];
    assert!(up.contains(&format!("ARGS --host unix://{DOCKER_SOCKET} --env-file ")), "the host is always passed: {up}");
    assert!(up.contains(&format!("--project-name={name} up -d")), "{up}");
    let mut names: Vec<&str> =
        up.lines().filter_map(|l| l.strip_prefix("ENV ")).map(|l| l.split('=').next().unwrap()).collect();
    names.sort();
    names.retain(|n| !matches!(*n, "PWD" | "SHLVL" | "_" | "OLDPWD"));
    assert_eq!(names, ["DOCKER_CONFIG", "HOME", "LANG", "PATH", "TMPDIR"], "only Berth's own, never the stack's: {up}");
    assert!(!up.contains("should-not-leak"), "nothing inherited: {up}");
    let home = up.lines().find_map(|l| l.strip_prefix("ENV HOME=")).unwrap();
    assert!(home.starts_with(&canonical(d.data_dir()).join("tmp").display().to_string()), "{home}");
    let config: Value = serde_json::from_str(up.lines().find_map(|l| l.strip_prefix("CONFIG ")).unwrap()).unwrap();
    assert_eq!(config, json!({"auths": {"registry.example:5000": {"auth": "Ym9iOnJlZy1wYXNz"}}}));
    let config_dir = up.lines().find_map(|l| l.strip_prefix("CONFIGDIR ")).unwrap();
    assert!(!std::path::Path::new(config_dir).exists(), "the deploy's config folder is removed");
    assert!(!d.logs().contains("reg-pass"));
    assert_nothing_left(&d, &token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_name_one_stack() {
    if !require_docker() {
        return;
    }
    let image = test_image();
    let (d, token, eid) = daemon_with_local(&[]).await;
    let file = compose_file(image, "");
    let name = unique("twin");
    let body = json!({"Name": name, "StackFileContent": file});
    let (a, b) = tokio::join!(
        create_string(&d, &token, "standalone", eid, &body),
        create_string(&d, &token, "standalone", eid, &body)
    );
    let mut statuses = [a.0.as_u16(), b.0.as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{a:?} {b:?}");
    let (ok, clash) = if a.0 == StatusCode::OK { (a.1, b.1) } else { (b.1, a.1) };
    assert_eq!(clash["message"], format!("A stack with the normalized name '{name}' already exists"));
    assert_eq!(project_containers(&name).await.len(), 1);
    // Case and punctuation do not make another name.
    let (s, _) = create_string(
        &d,
        &token,
        "standalone",
        eid,
        &json!({"Name": format!("{}.", name.to_uppercase()), "StackFileContent": file}),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Containers of a Compose project started outside Berth hold the name.
    let outside = unique("outside");
    let cid = run(
        "docker",
        &["run", "-d", "--label", &format!("com.docker.compose.project={outside}"), image, "sleep", "60"],
        None,
    );
    let (s, v) =
        create_string(&d, &token, "standalone", eid, &json!({"Name": outside, "StackFileContent": file})).await;
    run("docker", &["rm", "-f", &cid], None);
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["message"], format!("A stack with the normalized name '{outside}' already exists"));

    let (s, _) = d.delete(&format!("/api/stacks/{}?endpointId={eid}", ok["Id"]), Some(&token)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_nothing_left(&d, &token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_users_own_their_stacks() {
    if !require_docker() {
        return;
    }
    let image = test_image();
    let (d, admin, eid) = daemon_with_local(&[]).await;
    let a = Some(admin.as_str());
    let mut ids = Vec::new();
    for n in ["alice", "bob", "carol"] {
        let (s, v) = d
            .post_json("/api/users", a, &json!({"Username": n, "Password": format!("{n}-password-12"), "Role": 2}))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        ids.push(v["Id"].as_u64().unwrap());
    }
    let policies = json!({ids[0].to_string(): {"RoleId": 0}, ids[1].to_string(): {"RoleId": 0}});
    let (s, v) = d.put_json(&format!("/api/endpoints/{eid}"), a, &json!({"UserAccessPolicies": policies})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // A new endpoint denies standard users everything: restore Portainer's defaults.
    portainer_defaults(&d, &admin, eid).await;
    let alice = d.login("alice", "alice-password-12").await;
    let bob = d.login("bob", "bob-password-12").await;
    let carol = d.login("carol", "carol-password-12").await;
    let file = compose_file(image, "");
    let name = unique("mine");

    let (s, v) = create_string(&d, &carol, "standalone", eid, &json!({"Name": name, "StackFileContent": file})).await;
    assert_eq!((s, v["message"].as_str()), (StatusCode::FORBIDDEN, Some("Permission denied to access environment")));
    let (s, v) = create_string(
        &d,
        &alice,
        "standalone",
        eid,
        &json!({"Name": name, "StackFileContent": format!("{file}    env_file: /etc/shadow\n")}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["message"], "Invalid stack file");

    let (s, v) = create_string(&d, &alice, "standalone", eid, &json!({"Name": name, "StackFileContent": file})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let id = v["Id"].as_u64().unwrap();
    assert_eq!(v["CreatedBy"], "alice");
    assert_eq!(
        v["ResourceControl"],
        json!({"Id": id, "ResourceId": format!("{eid}_{name}"), "SubResourceIds": [], "Type": 6,
               "UserAccesses": [{"UserId": ids[0], "AccessLevel": 1}], "TeamAccesses": [], "Public": false,
               "AdministratorsOnly": false, "System": false})
    );
    // Bob shares the endpoint but not the stack.
    let (s, v) = d.get_json(&format!("/api/stacks/{id}"), Some(&bob)).await;
    assert_eq!((s, v["message"].as_str()), (StatusCode::FORBIDDEN, Some("Access denied to resource")));
    assert_eq!(d.get_json("/api/stacks", Some(&bob)).await.1, json!([]));
    assert_eq!(stack_post(&d, &bob, &format!("/api/stacks/{id}/stop?endpointId={eid}")).await.0, StatusCode::FORBIDDEN);
    assert_eq!(d.delete(&format!("/api/stacks/{id}?endpointId={eid}"), Some(&bob)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(d.get_json(&format!("/api/stacks/{id}/file"), Some(&bob)).await.0, StatusCode::FORBIDDEN);
    let (s, _) = d.get_json(&filtered(json!({"IncludeOrphanedStacks": true})), Some(&bob)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Alice and the admin see it.
    assert_eq!(d.get_json("/api/stacks", Some(&alice)).await.1.as_array().unwrap().len(), 1);
    assert_eq!(d.get_json("/api/stacks", a).await.1.as_array().unwrap().len(), 1);
    assert_eq!(d.get_json(&format!("/api/stacks/{id}"), Some(&alice)).await.0, StatusCode::OK);

    // Stack management switched off for standard users.
    let settings_path = format!("/api/endpoints/{eid}/settings");
    let settings = |v: Value| {
        let p = settings_path.clone();
        let d = &d;
        async move { d.put_json(&p, a, &v).await }
    };
    assert_eq!(settings(json!({"allowStackManagementForRegularUsers": false})).await.0, StatusCode::OK);
    let (s, v) =
        create_string(&d, &alice, "standalone", eid, &json!({"Name": "other", "StackFileContent": file})).await;
    assert_eq!(
        (s, v["message"].as_str()),
        (StatusCode::FORBIDDEN, Some("Stack creation is disabled for non-admin users"))
    );
    assert_eq!(d.get_json(&format!("/api/stacks/{id}"), Some(&alice)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(d.get_json("/api/stacks", Some(&alice)).await.1, json!([]));
    // Restricted bind mounts: the file is read, and only a bind mount is
    // refused.
    assert_eq!(
        settings(json!({"allowStackManagementForRegularUsers": true, "allowBindMountsForRegularUsers": false})).await.0,
        StatusCode::OK
    );
    let bind = format!("{file}    volumes: [\"/etc:/x:ro\"]\n");
    let (s, v) =
        create_string(&d, &alice, "standalone", eid, &json!({"Name": "other", "StackFileContent": bind})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["details"].as_str().unwrap().contains("bind mounting host paths is disabled"), "{v}");
    assert_eq!(settings(json!({"allowBindMountsForRegularUsers": true})).await.0, StatusCode::OK);

    let (s, v) = d.delete(&format!("/api/stacks/{id}?endpointId={eid}"), Some(&alice)).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    assert!(project_containers(&name).await.is_empty());
    assert_nothing_left(&d, &admin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_through_tcp_and_mutual_tls() {
    if !require_docker() {
        return;
    }
    let image = test_image();
    let pki = Pki::new();
    let (tcp_port, tcp_conns) = tcp_relay(DOCKER_SOCKET.into()).await;
    let (tls_port, handshakes) = tls_relay(DOCKER_SOCKET.into(), &pki).await;
    let d = Daemon::start().await;
    let token = d.admin_token().await;
    let t = Some(token.as_str());
    let tcp = d.create_endpoint(&token, "tcp", &format!("tcp://127.0.0.1:{tcp_port}")).await;
    let tls = create_tls_endpoint(&d, &token, "tls", tls_port, &pki).await;
    let file = compose_file(image, "");
    let counters = [(tcp, tcp_conns.clone()), (tls, handshakes.clone())];
    for (eid, counter) in counters {
        let name = unique("wire");
        // Berth's own name checks reuse this pooled connection, so what the
        // counter gains below is the deployer's.
        let (s, _) = d.get_json(&format!("/api/endpoints/{eid}/docker/_ping"), t).await;
        assert_eq!(s, StatusCode::OK);
        let before = counter.load(std::sync::atomic::Ordering::Relaxed);
        let (s, v) =
            create_string(&d, &token, "standalone", eid, &json!({"Name": name, "StackFileContent": file})).await;
        assert_eq!(s, StatusCode::OK, "endpoint {eid}: {v}");
        let after = counter.load(std::sync::atomic::Ordering::Relaxed);
        assert!(after > before, "endpoint {eid}: the deployer used the relay ({before} -> {after})");
        assert!(running(&project_containers(&name).await));
        let id = v["Id"].as_u64().unwrap();
        let (s, v) = stack_post(&d, &token, &format!("/api/stacks/{id}/stop?endpointId={eid}")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert!(project_containers(&name).await.is_empty());
        let (s, v) = stack_post(&d, &token, &format!("/api/stacks/{id}/start?endpointId={eid}")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, v) = d.delete(&format!("/api/stacks/{id}?endpointId={eid}"), t).await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
        assert!(project_containers(&name).await.is_empty());
    }
    assert_nothing_left(&d, &token).await;

    // An endpoint deleted under a stack leaves it orphaned: listed for
    // admins on request, deletable without a host.
    let name = unique("orphan");
    let (s, v) = create_string(&d, &token, "standalone", tcp, &json!({"Name": name, "StackFileContent": file})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let id = v["Id"].as_u64().unwrap();
    assert_eq!(d.delete(&format!("/api/endpoints/{tcp}"), t).await.0, StatusCode::NO_CONTENT);
    assert_eq!(d.get_json("/api/stacks", t).await.1, json!([]));
    let (_, v) = d.get_json(&filtered(json!({"IncludeOrphanedStacks": true})), t).await;
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    let (s, v) = d.delete(&format!("/api/stacks/{id}?endpointId={tcp}"), t).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    assert_nothing_left(&d, &token).await;
    // Its containers were not Berth's to remove once orphaned.
    remove_project(&name).await;
}
