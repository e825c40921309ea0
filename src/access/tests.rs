#![allow(clippy::needless_pass_by_value)] // table-driven test helpers take owned cases

use super::*;
use http::Method;

fn secure() -> SecuritySettings {
    SecuritySettings::default()
}

fn decide(method: Method, path: &str, query: Option<&str>) -> Verdict<Decision> {
    authorize(&method, path, query, &secure())
}

fn denied(method: Method, path: &str) -> DenyRule {
    decide(method.clone(), path, None).expect_err(&format!("{method} {path}")).rule
}

/// CVE-2026-44848: paths Portainer did not list were forwarded unchecked.
#[test]
fn cve_2026_44848_unlisted_paths_are_admin_only() {
    for (m, p) in [
        (Method::POST, "/plugins/pull"),
        (Method::POST, "/plugins/vieux/sshfs/enable"),
        (Method::POST, "/swarm/init"),
        (Method::POST, "/swarm/join"),
        (Method::POST, "/swarm/leave"),
        (Method::POST, "/swarm/update"),
        (Method::GET, "/swarm/unlockkey"),
        (Method::POST, "/nodes/n1/update"),
        (Method::DELETE, "/nodes/n1"),
        (Method::POST, "/containers/prune"),
        (Method::POST, "/volumes/prune"),
        (Method::POST, "/networks/prune"),
        (Method::POST, "/images/prune"),
        (Method::POST, "/build/prune"),
        (Method::POST, "/grpc"),
        (Method::GET, "/system/df"),
        (Method::GET, "/debug/pprof/heap"),
        (Method::POST, "/containers/c1/copy"),
        (Method::POST, "/containers/c1/checkpoints"),
        (Method::PUT, "/volumes/v1"),
        (Method::PATCH, "/containers/c1/update"),
        (Method::from_bytes(b"BREW").unwrap(), "/containers/json"),
    ] {
        assert_eq!(denied(m.clone(), p), DenyRule::AdminOnly, "{m} {p}");
    }
}

#[test]
fn version_prefixed_percent_encoded_and_dot_segment_variants() {
    // Every spelling of an admin-only route stays admin-only or is refused.
    for p in [
        "/v1.41/plugins/pull",
        "/v1.24/swarm/leave",
        "/v1.47/containers/prune",
        "/plugins%2Fpull",
        "/v1.41%2Fplugins%2Fpull",
        "/%70lugins/pull",
    ] {
        assert_eq!(denied(Method::POST, p), DenyRule::AdminOnly, "{p}");
    }
    for p in [
        "/containers/c1/..%2F..%2Fplugins/pull",
        "/containers/%2e%2e/plugins/pull",
        "/containers/c1/%2E%2E/%2E%2E/swarm/leave",
        "/images/busybox/../../swarm/leave",
        "/v1.41/./plugins/pull",
        "//plugins/pull",
        "/v1.41//plugins/pull",
        "/plugins/pull/",
        "/containers/c1%2F..%2F..%2Fswarm%2Fleave/start",
    ] {
        assert_eq!(denied(Method::POST, p), DenyRule::Path, "{p}");
    }
    // Old API versions read a HostConfig on start: refused outright.
    assert_eq!(denied(Method::POST, "/v1.23/containers/c1/start"), DenyRule::ApiVersion);
    assert_eq!(denied(Method::POST, "/v1.19/containers/create"), DenyRule::ApiVersion);
    // An owner-only route keeps its id whatever the spelling.
    let d = decide(Method::POST, "/v1.41/containers/c%31/start", None).unwrap();
    assert_eq!(d.version, Some(ApiVersion { major: 1, minor: 41 }));
    assert_eq!(d.route, "/containers/{id}/start");
    assert_eq!(d.action, Action::Owner { kind: ResourceKind::Container, id: "c1".into(), op: OwnerOp::Act });
    // `%2F` is a slash to Docker, so it is one here too.
    let d = decide(Method::GET, "/containers%2Fjson", None).unwrap();
    assert_eq!(d.action, Action::FilterList(ResourceKind::Container));
}

#[test]
fn actions_for_common_routes() {
    let act = |m: Method, p: &str, q: Option<&str>| decide(m, p, q).unwrap().action;
    assert_eq!(act(Method::GET, "/_ping", None), Action::Forward);
    assert_eq!(act(Method::HEAD, "/_ping", None), Action::Forward);
    assert_eq!(act(Method::GET, "/v1.41/version", None), Action::Forward);
    assert_eq!(act(Method::GET, "/info", None), Action::Forward);
    assert_eq!(act(Method::GET, "/images/json", None), Action::Forward);
    assert_eq!(act(Method::POST, "/images/create", Some("fromImage=busybox&tag=latest")), Action::Forward);
    assert_eq!(act(Method::GET, "/swarm", None), Action::ForwardRedacted(Redaction::SwarmJoinTokens));
    assert_eq!(act(Method::GET, "/events", Some("since=1")), Action::FilterList(ResourceKind::Event));
    assert_eq!(act(Method::POST, "/containers/create", Some("name=x")), Action::InspectBody(BodyKind::ContainerCreate));
    assert_eq!(
        act(Method::POST, "/containers/c1/exec", None),
        Action::Owner { kind: ResourceKind::Container, id: "c1".into(), op: OwnerOp::WithBody(BodyKind::ExecCreate) }
    );
    assert_eq!(
        act(Method::POST, "/exec/e1/start", None),
        Action::Owner { kind: ResourceKind::Exec, id: "e1".into(), op: OwnerOp::Act }
    );
    assert_eq!(
        act(Method::DELETE, "/volumes/v1", Some("force=1")),
        Action::Owner { kind: ResourceKind::Volume, id: "v1".into(), op: OwnerOp::Delete }
    );
}

