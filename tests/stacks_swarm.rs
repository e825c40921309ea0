//! Swarm stacks on a single-node swarm of the real engine: the seeds'
//! walkthrough with HTTPie (Swarm ID from the proxy, legacy create from a
//! repository with `ComposeFilePathInRepository`, delete), then a swarm
//! stack through the mutual-TLS transport with update (prune), stop, start
//! and delete, and the swarm-specific bad inputs.
//!
//! The engine's swarm state is restored at the end, even on failure: a
//! swarm initialised here is left (`docker swarm leave --force`).

// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use berth_testkit::endpoints::*;
use berth_testkit::harness::*;
use berth_testkit::stacks::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn stack_file(image: &str, services: &[&str]) -> String {
    let mut s = String::from("version: \"3.7\"\nservices:\n");
    for name in services {
        s.push_str(&format!(
            "  {name}:\n    image: {image}\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 3600 & wait\"]\n"
        ));
    }
    s
}

/// Running tasks of a service, seen through Berth's Docker proxy.
async fn running_tasks(d: &Daemon, token: &str, endpoint: u64, service: &str) -> usize {
    let f = serde_urlencoded::to_string([("filters", json!({"service": [service]}).to_string())]).unwrap();
    let (s, v) = d.get_json(&format!("/api/endpoints/{endpoint}/docker/tasks?{f}"), Some(token)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().unwrap().iter().filter(|t| t["Status"]["State"] == "running").count()
}

/// Service names on the endpoint, seen through Berth's Docker proxy.
async fn services(d: &Daemon, token: &str, endpoint: u64) -> Vec<String> {
    let (s, v) = d.get_json(&format!("/api/endpoints/{endpoint}/docker/services"), Some(token)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().unwrap().iter().map(|s| s["Spec"]["Name"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_swarm_walkthrough_and_swarm_over_mutual_tls() {
    if !require_docker() || !require_httpie() {
        return;
    }
    let image = test_image();
    let _swarm = SwarmGuard::init();
    let git = GitServer::start();
    git.repo("templates", &[("stacks/cockroachdb/docker-stack.yml", &stack_file(image, &["db"]))]);
    let d = Daemon::start().await;
    let token = d.admin_token().await;
    let eid = d.create_endpoint(&token, "local", &format!("unix://{DOCKER_SOCKET}")).await;
    assert_eq!(eid, 1, "the seeds talk to endpoint 1");
    let port = d.port();
    let auth = format!("Authorization: Bearer {token}");

    // The seeds, as written (plus --ignore-stdin: tests have no terminal).
    let (code, swarm) = httpie(vec!["GET".into(), format!(":{port}/api/endpoints/1/docker/swarm"), auth.clone()]).await;
    assert_eq!(code, 0, "{swarm}");
    let swarm_id = swarm["ID"].as_str().unwrap().to_string();
    assert_eq!(swarm_id, SwarmGuard::cluster_id());
    let (code, v) = httpie(vec![
        "POST".into(),
        format!(":{port}/api/stacks?method=repository&type=1&endpointId=1"),
        auth.clone(),
        "Name=myTestStack".into(),
        format!("SwarmID={swarm_id}"),
        format!("RepositoryURL={}", git.url("templates")),
        "ComposeFilePathInRepository=stacks/cockroachdb/docker-stack.yml".into(),
    ])
    .await;
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["Id"], 1);
    assert_eq!(v["Name"], "myteststack", "Portainer 2 normalises names");
    assert_eq!(v["Type"], 1);
    assert_eq!(v["EndpointId"], 1);
    assert_eq!(v["SwarmId"], swarm_id);
    assert_eq!(v["EntryPoint"], "stacks/cockroachdb/docker-stack.yml");
    assert_eq!(v["Env"], Value::Null);
    assert_eq!(v["GitConfig"]["ConfigHash"], git.head("templates"));
    assert!(v["ProjectPath"].as_str().unwrap().ends_with("/compose/1"), "{v}");
    // The service really runs.
    assert!(services(&d, &token, 1).await.contains(&"myteststack_db".to_string()));
    eventually(Duration::from_secs(30), "myteststack_db to run", || async {
        (running_tasks(&d, &token, 1, "myteststack_db").await == 1).then_some(())
    })
    .await;
    // Listed by its swarm, not by an endpoint filter (Portainer's rule).
    let (_, l) = d.get_json(&filtered(json!({"SwarmID": swarm_id})), Some(&token)).await;
    assert_eq!(l.as_array().unwrap().len(), 1);
    let (_, l) = d.get_json(&filtered(json!({"EndpointID": 1})), Some(&token)).await;
    assert_eq!(l, json!([]));
    // The name is taken on the swarm.
    let (s, v) = d
        .post_json(
            "/api/stacks/create/swarm/string?endpointId=1",
            Some(&token),
            &json!({"Name": "myTestStack", "SwarmID": swarm_id, "StackFileContent": stack_file(image, &["x"])}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");

    let (status, body) =
        httpie_response(vec!["DELETE".into(), format!(":{port}/api/stacks/1?endpointId=1"), auth.clone()]).await;
    assert_eq!(status, 204, "{body}");
    assert!(!services(&d, &token, 1).await.iter().any(|s| s.starts_with("myteststack_")), "gone after the delete");
    assert!(stack_services("myteststack").await.is_empty());

    // Swarm-specific bad inputs on a manager.
    let (s, v) = d
        .post_json(
            "/api/stacks/create/swarm/string?endpointId=1",
            Some(&token),
            &json!({"Name": "wrongswarm", "SwarmID": "notthisswarm", "StackFileContent": stack_file(image, &["a"])}),
        )
        .await;
    assert_eq!((s, v["message"].as_str()), (StatusCode::BAD_REQUEST, Some("Invalid Swarm ID")), "{v}");
    let (s, v) = d
        .post_json(
            "/api/stacks/create/swarm/string?endpointId=1",
            Some(&token),
            &json!({"Name": "badyaml", "SwarmID": swarm_id, "StackFileContent": "version: \"3.7\"\nservices: [\n"}),
        )
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
    assert_eq!(v["message"], "Unable to deploy stack");
    assert!(v["details"].as_str().unwrap().starts_with("Yaml: line 2"), "the deployer's own words: {v}");
    let (s, v) = d
        .post_json(
            "/api/stacks/create/swarm/string?endpointId=1",
            Some(&token),
            &json!({"Name": "badimage", "SwarmID": swarm_id,
                    "StackFileContent": "version: \"3.7\"\nservices:\n  a:\n    image: \"UPPER/Case:x\"\n"}),
        )
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
    assert!(stack_services("badimage").await.is_empty() && stack_services("badyaml").await.is_empty());
    assert_nothing_left(&d, &token).await;

    // The same swarm through a mutual-TLS endpoint.
    let pki = Pki::new();
    let (tls_port, handshakes) = tls_relay(DOCKER_SOCKET.into(), &pki).await;
    let tls = create_tls_endpoint(&d, &token, "tls", tls_port, &pki).await;
    let (s, _) = d.get_json(&format!("/api/endpoints/{tls}/docker/_ping"), Some(&token)).await;
    assert_eq!(s, StatusCode::OK);
    let before = handshakes.load(std::sync::atomic::Ordering::Relaxed);
    let (s, v) = d
        .post_json(
            &format!("/api/stacks/create/swarm/string?endpointId={tls}"),
            Some(&token),
            &json!({"Name": "tlsstack", "SwarmID": swarm_id, "StackFileContent": stack_file(image, &["one", "two"]),
                    "Env": [{"name": "UNUSED", "value": "x"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(handshakes.load(std::sync::atomic::Ordering::Relaxed) > before, "docker stack deploy used the TLS relay");
    let id = v["Id"].as_u64().unwrap();
    let mut names = services(&d, &token, tls).await;
    names.retain(|n| n.starts_with("tlsstack_"));
    names.sort();
    assert_eq!(names, ["tlsstack_one", "tlsstack_two"]);

    // Update with prune: a service dropped from the file goes. The
    // stack's variables are substituted by Berth (`docker stack deploy`
    // would take them from its own environment, which they never reach).
    let with_env = format!("{}    environment: [\"FOO=${{FOO}}\", BAR, \"LIT=$$FOO\"]\n", stack_file(image, &["one"]));
    let (s, v) = d
        .put_json(
            &format!("/api/stacks/{id}?endpointId={tls}"),
            Some(&token),
            &json!({"StackFileContent": with_env, "Prune": true,
                    "Env": [{"name": "FOO", "value": "it's $HOME ${X"}, {"name": "BAR", "value": "b"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "`${{` cannot be carried: {v}");
    let (s, v) = d
        .put_json(
            &format!("/api/stacks/{id}?endpointId={tls}"),
            Some(&token),
            &json!({"StackFileContent": with_env, "Prune": true,
                    "Env": [{"name": "FOO", "value": "it's $HOME"}, {"name": "BAR", "value": "b"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["Option"], json!({"Prune": true}));
    let svcs = stack_services("tlsstack").await;
    let names: Vec<String> = svcs.iter().map(|s| s["Spec"]["Name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["tlsstack_one"]);
    let mut env: Vec<String> = svcs[0]["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    env.sort();
    assert_eq!(env, ["BAR=b", "FOO=it's $HOME", "LIT=$FOO"]);
    let project = std::fs::read_dir(d.data_dir().join("compose").join(id.to_string())).unwrap();
    let left: Vec<_> = project.flatten().map(|e| e.file_name()).collect();
    assert_eq!(left, ["docker-compose.yml"], "the rendered copy is removed");

    let (s, v) = stack_post(&d, &token, &format!("/api/stacks/{id}/stop?endpointId={tls}")).await;
    assert_eq!((s, &v["Status"]), (StatusCode::OK, &json!(2)), "{v}");
    assert!(stack_services("tlsstack").await.is_empty(), "stack rm on stop");
    let (s, v) = stack_post(&d, &token, &format!("/api/stacks/{id}/start?endpointId={tls}")).await;
    assert_eq!((s, &v["Status"]), (StatusCode::OK, &json!(1)), "{v}");
    assert_eq!(stack_services("tlsstack").await.len(), 1);
    let (s, v) = d.delete(&format!("/api/stacks/{id}?endpointId={tls}"), Some(&token)).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    assert!(stack_services("tlsstack").await.is_empty());
    assert_nothing_left(&d, &token).await;
}
