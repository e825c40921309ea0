//! `/api/registries` (admin CRUD) and an endpoint's registry grants
//! (`/api/endpoints/{id}/registries`). Passwords go in, never come out.

use std::sync::Arc;

use http::Response;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::doc::{json, list as list_of, Body, Doc, Query, QueryType, Reply};
use super::{no_content, ok_json, store_err, ApiRequest};
use crate::body::ResponseBody;
use crate::error::{ApiError, ApiResult};
use crate::registries::may_use;
use crate::state::AppState;
use crate::store::model::{AccessPolicies, Id, Registry, RegistryAccess};
use crate::store::{StoreError, REGISTRIES};

const TYPES: &str = "invalid registry type. Valid values are: 1 (Quay.io), 2 (Azure container registry), 3 (custom registry), 4 (Gitlab registry), 5 (ProGet registry), 6 (DockerHub), 7 (ECR)";

/// A registry as the API shows one: never its password. `RegistryAccesses`
/// (who may use it on which endpoint) is for admins only.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = Registry)]
pub struct RegistryView {
    id: Id,
    /// 1 Quay.io, 2 Azure, 3 custom, 4 GitLab, 5 ProGet, 6 Docker Hub, 7 ECR.
    #[serde(rename = "Type")]
    kind: u8,
    name: String,
    #[serde(rename = "URL")]
    url: String,
    #[serde(rename = "BaseURL")]
    base_url: String,
    authentication: bool,
    username: String,
    #[schema(value_type = Option<Object>)]
    management_configuration: Option<()>,
    gitlab: serde_json::Value,
    quay: serde_json::Value,
    ecr: serde_json::Value,
    user_access_policies: AccessPolicies,
    team_access_policies: AccessPolicies,
    authorized_users: Vec<Id>,
    authorized_teams: Vec<Id>,
    /// Per endpoint id (as a string).
    #[serde(skip_serializing_if = "Option::is_none")]
    registry_accesses: Option<BTreeMap<String, RegistryAccess>>,
}

fn view(r: &Registry, with_accesses: bool) -> RegistryView {
    RegistryView {
        id: r.id,
        kind: r.kind,
        name: r.name.clone(),
        url: r.url.clone(),
        base_url: r.base_url.clone(),
        authentication: r.authentication,
        username: r.username.clone(),
        management_configuration: None,
        gitlab: r.gitlab.clone(),
        quay: r.quay.clone(),
        ecr: r.ecr.clone(),
        user_access_policies: AccessPolicies::new(),
        team_access_policies: AccessPolicies::new(),
        authorized_users: Vec::new(),
        authorized_teams: Vec::new(),
        registry_accesses: with_accesses.then(|| r.registry_accesses.clone()),
    }
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = RegistryPayload)]
struct Payload {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<u8>,
    url: Option<String>,
    baseurl: Option<String>,
    authentication: Option<bool>,
    username: Option<String>,
    password: Option<String>,
    gitlab: Option<serde_json::Value>,
    quay: Option<serde_json::Value>,
    ecr: Option<serde_json::Value>,
}

/// Name and URL+credentials must be unique, as in Portainer.
fn check_unique(all: &[Registry], r: &Registry) -> Result<(), StoreError> {
    for o in all.iter().filter(|o| o.id != r.id) {
        if o.name == r.name {
            return Err(StoreError::Conflict("Another registry with the same name already exists".into()));
        }
        if o.url == r.url && o.authentication == r.authentication && o.username == r.username {
            return Err(StoreError::Conflict(
                "Another registry with the same URL and credentials already exists".into(),
            ));
        }
    }
    Ok(())
}

pub const CREATE: Doc = Doc::new("Add a registry", &[Reply::json(200, "The registry", json::<RegistryView>)])
    .body(Body::Json(json::<Payload>))
    .errors(&[(409, "A registry has this name, or this URL and credentials")]);

