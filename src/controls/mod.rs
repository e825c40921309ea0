//! Resource controls (Portainer's ownership records) of Docker objects:
//! durable in the store's `resource_controls` table, held in memory for the
//! Docker proxy, which reads them on every standard user's request.
//!
//! Reads are lock-free map look-ups (by control id, by (type, resource id),
//! by sub-resource id). Writes are serialised by one async mutex, taken
//! only by writers (creates through the proxy, `/api/resource_controls`),
//! so the one-control-per-(type, resource id) rule holds; each write is
//! committed to the store before memory changes and before it returns.
//!
//! Stack controls live in their stack record ([`crate::stacks`]);
//! [`WithStacks`] answers the policy's look-ups from both.

pub mod stack_ids;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::access::control::Controls;
use crate::stacks::Stacks;
use crate::store::model::{Id, ResourceControl, RESOURCE_CONTROL_STACK};
use crate::store::{Store, StoreError, RESOURCE_CONTROLS};
use crate::table::Table;

/// Why a write was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Portainer allows one control per (type, resource id).
    #[error("a resource control already exists for this resource (id {0})")]
    Conflict(Id),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The in-memory table (see the module doc). Every look-up borrows its
/// key: a standard user's request allocates nothing to find a control.
#[derive(Default)]
pub struct ControlTable {
    by_id: Table<Id, Arc<ResourceControl>>,
    /// Resource id → (type, control id) of each control on it (one per type).
    by_resource: Table<String, Vec<(u8, Id)>>,
    /// Sub-resource id → control id (Portainer matches those regardless of type).
    by_sub: Table<String, Id>,
    count: AtomicUsize,
    /// Serialises writers, so each index change is a read-modify-put no
    /// other writer interleaves with.
    write: tokio::sync::Mutex<()>,
    /// Endpoint → the id its volume controls are keyed by
    /// (`<volumeName>_<dockerId>`), learnt from the engine once.
    engine_ids: Table<Id, Arc<str>>,
}

impl ControlTable {
    /// Loads every stored control (at start).
    pub fn load(store: &Store) -> Result<ControlTable, StoreError> {
        let t = ControlTable::default();
        for rc in store.load_all::<ResourceControl>(RESOURCE_CONTROLS)? {
            t.index(Arc::new(rc));
        }
        Ok(t)
    }

    /// The id of the control on (type, resource id).
    fn id_of(&self, kind: u8, resource_id: &str) -> Option<Id> {
        self.by_resource.read(resource_id, |v| v.iter().find(|(t, _)| *t == kind).map(|(_, id)| *id)).flatten()
    }

