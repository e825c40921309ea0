// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use serde_json::Value;

use super::*;

fn doc() -> Value {
    serde_json::from_slice(&document()).unwrap()
}

/// Every (path, method) of the document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "put", "post", "delete", "head", "patch", "options", "trace"].contains(&method.as_str()) {
                out.insert((path.clone(), method.to_uppercase()));
            }
        }
    }
    out
}

/// A route added to the table without its description cannot compile;
/// this checks that the document shows every one of them, and nothing
/// the table does not serve, unless the router serves it itself.
#[test]
fn the_document_lists_exactly_what_is_served() {
    let d = doc();
    let documented = operations(&d);
    let table = api::table();
    let mut served = BTreeSet::new();
    for r in table.routes() {
        for op in &r.methods {
            served.insert((r.path.to_string(), op.method.as_str().to_string()));
        }
    }
    for op in &served {
        assert!(documented.contains(op), "{op:?} is served but not in the document");
    }
    for (path, method) in documented.difference(&served) {
        // The router's own routes: recognised before the table.
        let own = path == PATH
            || crate::terminal::route(path).is_some()
            || crate::fanout::route(path).is_some()
            || crate::proxy::route::split_docker_path(&path.replace("{id}", "1").replace("{path}", "info")).is_some();
        assert!(own, "{method} {path} is in the document but nothing serves it");
        assert!(
            !matches!(table.find(&method.parse().unwrap(), path), api::Match::Found { .. }),
            "{method} {path} is served by the table"
        );
    }
    for k in crate::terminal::Kind::ALL {
        assert!(documented.contains(&(k.template().to_string(), "GET".to_string())), "{}", k.template());
    }
    for k in crate::fanout::Kind::ALL {
        assert!(documented.contains(&(k.template().to_string(), "GET".to_string())), "{}", k.template());
    }
}

#[test]
fn security_follows_the_policy() {
    let d = doc();
    let table = api::table();
    for r in table.routes() {
        for op in &r.methods {
            let o = &d["paths"][r.path][op.method.as_str().to_lowercase()];
            let security = o["security"].as_array().unwrap_or_else(|| panic!("{} {}: no security", op.method, r.path));
            if op.policy == Policy::Public {
                assert!(security.is_empty(), "{} {} is public", op.method, r.path);
                assert!(o["responses"].get("401").is_none(), "{} {}", op.method, r.path);
            } else {
                let schemes: BTreeSet<&str> =
                    security.iter().flat_map(|s| s.as_object().unwrap().keys()).map(String::as_str).collect();
                assert_eq!(schemes, BTreeSet::from([BEARER, API_KEY]), "{} {}", op.method, r.path);
                assert!(o["responses"].get("401").is_some(), "{} {}", op.method, r.path);
            }
        }
    }
    let schemes = &d["components"]["securitySchemes"];
    assert_eq!(schemes[BEARER]["scheme"], "bearer");
    assert_eq!(schemes[API_KEY]["in"], "header");
    assert_eq!(schemes[API_KEY]["name"], "X-API-Key");
}

/// Every `$ref` points at a schema of the document.
#[test]
fn references_resolve() {
    fn walk(v: &Value, refs: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    refs.push(r.clone());
                }
                m.values().for_each(|v| walk(v, refs));
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, refs)),
            _ => {}
        }
    }
    let d = doc();
    let mut refs = Vec::new();
    walk(&d, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r}"));
        assert!(d["components"]["schemas"].get(name).is_some(), "{r} does not resolve");
    }
}

#[test]
fn operations_have_unique_ids_and_a_success() {
    let d = doc();
    let mut ids = BTreeSet::new();
    for (path, method) in operations(&d) {
        let o = &d["paths"][&path][method.to_lowercase()];
        let id = o["operationId"].as_str().unwrap().to_string();
        assert!(ids.insert(id.clone()), "{id} twice");
        let ok = o["responses"].as_object().unwrap().keys().any(|s| s.starts_with('2') || s == "101" || s == "default");
        assert!(ok, "{method} {path}: no successful answer");
        for (status, r) in o["responses"].as_object().unwrap() {
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(r["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Error");
            }
        }
    }
}

#[test]
fn the_error_schema_is_what_errors_are() {
    let d = doc();
    let e = &d["components"]["schemas"]["Error"];
    let props: BTreeSet<&str> = e["properties"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(props, BTreeSet::from(["message", "details"]));
    let body: Value = serde_json::from_slice(&crate::error::ApiError::not_found("a user").body_json()).unwrap();
    let sent: BTreeSet<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(sent, props);
}

#[test]
fn ids_in_paths_are_integers_and_names_are_camel_case() {
    assert_eq!(operation_id(&Method::GET, "/api/users/{id}/tokens"), "getUsersByIdTokens");
    assert_eq!(operation_id(&Method::PUT, "/api/endpoint_groups/{id}"), "putEndpointGroupsById");
    let d = doc();
    let params = d["paths"]["/api/users/{id}/tokens/{keyId}"]["delete"]["parameters"].as_array().unwrap();
    for p in params {
        assert_eq!(p["in"], "path");
        assert_eq!(p["schema"]["type"], "integer");
    }
    assert_eq!(d["openapi"], "3.1.0");
}