pub async fn create(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let p: Payload = req.json().await?;
    let name = p.name.unwrap_or_default().trim().to_string();
    if name.is_empty() || name.chars().count() > 255 {
        return Err(ApiError::invalid_payload("Invalid registry name"));
    }
    let kind = p.kind.unwrap_or(0);
    if !(1..=7).contains(&kind) {
        return Err(ApiError::invalid_payload(TYPES));
    }
    let url = p.url.unwrap_or_default().trim().trim_end_matches('/').to_string();
    if url.is_empty() || url.chars().any(char::is_whitespace) {
        return Err(ApiError::invalid_payload("Invalid registry URL"));
    }
    let base_url = p.baseurl.unwrap_or_default();
    if kind == 5 && base_url.is_empty() {
        return Err(ApiError::invalid_payload("Invalid registry base URL: required for ProGet"));
    }
    let authentication = p.authentication.unwrap_or(false);
    let username = p.username.unwrap_or_default();
    let password = p.password.unwrap_or_default();
    if authentication && (username.is_empty() || password.is_empty()) {
        return Err(ApiError::invalid_payload(
            "Invalid credentials. Username and password must be specified when authentication is enabled",
        ));
    }
    let sealed = if authentication { state.sealer.seal(&password) } else { String::new() };
    let draft = Registry {
        id: 0,
        kind,
        name,
        url,
        base_url,
        authentication,
        username: if authentication { username } else { String::new() },
        sealed_password: sealed,
        gitlab: p.gitlab.unwrap_or(serde_json::Value::Null),
        quay: p.quay.unwrap_or(serde_json::Value::Null),
        ecr: p.ecr.unwrap_or(serde_json::Value::Null),
        registry_accesses: Default::default(),
    };
    let r = state
        .write(move |tx| {
            let all: Vec<Registry> = tx.all(REGISTRIES)?;
            check_unique(&all, &draft)?;
            let mut r = draft;
            r.id = tx.next_id(REGISTRIES)?;
            tx.put(REGISTRIES, r.id, &r)?;
            Ok(r)
        })
        .await
        .map_err(store_err)?;
    state.registries.put(r.id, Arc::new(r.clone()));
    ok_json(&view(&r, true))
}

pub const LIST: Doc = Doc::new("List registries", &[Reply::json(200, "Registries", list_of::<RegistryView>)]);

pub async fn list(state: Arc<AppState>, _req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let v: Vec<_> = state.registries.all().iter().map(|r| view(r, true)).collect();
    ok_json(&v)
}

fn registry_of(state: &AppState, req: &ApiRequest) -> ApiResult<Arc<Registry>> {
    let id = req.id("id", "registry")?;
    state.registries.get(&id).ok_or_else(|| ApiError::not_found("a registry"))
}

pub const INSPECT: Doc = Doc::new("Inspect a registry", &[Reply::json(200, "The registry", json::<RegistryView>)])
    .describe("Admins see any; others a registry granted to them on the endpoint named by endpointId.")
    .query(&[Query::optional("endpointId", QueryType::Integer, "Required for non-admins")]);

pub async fn inspect(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let r = registry_of(&state, &req)?;
    let p = req.principal();
    if p.is_admin() {
        return ok_json(&view(&r, true));
    }
    let endpoint: u64 = req
        .query("endpointId")
        .ok_or_else(|| ApiError::bad_request("Invalid query parameter: endpointId", "endpointId is required"))?
        .parse()
        .map_err(|_| ApiError::bad_request("Invalid query parameter: endpointId", "must be a number"))?;
    if !may_use(&r, p, endpoint, &state.identity.teams_of(p.id())) {
        return Err(ApiError::forbidden("Access denied to resource", "Unauthorized"));
    }
    ok_json(&view(&r, false))
}

pub const UPDATE: Doc = Doc::new("Update a registry", &[Reply::json(200, "The registry", json::<RegistryView>)])
    .body(Body::Json(json::<Payload>))
    .errors(&[(409, "A registry has this name, or this URL and credentials")]);