    fn index(&self, rc: Arc<ResourceControl>) {
        let mut on = self.by_resource.get(rc.resource_id.as_str()).unwrap_or_default();
        on.retain(|(t, _)| *t != rc.kind);
        on.push((rc.kind, rc.id));
        self.by_resource.put(rc.resource_id.clone(), on);
        for s in &rc.sub_resource_ids {
            self.by_sub.put(s.clone(), rc.id);
        }
        if self.by_id.put(rc.id, rc).is_none() {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn unindex(&self, id: Id) -> Option<Arc<ResourceControl>> {
        let rc = self.by_id.remove(&id)?;
        self.count.fetch_sub(1, Ordering::Relaxed);
        let mut on = self.by_resource.get(rc.resource_id.as_str()).unwrap_or_default();
        on.retain(|(_, c)| *c != id);
        if on.is_empty() {
            self.by_resource.remove(rc.resource_id.as_str());
        } else {
            self.by_resource.put(rc.resource_id.clone(), on);
        }
        for s in &rc.sub_resource_ids {
            if self.by_sub.get(s.as_str()) == Some(id) {
                self.by_sub.remove(s.as_str());
            }
        }
        Some(rc)
    }

    pub fn get(&self, id: Id) -> Option<Arc<ResourceControl>> {
        self.by_id.get(&id)
    }

    /// The control of exactly this (type, resource id).
    pub fn find(&self, kind: u8, resource_id: &str) -> Option<Arc<ResourceControl>> {
        self.get(self.id_of(kind, resource_id)?)
    }

    /// The control listing `resource_id` among its sub-resources.
    pub fn find_sub(&self, resource_id: &str) -> Option<Arc<ResourceControl>> {
        self.get(self.by_sub.get(resource_id)?)
    }

    /// Every control, by id.
    pub fn all(&self) -> Vec<Arc<ResourceControl>> {
        self.by_id.all()
    }

    /// Whether any control exists (one atomic read: the admins' proxy path
    /// asks it to decide whether list answers need decorating).
    pub fn any(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    /// The engine (or swarm cluster) id of an endpoint, once known.
    pub fn engine_id(&self, endpoint: Id) -> Option<Arc<str>> {
        self.engine_ids.get(&endpoint)
    }

    /// Remembers an endpoint's engine id.
    pub fn set_engine_id(&self, endpoint: Id, id: &str) -> Arc<str> {
        let id: Arc<str> = Arc::from(id);
        self.engine_ids.put(endpoint, id.clone());
        id
    }

    /// Stores a new control; `draft.id` is ignored and assigned.
    pub async fn create(
        &self,
        store: &Store,
        mut draft: ResourceControl,
    ) -> Result<Arc<ResourceControl>, ControlError> {
        let _w = self.write.lock().await;
        if let Some(existing) = self.id_of(draft.kind, &draft.resource_id) {
            return Err(ControlError::Conflict(existing));
        }
        let rc = store
            .write(move |tx| {
                draft.id = tx.next_id(RESOURCE_CONTROLS)?;
                tx.put(RESOURCE_CONTROLS, draft.id, &draft)?;
                Ok(draft)
            })
            .await?;
        let rc = Arc::new(rc);
        self.index(rc.clone());
        Ok(rc)
    }

    /// Replaces the control with `rc.id` (it must exist, and its (type,
    /// resource id) must not be another control's).
    pub async fn replace(&self, store: &Store, rc: ResourceControl) -> Result<Arc<ResourceControl>, ControlError> {
        let _w = self.write.lock().await;
        if !self.by_id.contains(&rc.id) {
            return Err(ControlError::Store(StoreError::NotFound));
        }
        if let Some(other) = self.id_of(rc.kind, &rc.resource_id).filter(|o| *o != rc.id) {
            return Err(ControlError::Conflict(other));
        }
        let rc = Arc::new(rc);
        let stored = rc.clone();
        store.write(move |tx| tx.put(RESOURCE_CONTROLS, stored.id, &*stored)).await?;
        self.unindex(rc.id);
        self.index(rc.clone());
        Ok(rc)
    }

    /// Puts a control another replica stored (or forgets one it deleted)
    /// without writing: the store already holds it.
    pub async fn apply_stored(&self, id: Id, rc: Option<ResourceControl>) {
        let _w = self.write.lock().await;
        self.unindex(id);
        if let Some(rc) = rc {
            self.index(Arc::new(rc));
        }
    }

    /// Deletes a control; `None` when there was none.
    pub async fn remove(&self, store: &Store, id: Id) -> Result<Option<Arc<ResourceControl>>, StoreError> {
        let _w = self.write.lock().await;
        if !self.by_id.contains(&id) {
            return Ok(None);
        }
        store.write(move |tx| tx.delete(RESOURCE_CONTROLS, id)).await?;
        Ok(self.unindex(id))
    }

    /// Deletes the control of an object Berth saw removed.
    pub async fn remove_resource(
        &self,
        store: &Store,
        kind: u8,
        resource_id: &str,
    ) -> Result<Option<Arc<ResourceControl>>, StoreError> {
        match self.find(kind, resource_id) {
            Some(rc) => self.remove(store, rc.id).await,
            None => Ok(None),
        }
    }
}

/// The policy's view of every control: the table, and the stacks' own
/// controls (`<endpointId>_<stack>`, type 6).
pub struct WithStacks<'a> {
    pub table: &'a ControlTable,
    pub stacks: &'a Stacks,
}

impl Controls for WithStacks<'_> {
    fn find(&self, kind: u8, resource_id: &str) -> Option<Arc<ResourceControl>> {
        if let Some(rc) = self.table.find(kind, resource_id) {
            return Some(rc);
        }
        let stack = || {
            let (endpoint, name) = resource_id.split_once('_')?;
            let stack = self.stacks.find(endpoint.parse().ok()?, name)?;
            Some(Arc::new(stack.resource_control.clone()))
        };
        match kind {
            RESOURCE_CONTROL_STACK => stack(),
            _ => None,
        }
        .or_else(|| self.table.find_sub(resource_id))
    }
}

#[cfg(test)]
mod tests;
