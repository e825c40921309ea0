//! Environment groups (`/api/endpoint_groups`). A policy on a group grants
//! access to every endpoint in it, so group changes take effect on the proxy
//! path at once (the access check reads the registry's groups).

use std::sync::Arc;

use http::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::doc::{json, list as list_of, Body, Doc, Reply};
use super::endpoints::{check_name, check_tags};
use super::{no_content, ok_json, store_err, ApiRequest};
use crate::auth::Principal;
use crate::body::ResponseBody;
use crate::endpoints::checks::apply_policies;
use crate::endpoints::load::UNASSIGNED_GROUP;
use crate::endpoints::EndpointEntry;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::model::{AccessPolicies, Endpoint, EndpointGroup, Id, Pair};
use crate::store::{ENDPOINTS, ENDPOINT_GROUPS};

/// Longest group description accepted.
const MAX_DESCRIPTION: usize = 4096;

/// Standard users get the group without its policies, as with endpoints:
/// who else has access is not theirs to see.
/// An endpoint group as the API shows one; standard users do not see who
/// else has access (the policies are null for them).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = EndpointGroup)]
pub struct GroupView {
    id: Id,
    name: String,
    description: String,
    user_access_policies: Option<AccessPolicies>,
    team_access_policies: Option<AccessPolicies>,
    tag_ids: Vec<Id>,
    labels: Vec<Pair>,
    authorized_users: Vec<Id>,
    authorized_teams: Vec<Id>,
}

pub fn group_view(g: &EndpointGroup, admin: bool) -> GroupView {
    let policies = |p: &AccessPolicies| admin.then(|| p.clone());
    GroupView {
        id: g.id,
        name: g.name.clone(),
        description: g.description.clone(),
        user_access_policies: policies(&g.user_access_policies),
        team_access_policies: policies(&g.team_access_policies),
        tag_ids: g.tag_ids.clone(),
        labels: Vec::new(),
        authorized_users: Vec::new(),
        authorized_teams: Vec::new(),
    }
}

fn not_found() -> ApiError {
    ApiError::not_found("an environment group")
}

fn check_description(d: &str) -> ApiResult<()> {
    if d.chars().count() > MAX_DESCRIPTION {
        return Err(ApiError::invalid_payload(format!("the description is longer than {MAX_DESCRIPTION} characters")));
    }
    Ok(())
}

/// Moves endpoints to `group` in the registry after the store has them; the
/// caller holds the write lock.
fn publish_moves(state: &AppState, moved: Vec<Endpoint>) {
    for rec in moved {
        if let Some(cur) = state.endpoints.get(rec.id) {
            state.endpoints.insert(EndpointEntry { record: rec, upstream: cur.upstream.clone() });
        }
    }
}

/// The records of `ids` with their group set to `group`.
fn moved_records(state: &AppState, ids: &[Id], group: Id) -> ApiResult<Vec<Endpoint>> {
    ids.iter()
        .map(|id| {
            let cur = state
                .endpoints
                .get(*id)
                .ok_or_else(|| ApiError::invalid_payload(format!("environment {id} does not exist")))?;
            let mut r = cur.record.clone();
            r.group_id = group;
            Ok(r)
        })
        .collect()
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(rename_all = "lowercase")]
struct CreateGroup {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    associatedendpoints: Vec<Id>,
    #[serde(default)]
    tagids: Vec<Id>,
}

pub const CREATE: Doc = Doc::new("Create an endpoint group", &[Reply::json(200, "The group", json::<GroupView>)])
    .describe("AssociatedEndpoints move into the new group.")
    .body(Body::Json(json::<CreateGroup>));

pub async fn create(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let b: CreateGroup = req.json().await?;
    check_name(&b.name, "environment group")?;
    check_description(&b.description)?;
    let _guard = state.endpoints.write_lock.lock().await;
    let tag_ids = check_tags(&state.endpoints, &b.tagids, "Invalid request payload")?;
    let moved = moved_records(&state, &b.associatedendpoints, 0)?;
    let group = EndpointGroup {
        id: 0,
        name: b.name,
        description: b.description,
        tag_ids,
        user_access_policies: Default::default(),
        team_access_policies: Default::default(),
    };
    let (group, moved) = state
        .write(move |tx| {
            let id = tx.next_id(ENDPOINT_GROUPS)?;
            let group = EndpointGroup { id, ..group };
            tx.put(ENDPOINT_GROUPS, id, &group)?;
            let mut out = Vec::with_capacity(moved.len());
            for mut r in moved {
                r.group_id = id;
                tx.put(ENDPOINTS, r.id, &r)?;
                out.push(r);
            }
            Ok((group, out))
        })
        .await
        .map_err(store_err)?;
    state.endpoints.put_group(group.clone());
    publish_moves(&state, moved);
    ok_json(&group_view(&group, true))
}

/// Whether `p` may see group `g`: admins all, others a group on which they
/// or one of their `teams` hold a policy.
pub fn group_visible(p: &Principal, g: &EndpointGroup, teams: &[Id]) -> bool {
    p.is_admin()
        || g.user_access_policies.contains_key(&p.id().to_string())
        || teams.iter().any(|t| g.team_access_policies.contains_key(&t.to_string()))
}

