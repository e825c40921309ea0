//! Container registries: the in-memory map the proxy reads, the access rule,
//! and the `X-Registry-Auth: {"registryId":N}` translation that turns a
//! registry reference into the credentials Docker expects.

use std::sync::Arc;

use base64::Engine;
use dashmap::DashMap;
use http::{HeaderMap, HeaderValue};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::store::model::{Id, Registry};

#[derive(Default)]
pub struct Registries {
    map: DashMap<Id, Arc<Registry>>,
}

impl Registries {
    pub fn get(&self, id: Id) -> Option<Arc<Registry>> {
        self.map.get(&id).map(|r| r.clone())
    }

    pub fn all(&self) -> Vec<Arc<Registry>> {
        let mut v: Vec<_> = self.map.iter().map(|r| r.clone()).collect();
        v.sort_by_key(|r| r.id);
        v
    }

    pub fn put(&self, r: Registry) {
        self.map.insert(r.id, Arc::new(r));
    }

    pub fn remove(&self, id: Id) {
        self.map.remove(&id);
    }
}

/// Admins use every registry; others need a grant on this endpoint, for
/// themselves or one of their teams.
pub fn may_use(r: &Registry, p: &Principal, endpoint: Id, teams: &[Id]) -> bool {
    if p.is_admin() {
        return true;
    }
    let Some(a) = r.registry_accesses.get(&endpoint.to_string()) else { return false };
    a.user_access_policies.contains_key(&p.id().to_string())
        || teams.iter().any(|t| a.team_access_policies.contains_key(&t.to_string()))
}

pub const HEADER: &str = "x-registry-auth";

fn decode_header(v: &HeaderValue) -> Option<serde_json::Value> {
    let s = v.to_str().ok()?.trim();
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let bytes = engines.iter().find_map(|e| e.decode(s).ok())?;
    serde_json::from_slice(&bytes).ok()
}

/// Rewrites `X-Registry-Auth` in place. A real Docker auth object or an
/// undecodable value passes through untouched; `{}` removes the header;
/// `{"registryId":0}` is anonymous Docker Hub; `{"registryId":N}` becomes
/// the registry's credentials if the caller may use it (403/404 otherwise,
/// before anything reaches Docker).
pub fn translate(
    headers: &mut HeaderMap,
    registries: &Registries,
    open_password: impl Fn(&Registry) -> Option<String>,
    principal: &Principal,
    endpoint: Id,
    teams: impl FnOnce() -> Vec<Id>,
) -> Result<(), ApiError> {
    let Some(v) = headers.get(HEADER) else { return Ok(()) };
    let Some(json) = decode_header(v) else { return Ok(()) };
    let Some(obj) = json.as_object() else { return Ok(()) };
    if obj.is_empty() {
        headers.remove(HEADER);
        return Ok(());
    }
    let Some(rid) = obj.get("registryId").or_else(|| obj.get("RegistryId")).or_else(|| obj.get("registryID")) else {
        return Ok(());
    };
    let rid = rid
        .as_u64()
        .or_else(|| rid.as_str().and_then(|s| s.parse().ok()))
        .ok_or_else(|| ApiError::bad_request("Invalid X-Registry-Auth header", "registryId must be a number"))?;
    let auth = if rid == 0 {
        serde_json::json!({"username": "", "password": "", "serveraddress": "docker.io"})
    } else {
        let r = registries.get(rid).ok_or_else(|| ApiError::not_found("a registry"))?;
        if !may_use(&r, principal, endpoint, &teams()) {
            return Err(ApiError::forbidden("Access denied to resource", "Permission denied to use this registry"));
        }
        let (username, password) = if r.authentication {
            let pw = open_password(&r).ok_or_else(|| {
                ApiError::internal("Unable to read registry credentials", "sealed password unreadable")
            })?;
            (r.username.clone(), pw)
        } else {
            (String::new(), String::new())
        };
        serde_json::json!({"username": username, "password": password, "serveraddress": r.url})
    };
    let encoded = base64::engine::general_purpose::URL_SAFE.encode(serde_json::to_vec(&auth).unwrap_or_default());
    match HeaderValue::from_str(&encoded) {
        Ok(mut hv) => {
            hv.set_sensitive(true);
            headers.insert(HEADER, hv);
            Ok(())
        }
        Err(e) => Err(ApiError::internal("Unable to encode registry credentials", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::model::{RegistryAccess, User};

    fn principal(role: u8, id: u64) -> Principal {
        Principal {
            user: Arc::new(User {
                id,
                username: "u".into(),
                password_hash: String::new(),
                role,
                token_issue_at: 0,
                token_generation: 0,
                theme_color: String::new(),
                use_cache: true,
            }),
            via_api_key: false,
            jti: None,
            force_change_password: false,
        }
    }

    fn registry() -> Registry {
        Registry {
            id: 1,
            kind: 3,
            name: "r".into(),
            url: "reg.example:5000".into(),
            base_url: String::new(),
            authentication: true,
            username: "bob".into(),
            sealed_password: "x".into(),
            gitlab: serde_json::Value::Null,
            quay: serde_json::Value::Null,
            ecr: serde_json::Value::Null,
            registry_accesses: Default::default(),
        }
    }

    fn header(json: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER, base64::engine::general_purpose::STANDARD.encode(json).parse().unwrap());
        h
    }

    fn decoded(h: &HeaderMap) -> serde_json::Value {
        decode_header(h.get(HEADER).unwrap()).unwrap()
    }

    #[test]
    fn registry_id_becomes_credentials() {
        let regs = Registries::default();
        regs.put(registry());
        let mut h = header(r#"{"registryId":1}"#);
        translate(&mut h, &regs, |_| Some("s3cret".into()), &principal(1, 1), 1, Vec::new).unwrap();
        let v = decoded(&h);
        assert_eq!(v["username"], "bob");
        assert_eq!(v["password"], "s3cret");
        assert_eq!(v["serveraddress"], "reg.example:5000");
    }

    #[test]
    fn zero_is_anonymous_and_empty_removes() {
        let regs = Registries::default();
        let mut h = header(r#"{"registryId":0}"#);
        translate(&mut h, &regs, |_| None, &principal(2, 5), 1, Vec::new).unwrap();
        assert_eq!(decoded(&h)["serveraddress"], "docker.io");
        let mut h = header("{}");
        translate(&mut h, &regs, |_| None, &principal(2, 5), 1, Vec::new).unwrap();
        assert!(h.get(HEADER).is_none());
    }

    #[test]
    fn real_auth_passes_untouched_and_unknown_or_forbidden_fail() {
        let regs = Registries::default();
        let mut r = registry();
        r.registry_accesses.insert("1".into(), RegistryAccess::default());
        regs.put(r);
        let mut h = header(r#"{"username":"a","password":"b"}"#);
        let before = h.clone();
        translate(&mut h, &regs, |_| None, &principal(2, 5), 1, Vec::new).unwrap();
        assert_eq!(h, before);
        let mut h = header(r#"{"registryId":9}"#);
        assert_eq!(translate(&mut h, &regs, |_| None, &principal(1, 1), 1, Vec::new).unwrap_err().status(), 404);
        let mut h = header(r#"{"registryId":1}"#);
        assert_eq!(translate(&mut h, &regs, |_| None, &principal(2, 5), 1, Vec::new).unwrap_err().status(), 403);
    }
}
