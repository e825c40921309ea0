//! `/api/resource_controls` (issue 14) against the running daemon: Portainer's
//! create/update/delete rules, the limits on what a standard user may set,
//! the effect on what standard users see through the Docker proxy, stack
//! controls changed through the same route, and the server setting that
//! gives new endpoints Portainer's permissive security settings.

// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use berth_testkit::harness::*;
use berth_testkit::users::*;
use berth_testkit::{stacks as stacks_support, MockDocker};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The mock engine's first container.
const CONTAINER: &str = "8dfafdbc3a40c5c3c4b2a0a1f8e9d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a29180";

/// The mock engine, on a socket in a folder of its own.
struct Engine {
    mock: MockDocker,
    url: String,
    _dir: tempfile::TempDir,
}

async fn engine() -> Engine {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockDocker::start_unix(dir.path().join("docker.sock")).await.unwrap();
    Engine { url: mock.unix_url().unwrap(), mock, _dir: dir }
}

/// A daemon with an admin and one endpoint on `engine`.
struct Env {
    d: Daemon,
    admin: String,
    eid: u64,
}

async fn env(engine: &Engine) -> Env {
    let d = Daemon::start().await;
    let admin = d.admin_token().await;
    let eid = d.create_endpoint(&admin, "mock-engine", &engine.url).await;
    Env { d, admin, eid }
}

impl Env {
    /// The container ids `token` sees in the proxied list.
    async fn sees(&self, token: &str) -> Vec<String> {
        let (s, v) =
            self.d.get_json(&format!("/api/endpoints/{}/docker/containers/json?all=1", self.eid), Some(token)).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v.as_array().unwrap().iter().filter_map(|c| c["Id"].as_str().map(str::to_owned)).collect()
    }

    async fn put(&self, id: u64, token: &str, body: Value) -> (StatusCode, Value) {
        self.d.put_json(&format!("/api/resource_controls/{id}"), Some(token), &body).await
    }
}

