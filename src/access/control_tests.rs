#![allow(clippy::needless_pass_by_value)] // table-driven test helpers take owned cases

use super::*;
use crate::store::model::{RESOURCE_CONTROL_CONTAINER, RESOURCE_CONTROL_VOLUME};
use serde_json::json;

pub(crate) struct Names;

impl Directory for Names {
    fn user_id(&self, name: &str) -> Option<Id> {
        match name {
            "alice" => Some(2),
            "bob" => Some(3),
            "carol" => Some(4),
            _ => None,
        }
    }
    fn team_id(&self, name: &str) -> Option<Id> {
        match name {
            "devs" => Some(10),
            "ops" => Some(11),
            _ => None,
        }
    }
}

const ALICE: Caller = Caller { user_id: 2, teams: &[10], admin: false };
const BOB: Caller = Caller { user_id: 3, teams: &[11], admin: false };
const CAROL: Caller = Caller { user_id: 4, teams: &[], admin: false };
const ADMIN: Caller = Caller { user_id: 1, teams: &[], admin: true };
const SCOPE: Scope = Scope { endpoint_id: 1, docker_id: "engine1" };

fn controls() -> Vec<ResourceControl> {
    let mut team = ResourceControl::private(3, "c-team", RESOURCE_CONTROL_CONTAINER, 99);
    team.user_accesses.clear();
    team.team_accesses.push(TeamAccess { team_id: 10, access_level: 1 });
    let mut public = ResourceControl::private(4, "c-public", RESOURCE_CONTROL_CONTAINER, 99);
    public.user_accesses.clear();
    public.public = true;
    let mut admins = ResourceControl::private(5, "c-admins", RESOURCE_CONTROL_CONTAINER, 2);
    admins.administrators_only = true;
    let mut with_sub = ResourceControl::private(8, "c-parent", RESOURCE_CONTROL_CONTAINER, 3);
    with_sub.sub_resource_ids.push("c-sub".into());
    vec![
        ResourceControl::private(1, "c-alice", RESOURCE_CONTROL_CONTAINER, 2),
        ResourceControl::private(2, "svc-bob", RESOURCE_CONTROL_SERVICE, 3),
        team,
        public,
        admins,
        ResourceControl::private(6, "1_alicestack", RESOURCE_CONTROL_STACK, 2),
        ResourceControl::private(7, "vol-a_engine1", RESOURCE_CONTROL_VOLUME, 2),
        with_sub,
    ]
}

fn visible(caller: &Caller, kind: ResourceKind, obj: Value) -> bool {
    let rcs = controls();
    let view = ObjectView::of(kind, &obj).expect("view");
    can_use(caller, governing(&view, &SCOPE, &rcs, &Names).control())
}

#[test]
fn own_team_public_and_admin_only_controls() {
    let c = |id: &str| json!({"Id": id, "Labels": {}});
    assert!(visible(&ALICE, ResourceKind::Container, c("c-alice")));
    assert!(!visible(&BOB, ResourceKind::Container, c("c-alice")));
    assert!(visible(&ADMIN, ResourceKind::Container, c("c-alice")));
    assert!(visible(&ALICE, ResourceKind::Container, c("c-team")));
    assert!(!visible(&BOB, ResourceKind::Container, c("c-team")));
    for who in [&ALICE, &BOB, &CAROL] {
        assert!(visible(who, ResourceKind::Container, c("c-public")));
        assert!(!visible(who, ResourceKind::Container, c("c-admins")), "administrators only");
        assert!(!visible(who, ResourceKind::Container, c("c-nobody")), "no control: admins only");
    }
    assert!(visible(&BOB, ResourceKind::Container, c("c-sub")), "sub-resource ids inherit");
    // The control's type must match: a service id is not a container's.
    assert!(!visible(&BOB, ResourceKind::Container, c("svc-bob")));
}

