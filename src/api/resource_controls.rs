//! `/api/resource_controls`: Portainer's ownership records. Admins create
//! and delete them; anyone who may use a control may change who else may,
//! within the limits Portainer sets for standard users (public, private to
//! themselves, or shared with teams they belong to).
//!
//! Docker objects' controls live in [`crate::controls`]; a Berth stack's
//! control lives in its stack record. Both take their ids from one sequence
//! ([`crate::controls::stack_ids`]), so `{id}` names exactly one of them,
//! and a client that read a stack's `ResourceControl.Id` (Portainer's UI
//! does) changes the stack's control with the same request as any other.

use std::sync::Arc;

use http::Response;
use serde::Deserialize;
use utoipa::ToSchema;

use super::doc::{json, Body, Doc, Reply};
use super::{no_content, ok_json, store_err, ApiRequest};
use crate::access::control::{can_use, Caller};
use crate::auth::Principal;
use crate::body::ResponseBody;
use crate::controls::ControlError;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::model::{
    Id, ResourceControl, Stack, TeamAccess, UserAccess, RESOURCE_CONTROL_AZURE_CONTAINER_GROUP,
    RESOURCE_CONTROL_CONTAINER, RESOURCE_CONTROL_STACK,
};
use crate::store::STACKS;

/// Longest `ResourceID` or sub-resource id (Docker ids are 64 characters;
/// volume and stack ids add a name, which Docker caps well below this).
pub const MAX_RESOURCE_ID: usize = 512;
/// Most users plus teams in one control, and most sub-resource ids.
pub const MAX_ENTRIES: usize = 1000;

/// Serialises this API's read-check-write sequences, so a standard user's
/// change checked against a control cannot land after an admin's change
/// that took their access away. Only these admin and ownership routes take
/// it; the proxy never does.
static WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn bad(why: impl std::fmt::Display) -> ApiError {
    ApiError::invalid_payload(format!("invalid payload: {why}"))
}

fn not_found() -> ApiError {
    ApiError::not_found("a resource control")
}

fn denied(why: &str) -> ApiError {
    ApiError::forbidden(
        "You are not allowed to update this resource control",
        format!("Access denied to resource: {why}"),
    )
}

/// Who a control grants, as a request states it (Go-style: `null` is empty).
#[derive(Deserialize, Default, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = ResourceControlGrants)]
struct Grants {
    public: Option<bool>,
    administratorsonly: Option<bool>,
    users: Option<Vec<Id>>,
    teams: Option<Vec<Id>>,
}

/// `POST` body: the grants plus what they govern.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = ResourceControlCreate)]
struct CreateBody {
    resourceid: Option<String>,
    #[serde(rename = "type")]
    kind: Option<u8>,
    subresourceids: Option<Vec<String>>,
    #[serde(flatten)]
    grants: Grants,
}

/// The checked grants of a control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub public: bool,
    pub administrators_only: bool,
    pub users: Vec<Id>,
    pub teams: Vec<Id>,
}