pub async fn update(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let current = registry_of(&state, &req)?;
    let p: Payload = req.json().await?;
    let mut r = (*current).clone();
    if let Some(n) = p.name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty()) {
        r.name = n;
    }
    if let Some(u) = p.url.map(|u| u.trim().trim_end_matches('/').to_string()).filter(|u| !u.is_empty()) {
        r.url = u;
    }
    if let Some(b) = p.baseurl {
        r.base_url = b;
    }
    if let Some(auth) = p.authentication {
        r.authentication = auth;
        if !auth {
            r.username.clear();
            r.sealed_password.clear();
        }
    }
    if r.authentication {
        if let Some(u) = p.username.filter(|u| !u.is_empty()) {
            r.username = u;
        }
        if let Some(pw) = p.password.filter(|p| !p.is_empty()) {
            r.sealed_password = state.sealer.seal(&pw);
        }
        if r.username.is_empty() || r.sealed_password.is_empty() {
            return Err(ApiError::invalid_payload(
                "Invalid credentials. Username and password must be specified when authentication is enabled",
            ));
        }
    }
    for (field, v) in [(&mut r.gitlab, p.gitlab), (&mut r.quay, p.quay), (&mut r.ecr, p.ecr)] {
        if let Some(v) = v {
            *field = v;
        }
    }
    let r2 = r.clone();
    state
        .write(move |tx| {
            let all: Vec<Registry> = tx.all(REGISTRIES)?;
            check_unique(&all, &r2)?;
            if tx.get::<Registry>(REGISTRIES, r2.id)?.is_none() {
                return Err(StoreError::NotFound);
            }
            tx.put(REGISTRIES, r2.id, &r2)
        })
        .await
        .map_err(store_err)?;
    state.registries.put(r.id, Arc::new(r.clone()));
    ok_json(&view(&r, true))
}

pub const DELETE: Doc = Doc::new("Remove a registry", &[Reply::empty(204, "Removed")]);

pub async fn delete(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let r = registry_of(&state, &req)?;
    let id = r.id;
    state.write(move |tx| tx.delete(REGISTRIES, id)).await.map_err(store_err)?;
    state.registries.remove(&id);
    no_content()
}

/// Registries the caller may use on an endpoint.
pub const FOR_ENDPOINT: Doc =
    Doc::new("Registries usable on an endpoint", &[Reply::json(200, "Registries", list_of::<RegistryView>)]);

pub async fn for_endpoint(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let eid = req.id("id", "environment")?;
    let p = req.principal();
    let entry = state.endpoints.get(eid).ok_or_else(|| ApiError::not_found("an environment"))?;
    let teams = state.identity.teams_of(p.id());
    if !state.endpoints.may_access(p, &entry.record, &teams) {
        return Err(ApiError::forbidden("Permission denied to access environment", "Access denied to environment"));
    }
    let v: Vec<_> =
        state.registries.all().iter().filter(|r| may_use(r, p, eid, &teams)).map(|r| view(r, p.is_admin())).collect();
    ok_json(&v)
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = RegistryGrant)]
struct Grant {
    #[serde(default)]
    useraccesspolicies: AccessPolicies,
    #[serde(default)]
    teamaccesspolicies: AccessPolicies,
    #[serde(default)]
    namespaces: Vec<String>,
}

/// `PUT /api/endpoints/{id}/registries/{registryId}`: who may use a registry on an endpoint.
pub const GRANT: Doc =
    Doc::new("Grant a registry on an endpoint", &[Reply::empty(204, "Granted")]).body(Body::Json(json::<Grant>));

pub async fn grant(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let eid = req.id("id", "environment")?;
    let rid = req.id("registryId", "registry")?;
    state.endpoints.get(eid).ok_or_else(|| ApiError::not_found("an environment"))?;
    let current = state.registries.get(&rid).ok_or_else(|| ApiError::not_found("a registry"))?;
    let g: Grant = req.json().await?;
    let mut r = (*current).clone();
    r.registry_accesses.insert(
        eid.to_string(),
        RegistryAccess {
            user_access_policies: g.useraccesspolicies,
            team_access_policies: g.teamaccesspolicies,
            namespaces: g.namespaces,
        },
    );
    let r2 = r.clone();
    state.write(move |tx| tx.put(REGISTRIES, r2.id, &r2)).await.map_err(store_err)?;
    state.registries.put(r.id, Arc::new(r));
    no_content()
}