#[test]
fn inheritance_from_services_stacks_and_labels() {
    // A service's containers (label) and tasks (ServiceID).
    let svc_container = json!({"Id": "t1", "Labels": {"com.docker.swarm.service.id": "svc-bob"}});
    assert!(visible(&BOB, ResourceKind::Container, svc_container.clone()));
    assert!(!visible(&ALICE, ResourceKind::Container, svc_container));
    let task = json!({"ID": "task1", "ServiceID": "svc-bob", "Spec": {"ContainerSpec": {"Labels": {}}}});
    assert!(visible(&BOB, ResourceKind::Task, task.clone()));
    assert!(!visible(&ALICE, ResourceKind::Task, task));
    // A stack's objects: swarm namespace first, compose project otherwise.
    let compose = json!({"Id": "x1", "Config": {"Labels": {"com.docker.compose.project": "alicestack"}}});
    assert!(visible(&ALICE, ResourceKind::Container, compose.clone()));
    assert!(!visible(&BOB, ResourceKind::Container, compose));
    let net = json!({"Id": "n1", "Name": "alicestack_default", "Labels": {"com.docker.stack.namespace": "alicestack"}});
    assert!(visible(&ALICE, ResourceKind::Network, net));
    let svc =
        json!({"ID": "s9", "Spec": {"Name": "alicestack_web", "Labels": {"com.docker.stack.namespace": "alicestack"}}});
    assert!(visible(&ALICE, ResourceKind::Service, svc.clone()));
    assert!(!visible(&CAROL, ResourceKind::Service, svc));
    // Volumes by Portainer's `<name>_<dockerId>`.
    assert!(visible(&ALICE, ResourceKind::Volume, json!({"Name": "vol-a", "Labels": null})));
    assert!(!visible(&BOB, ResourceKind::Volume, json!({"Name": "vol-a"})));
    // Own control beats a label that claims someone else's stack or service.
    let claim = json!({"Id": "c-alice", "Labels": {"com.docker.compose.project": "bobstack", "com.docker.swarm.service.id": "svc-bob"}});
    assert!(visible(&ALICE, ResourceKind::Container, claim.clone()));
    assert!(!visible(&BOB, ResourceKind::Container, claim));
}

#[test]
fn access_control_labels_build_a_control_to_store() {
    let rcs = controls();
    let obj = json!({"Id": "c-new", "Labels": {"io.portainer.accesscontrol.users": "bob, ghost", "io.portainer.accesscontrol.teams": "devs"}});
    let view = ObjectView::of(ResourceKind::Container, &obj).unwrap();
    let Governing::Labels(rc) = governing(&view, &SCOPE, &rcs, &Names) else { panic!("labels") };
    assert_eq!(rc.user_accesses, vec![UserAccess { user_id: 3, access_level: 1 }]);
    assert_eq!(rc.team_accesses, vec![TeamAccess { team_id: 10, access_level: 1 }]);
    assert_eq!((rc.kind, rc.resource_id.as_str()), (RESOURCE_CONTROL_CONTAINER, "c-new"));
    assert!(can_use(&BOB, Some(&rc)) && can_use(&ALICE, Some(&rc)) && !can_use(&CAROL, Some(&rc)));
    let public = json!({"Id": "c-pub", "Labels": {"io.portainer.accesscontrol.public": "false"}});
    let view = ObjectView::of(ResourceKind::Container, &public).unwrap();
    assert!(governing(&view, &SCOPE, &rcs, &Names).control().unwrap().public, "presence is enough");
    let unknown = json!({"Id": "c-x", "Labels": {"io.portainer.accesscontrol.users": "ghost"}});
    let view = ObjectView::of(ResourceKind::Container, &unknown).unwrap();
    let g = governing(&view, &SCOPE, &rcs, &Names);
    assert!(matches!(g, Governing::Labels(_)));
    assert!(!can_use(&ALICE, g.control()), "names that resolve to nobody: admins only");
}