fn dedup(ids: Vec<Id>) -> Vec<Id> {
    let mut out: Vec<Id> = Vec::with_capacity(ids.len());
    for id in ids {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

impl Access {
    /// Portainer's rules: something must be granted, and a control is not
    /// both public and administrators-only. Unknown ids are refused rather
    /// than stored (a later user or team with that id would inherit them).
    fn check(g: Grants, user_exists: impl Fn(Id) -> bool, team_exists: impl Fn(Id) -> bool) -> ApiResult<Access> {
        let a = Access {
            public: g.public.unwrap_or(false),
            administrators_only: g.administratorsonly.unwrap_or(false),
            users: dedup(g.users.unwrap_or_default()),
            teams: dedup(g.teams.unwrap_or_default()),
        };
        if a.users.len() + a.teams.len() > MAX_ENTRIES {
            return Err(bad(format!("at most {MAX_ENTRIES} users and teams")));
        }
        if a.users.is_empty() && a.teams.is_empty() && !a.public && !a.administrators_only {
            return Err(bad("must specify Users, Teams, Public or AdministratorsOnly"));
        }
        if a.public && a.administrators_only {
            return Err(bad("cannot set both Public and AdministratorsOnly"));
        }
        if let Some(u) = a.users.iter().find(|u| !user_exists(**u)) {
            return Err(bad(format!("no user with id {u}")));
        }
        if let Some(t) = a.teams.iter().find(|t| !team_exists(**t)) {
            return Err(bad(format!("no team with id {t}")));
        }
        Ok(a)
    }

    fn apply(&self, rc: &mut ResourceControl) {
        rc.public = self.public;
        rc.administrators_only = self.administrators_only;
        rc.user_accesses = self.users.iter().map(|&user_id| UserAccess { user_id, access_level: 1 }).collect();
        rc.team_accesses = self.teams.iter().map(|&team_id| TeamAccess { team_id, access_level: 1 }).collect();
    }
}

fn checked(state: &AppState, g: Grants) -> ApiResult<Access> {
    Access::check(g, |u| state.identity.user(u).is_some(), |t| state.identity.team(t).is_some())
}

/// Whether a standard user may give a control these grants (Portainer's
/// `AuthorizedResourceControlUpdate`, stricter on one point: a private
/// control names the caller alone, with no team). Anything else could hand
/// an object to others, or lock the caller out of it by mistake.
pub fn standard_user_may_set(a: &Access, user: Id, teams: &[Id]) -> Result<(), &'static str> {
    if a.administrators_only {
        return Err("only administrators may make a control administrators-only");
    }
    if a.public {
        return Ok(());
    }
    match (a.users.as_slice(), a.teams.is_empty()) {
        ([only], true) if *only == user => Ok(()),
        ([], false) if a.teams.iter().any(|t| teams.contains(t)) => Ok(()),
        ([], false) => Err("a standard user may share a control only with teams they belong to"),
        _ => Err("a standard user may make a control public, private to themselves, or shared with their teams"),
    }
}

/// What `{id}` names.
enum Target {
    Table(Arc<ResourceControl>),
    Stack(Arc<Stack>),
}

impl Target {
    fn control(&self) -> &ResourceControl {
        match self {
            Target::Table(rc) => rc,
            Target::Stack(s) => &s.resource_control,
        }
    }
}

fn find(state: &AppState, id: Id) -> Option<Target> {
    if let Some(rc) = state.controls.get(id) {
        return Some(Target::Table(rc));
    }
    state.stacks.all().into_iter().find(|s| s.resource_control.id == id).map(Target::Stack)
}

/// The Berth stack a stack control's `<endpointId>_<name>` names, if any.
fn berth_stack(state: &AppState, resource_id: &str) -> Option<Arc<Stack>> {
    let (endpoint, name) = resource_id.split_once('_')?;
    state.stacks.find(endpoint.parse().ok()?, name)
}

fn check_resource_id(what: &str, id: &str) -> ApiResult<()> {
    if id.is_empty() || id.len() > MAX_RESOURCE_ID || id.chars().any(char::is_control) {
        return Err(bad(format!("invalid {what}: 1 to {MAX_RESOURCE_ID} characters, no control characters")));
    }
    Ok(())
}

fn control_err(e: ControlError) -> ApiError {
    match e {
        ControlError::Conflict(id) => ApiError::conflict(
            "A resource control is already associated to this resource",
            format!("resource control {id} governs it"),
        ),
        ControlError::Store(crate::store::StoreError::NotFound) => not_found(),
        ControlError::Store(e) => store_err(e),
    }
}

pub const CREATE: Doc = Doc::new("Create a resource control", &[Reply::json(200, "The control", json::<ResourceControl>)])
    .describe("Type: 1 container, 2 service, 3 volume, 4 network, 5 secret, 6 stack, 7 config, 8 custom template, 9 Azure container group.")
    .body(Body::Json(json::<CreateBody>))
    .errors(&[(409, "The resource (or a sub-resource) already has a control")]);

/// `POST /api/resource_controls` (admin).
pub async fn create(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let b: CreateBody = req.json().await?;
    let resource_id = b.resourceid.unwrap_or_default();
    check_resource_id("resource identifier", &resource_id)?;
    let kind = b.kind.unwrap_or(0);
    if !(RESOURCE_CONTROL_CONTAINER..=RESOURCE_CONTROL_AZURE_CONTAINER_GROUP).contains(&kind) {
        return Err(bad(format!("invalid type {kind}: expected 1 to 9")));
    }
    let subs = b.subresourceids.unwrap_or_default();
    if subs.len() > MAX_ENTRIES {
        return Err(bad(format!("at most {MAX_ENTRIES} sub-resource identifiers")));
    }
    for s in &subs {
        check_resource_id("sub-resource identifier", s)?;
    }
    let access = checked(&state, b.grants)?;

    let _w = WRITES.lock().await;
    if kind == RESOURCE_CONTROL_STACK {
        if let Some(s) = berth_stack(&state, &resource_id) {
            return Err(control_err(ControlError::Conflict(s.resource_control.id)));
        }
    }
    // A sub-resource governed by two controls would have two owners; which
    // one applied would depend on write order.
    if let Some(other) = subs.iter().find_map(|s| state.controls.find_sub(s)) {
        return Err(ApiError::conflict(
            "A resource control is already associated to this resource",
            format!("a sub-resource identifier is already governed by resource control {}", other.id),
        ));
    }
    let mut rc = ResourceControl::private(0, resource_id, kind, 0);
    rc.sub_resource_ids = subs;
    access.apply(&mut rc);
    let rc = state.controls.create(&state.store, rc).await.map_err(control_err)?;
    tracing::info!(control = rc.id, r#type = rc.kind, resource = %rc.resource_id, "resource control created");
    ok_json(&*rc)
}

pub const UPDATE: Doc = Doc::new(
    "Change who a resource control grants",
    &[Reply::json(200, "The control", json::<ResourceControl>)],
)
.describe(
    "A standard user who may use the control may make it public, private to themselves, or shared with their teams.",
)
.body(Body::Json(json::<Grants>));

/// `PUT /api/resource_controls/{id}` (authenticated; see the module doc).
pub async fn update(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let id = req.id("id", "resource control")?;
    let g: Grants = req.json().await?;
    let access = checked(&state, g)?;
    let p = req.principal().clone();

    let _w = WRITES.lock().await;
    let target = find(&state, id).ok_or_else(not_found)?;
    check_caller(&state, &p, target.control(), &access)?;
    let mut rc = target.control().clone();
    access.apply(&mut rc);
    let rc = match target {
        Target::Table(_) => (*state.controls.replace(&state.store, rc).await.map_err(control_err)?).clone(),
        Target::Stack(s) => set_stack_control(&state, &s, rc).await?,
    };
    tracing::info!(control = rc.id, user = %p.user.username, "resource control updated");
    ok_json(&rc)
}

/// A standard user must be able to use the control now, and may only set
/// grants [`standard_user_may_set`] allows.
fn check_caller(state: &AppState, p: &Principal, current: &ResourceControl, new: &Access) -> ApiResult<()> {
    if p.is_admin() {
        return Ok(());
    }
    let teams = state.identity.teams_of(p.id());
    let caller = Caller { user_id: p.id(), teams: &teams, admin: false };
    if !can_use(&caller, Some(current)) {
        return Err(denied("the caller may not use this resource control"));
    }
    standard_user_may_set(new, p.id(), &teams).map_err(denied)
}

pub const DELETE: Doc =
    Doc::new("Delete a resource control", &[Reply::empty(204, "Deleted (a stack's becomes administrators-only)")]);

/// `DELETE /api/resource_controls/{id}` (admin). A Berth stack keeps a
/// control for as long as it exists, so deleting a stack's control makes
/// it administrators-only, which is what no control means for everyone
/// else.
pub async fn delete(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let id = req.id("id", "resource control")?;
    let _w = WRITES.lock().await;
    match find(&state, id).ok_or_else(not_found)? {
        Target::Table(_) => {
            state.controls.remove(&state.store, id).await.map_err(store_err)?.ok_or_else(not_found)?;
        }
        Target::Stack(s) => {
            let mut rc = s.resource_control.clone();
            Access { public: false, administrators_only: true, users: Vec::new(), teams: Vec::new() }.apply(&mut rc);
            set_stack_control(&state, &s, rc).await?;
        }
    }
    tracing::info!(control = id, "resource control deleted");
    no_content()
}

/// Stores a stack's new control under the stack's lock, on the record as
/// it is now (a deploy may have changed it meanwhile).
async fn set_stack_control(state: &AppState, seen: &Stack, rc: ResourceControl) -> ApiResult<ResourceControl> {
    let _lock = state.stacks.lock(seen.endpoint_id, &seen.name).await.map_err(crate::response::store_err)?;
    let mut stack = state.stacks.get(seen.id).filter(|s| s.resource_control.id == rc.id).ok_or_else(not_found)?;
    Arc::make_mut(&mut stack).resource_control = rc.clone();
    let stored = stack.clone();
    state.write(move |tx| tx.put(STACKS, stored.id, &*stored)).await.map_err(store_err)?;
    state.stacks.put((*stack).clone());
    Ok(rc)
}

#[cfg(test)]
mod tests;
