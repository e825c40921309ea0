use super::*;

/// Every route of the Docker Engine API from 1.24 to 1.47, written from the
/// Engine API reference (swagger) and the daemon's router (undocumented:
/// exec, checkpoints, `/grpc`, `/build/cancel`), independently of `ROUTES`.
const DOCKER_API: &[(&str, &str)] = &[
    ("GET", "/_ping"),
    ("HEAD", "/_ping"),
    ("GET", "/version"),
    ("GET", "/info"),
    ("POST", "/auth"),
    ("GET", "/events"),
    ("GET", "/system/df"),
    ("GET", "/containers/json"),
    ("POST", "/containers/create"),
    ("GET", "/containers/{id}/json"),
    ("GET", "/containers/{id}/top"),
    ("GET", "/containers/{id}/logs"),
    ("GET", "/containers/{id}/changes"),
    ("GET", "/containers/{id}/export"),
    ("GET", "/containers/{id}/stats"),
    ("POST", "/containers/{id}/resize"),
    ("POST", "/containers/{id}/start"),
    ("POST", "/containers/{id}/stop"),
    ("POST", "/containers/{id}/restart"),
    ("POST", "/containers/{id}/kill"),
    ("POST", "/containers/{id}/update"),
    ("POST", "/containers/{id}/rename"),
    ("POST", "/containers/{id}/pause"),
    ("POST", "/containers/{id}/unpause"),
    ("POST", "/containers/{id}/attach"),
    ("GET", "/containers/{id}/attach/ws"),
    ("POST", "/containers/{id}/wait"),
    ("DELETE", "/containers/{id}"),
    ("HEAD", "/containers/{id}/archive"),
    ("GET", "/containers/{id}/archive"),
    ("PUT", "/containers/{id}/archive"),
    ("POST", "/containers/prune"),
    ("POST", "/containers/{id}/exec"),
    ("GET", "/containers/{id}/checkpoints"),
    ("POST", "/containers/{id}/checkpoints"),
    ("DELETE", "/containers/{id}/checkpoints/{checkpoint}"),
    ("POST", "/exec/{id}/start"),
    ("POST", "/exec/{id}/resize"),
    ("GET", "/exec/{id}/json"),
    ("GET", "/images/json"),
    ("POST", "/build"),
    ("POST", "/build/prune"),
    ("POST", "/build/cancel"),
    ("POST", "/images/create"),
    ("GET", "/images/{name}/json"),
    ("GET", "/images/{name}/history"),
    ("POST", "/images/{name}/push"),
    ("POST", "/images/{name}/tag"),
    ("DELETE", "/images/{name}"),
    ("GET", "/images/search"),
    ("POST", "/images/prune"),
    ("POST", "/commit"),
    ("GET", "/images/{name}/get"),
    ("GET", "/images/get"),
    ("POST", "/images/load"),
    ("GET", "/distribution/{name}/json"),
    ("POST", "/session"),
    ("POST", "/grpc"),
    ("GET", "/networks"),
    ("GET", "/networks/{id}"),
    ("DELETE", "/networks/{id}"),
    ("POST", "/networks/create"),
    ("POST", "/networks/{id}/connect"),
    ("POST", "/networks/{id}/disconnect"),
    ("POST", "/networks/prune"),
    ("GET", "/volumes"),
    ("POST", "/volumes/create"),
    ("GET", "/volumes/{id}"),
    ("PUT", "/volumes/{id}"),
    ("DELETE", "/volumes/{id}"),
    ("POST", "/volumes/prune"),
    ("GET", "/plugins"),
    ("GET", "/plugins/privileges"),
    ("POST", "/plugins/pull"),
    ("GET", "/plugins/{name}/json"),
    ("DELETE", "/plugins/{name}"),
    ("POST", "/plugins/{name}/enable"),
    ("POST", "/plugins/{name}/disable"),
    ("POST", "/plugins/{name}/upgrade"),
    ("POST", "/plugins/create"),
    ("POST", "/plugins/{name}/push"),
    ("POST", "/plugins/{name}/set"),
    ("GET", "/nodes"),
    ("GET", "/nodes/{id}"),
    ("DELETE", "/nodes/{id}"),
    ("POST", "/nodes/{id}/update"),
    ("GET", "/swarm"),
    ("POST", "/swarm/init"),
    ("POST", "/swarm/join"),
    ("POST", "/swarm/leave"),
    ("POST", "/swarm/update"),
    ("GET", "/swarm/unlockkey"),
    ("POST", "/swarm/unlock"),
    ("GET", "/services"),
    ("POST", "/services/create"),
    ("GET", "/services/{id}"),
    ("DELETE", "/services/{id}"),
    ("POST", "/services/{id}/update"),
    ("GET", "/services/{id}/logs"),
    ("GET", "/tasks"),
    ("GET", "/tasks/{id}"),
    ("GET", "/tasks/{id}/logs"),
    ("GET", "/secrets"),
    ("POST", "/secrets/create"),
    ("GET", "/secrets/{id}"),
    ("DELETE", "/secrets/{id}"),
    ("POST", "/secrets/{id}/update"),
    ("GET", "/configs"),
    ("POST", "/configs/create"),
    ("GET", "/configs/{id}"),
    ("DELETE", "/configs/{id}"),
    ("POST", "/configs/{id}/update"),
];

