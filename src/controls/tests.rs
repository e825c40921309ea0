use super::*;
use crate::access::control::Controls;
use crate::store::model::{RESOURCE_CONTROL_CONTAINER, RESOURCE_CONTROL_VOLUME};

fn draft(kind: u8, rid: &str, user: Id) -> ResourceControl {
    ResourceControl::private(0, rid, kind, user)
}

#[tokio::test]
async fn create_assigns_ids_refuses_a_second_control_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let t = ControlTable::load(&store).unwrap();
    assert!(!t.any());
    let a = t.create(&store, draft(RESOURCE_CONTROL_CONTAINER, "abc", 2)).await.unwrap();
    assert!(a.id > 0);
    assert!(t.any());
    // Same id, other type: allowed (Portainer keys by both).
    let v = t.create(&store, draft(RESOURCE_CONTROL_VOLUME, "abc", 3)).await.unwrap();
    assert_ne!(a.id, v.id);
    match t.create(&store, draft(RESOURCE_CONTROL_CONTAINER, "abc", 3)).await {
        Err(ControlError::Conflict(id)) => assert_eq!(id, a.id),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let mut sub = draft(RESOURCE_CONTROL_CONTAINER, "svc-owned", 4);
    sub.sub_resource_ids = vec!["task-1".into()];
    let sub = t.create(&store, sub).await.unwrap();
    drop(t);
    drop(store);

    let store = Store::open(dir.path()).unwrap();
    let t = ControlTable::load(&store).unwrap();
    assert_eq!(t.all().len(), 3);
    assert_eq!(t.find(RESOURCE_CONTROL_CONTAINER, "abc").unwrap().user_accesses[0].user_id, 2);
    assert_eq!(t.find(RESOURCE_CONTROL_VOLUME, "abc").unwrap().id, v.id);
    assert_eq!(t.find_sub("task-1").unwrap().id, sub.id);
    assert_eq!(t.get(a.id).unwrap().resource_id, "abc");
}

#[tokio::test]
async fn replace_and_remove_keep_every_index_in_step_with_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let t = ControlTable::load(&store).unwrap();
    let a = t.create(&store, draft(RESOURCE_CONTROL_CONTAINER, "one", 2)).await.unwrap();
    let b = t.create(&store, draft(RESOURCE_CONTROL_CONTAINER, "two", 2)).await.unwrap();

    // Moving `a` onto `b`'s resource is a conflict; a new sub-resource is indexed.
    let mut moved = (*a).clone();
    moved.resource_id = "two".into();
    assert!(matches!(t.replace(&store, moved).await, Err(ControlError::Conflict(id)) if id == b.id));
    let mut changed = (*a).clone();
    changed.public = true;
    changed.sub_resource_ids = vec!["sub".into()];
    t.replace(&store, changed).await.unwrap();
    assert!(t.find(RESOURCE_CONTROL_CONTAINER, "one").unwrap().public);
    assert_eq!(t.find_sub("sub").unwrap().id, a.id);
    let mut ghost = (*a).clone();
    ghost.id = 999;
    assert!(matches!(t.replace(&store, ghost).await, Err(ControlError::Store(StoreError::NotFound))));

    assert_eq!(t.remove(&store, a.id).await.unwrap().unwrap().id, a.id);
    assert!(t.remove(&store, a.id).await.unwrap().is_none());
    assert!(t.find(RESOURCE_CONTROL_CONTAINER, "one").is_none());
    assert!(t.find_sub("sub").is_none());
    assert_eq!(t.remove_resource(&store, RESOURCE_CONTROL_CONTAINER, "two").await.unwrap().unwrap().id, b.id);
    assert!(!t.any());
    drop(t);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert!(ControlTable::load(&store).unwrap().all().is_empty());
}

#[tokio::test]
async fn the_policy_finds_stack_controls_and_sub_resources_through_with_stacks() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let t = ControlTable::load(&store).unwrap();
    let stacks = Stacks::empty();
    stacks.put(crate::store::model::Stack {
        id: 5,
        name: "my_app".into(),
        kind: crate::store::model::STACK_COMPOSE,
        endpoint_id: 1,
        swarm_id: String::new(),
        entry_point: "docker-compose.yml".into(),
        env: None,
        status: crate::store::model::STACK_ACTIVE,
        project_path: String::new(),
        creation_date: 0,
        created_by: "u".into(),
        update_date: 0,
        updated_by: String::new(),
        additional_files: None,
        option: None,
        git_config: None,
        resource_control: ResourceControl::private(5, "1_my_app", RESOURCE_CONTROL_STACK, 7),
        from_app_template: false,
    });
    let mut sub = draft(RESOURCE_CONTROL_CONTAINER, "svc", 4);
    sub.sub_resource_ids = vec!["1_other".into()];
    t.create(&store, sub).await.unwrap();

    let view = WithStacks { table: &t, stacks: &stacks };
    let found = view.find(RESOURCE_CONTROL_STACK, "1_my_app").unwrap();
    assert_eq!(found.user_accesses[0].user_id, 7);
    assert!(view.find(RESOURCE_CONTROL_STACK, "2_my_app").is_none());
    // Not a stack: the sub-resource index still answers, whatever the type.
    assert_eq!(view.find(RESOURCE_CONTROL_STACK, "1_other").unwrap().resource_id, "svc");
    assert!(view.find(RESOURCE_CONTROL_CONTAINER, "nothing").is_none());
}