pub const LIST: Doc = Doc::new("List endpoint groups", &[Reply::json(200, "Groups", list_of::<GroupView>)])
    .describe("Admins see all; others the groups granted to them or their teams.");

pub async fn list(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let p = req.principal();
    let teams = if p.is_admin() { Vec::new() } else { state.identity.teams_of(p.id()) };
    let groups: Vec<GroupView> = state
        .endpoints
        .groups()
        .iter()
        .filter(|g| group_visible(p, g, &teams))
        .map(|g| group_view(g, p.is_admin()))
        .collect();
    ok_json(&groups)
}

fn group_of(state: &AppState, req: &ApiRequest) -> ApiResult<EndpointGroup> {
    let id = req.id("id", "environment group")?;
    state.endpoints.group(id).ok_or_else(not_found)
}

pub const INSPECT: Doc = Doc::new("Inspect an endpoint group", &[Reply::json(200, "The group", json::<GroupView>)]);

pub async fn inspect(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    ok_json(&group_view(&group_of(&state, &req)?, true))
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(rename_all = "lowercase")]
struct UpdateGroup {
    name: Option<String>,
    description: Option<String>,
    tagids: Option<Vec<Id>>,
    useraccesspolicies: Option<AccessPolicies>,
    teamaccesspolicies: Option<AccessPolicies>,
}

pub const UPDATE: Doc = Doc::new("Update an endpoint group", &[Reply::json(200, "The group", json::<GroupView>)])
    .body(Body::Json(json::<UpdateGroup>));

pub async fn update(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let id = req.id("id", "environment group")?;
    let b: UpdateGroup = req.json().await?;
    let _guard = state.endpoints.write_lock.lock().await;
    let mut g = state.endpoints.group(id).ok_or_else(not_found)?;
    if let Some(n) = b.name {
        check_name(&n, "environment group")?;
        g.name = n;
    }
    if let Some(d) = b.description {
        check_description(&d)?;
        g.description = d;
    }
    if let Some(t) = b.tagids {
        g.tag_ids = check_tags(&state.endpoints, &t, "Invalid request payload")?;
    }
    apply_policies(
        b.useraccesspolicies,
        b.teamaccesspolicies,
        &mut g.user_access_policies,
        &mut g.team_access_policies,
    )?;
    let g2 = g.clone();
    state.write(move |tx| tx.put(ENDPOINT_GROUPS, g2.id, &g2)).await.map_err(store_err)?;
    state.endpoints.put_group(g.clone());
    ok_json(&group_view(&g, true))
}

pub const DELETE: Doc =
    Doc::new("Delete an endpoint group", &[Reply::empty(204, "Deleted; its endpoints move to Unassigned")])
        .errors(&[(403, "Group 1 (Unassigned) cannot be removed")]);

pub async fn delete(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let id = req.id("id", "environment group")?;
    if id == UNASSIGNED_GROUP {
        return Err(ApiError::forbidden("Unable to remove the default 'Unassigned' group", ""));
    }
    let _guard = state.endpoints.write_lock.lock().await;
    state.endpoints.group(id).ok_or_else(not_found)?;
    let members: Vec<Id> =
        state.endpoints.all().iter().filter(|e| e.record.group_id == id).map(|e| e.record.id).collect();
    let moved = moved_records(&state, &members, UNASSIGNED_GROUP)?;
    let m2 = moved.clone();
    state
        .write(move |tx| {
            for r in &m2 {
                tx.put(ENDPOINTS, r.id, r)?;
            }
            tx.delete(ENDPOINT_GROUPS, id)?;
            Ok(())
        })
        .await
        .map_err(store_err)?;
    publish_moves(&state, moved);
    state.endpoints.remove_group(id);
    no_content()
}

/// `PUT` (into the group) and `DELETE` (back to "Unassigned") of
/// `/api/endpoint_groups/{id}/endpoints/{endpointId}`.
async fn set_membership(state: Arc<AppState>, req: ApiRequest, join: bool) -> ApiResult<Response<ResponseBody>> {
    let gid = req.id("id", "environment group")?;
    let eid = req.id("endpointId", "environment")?;
    let _guard = state.endpoints.write_lock.lock().await;
    state.endpoints.group(gid).ok_or_else(not_found)?;
    let cur = state.endpoints.get(eid).ok_or_else(|| ApiError::not_found("an environment"))?;
    let target = if join { gid } else { UNASSIGNED_GROUP };
    if cur.record.group_id != target && (join || cur.record.group_id == gid) {
        let mut rec = cur.record.clone();
        rec.group_id = target;
        let r2 = rec.clone();
        state.write(move |tx| tx.put(ENDPOINTS, r2.id, &r2)).await.map_err(store_err)?;
        state.endpoints.insert(EndpointEntry { record: rec, upstream: cur.upstream.clone() });
    }
    no_content()
}

pub const ADD_ENDPOINT: Doc = Doc::new("Move an endpoint into a group", &[Reply::empty(204, "Done")]);

pub async fn add_endpoint(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    set_membership(state, req, true).await
}

pub const REMOVE_ENDPOINT: Doc =
    Doc::new("Move an endpoint out of a group", &[Reply::empty(204, "Done; it is in Unassigned")]);

pub async fn remove_endpoint(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    set_membership(state, req, false).await
}