fn concrete(template: &str, name: &str) -> String {
    template.replace("{id}", "3f4e5a6b7c8d").replace("{checkpoint}", "cp1").replace("{name}", name)
}

#[test]
fn every_docker_route_has_an_explicit_rule() {
    for (method, template) in DOCKER_API {
        // Names with a registry, a namespace, a tag and a digest.
        for name in ["busybox", "reg.example:5000/team/app:1.2", "library/alpine@sha256:0123abcd"] {
            let path = concrete(template, name);
            let m = lookup(method, &path).unwrap_or_else(|| panic!("{method} {path}: no rule"));
            assert_eq!(m.template, *template, "{method} {path}");
            if template.contains("{id}") {
                assert_eq!(m.id.as_deref(), Some("3f4e5a6b7c8d"), "{method} {path}");
            }
            if template.contains("{name}") {
                assert_eq!(m.id.as_deref(), Some(name), "{method} {path}");
            }
        }
    }
}

#[test]
fn the_table_holds_only_docker_routes_once_each() {
    let mut seen = std::collections::HashSet::new();
    for (method, template, _) in ROUTES {
        assert!(DOCKER_API.contains(&(method, template)), "{method} {template} is not a Docker route");
        assert!(seen.insert((method, template)), "{method} {template} twice");
    }
    assert_eq!(seen.len(), DOCKER_API.len());
}

#[test]
fn unlisted_routes_match_nothing() {
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/debug/pprof/heap"),
        ("POST", "/containers/abc/copy"),
        ("GET", "/containers/abc"),
        ("PATCH", "/containers/abc/json"),
        ("get", "/containers/json"),
        ("HEAD", "/containers/json"),
        ("OPTIONS", "/containers/json"),
        ("GET", "/containers/a/b/json"),
        ("GET", "/v2/browse/ls"),
        ("GET", "/images/json/extra"),
        ("GET", "/images//json"),
        ("POST", "/images/x/unknown"),
        ("GET", "/distribution/x"),
        ("POST", "/swarm/whatever"),
        ("GET", "/nodes/x/tasks"),
    ] {
        assert_eq!(lookup(method, path), None, "{method} {path}");
    }
}

#[test]
fn rules_of_note() {
    let rule = |m: &str, p: &str| lookup(m, p).unwrap().rule;
    for (m, p) in [
        ("POST", "/containers/prune"),
        ("POST", "/images/prune"),
        ("POST", "/volumes/prune"),
        ("POST", "/networks/prune"),
        ("POST", "/build/prune"),
        ("POST", "/swarm/init"),
        ("POST", "/swarm/join"),
        ("POST", "/swarm/leave"),
        ("POST", "/swarm/update"),
        ("POST", "/nodes/n1/update"),
        ("DELETE", "/nodes/n1"),
        ("POST", "/plugins/pull"),
        ("POST", "/plugins/vieux/sshfs:latest/enable"),
        ("GET", "/plugins"),
    ] {
        assert_eq!(rule(m, p), Rule::AdminOnly, "{m} {p}");
    }
    assert_eq!(rule("GET", "/swarm"), Rule::AllowRedacted(Redaction::SwarmJoinTokens));
    assert_eq!(rule("GET", "/containers/json"), Rule::FilterList { kind: Container });
    assert_eq!(rule("DELETE", "/containers/x"), own(Container, Delete));
    assert_eq!(rule("POST", "/services/s/update"), own(Service, WithBody(BodyKind::ServiceUpdate)));
    assert_eq!(rule("POST", "/containers/create"), Rule::InspectBody { kind: BodyKind::ContainerCreate });
    // Static routes win over ids and image names.
    assert_eq!(lookup("GET", "/images/search").unwrap().template, "/images/search");
    assert_eq!(lookup("GET", "/images/search/json").unwrap().template, "/images/{name}/json");
    assert_eq!(lookup("POST", "/images/prune").unwrap().rule, Rule::AdminOnly);
    assert_eq!(lookup("DELETE", "/images/prune").unwrap().rule, Rule::Allow);
}

#[test]
fn swarm_redaction_drops_tokens() {
    let mut v =
        serde_json::json!({"ID": "x", "JoinTokens": {"Worker": "SWMTKN-1", "Manager": "SWMTKN-2"}, "TLSInfo": {}});
    Redaction::SwarmJoinTokens.apply(&mut v);
    assert_eq!(v, serde_json::json!({"ID": "x"}));
}
