use super::*;

fn scope(access: KeyAccess, endpoint_ids: &[Id], group_ids: &[Id]) -> KeyScope {
    KeyScope { endpoint_ids: endpoint_ids.to_vec(), group_ids: group_ids.to_vec(), access }
}

fn docker_ok(access: KeyAccess, method: &Method, path: &str) -> bool {
    docker(&scope(access, &[], &[]), method, path).is_ok()
}

#[test]
fn read_keys_only_read() {
    use KeyAccess::Read;
    for path in ["/containers/json", "/v1.41/containers/abc/json", "/containers/abc/logs", "/_ping", "/info", "/"] {
        assert!(docker_ok(Read, &Method::GET, path), "{path}");
        assert!(docker_ok(Read, &Method::HEAD, path), "{path}");
    }
    for (m, path) in [
        (Method::POST, "/containers/abc/stop"),
        (Method::POST, "/v1.41/containers/abc/restart"),
        (Method::POST, "/containers/create"),
        (Method::DELETE, "/containers/abc"),
        (Method::PUT, "/containers/abc/archive"),
        (Method::POST, "/containers/abc/exec"),
        // A GET that writes to the container's stdin.
        (Method::GET, "/containers/abc/attach/ws"),
        (Method::GET, "/v1.41/containers/abc/attach/ws"),
        // Not readable the one way Docker reads it: refused, not guessed.
        (Method::GET, "/containers/../info"),
    ] {
        assert!(!docker_ok(Read, &m, path), "{m} {path}");
    }
    let e = docker(&scope(Read, &[], &[]), &Method::POST, "/v1.41/containers/abc/stop").unwrap_err();
    assert_eq!(e.status(), StatusCode::FORBIDDEN);
    assert_eq!(e.message(), "Access denied by the API key's scope (access read)");
    assert!(e.details().starts_with("scope access read: POST /containers/abc/stop is not allowed"), "{}", e.details());
}

#[test]
fn operate_keys_run_existing_containers_but_create_and_delete_nothing() {
    use KeyAccess::Operate;
    for path in [
        "/containers/abc/start",
        "/v1.41/containers/abc/restart",
        "/v1.24/containers/abc/stop",
        "/containers/my-app_1/kill",
        "/containers/abc/pause",
        "/containers/abc/unpause",
        "/containers/abc/wait",
        "/containers/abc/attach",
        "/containers/abc/resize",
        "/containers/abc/exec",
        "/exec/e1/start",
        "/v1.41/exec/e1/resize",
        // Percent-encoded slashes are read as Docker reads them.
        "/containers%2Fabc%2Frestart",
    ] {
        assert!(docker_ok(Operate, &Method::POST, path), "{path}");
    }
    assert!(docker_ok(Operate, &Method::GET, "/containers/abc/attach/ws"));
    assert!(docker_ok(Operate, &Method::GET, "/exec/e1/json"));
    for (m, path) in [
        (Method::POST, "/containers/create"),
        (Method::POST, "/v1.41/containers/create"),
        (Method::DELETE, "/containers/abc"),
        (Method::POST, "/containers/prune"),
        (Method::POST, "/containers/abc/update"),
        (Method::POST, "/containers/abc/rename"),
        (Method::PUT, "/containers/abc/archive"),
        (Method::POST, "/images/create"),
        (Method::POST, "/build"),
        // Templates, not substrings: a longer or shorter path is another route.
        (Method::POST, "/containers/abc/restart/x"),
        (Method::POST, "/containers/restart"),
        (Method::POST, "/containers//restart"),
        (Method::POST, "/x/containers/abc/restart"),
        (Method::POST, "/services/abc/restart"),
        (Method::DELETE, "/containers/abc/restart"),
        (Method::PUT, "/containers/abc/start"),
        // A version Berth does not police is refused.
        (Method::POST, "/v1.12/containers/abc/start"),
    ] {
        assert!(!docker_ok(Operate, &m, path), "{m} {path}");
    }
    let e = docker(&scope(Operate, &[], &[]), &Method::DELETE, "/containers/abc").unwrap_err();
    assert_eq!(e.scope, "access operate");
}

#[test]
fn full_keys_are_not_limited_by_method() {
    for (m, path) in
        [(Method::POST, "/containers/create"), (Method::DELETE, "/containers/abc"), (Method::POST, "/x/../y")]
    {
        assert!(docker_ok(KeyAccess::Full, &m, path));
    }
}

