//! `/api/registries` (admin CRUD) and an endpoint's registry grants
//! (`/api/endpoints/{id}/registries`). Passwords go in, never come out.

use std::sync::Arc;

use http::Response;
use serde::Deserialize;

use super::{no_content, ok_json, store_err, ApiRequest};
use crate::body::ResponseBody;
use crate::error::{ApiError, ApiResult};
use crate::registries::may_use;
use crate::state::AppState;
use crate::store::model::{AccessPolicies, Registry, RegistryAccess};
use crate::store::{StoreError, REGISTRIES};

const TYPES: &str = "invalid registry type. Valid values are: 1 (Quay.io), 2 (Azure container registry), 3 (custom registry), 4 (Gitlab registry), 5 (ProGet registry), 6 (DockerHub), 7 (ECR)";

fn view(r: &Registry, with_accesses: bool) -> serde_json::Value {
    let mut v = serde_json::json!({
        "Id": r.id,
        "Type": r.kind,
        "Name": r.name,
        "URL": r.url,
        "BaseURL": r.base_url,
        "Authentication": r.authentication,
        "Username": r.username,
        "ManagementConfiguration": null,
        "Gitlab": r.gitlab,
        "Quay": r.quay,
        "Ecr": r.ecr,
        "UserAccessPolicies": {},
        "TeamAccessPolicies": {},
        "AuthorizedUsers": [],
        "AuthorizedTeams": [],
    });
    if with_accesses {
        v["RegistryAccesses"] = serde_json::to_value(&r.registry_accesses).unwrap_or_default();
    }
    v
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "lowercase")]
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

pub async fn list(state: Arc<AppState>, _req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let v: Vec<_> = state.registries.all().iter().map(|r| view(r, true)).collect();
    ok_json(&serde_json::Value::Array(v))
}

fn registry_of(state: &AppState, req: &ApiRequest) -> ApiResult<Arc<Registry>> {
    let id = req.id("id", "registry")?;
    state.registries.get(&id).ok_or_else(|| ApiError::not_found("a registry"))
}

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

pub async fn delete(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let r = registry_of(&state, &req)?;
    let id = r.id;
    state.write(move |tx| tx.delete(REGISTRIES, id)).await.map_err(store_err)?;
    state.registries.remove(&id);
    no_content()
}

/// Registries the caller may use on an endpoint.
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
    ok_json(&serde_json::Value::Array(v))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "lowercase")]
struct Grant {
    #[serde(default)]
    useraccesspolicies: AccessPolicies,
    #[serde(default)]
    teamaccesspolicies: AccessPolicies,
    #[serde(default)]
    namespaces: Vec<String>,
}

/// `PUT /api/endpoints/{id}/registries/{registryId}`: who may use a registry on an endpoint.
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
