//! One id space for every resource control. A Berth stack's control lives
//! in its stack record and a Docker object's in the `resource_controls`
//! table, but clients address both as `/api/resource_controls/{id}`, so no
//! two may share an id: new stacks take their control's id from the
//! table's sequence ([`crate::stacks::ops::create`]), and at start the
//! sequence is raised past the ids of stacks stored before that (which
//! used their stack id).

use crate::controls::ControlTable;
use crate::stacks::Stacks;
use crate::store::{Store, StoreError, RESOURCE_CONTROLS};

/// Raises the sequence past every stack control's id; warns about a stack
/// control whose id a table control already has (the table's wins on
/// `/api/resource_controls/{id}`).
pub async fn reserve(store: &Store, stacks: &Stacks, table: &ControlTable) -> Result<(), StoreError> {
    let all = stacks.all();
    for s in all.iter().filter(|s| table.get(s.resource_control.id).is_some()) {
        tracing::warn!(
            stack = s.id,
            control = s.resource_control.id,
            "a stack's resource control shares its id with another control; change it through its stack"
        );
    }
    let floor = all.iter().map(|s| s.resource_control.id).max().unwrap_or(0);
    if floor == 0 {
        return Ok(());
    }
    store.write(move |tx| tx.raise_next_id(RESOURCE_CONTROLS, floor)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::model::{ResourceControl, Stack, RESOURCE_CONTROL_CONTAINER, RESOURCE_CONTROL_STACK};

    #[tokio::test]
    async fn table_controls_never_take_an_id_a_stored_stack_control_has() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let table = ControlTable::load(&store).unwrap();
        let stacks = Stacks::empty();
        // A stack stored before the shared sequence: its control has its id, 5.
        let stack: Stack = serde_json::from_value(serde_json::json!({
            "Id": 5, "Name": "web", "Type": 2, "EndpointId": 1, "EntryPoint": "docker-compose.yml",
            "Status": 1, "ProjectPath": "/x", "CreationDate": 0, "CreatedBy": "bob",
            "ResourceControl": ResourceControl::private(5, "1_web", RESOURCE_CONTROL_STACK, 2),
        }))
        .unwrap();
        stacks.put(stack);
        reserve(&store, &stacks, &table).await.unwrap();
        let ids: Vec<_> = [0, 1]
            .iter()
            .map(|i| ResourceControl::private(0, format!("c{i}"), RESOURCE_CONTROL_CONTAINER, 2))
            .collect();
        for rc in ids {
            assert!(table.create(&store, rc).await.unwrap().id > 5);
        }
        // Idempotent: a second start does not move the sequence back.
        reserve(&store, &stacks, &table).await.unwrap();
        let next = table.create(&store, ResourceControl::private(0, "c2", RESOURCE_CONTROL_CONTAINER, 2)).await;
        assert_eq!(next.unwrap().id, 8);
    }
}