#[test]
fn endpoint_lists_take_ids_and_groups() {
    let s = scope(KeyAccess::Full, &[1], &[5]);
    assert!(endpoint(&s, 1, Some(1)).is_ok());
    assert!(endpoint(&s, 1, None).is_ok(), "listed by id, even when unknown");
    assert!(endpoint(&s, 7, Some(5)).is_ok(), "in a listed group");
    let e = endpoint(&s, 2, Some(1)).unwrap_err();
    assert_eq!(e.scope, "endpoints");
    assert_eq!(e.details(), "scope endpoints: environment 2 is not in this key's endpointIds or groupIds");
    assert!(endpoint(&s, 2, None).is_err());
    let only_groups = scope(KeyAccess::Full, &[], &[5]);
    assert!(covers(&only_groups, 9, Some(5)) && !covers(&only_groups, 9, Some(1)));
    let unlimited = scope(KeyAccess::Read, &[], &[]);
    assert!(covers(&unlimited, 42, None));
}

#[test]
fn management_routes_follow_access_and_endpoint_lists() {
    let read = scope(KeyAccess::Read, &[], &[]);
    assert!(api(&read, &Method::GET, "/api/endpoints", false).is_ok());
    assert!(api(&read, &Method::HEAD, "/api/users/{id}", false).is_ok());
    assert!(api(&read, &Method::GET, "/api/settings", true).is_ok(), "an admin's read key reads settings");
    assert!(api(&read, &Method::PUT, "/api/users/{id}", false).is_err());
    let operate = scope(KeyAccess::Operate, &[], &[]);
    let e = api(&operate, &Method::POST, "/api/stacks/{id}/start", false).unwrap_err();
    assert_eq!(e.scope, "access operate");
    assert!(api(&scope(KeyAccess::Full, &[], &[]), &Method::POST, "/api/users", true).is_ok());

    let limited = scope(KeyAccess::Full, &[1], &[]);
    for (m, t) in [
        (Method::POST, "/api/users"),
        (Method::POST, "/api/endpoints"),
        (Method::DELETE, "/api/endpoints"),
        (Method::POST, "/api/endpoints/snapshot"),
        (Method::GET, "/api/settings"),
        (Method::PUT, "/api/resource_controls/{id}"),
    ] {
        let admin = t != "/api/resource_controls/{id}";
        let e = api(&limited, &m, t, admin).unwrap_err();
        assert_eq!(e.scope, "endpoints", "{m} {t}");
    }
    // Routes about one endpoint pass here; the caller checks the endpoint.
    for t in ["/api/endpoints/{id}", "/api/endpoints/{id}/settings", "/api/endpoint_groups/{id}/endpoints/{endpointId}"]
    {
        assert!(api(&limited, &Method::PUT, t, true).is_ok(), "{t}");
    }
    assert!(api(&limited, &Method::GET, "/api/endpoints", false).is_ok());
    assert!(api(&limited, &Method::POST, "/api/stacks/create/{type}/{method}", false).is_ok());
}

#[test]
fn endpoint_params_of_templates() {
    assert_eq!(endpoint_param("/api/endpoints/{id}"), Some("id"));
    assert_eq!(endpoint_param("/api/endpoints/{id}/registries/{registryId}"), Some("id"));
    assert_eq!(endpoint_param("/api/endpoint_groups/{id}/endpoints/{endpointId}"), Some("endpointId"));
    assert_eq!(endpoint_param("/api/endpoints"), None);
    assert_eq!(endpoint_param("/api/endpoints/snapshot"), None);
    assert_eq!(endpoint_param("/api/stacks/{id}"), None);
}

#[test]
fn terminals_need_operate() {
    assert!(terminal(&scope(KeyAccess::Read, &[], &[])).is_err());
    assert!(terminal(&scope(KeyAccess::Operate, &[], &[])).is_ok());
    assert!(terminal(&scope(KeyAccess::Full, &[], &[])).is_ok());
}

#[test]
fn keys_stored_before_scopes_load_unrestricted() {
    let old =
        r#"{"id":3,"user_id":1,"description":"ci","prefix":"ptr_abc","digest":"x","date_created":5,"last_used":0}"#;
    let k: crate::store::model::ApiKey = serde_json::from_str(old).unwrap();
    assert_eq!(k.expires_at, 0);
    assert_eq!(k.scope, KeyScope::default());
    assert!(!k.is_restricted());
    let v = serde_json::to_value(k.to_api(false)).unwrap();
    assert!(v.get("access").is_none() && v.get("expiresAt").is_none(), "Portainer's shape: {v}");
    let mut scoped = k.clone();
    scoped.scope = scope(KeyAccess::Operate, &[1], &[]);
    let back: crate::store::model::ApiKey = serde_json::from_slice(&serde_json::to_vec(&scoped).unwrap()).unwrap();
    assert_eq!(back.scope, scoped.scope);
    let v = serde_json::to_value(back.to_api(false)).unwrap();
    assert_eq!(v["access"], "operate");
    assert_eq!(v["endpointIds"], serde_json::json!([1]));
    assert_eq!(v["groupIds"], serde_json::json!([]));
}
