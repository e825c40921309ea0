//! Tags (`/api/tags`). Only id and name are stored; which endpoints and
//! groups carry a tag is derived from their `TagIds` when answering, so the
//! two sides can never disagree.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::doc::{json, list as list_of, Body, Doc, Reply};
use super::endpoint_groups::group_visible;
use super::endpoints::check_name;
use super::{no_content, ok_json, store_err, ApiRequest};
use crate::auth::Principal;
use crate::body::ResponseBody;
use crate::endpoints::EndpointEntry;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::model::{Endpoint, EndpointGroup, Id, Tag};
use crate::store::{ENDPOINTS, ENDPOINT_GROUPS, TAGS};

/// A tag, with the endpoints and groups that carry it (by id, as strings).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = Tag)]
pub struct TagView {
    #[serde(rename = "ID")]
    id: Id,
    name: String,
    endpoints: BTreeMap<String, bool>,
    endpoint_groups: BTreeMap<String, bool>,
}

/// Which endpoints and groups carry `t`, limited to those `viewer` may
/// see (`None`: an admin, who sees all). A standard user must not learn
/// through a tag which endpoints exist beyond the ones granted to them.
fn tag_view(state: &AppState, t: &Tag, viewer: Option<(&Principal, &[Id])>) -> TagView {
    let endpoints: BTreeMap<String, bool> = state
        .endpoints
        .all()
        .iter()
        .filter(|e| e.record.tag_ids.contains(&t.id))
        .filter(|e| viewer.is_none_or(|(p, teams)| state.endpoints.may_access(p, &e.record, teams)))
        .map(|e| (e.record.id.to_string(), true))
        .collect();
    let groups: BTreeMap<String, bool> = state
        .endpoints
        .groups()
        .iter()
        .filter(|g| g.tag_ids.contains(&t.id))
        .filter(|g| viewer.is_none_or(|(p, teams)| group_visible(p, g, teams)))
        .map(|g| (g.id.to_string(), true))
        .collect();
    TagView { id: t.id, name: t.name.clone(), endpoints, endpoint_groups: groups }
}

pub const LIST: Doc = Doc::new("List tags", &[Reply::json(200, "Tags", list_of::<TagView>)])
    .describe("A standard user sees only the endpoints and groups they may use.");

pub async fn list(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let p = req.principal();
    let teams = if p.is_admin() { Vec::new() } else { state.identity.teams_of(p.id()) };
    // An admin's endpoint-limited key sees the tags' endpoints of its scope only.
    let viewer = (!p.is_admin() || p.limits_endpoints()).then_some((p, teams.as_slice()));
    let tags: Vec<TagView> = state.endpoints.tags().iter().map(|t| tag_view(&state, t, viewer)).collect();
    ok_json(&tags)
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(rename_all = "lowercase")]
struct CreateTag {
    #[serde(default)]
    name: String,
}

pub const CREATE: Doc = Doc::new("Create a tag", &[Reply::json(200, "The tag", json::<TagView>)])
    .body(Body::Json(json::<CreateTag>))
    .errors(&[(409, "A tag has this name")]);

pub async fn create(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let b: CreateTag = req.json().await?;
    check_name(&b.name, "tag")?;
    let _guard = state.endpoints.write_lock.lock().await;
    if state.endpoints.tags().iter().any(|t| t.name == b.name) {
        return Err(ApiError::conflict("This name is already associated to a tag", ""));
    }
    let name = b.name;
    let tag = state
        .write(move |tx| {
            let id = tx.next_id(TAGS)?;
            let t = Tag { id, name };
            tx.put(TAGS, id, &t)?;
            Ok(t)
        })
        .await
        .map_err(store_err)?;
    state.endpoints.put_tag(tag.clone());
    ok_json(&tag_view(&state, &tag, None))
}

pub const DELETE: Doc =
    Doc::new("Delete a tag", &[Reply::empty(204, "Deleted, and removed from endpoints and groups")]);

/// Removes the tag and its id from every endpoint and group, in one
/// transaction.
pub async fn delete(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let id = req.id("id", "tag")?;
    let _guard = state.endpoints.write_lock.lock().await;
    state.endpoints.tag(id).ok_or_else(|| ApiError::not_found("a tag"))?;
    let entries: Vec<Arc<EndpointEntry>> =
        state.endpoints.all().into_iter().filter(|e| e.record.tag_ids.contains(&id)).collect();
    let records: Vec<Endpoint> = entries
        .iter()
        .map(|e| {
            let mut r = e.record.clone();
            r.tag_ids.retain(|t| *t != id);
            r
        })
        .collect();
    let groups: Vec<EndpointGroup> = state
        .endpoints
        .groups()
        .into_iter()
        .filter(|g| g.tag_ids.contains(&id))
        .map(|mut g| {
            g.tag_ids.retain(|t| *t != id);
            g
        })
        .collect();
    let (r2, g2) = (records.clone(), groups.clone());
    state
        .write(move |tx| {
            for r in &r2 {
                tx.put(ENDPOINTS, r.id, r)?;
            }
            for g in &g2 {
                tx.put(ENDPOINT_GROUPS, g.id, g)?;
            }
            tx.delete(TAGS, id)?;
            Ok(())
        })
        .await
        .map_err(store_err)?;
    for (e, record) in entries.iter().zip(records) {
        state.endpoints.insert(EndpointEntry { record, upstream: e.upstream.clone() });
    }
    for g in groups {
        state.endpoints.put_group(g);
    }
    state.endpoints.remove_tag(id);
    no_content()
}
