//! Seed 001's Docker requests (the "Portainer HTTP API by example" gist),
//! run with HTTPie as written against Berth and a real engine: list
//! containers, create `web01` from `nginx:latest` publishing port 80,
//! start it, delete it with `force==true`.
//!
//! Deviations, each forced by the test machine rather than by Berth:
//! `--ignore-stdin` (no terminal), `:PORT` is the daemon's port, the name
//! carries a per-run suffix so parallel runs cannot collide, the host port
//! is 8080 only when 8080 is free, and when the engine has no `nginx:latest`
//! (no registry access) the local test image is tagged as such for the
//! duration of the test.

// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::time::Duration;

use berth_testkit::endpoints::{httpie, httpie_response};
use berth_testkit::harness::*;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(180);

fn engine(args: &[&str]) -> std::process::Output {
    std::process::Command::new("docker")
        .arg("-H")
        .arg(format!("unix://{DOCKER_SOCKET}"))
        .args(args)
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_HOST")
        .stdin(Stdio::null())
        .output()
        .expect("run docker against the engine socket")
}

/// Removes the container (and the `nginx:latest` tag if this test made
/// it) through the engine's socket, pass or fail.
struct Cleanup {
    container: String,
    untag_nginx: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = engine(&["rm", "-f", &self.container]);
        if self.untag_nginx {
            let _ = engine(&["rmi", "nginx:latest"]);
        }
    }
}

/// 8080 as in the seed when free on all interfaces (where Docker publishes),
/// else any free port.
fn host_port() -> u16 {
    if std::net::TcpListener::bind("0.0.0.0:8080").is_ok() {
        return 8080;
    }
    std::net::TcpListener::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_001_container_list_create_start_delete() {
    if !require_docker() || !require_httpie() {
        return;
    }
    tokio::time::timeout(LIMIT, async {
        let image = test_image();
        let untag_nginx = !engine(&["image", "inspect", "nginx:latest"]).status.success();
        if untag_nginx {
            let o = engine(&["tag", image, "nginx:latest"]);
            assert!(o.status.success(), "tag {image} as nginx:latest: {o:?}");
        }
        let name = format!("web01-berth-{}", std::process::id());
        let _cleanup = Cleanup { container: name.clone(), untag_nginx };

        let daemon = Daemon::start().await;
        let token = daemon.admin_token().await;
        let id = daemon.create_endpoint(&token, "test-local", &format!("unix://{DOCKER_SOCKET}")).await;
        assert_eq!(id, 1, "the seed talks to endpoint 1");
        let port = daemon.port();
        let auth = format!("Authorization: Bearer {token}");
        let base = format!(":{port}/api/endpoints/1/docker");

        // http GET :9000/api/endpoints/1/docker/containers/json "Authorization: Bearer ..." all==true
        let (code, list) =
            httpie(vec!["GET".into(), format!("{base}/containers/json"), auth.clone(), "all==true".into()]).await;
        assert_eq!(code, 0, "{list}");
        assert!(list.is_array(), "Docker's ContainerList answer: {list}");

        // http POST .../containers/create ... name=="web01" Image="nginx:latest"
        //   ExposedPorts:='{ "80/tcp": {} }' HostConfig:='{ "PortBindings": { "80/tcp": [{ "HostPort": "8080" }] } }'
        let hp = host_port();
        let (code, created) = httpie(vec![
            "POST".into(),
            format!("{base}/containers/create"),
            auth.clone(),
            format!("name=={name}"),
            "Image=nginx:latest".into(),
            r#"ExposedPorts:={ "80/tcp": {} }"#.into(),
            format!(r#"HostConfig:={{ "PortBindings": {{ "80/tcp": [{{ "HostPort": "{hp}" }}] }} }}"#),
        ])
        .await;
        assert_eq!(code, 0, "{created}");
        let cid = created["Id"].as_str().unwrap_or_else(|| panic!("no Id in {created}")).to_owned();
        assert_eq!(cid.len(), 64, "{created}");
        assert!(created.get("Warnings").is_some(), "Docker's ContainerCreate answer: {created}");

        let (code, list) =
            httpie(vec!["GET".into(), format!("{base}/containers/json"), auth.clone(), "all==true".into()]).await;
        assert_eq!(code, 0);
        let mine: Vec<&Value> = list.as_array().unwrap().iter().filter(|c| c["Id"] == cid.as_str()).collect();
        assert_eq!(mine.len(), 1, "the new container is listed: {list}");
        assert_eq!(mine[0]["Names"][0], format!("/{name}"));
        assert_eq!(mine[0]["Image"], "nginx:latest");

        // http POST .../containers/<ID>/start "Authorization: Bearer ..."
        let (status, body) =
            httpie_response(vec!["POST".into(), format!("{base}/containers/{cid}/start"), auth.clone()]).await;
        assert_eq!(status, 204, "{body}");
        let inspect: Value = serde_json::from_slice(&engine(&["inspect", &cid]).stdout).unwrap();
        let c = &inspect[0];
        assert_ne!(c["State"]["StartedAt"], "0001-01-01T00:00:00Z", "the container was started: {c}");
        assert_eq!(c["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"], hp.to_string());
        assert!(c["Config"]["ExposedPorts"].get("80/tcp").is_some(), "{c}");

        // Starting it again: Docker's 304 passes through as is.
        if c["State"]["Running"] == true {
            let (status, _) =
                httpie_response(vec!["POST".into(), format!("{base}/containers/{cid}/start"), auth.clone()]).await;
            assert_eq!(status, 304);
        }

        // http DELETE .../containers/<ID> "Authorization: Bearer ..." force==true
        let (status, body) = httpie_response(vec![
            "DELETE".into(),
            format!("{base}/containers/{cid}"),
            auth.clone(),
            "force==true".into(),
        ])
        .await;
        assert_eq!(status, 204, "{body}");
        assert!(!engine(&["inspect", &cid]).status.success(), "the container is gone");

        // Deleting it again: Docker's own 404 body comes back.
        let (status, body) = httpie_response(vec![
            "DELETE".into(),
            format!("{base}/containers/{cid}"),
            auth.clone(),
            "force==true".into(),
        ])
        .await;
        assert_eq!(status, 404, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["message"].as_str().unwrap_or_default().contains("No such container"), "{v}");

        // Without the header: Berth's 401, in Portainer's shape.
        let (status, body) =
            httpie_response(vec!["GET".into(), format!("{base}/containers/json"), "all==true".into()]).await;
        assert_eq!(status, 401, "{body}");
    })
    .await
    .expect("test timed out");
}