#[test]
fn system_networks_are_public() {
    for name in SYSTEM_NETWORKS {
        let n = json!({"Id": format!("id-{name}"), "Name": name});
        assert!(visible(&CAROL, ResourceKind::Network, n.clone()), "{name}");
        let rcs = controls();
        let view = ObjectView::of(ResourceKind::Network, &n).unwrap();
        let Governing::System(rc) = governing(&view, &SCOPE, &rcs, &Names) else { panic!() };
        assert!(rc.system && rc.public);
    }
    assert!(!visible(&CAROL, ResourceKind::Network, json!({"Id": "n2", "Name": "mynet"})));
}

#[test]
fn creates_get_a_private_or_labelled_control() {
    let none = AccessLabels::default();
    let d = draft_for_create(&ALICE, &none, &Names).unwrap();
    assert_eq!(d, ControlDraft { public: false, users: vec![2], teams: vec![] });
    let rc = d.control(0, ResourceKind::Secret, "sec1").unwrap();
    assert_eq!(rc.kind, crate::store::model::RESOURCE_CONTROL_SECRET);
    let labels = |pairs: &[(&str, &str)]| AccessLabels::from_pairs(pairs.iter().copied());
    assert!(draft_for_create(&ALICE, &labels(&[(LABEL_PUBLIC, "")]), &Names).unwrap().public);
    assert!(draft_for_create(&ALICE, &labels(&[(LABEL_USERS, "alice")]), &Names).is_ok());
    assert!(draft_for_create(&ALICE, &labels(&[(LABEL_TEAMS, "devs")]), &Names).is_ok());
    for bad in [
        &[(LABEL_USERS, "bob")][..],
        &[(LABEL_USERS, "alice,bob")],
        &[(LABEL_TEAMS, "ops")],
        &[(LABEL_USERS, "ghost")],
        &[(LABEL_USERS, "")],
    ] {
        assert_eq!(draft_for_create(&ALICE, &labels(bad), &Names).unwrap_err().rule, DenyRule::AccessLabels, "{bad:?}");
    }
    assert!(draft_for_create(&ADMIN, &labels(&[(LABEL_USERS, "bob")]), &Names).is_ok(), "admins may share at will");
}

#[test]
fn created_ids_and_exec_containers() {
    assert_eq!(created_id(ResourceKind::Container, &json!({"Id": "abc", "Warnings": []})), Some("abc"));
    assert_eq!(created_id(ResourceKind::Service, &json!({"ID": "s1"})), Some("s1"));
    assert_eq!(created_id(ResourceKind::Volume, &json!({"Name": "v", "Driver": "local"})), Some("v"));
    assert_eq!(created_id(ResourceKind::Network, &json!({"Id": ""})), None);
    assert_eq!(exec_container(&json!({"ID": "e1", "ContainerID": "c-alice"})), Some("c-alice"));
}

#[test]
fn decoration_and_host_network_use() {
    let rc = ResourceControl::private(1, "c-alice", RESOURCE_CONTROL_CONTAINER, 2);
    let mut item = json!({"Id": "c-alice"});
    decorate(&mut item, &rc);
    assert_eq!(item["Portainer"]["ResourceControl"]["ResourceId"], "c-alice");
    assert_eq!(item["Portainer"]["ResourceControl"]["UserAccesses"], json!([{"UserId": 2, "AccessLevel": 1}]));
    let s = SecuritySettings::default();
    assert_eq!(
        check_network_use(&json!({"Name": "host", "Driver": "host"}), &s).unwrap_err().rule,
        DenyRule::HostNamespace
    );
    assert!(check_network_use(&json!({"Name": "n", "Driver": "bridge"}), &s).is_ok());
    assert!(
        check_network_use(&json!({"Name": "host", "Driver": "host"}), &SecuritySettings::portainer_defaults()).is_ok()
    );
}