#[test]
fn commit_needs_the_container_to_be_visible() {
    let d = decide(Method::POST, "/commit", Some("container=c1&repo=x")).unwrap();
    assert_eq!(d.action, Action::Owner { kind: ResourceKind::Container, id: "c1".into(), op: OwnerOp::Act });
    assert_eq!(decide(Method::POST, "/commit", Some("repo=x")).unwrap_err().rule, DenyRule::Query);
    assert_eq!(
        decide(Method::POST, "/commit", Some("container=mine&container=victim")).unwrap_err().rule,
        DenyRule::Query
    );
    assert_eq!(
        decide(Method::POST, "/commit", Some("container=mine;container=victim")).unwrap_err().rule,
        DenyRule::Query
    );
}

#[test]
fn build_query_is_checked() {
    let b = |q: &str| decide(Method::POST, "/build", Some(q));
    assert_eq!(b("t=x&networkmode=host").unwrap_err().rule, DenyRule::HostNamespace);
    assert_eq!(b("networkmode=HOST").unwrap_err().rule, DenyRule::HostNamespace);
    assert_eq!(b("network%6Dode=host").unwrap_err().rule, DenyRule::HostNamespace);
    assert_eq!(b("networkmode=bridge&networkmode=host").unwrap_err().rule, DenyRule::Query);
    assert_eq!(b("version=2").unwrap_err().rule, DenyRule::HostNamespace);
    assert_eq!(b("cgroupparent=/").unwrap_err().rule, DenyRule::SecurityOptions);
    assert_eq!(b("version=3").unwrap_err().rule, DenyRule::Query);
    assert_eq!(b("t=x&networkmode=none&version=1").unwrap().action, Action::Forward);
    assert_eq!(
        b("networkmode=container:victim").unwrap().action,
        Action::CheckReferences(vec![Reference {
            kind: ResourceKind::Container,
            id: "victim".into(),
            at: "networkmode".into()
        }])
    );
    let open = SecuritySettings::portainer_defaults();
    assert_eq!(
        authorize(&Method::POST, "/build", Some("networkmode=host&version=2"), &open).unwrap().action,
        Action::Forward
    );
}

#[test]
fn stored_settings_keep_their_meaning() {
    // A record written before the security-options flag existed.
    let old = serde_json::json!({
        "allowBindMountsForRegularUsers": true, "allowPrivilegedModeForRegularUsers": false,
        "allowVolumeBrowserForRegularUsers": false, "allowHostNamespaceForRegularUsers": true,
        "allowDeviceMappingForRegularUsers": true, "allowStackManagementForRegularUsers": true,
        "allowContainerCapabilitiesForRegularUsers": true, "allowSysctlSettingForRegularUsers": true,
        "enableHostManagementFeatures": false
    });
    let s: SecuritySettings = serde_json::from_value(old).unwrap();
    assert!(!s.allow_security_options_for_regular_users, "follows privileged mode");
    assert!(s.allow_bind_mounts_for_regular_users);
    let mut permissive = s.clone();
    permissive.allow_privileged_mode_for_regular_users = true;
    let mut v = serde_json::to_value(&permissive).unwrap();
    v.as_object_mut().unwrap().remove("allowSecurityOptionsForRegularUsers");
    assert!(serde_json::from_value::<SecuritySettings>(v).unwrap().allow_security_options_for_regular_users);
    // A record with no flags at all: Portainer's meaning, as before.
    let empty: SecuritySettings = serde_json::from_value(serde_json::json!({})).unwrap();
    assert_eq!(empty, SecuritySettings::portainer_defaults());
    // Round trip, and the secure default for new endpoints.
    let d = SecuritySettings::default();
    assert_eq!(serde_json::from_value::<SecuritySettings>(serde_json::to_value(&d).unwrap()).unwrap(), d);
    assert!(!d.allow_bind_mounts_for_regular_users && !d.allow_privileged_mode_for_regular_users);
    assert!(!d.allow_stack_management_for_regular_users && !d.allow_security_options_for_regular_users);
}

#[test]
fn service_rollback_checks_the_previous_spec() {
    let d = decide(Method::POST, "/services/s1/update", Some("version=3&rollback=previous")).unwrap();
    assert_eq!(d.action, Action::Owner { kind: ResourceKind::Service, id: "s1".into(), op: OwnerOp::ServiceRollback });
    let d = decide(Method::POST, "/services/s1/update", Some("version=3")).unwrap();
    assert_eq!(
        d.action,
        Action::Owner { kind: ResourceKind::Service, id: "s1".into(), op: OwnerOp::WithBody(BodyKind::ServiceUpdate) }
    );
    let previous =
        serde_json::json!({"TaskTemplate": {"ContainerSpec": {"Mounts": [{"Type": "bind", "Source": "/"}]}}});
    let err = body::inspect_value(BodyKind::ServiceUpdate, &previous, &secure()).unwrap_err();
    assert_eq!(err.rule, DenyRule::BindMounts);
}
