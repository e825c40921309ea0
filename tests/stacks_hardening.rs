//! Issue 19 against the real engine, docker-compose v1 and git daemon on
//! loopback: a stack's variables never reach the deployer's process (a
//! shared object built here, named by `OPENSSL_CONF`, `OPENSSL_MODULES`
//! and `LD_PRELOAD` in the stack's `Env`, never loads) yet still reach the
//! containers; standard users' files are parsed, whatever the YAML
//! spelling; their repository URLs stay off Berth's host and private
//! networks; and per-user limits.

// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use berth_testkit::harness::*;
use berth_testkit::stacks::*;
use reqwest::StatusCode;
use serde_json::json;

fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}{}x{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A shared object whose constructor appends to `marker` when loaded, and
/// which OpenSSL would also accept as a provider.
fn evil_library(dir: &Path, marker: &Path) -> Vec<u8> {
    let src = dir.join("evil.c");
    std::fs::write(
        &src,
        format!(
            "#include <stdio.h>\n\
             __attribute__((constructor)) static void pwn(void) {{\n\
               FILE *f = fopen(\"{}\", \"a\"); if (f) {{ fputs(\"loaded\\n\", f); fclose(f); }}\n\
             }}\n\
             int OSSL_provider_init(void) {{ return 0; }}\n",
            marker.display()
        ),
    )
    .unwrap();
    let out = dir.join("evil.so");
    run("cc", &["-shared", "-fPIC", "-o", out.to_str().unwrap(), src.to_str().unwrap()], None);
    std::fs::read(&out).unwrap()
}

const OPENSSL_CNF: &str = "openssl_conf = openssl_init\n[openssl_init]\nproviders = provider_sect\n\
                           [provider_sect]\nevil = evil_sect\ndefault = default_sect\n\
                           [evil_sect]\nmodule = evil.so\nactivate = 1\n[default_sect]\nactivate = 1\n";

async fn standard_user(d: &Daemon, admin: &str, eid: u64, name: &str) -> String {
    let password = format!("{name}-password-12");
    let (s, v) =
        d.post_json("/api/users", Some(admin), &json!({"Username": name, "Password": password, "Role": 2})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let uid = v["Id"].as_u64().unwrap();
    let policies = json!({uid.to_string(): {"RoleId": 0}});
    let (s, v) =
        d.put_json(&format!("/api/endpoints/{eid}"), Some(admin), &json!({"UserAccessPolicies": policies})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // New endpoints deny standard users everything.
    portainer_defaults(d, admin, eid).await;
    d.login(name, &password).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_variables_reach_containers_and_never_the_deployer() {
    if !require_docker() {
        return;
    }
    let image = test_image();
    let work = tempfile::tempdir().unwrap();
    let marker = work.path().join("loaded");
    let so = evil_library(work.path(), &marker);
    let git = GitServer::start();
    let compose = format!(
        "services:\n  app:\n    image: {image}\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 3600 & wait\"]\n    \
         environment:\n      - FOO=${{FOO}}\n      - QUOTED=${{QUOTED}}\n"
    );
    let repo = git.repo("evil", &[("docker-compose.yml", &compose), ("openssl.cnf", OPENSSL_CNF)]);
    std::fs::create_dir_all(repo.join("lib")).unwrap();
    std::fs::write(repo.join("lib/evil.so"), &so).unwrap();
    git.commit("evil", &[]);

    // The control: these variables do load the library into docker-compose
    // (Python, OpenSSL 3) when they are in its environment.
    let loads = |env: &[(&str, String)]| {
        let _ = std::fs::remove_file(&marker);
        let mut c = std::process::Command::new("docker-compose");
        c.arg("version").env_clear().env("PATH", "/usr/bin:/bin");
        for (k, v) in env {
            c.env(k, v);
        }
        let _ = c.output().unwrap();
        let hit = marker.exists();
        let _ = std::fs::remove_file(&marker);
        hit
    };
    let lib = repo.join("lib");
    assert!(
        loads(&[
            ("OPENSSL_CONF", repo.join("openssl.cnf").display().to_string()),
            ("OPENSSL_MODULES", lib.display().to_string())
        ]),
        "the OpenSSL config loads the library"
    );
    assert!(loads(&[("LD_PRELOAD", lib.join("evil.so").display().to_string())]), "LD_PRELOAD loads the library");

    let d = Daemon::start().await;
    let admin = d.admin_token().await;
    let eid = d.create_endpoint(&admin, "local", &format!("unix://{DOCKER_SOCKET}")).await;
    // The clone's path is predictable: the first stack is stack 1.
    let project = std::fs::canonicalize(d.data_dir()).unwrap().join("compose").join("1");
    let env = json!([
        {"name": "OPENSSL_CONF", "value": project.join("openssl.cnf").display().to_string()},
        {"name": "OPENSSL_MODULES", "value": project.join("lib").display().to_string()},
        {"name": "LD_PRELOAD", "value": project.join("lib/evil.so").display().to_string()},
        {"name": "PYTHONSTARTUP", "value": "/etc/passwd"},
        {"name": "FOO", "value": "it's a \\ \"test\" $HOME $(id) #1"},
        {"name": "QUOTED", "value": "'single'"},
    ]);
    let name = unique("envs");
    let (s, v) = d
        .post_json(
            &format!("/api/stacks/create/standalone/repository?endpointId={eid}"),
            Some(&admin),
            &json!({"Name": name, "RepositoryURL": git.url("evil"), "Env": env}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["ProjectPath"], project.display().to_string());
    let id = v["Id"].as_u64().unwrap();
    assert!(project.join("lib/evil.so").is_file());
    let cs = project_containers(&name).await;
    let vars = container_env(cs[0]["Id"].as_str().unwrap()).await;
    assert!(vars.contains(&"FOO=it's a \\ \"test\" $HOME $(id) #1".to_string()), "{vars:?}");
    assert!(vars.contains(&"QUOTED='single'".to_string()), "{vars:?}");
    assert!(!vars.iter().any(|v| v.starts_with("OPENSSL") || v.starts_with("LD_")), "only what the file names");

    let ops = [format!("/api/stacks/{id}/stop?endpointId={eid}"), format!("/api/stacks/{id}/start?endpointId={eid}")];
    for path in &ops {
        let (s, v) = stack_post(&d, &admin, path).await;
        assert_eq!(s, StatusCode::OK, "{path}: {v}");
    }
    let (s, v) = d.put_json(&format!("/api/stacks/{id}/git/redeploy?endpointId={eid}"), Some(&admin), &json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = d.delete(&format!("/api/stacks/{id}?endpointId={eid}"), Some(&admin)).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    assert!(project_containers(&name).await.is_empty());
    assert!(!marker.exists(), "the stack's variables reached a deployer: the library was loaded");

    // Names and values the env file cannot carry, or Compose would obey.
    for (n, val) in [("DOCKER_HOST", "tcp://x"), ("COMPOSE_FILE", "/etc/x"), ("A-B", "x"), ("A", "x\ny"), ("A", "${X}")]
    {
        let (s, v) = create_string(
            &d,
            &admin,
            "standalone",
            eid,
            &json!({"Name": "x", "StackFileContent": compose, "Env": [{"name": n, "value": val}]}),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{n}={val:?}: {v}");
    }
    assert_nothing_left(&d, &admin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_users_files_are_parsed_in_every_spelling() {
    if !require_docker() {
        return;
    }
    let image = test_image();
    let d = Daemon::start().await;
    let admin = d.admin_token().await;
    let eid = d.create_endpoint(&admin, "local", &format!("unix://{DOCKER_SOCKET}")).await;
    let bob = standard_user(&d, &admin, eid, "bob").await;
    let base = format!("services:\n  app:\n    image: {image}\n    command: [\"sleep\", \"3600\"]\n");
    let spellings: Vec<(&str, Vec<u8>)> = vec![
        ("plain", format!("{base}    env_file: /etc/shadow\n").into_bytes()),
        ("quoted", format!("{base}    \"env_file\": /etc/shadow\n").into_bytes()),
        ("escaped", format!("{base}    \"env\\u005ffile\": /etc/shadow\n").into_bytes()),
        ("folded", format!("{base}    ? \"env\\\n      _file\"\n    : /etc/shadow\n").into_bytes()),
        ("flow", format!("services: {{app: {{image: {image}, env_file: /etc/shadow}}}}\n").into_bytes()),
        (
            "merge",
            format!("x-e: &e {{env_file: /etc/shadow}}\nservices:\n  app:\n    <<: *e\n    image: {image}\n")
                .into_bytes(),
        ),
        ("build", b"services: {app: {build: /}}\n".to_vec()),
        ("include", format!("include: [/etc/x.yml]\n{base}").into_bytes()),
        ("secret", format!("{base}secrets:\n  s: {{\"fi\\x6ce\": /etc/shadow}}\n").into_bytes()),
        ("bom", [b"\xEF\xBB\xBF".to_vec(), base.clone().into_bytes()].concat()),
        ("utf16", base.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()),
        ("latin1", b"services: {app: {image: caf\xe9}}\n".to_vec()),
    ];
    for (what, bytes) in &spellings {
        let name = unique("spell");
        let (s, v) = create_file(
            &d,
            &bob,
            &format!("/api/stacks/create/standalone/file?endpointId={eid}"),
            &[("Name", &name)],
            Some(bytes.clone()),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{what}: {v}");
        assert_eq!(v["message"], "Invalid stack file", "{what}: {v}");
        // Admins are trusted with their host, as before: no such check
        // (these fail in Compose, or deploy).
        let (s, v) = create_file(
            &d,
            &admin,
            &format!("/api/stacks/create/standalone/file?endpointId={eid}"),
            &[("Name", &name)],
            Some(bytes.clone()),
        )
        .await;
        assert_ne!(s, StatusCode::BAD_REQUEST, "{what}: {v}");
        if s == StatusCode::OK {
            let (s, v) = d.delete(&format!("/api/stacks/{}?endpointId={eid}", v["Id"]), Some(&admin)).await;
            assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
        }
    }

    // Bind mounts follow the endpoint's setting; a plain file deploys.
    let bind = format!("{base}    volumes: ['/etc:/host-etc:ro']\n");
    let (s, v) = d
        .put_json(
            &format!("/api/endpoints/{eid}/settings"),
            Some(&admin),
            &json!({"allowBindMountsForRegularUsers": false}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) =
        create_string(&d, &bob, "standalone", eid, &json!({"Name": unique("bind"), "StackFileContent": bind})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["details"].as_str().unwrap().contains("bind mounting"), "{v}");
    let name = unique("plain");
    let (s, v) = create_string(&d, &bob, "standalone", eid, &json!({"Name": name, "StackFileContent": base})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let id = v["Id"].as_u64().unwrap();

    // The check follows the owner: an admin's update of bob's stack may
    // not slip a host file in either.
    let (s, v) = d
        .put_json(
            &format!("/api/stacks/{id}?endpointId={eid}"),
            Some(&admin),
            &json!({"StackFileContent": format!("{base}    env_file: /etc/shadow\n")}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = d
        .put_json(&format!("/api/stacks/{id}?endpointId={eid}"), Some(&admin), &json!({"StackFileContent": bind}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "the owner's endpoint rules: {v}");
    let (_, f) = d.get_json(&format!("/api/stacks/{id}/file"), Some(&admin)).await;
    assert_eq!(f["StackFileContent"], base, "the refused update left the file alone");
    let (s, v) = d.delete(&format!("/api/stacks/{id}?endpointId={eid}"), Some(&bob)).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    assert_nothing_left(&d, &admin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_users_git_urls_stay_off_private_addresses() {
    if !require_docker() {
        return;
    }
    let image = test_image();
    let git = GitServer::start();
    let file = compose_file(image, "");
    git.repo("app", &[("docker-compose.yml", &file)]);
    git.repo("dotenv", &[("docker-compose.yml", &file), (".env", "GREETING=from-dotenv\n")]);
    let (closed, _) = free_ports();
    // Without an allow list: loopback in every spelling is refused before
    // anything connects; admins still reach it.
    let d = Daemon::start().await;
    let admin = d.admin_token().await;
    let eid = d.create_endpoint(&admin, "local", &format!("unix://{DOCKER_SOCKET}")).await;
    let carol = standard_user(&d, &admin, eid, "carol").await;
    let path = format!("/api/stacks/create/standalone/repository?endpointId={eid}");
    let port = git.port;
    for url in [
        git.url("app"),
        format!("git://localhost:{port}/app"),
        format!("git://[::1]:{port}/app"),
        format!("git://[::ffff:127.0.0.1]:{port}/app"),
        format!("git://0.0.0.0:{port}/app"),
        "http://169.254.169.254/latest".to_string(),
        format!("http://10.0.0.1:{closed}/x"),
    ] {
        let (s, v) = d.post_json(&path, Some(&carol), &json!({"Name": unique("r"), "RepositoryURL": url})).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{url}: {v}");
        assert!(v["details"].as_str().unwrap().contains("private network"), "{url}: {v}");
    }
    let name = unique("adm");
    let (s, v) = d.post_json(&path, Some(&admin), &json!({"Name": name, "RepositoryURL": git.url("app")})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = d.delete(&format!("/api/stacks/{}?endpointId={eid}", v["Id"]), Some(&admin)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    drop(d);

    // With the loopback address allowed: open and closed ports fail alike
    // for standard users (the detail is in the log only); a repository
    // .env is refused for them; a clean repository deploys.
    let d = Daemon::builder().args(["--git-allowed-hosts", "127.0.0.1"]).start().await;
    let admin = d.admin_token().await;
    let eid = d.create_endpoint(&admin, "local", &format!("unix://{DOCKER_SOCKET}")).await;
    let carol = standard_user(&d, &admin, eid, "carol").await;
    let path = format!("/api/stacks/create/standalone/repository?endpointId={eid}");
    let (s1, closed_v) = d
        .post_json(
            &path,
            Some(&carol),
            &json!({"Name": unique("c"), "RepositoryURL": format!("git://127.0.0.1:{closed}/app")}),
        )
        .await;
    let (s2, missing_v) =
        d.post_json(&path, Some(&carol), &json!({"Name": unique("c"), "RepositoryURL": git.url("nothing-here")})).await;
    assert_eq!((s1, s2), (StatusCode::INTERNAL_SERVER_ERROR, StatusCode::INTERNAL_SERVER_ERROR));
    assert_eq!(closed_v, missing_v, "a closed port and an open one answer alike");
    assert!(d.logs().contains("nothing-here"), "the detail goes to the log");
    let (s, v) =
        d.post_json(&path, Some(&carol), &json!({"Name": unique("e"), "RepositoryURL": git.url("dotenv")})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["details"].as_str().unwrap().contains(".env"), "{v}");
    let name = unique("ok");
    let (s, v) = d.post_json(&path, Some(&carol), &json!({"Name": name, "RepositoryURL": git.url("app")})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = d.delete(&format!("/api/stacks/{}?endpointId={eid}", v["Id"]), Some(&carol)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // An admin's repository .env still feeds Compose, as Compose would read it.
    let name = unique("dot");
    let (s, v) = d.post_json(&path, Some(&admin), &json!({"Name": name, "RepositoryURL": git.url("dotenv")})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let cs = project_containers(&name).await;
    assert!(container_env(cs[0]["Id"].as_str().unwrap()).await.contains(&"GREETING=from-dotenv".to_string()));
    let (s, _) = d.delete(&format!("/api/stacks/{}?endpointId={eid}", v["Id"]), Some(&admin)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_nothing_left(&d, &admin).await;
}

/// A Compose that, for projects named `gate*`, says it started and waits
/// (bounded) for a release file before running the real one.
fn gated_compose(dir: &Path) -> std::path::PathBuf {
    let real = run("sh", &["-c", "command -v docker-compose"], None);
    let body = format!(
        "case \"$*\" in\n\
         *project-name=gate*\" up \"*)\n\
           touch {dir}/started\n\
           i=0; while [ ! -e {dir}/release ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done;;\n\
         esac\n\
         exec {real} \"$@\"\n",
        dir = dir.display()
    );
    script(dir, "gated-compose", &body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_limits_on_stacks_and_deployers() {
    if !require_docker() {
        return;
    }
    let image = test_image();
    let gate = tempfile::tempdir().unwrap();
    let compose = gated_compose(gate.path());
    let d = Daemon::builder()
        .args([
            "--max-stacks-per-user",
            "1",
            "--max-concurrent-deploys",
            "1",
            "--compose-bin",
            compose.to_str().unwrap(),
        ])
        .start()
        .await;
    let admin = d.admin_token().await;
    let eid = d.create_endpoint(&admin, "local", &format!("unix://{DOCKER_SOCKET}")).await;
    let dave = standard_user(&d, &admin, eid, "dave").await;
    let file = compose_file(image, "");
    let (s, v) =
        create_string(&d, &dave, "standalone", eid, &json!({"Name": unique("one"), "StackFileContent": file})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) =
        create_string(&d, &dave, "standalone", eid, &json!({"Name": unique("two"), "StackFileContent": file})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["message"], "Stack limit reached");
    // Admins own as many stacks as they like, but run one deployer at a
    // time here: a second deploy while the first runs is told to retry.
    let held = unique("gate");
    let body = json!({"Name": held, "StackFileContent": file});
    let first = create_string(&d, &admin, "standalone", eid, &body);
    let second = async {
        wait_until(std::time::Duration::from_secs(60), "the first deployer to start", || async {
            gate.path().join("started").exists()
        })
        .await;
        let r =
            create_string(&d, &admin, "standalone", eid, &json!({"Name": unique("other"), "StackFileContent": file}))
                .await;
        std::fs::write(gate.path().join("release"), "").unwrap();
        r
    };
    let ((s1, v1), (s2, v2)) = tokio::join!(first, second);
    assert_eq!(s1, StatusCode::OK, "{v1}");
    assert_eq!(s2, StatusCode::TOO_MANY_REQUESTS, "{v2}");
    assert!(v2["details"].as_str().unwrap().contains("at most 1"), "{v2}");
    let (_, all) = d.get_json("/api/stacks", Some(&admin)).await;
    for s in all.as_array().unwrap() {
        let (st, v) = d.delete(&format!("/api/stacks/{}?endpointId={eid}", s["Id"]), Some(&admin)).await;
        assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    }
    assert_nothing_left(&d, &admin).await;
}