fn control(id: u64, resource: &str, kind: u8, users: &[u64], teams: &[u64], public: bool, admins: bool) -> Value {
    json!({
        "Id": id, "ResourceId": resource, "SubResourceIds": [], "Type": kind,
        "UserAccesses": users.iter().map(|u| json!({"UserId": u, "AccessLevel": 1})).collect::<Vec<_>>(),
        "TeamAccesses": teams.iter().map(|t| json!({"TeamId": t, "AccessLevel": 1})).collect::<Vec<_>>(),
        "Public": public, "AdministratorsOnly": admins, "System": false,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_controls_follow_portainers_rules_and_decide_what_standard_users_see() {
    let engine = engine().await;
    let mut e = env(&engine).await;
    let a = e.admin.clone();
    let bob_id = create_user(&e.d, &a, "bob").await;
    let alice_id = create_user(&e.d, &a, "alice").await;
    let blue = create_team(&e.d, &a, "blue", &[bob_id]).await;
    let red = create_team(&e.d, &a, "red", &[alice_id]).await;
    grant(&e.d, &a, e.eid, &[bob_id, alice_id]).await;
    let bob = e.d.login("bob", &password("bob")).await;
    let alice = e.d.login("alice", &password("alice")).await;
    assert!(e.sees(&bob).await.is_empty(), "no control, no access");

    // Creation: admins only, Portainer's validation.
    let post = |body: Value, token: String| {
        let d = &e.d;
        async move { d.post_json("/api/resource_controls", Some(&token), &body).await }
    };
    let invalid = [
        json!({"Type": 1, "Public": true}),
        json!({"ResourceID": "", "Type": 1, "Public": true}),
        json!({"ResourceID": CONTAINER, "Public": true}),
        json!({"ResourceID": CONTAINER, "Type": 10, "Public": true}),
        json!({"ResourceID": CONTAINER, "Type": 1}),
        json!({"ResourceID": CONTAINER, "Type": 1, "Users": [], "Teams": null}),
        json!({"ResourceID": CONTAINER, "Type": 1, "Public": true, "AdministratorsOnly": true}),
        json!({"ResourceID": CONTAINER, "Type": 1, "Users": [bob_id, 999]}),
        json!({"ResourceID": CONTAINER, "Type": 1, "Teams": [999]}),
        json!({"ResourceID": CONTAINER, "Type": 1, "Users": "bob"}),
        json!({"ResourceID": CONTAINER, "Type": 1, "Public": true, "SubResourceIDs": [""]}),
        json!({"ResourceID": "x".repeat(513), "Type": 1, "Public": true}),
    ];
    for body in invalid {
        let (s, v) = post(body.clone(), a.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["message"], "Invalid request payload", "{body}: {v}");
    }
    let (s, v) = post(json!({"ResourceID": CONTAINER, "Type": 1, "Users": [bob_id]}), bob.clone()).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "standard users do not create controls: {v}");
    assert!(e.sees(&bob).await.is_empty(), "nothing was stored by the refused requests");

    let (s, v) = post(json!({"ResourceID": CONTAINER, "Type": 1, "Users": [bob_id, bob_id]}), a.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let id = v["Id"].as_u64().unwrap();
    assert_eq!(v, control(id, CONTAINER, 1, &[bob_id], &[], false, false));
    let (s, v) = post(json!({"ResourceID": CONTAINER, "Type": 1, "Public": true}), a.clone()).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["message"], "A resource control is already associated to this resource");
    assert_eq!(e.sees(&bob).await, [CONTAINER]);
    assert!(e.sees(&alice).await.is_empty());

    // Updates: 404, 403 for a control the caller cannot use, 403 for grants
    // a standard user may not set; nothing changes on a refusal.
    assert_eq!(e.put(id + 100, &a, json!({"Public": true})).await.0, StatusCode::NOT_FOUND);
    let (s, v) = e.put(id, &alice, json!({"Public": true})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    for body in [
        json!({"Users": [alice_id]}),
        json!({"Users": [bob_id, alice_id]}),
        json!({"Users": [bob_id], "Teams": [blue]}),
        json!({"Teams": [red]}),
        json!({"AdministratorsOnly": true}),
    ] {
        let (s, v) = e.put(id, &bob, body.clone()).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{body}: {v}");
        assert_eq!(v["message"], "You are not allowed to update this resource control", "{v}");
    }
    assert_eq!(e.put(id, &bob, json!({})).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(e.put(id, &bob, json!({"Public": true, "AdministratorsOnly": true})).await.0, StatusCode::BAD_REQUEST);
    assert!(e.sees(&alice).await.is_empty());

    // Bob shares it with both teams (one of them his): alice sees it.
    let (s, v) = e.put(id, &bob, json!({"Teams": [blue, red]})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v, control(id, CONTAINER, 1, &[], &[blue, red], false, false));
    assert_eq!(e.sees(&alice).await, [CONTAINER]);
    assert_eq!(e.sees(&bob).await, [CONTAINER]);
    // Alice, who may use it, makes it hers alone (Portainer allows that).
    let (s, v) = e.put(id, &alice, json!({"Users": [alice_id]})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(e.sees(&bob).await.is_empty());
    assert_eq!(e.put(id, &bob, json!({"Public": true})).await.0, StatusCode::FORBIDDEN, "bob lost it");
    // Public: everyone with the endpoint sees it.
    assert_eq!(e.put(id, &alice, json!({"Public": true})).await.0, StatusCode::OK);
    assert_eq!(e.sees(&bob).await, [CONTAINER]);

    // Durable: after a restart the admin's list still carries the control.
    e.d.restart().await;
    let a = e.d.login(ADMIN_USER, ADMIN_PASSWORD).await;
    let bob = e.d.login("bob", &password("bob")).await;
    let (_, list) = e.d.get_json(&format!("/api/endpoints/{}/docker/containers/json?all=1", e.eid), Some(&a)).await;
    let item = list.as_array().unwrap().iter().find(|c| c["Id"] == CONTAINER).unwrap().clone();
    assert_eq!(item["Portainer"]["ResourceControl"], control(id, CONTAINER, 1, &[], &[], true, false));
    assert_eq!(e.sees(&bob).await, [CONTAINER]);

    // Admins may make it administrators-only; then delete it.
    assert_eq!(e.put(id, &a, json!({"AdministratorsOnly": true})).await.0, StatusCode::OK);
    assert!(e.sees(&bob).await.is_empty());
    assert_eq!(e.d.delete(&format!("/api/resource_controls/{id}"), Some(&bob)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(e.d.delete(&format!("/api/resource_controls/{id}"), Some(&a)).await.0, StatusCode::NO_CONTENT);
    assert_eq!(e.d.delete(&format!("/api/resource_controls/{id}"), Some(&a)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(e.put(id, &a, json!({"Public": true})).await.0, StatusCode::NOT_FOUND);
    let (_, list) = e.d.get_json(&format!("/api/endpoints/{}/docker/containers/json?all=1", e.eid), Some(&a)).await;
    assert!(list.as_array().unwrap().iter().all(|c| c["Portainer"]["ResourceControl"].is_null()), "{list}");
    // The resource is free again.
    let (s, v) =
        e.d.post_json("/api/resource_controls", Some(&a), &json!({"ResourceID": CONTAINER, "Type": 1, "Public": true}))
            .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["Id"].as_u64().unwrap() > id, "ids are not reused");
}

/// Every `SecuritySettings` flag, in Portainer's names.
const FLAGS: [&str; 10] = [
    "allowBindMountsForRegularUsers",
    "allowPrivilegedModeForRegularUsers",
    "allowVolumeBrowserForRegularUsers",
    "allowHostNamespaceForRegularUsers",
    "allowDeviceMappingForRegularUsers",
    "allowStackManagementForRegularUsers",
    "allowContainerCapabilitiesForRegularUsers",
    "allowSysctlSettingForRegularUsers",
    "allowSecurityOptionsForRegularUsers",
    "enableHostManagementFeatures",
];

fn flags(f: impl Fn(usize, &str) -> bool) -> Value {
    Value::Object(FLAGS.iter().enumerate().map(|(i, k)| (k.to_string(), json!(f(i, k)))).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_endpoints_are_secure_unless_the_server_restores_portainers_defaults() {
    let engine = engine().await;
    let mut e = env(&engine).await;
    let a = e.admin.clone();
    let (s, v) = e.d.get_json("/api/settings", Some(&a)).await;
    assert_eq!((s, &v["PortainerSecurityDefaults"]), (StatusCode::OK, &json!(false)), "{v}");
    let (_, ep) = e.d.get_json(&format!("/api/endpoints/{}", e.eid), Some(&a)).await;
    assert_eq!(ep["SecuritySettings"], flags(|_, _| false), "secure default");

    let portainer = flags(|_, k| !matches!(k, "allowVolumeBrowserForRegularUsers" | "enableHostManagementFeatures"));
    let (s, v) = e.d.put_json("/api/settings", Some(&a), &json!({"PortainerSecurityDefaults": true})).await;
    assert_eq!((s, &v["PortainerSecurityDefaults"]), (StatusCode::OK, &json!(true)), "{v}");
    let open = e.d.create_endpoint(&a, "open", &engine.url).await;
    let (_, ep) = e.d.get_json(&format!("/api/endpoints/{open}"), Some(&a)).await;
    assert_eq!(ep["SecuritySettings"], portainer, "Portainer's defaults for a new endpoint");
    let (_, ep) = e.d.get_json(&format!("/api/endpoints/{}", e.eid), Some(&a)).await;
    assert_eq!(ep["SecuritySettings"], flags(|_, _| false), "existing endpoints keep theirs");
    let (s, _) = e.d.put_json("/api/settings", Some(&a), &json!({"PortainerSecurityDefaults": "yes"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // What it means for a standard user: privileged mode is refused on the
    // secure endpoint before Docker sees it, and forwarded on the other.
    let bob_id = create_user(&e.d, &a, "bob").await;
    grant(&e.d, &a, e.eid, &[bob_id]).await;
    grant(&e.d, &a, open, &[bob_id]).await;
    let bob = e.d.login("bob", &password("bob")).await;
    let create = |eid: u64| {
        let (d, bob) = (&e.d, bob.clone());
        async move {
            let body = json!({"Image": "busybox", "HostConfig": {"Privileged": true}});
            d.post_json(&format!("/api/endpoints/{eid}/docker/containers/create"), Some(&bob), &body).await
        }
    };
    let reached = |m: &MockDocker| m.requests().iter().any(|r| r.path().ends_with("/containers/create"));
    engine.mock.clear_requests();
    let (s, v) = create(e.eid).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(!reached(&engine.mock));
    let (s, v) = create(open).await;
    assert_ne!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(reached(&engine.mock), "forwarded under Portainer's defaults");

    // PUT /api/endpoints/{id}/settings takes and returns every flag.
    for pattern in [flags(|i, _| i % 2 == 0), flags(|i, _| i % 2 == 1), flags(|_, _| true)] {
        let (s, v) = e.d.put_json(&format!("/api/endpoints/{}/settings", e.eid), Some(&a), &pattern).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["SecuritySettings"], pattern);
        let (_, ep) = e.d.get_json(&format!("/api/endpoints/{}", e.eid), Some(&a)).await;
        assert_eq!(ep["SecuritySettings"], pattern);
    }
    let only = json!({"allowSecurityOptionsForRegularUsers": false});
    let (s, v) = e.d.put_json(&format!("/api/endpoints/{}/settings", e.eid), Some(&a), &only).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let expected = flags(|_, k| k != "allowSecurityOptionsForRegularUsers");
    assert_eq!(v["SecuritySettings"], expected, "one flag changed, the others kept");

    // Both survive a restart.
    e.d.restart().await;
    let a = e.d.login(ADMIN_USER, ADMIN_PASSWORD).await;
    let (_, ep) = e.d.get_json(&format!("/api/endpoints/{}", e.eid), Some(&a)).await;
    assert_eq!(ep["SecuritySettings"], expected);
    assert_eq!(e.d.get_json("/api/settings", Some(&a)).await.1["PortainerSecurityDefaults"], true);
    assert_eq!(
        e.d.put_json("/api/settings", Some(&a), &json!({"PortainerSecurityDefaults": false})).await.0,
        StatusCode::OK
    );
    let closed = e.d.create_endpoint(&a, "closed", &engine.url).await;
    let (_, ep) = e.d.get_json(&format!("/api/endpoints/{closed}"), Some(&a)).await;
    assert_eq!(ep["SecuritySettings"], flags(|_, _| false), "switched back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stacks_control_is_changed_through_its_resource_control_id() {
    if !require_docker() {
        return;
    }
    let d = Daemon::start().await;
    let a = d.admin_token().await;
    // New endpoints get Portainer's defaults, so standard users may deploy
    // stacks without touching the endpoint's settings.
    assert_eq!(
        d.put_json("/api/settings", Some(&a), &json!({"PortainerSecurityDefaults": true})).await.0,
        StatusCode::OK
    );
    let eid = d.create_endpoint(&a, "local", &format!("unix://{DOCKER_SOCKET}")).await;
    let alice_id = create_user(&d, &a, "alice").await;
    let bob_id = create_user(&d, &a, "bob").await;
    grant(&d, &a, eid, &[alice_id, bob_id]).await;
    let alice = d.login("alice", &password("alice")).await;
    let bob = d.login("bob", &password("bob")).await;
    // A Docker object's control first: under one id space the stack's
    // control cannot get its id.
    let (s, other) = d
        .post_json("/api/resource_controls", Some(&a), &json!({"ResourceID": "not-a-stack", "Type": 1, "Public": true}))
        .await;
    assert_eq!(s, StatusCode::OK, "{other}");

    let name = format!("rc{}", std::process::id());
    let file = stacks_support::compose_file(test_image(), "");
    let (s, v) =
        stacks_support::create_string(&d, &alice, "standalone", eid, &json!({"Name": name, "StackFileContent": file}))
            .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let stack = v["Id"].as_u64().unwrap();
    let rc = v["ResourceControl"]["Id"].as_u64().unwrap();
    assert_ne!(rc, other["Id"].as_u64().unwrap());
    let resource = format!("{eid}_{name}");
    assert_eq!(v["ResourceControl"], control(rc, &resource, 6, &[alice_id], &[], false, false));
    let stack_path = format!("/api/stacks/{stack}");
    assert_eq!(d.get_json(&stack_path, Some(&bob)).await.0, StatusCode::FORBIDDEN);

    // A second control for the stack is a conflict.
    let (s, v) = d
        .post_json("/api/resource_controls", Some(&a), &json!({"ResourceID": resource, "Type": 6, "Public": true}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    // Bob cannot change it; alice can, within her limits.
    let path = format!("/api/resource_controls/{rc}");
    assert_eq!(d.put_json(&path, Some(&bob), &json!({"Public": true})).await.0, StatusCode::FORBIDDEN);
    assert_eq!(d.put_json(&path, Some(&alice), &json!({"Users": [bob_id]})).await.0, StatusCode::FORBIDDEN);
    let (s, v) = d.put_json(&path, Some(&alice), &json!({"Public": true})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v, control(rc, &resource, 6, &[], &[], true, false), "accesses are replaced");
    let (s, v) = d.get_json(&stack_path, Some(&bob)).await;
    assert_eq!(s, StatusCode::OK, "public: bob sees the stack: {v}");
    assert_eq!(v["ResourceControl"]["Public"], true);

    // Deleting a stack's control makes the stack administrators-only.
    assert_eq!(d.delete(&path, Some(&a)).await.0, StatusCode::NO_CONTENT);
    let (_, v) = d.get_json(&stack_path, Some(&a)).await;
    assert_eq!(v["ResourceControl"], control(rc, &resource, 6, &[], &[], false, true));
    assert_eq!(d.get_json(&stack_path, Some(&alice)).await.0, StatusCode::FORBIDDEN);
    let (s, v) = d.put_json(&path, Some(&a), &json!({"Users": [alice_id]})).await;
    assert_eq!(s, StatusCode::OK, "the admin gives it back: {v}");
    assert_eq!(d.get_json(&stack_path, Some(&alice)).await.0, StatusCode::OK);

    let (s, v) = d.delete(&format!("{stack_path}?endpointId={eid}"), Some(&a)).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    assert_eq!(d.put_json(&path, Some(&a), &json!({"Public": true})).await.0, StatusCode::NOT_FOUND);
}
