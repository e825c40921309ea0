//! Criterion benchmarks of the per-request hot path pieces of
//! `/api/endpoints/{id}/docker/*`, each measured on its own:
//!
//! - `auth/*`: the auth check (JWT verify + user lookup + revocation check,
//!   as repeated requests with one token see it and for a token seen for the
//!   first time; the API-key check);
//! - `route/*`: recognising the Docker proxy prefix, the route template used
//!   for metrics labels, and the `/api/*` route table (for comparison);
//! - `endpoint/*`: endpoint lookup + access check with 10 and with 10,000
//!   endpoints (the two should cost the same), for an administrator and for
//!   a standard user whose team holds a policy on the endpoint's group;
//! - `identity/teams_of/*`: the team lookup a standard user's access check
//!   needs, with 10 and with 10,000 team memberships in the instance;
//! - `metrics/*`: the per-request metrics updates (cached handles, and the
//!   `with_label_values` calls they replace);
//! - `hot_path/pre_forward`: everything `proxy_route` does before handing the
//!   request to the connector, in order.
//!
//! Header rewriting (hop-by-hop and credential stripping) is not measured
//! here: it lives in the private `proxy::headers` module, which the public
//! API does not reach. It works in place on the request's own `HeaderMap`
//! (a dozen hash lookups, no allocation when no `Connection` header or
//! session cookie is present), and its share shows in the load profile
//! instead (docs/PERFORMANCE.md).
//!
//! Run: `cargo bench --bench hot_path` (add `-- endpoint/` to run a group).

// A benchmark that cannot set itself up should stop loudly.
#![allow(clippy::unwrap_used, clippy::needless_pass_by_value)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::{HeaderMap, Method};

use berth::auth::extract::authenticate;
use berth::auth::jwt::{Claims, JwtKeys};
use berth::auth::{apikey, now_secs, Identity, Principal};
use berth::connector::{ConnectorSettings, DockerUrl, TlsOptions, Upstream};
use berth::endpoints::map::{EndpointEntry, EndpointMap};
use berth::store::model::{
    AccessPolicy, ApiKey, Endpoint, EndpointGroup, EndpointTls, SecuritySettings, TeamMembership, User, ROLE_ADMIN,
    ROLE_USER, TEAM_MEMBER,
};

fn user(id: u64, role: u8) -> User {
    User {
        id,
        username: format!("user{id}"),
        password_hash: String::new(),
        role,
        token_issue_at: 0,
        token_generation: 0,
        theme_color: String::new(),
        use_cache: true,
    }
}

fn identity_with_users(n: u64) -> Identity {
    let id = Identity::default();
    for i in 1..=n {
        id.put_user(user(i, if i == 1 { ROLE_ADMIN } else { ROLE_USER }));
    }
    id
}

fn token_for(keys: &JwtKeys, id: u64, role: u8) -> String {
    keys.sign(&Claims {
        id,
        username: format!("user{id}"),
        role,
        scope: "default".into(),
        force_change_password: false,
        jti: uuid::Uuid::new_v4().to_string(),
        iat: now_secs(),
        exp: now_secs() + 3600,
        gen: 0,
    })
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(http::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    // What the Docker CLI sends besides the credential.
    h.insert(http::header::HOST, "berth.example:9000".parse().unwrap());
    h.insert(http::header::USER_AGENT, "Docker-Client/24.0.7 (linux)".parse().unwrap());
    h
}

fn auth_check(c: &mut Criterion) {
    let keys = JwtKeys::from_secret(&[42u8; 32]);
    let identity = identity_with_users(1000);
    // A realistic revocation list: logouts of the last few hours.
    for i in 0..1000 {
        identity.revoke(format!("revoked-{i}"), now_secs() + 3600);
    }
    let token = token_for(&keys, 500, ROLE_USER);
    let jwt_headers = bearer(&token);
    // The same token on every request (what a client does): the signature
    // is checked once and remembered; expiry, revocation and the user are
    // checked every time.
    c.bench_function("auth/jwt_verify_and_user_lookup", |b| {
        b.iter(|| authenticate(black_box(&jwt_headers), None, &identity, &keys).unwrap())
    });
    // A token's first use: signature, algorithm, expiry and claims parsing.
    c.bench_function("auth/jwt_signature_check_first_use", |b| b.iter(|| keys.verify(black_box(&token)).unwrap()));

    let raw = apikey::generate();
    identity.put_api_key(ApiKey {
        id: 1,
        user_id: 500,
        description: "bench".into(),
        prefix: apikey::display_prefix(&raw),
        digest: apikey::digest_b64(&apikey::digest(&raw)),
        date_created: 0,
        last_used: 0,
        expires_at: 0,
        scope: Default::default(),
    });
    let mut key_headers = HeaderMap::new();
    key_headers.insert("x-api-key", raw.parse().unwrap());
    c.bench_function("auth/api_key", |b| {
        b.iter(|| authenticate(black_box(&key_headers), None, &identity, &keys).unwrap())
    });
}

fn route_match(c: &mut Criterion) {
    c.bench_function("route/split_docker_path", |b| {
        b.iter(|| berth::proxy::route::split_docker_path(black_box("/api/endpoints/12/docker/v1.41/containers/json")))
    });
    c.bench_function("route/docker_template", |b| {
        b.iter(|| berth::metrics::docker_route_template(black_box("/v1.41/containers/4f1c9a/json")))
    });
    c.bench_function("route/docker_template_list", |b| {
        b.iter(|| berth::metrics::docker_route_template(black_box("/v1.41/containers/json")))
    });
    // The generic `/api/*` table, which the Docker prefix bypasses.
    let routes = berth::api::table();
    c.bench_function("route/api_table_find", |b| {
        b.iter(|| matches!(routes.find(&Method::GET, black_box("/api/endpoints/12")), berth::api::Match::Found { .. }))
    });
}

/// A registry of `n` endpoints in `groups` groups; the standard user (id 2)
/// reaches every endpoint through team 7's policy on its group, the way a
/// large installation grants access.
fn registry(n: u64, groups: u64) -> EndpointMap {
    let reg = EndpointMap::default();
    let url = DockerUrl::parse("unix:///var/run/docker.sock").unwrap();
    let settings = ConnectorSettings::default();
    for g in 1..=groups {
        let mut team_access_policies = std::collections::BTreeMap::new();
        team_access_policies.insert("7".to_string(), AccessPolicy::default());
        reg.put_group(EndpointGroup {
            id: g,
            name: format!("group{g}"),
            description: String::new(),
            tag_ids: vec![],
            user_access_policies: Default::default(),
            team_access_policies,
        });
    }
    for id in 1..=n {
        // No socket is dialled: an Upstream connects on first use.
        let upstream = Upstream::new(&url, &TlsOptions::default(), &settings).unwrap();
        let mut user_access_policies = std::collections::BTreeMap::new();
        // A few direct grants to other users, as real records carry.
        for u in 100..104 {
            user_access_policies.insert(u.to_string(), AccessPolicy::default());
        }
        reg.insert(EndpointEntry {
            record: Endpoint {
                id,
                name: format!("host-{id}"),
                kind: 1,
                url: "unix:///var/run/docker.sock".into(),
                public_url: String::new(),
                group_id: 1 + id % groups,
                tls: EndpointTls::default(),
                tag_ids: vec![],
                status: 1,
                user_access_policies,
                team_access_policies: Default::default(),
                security_settings: SecuritySettings::default(),
            },
            upstream,
        });
    }
    reg
}

fn principal(identity: &Identity, id: u64) -> Principal {
    Principal {
        user: identity.user(id).unwrap(),
        via_api_key: false,
        jti: None,
        force_change_password: false,
        bundle: None,
        api_key_id: None,
        scoped_key: None,
    }
}

/// What `proxy_route` does between authentication and forwarding.
fn lookup_and_check(reg: &EndpointMap, identity: &Identity, p: &Principal, id: u64) -> bool {
    let Some(entry) = reg.get(id) else { return false };
    if p.is_admin() {
        return true;
    }
    let teams = identity.teams_of(p.id());
    reg.may_access(p, &entry.record, &teams)
}

fn endpoint_lookup(c: &mut Criterion) {
    let identity = identity_with_users(10);
    identity.put_membership(TeamMembership { id: 1, user_id: 2, team_id: 7, role: TEAM_MEMBER });
    let admin = principal(&identity, 1);
    let standard = principal(&identity, 2);
    let mut g = c.benchmark_group("endpoint");
    for n in [10u64, 10_000] {
        let reg = registry(n, (n / 10).max(1));
        // Look up ids spread over the whole table, not one hot entry.
        let ids: Vec<u64> = (0..64).map(|i| 1 + (i * 7919) % n).collect();
        let mut k = 0usize;
        g.bench_with_input(BenchmarkId::new("lookup_and_access/admin", n), &n, |b, _| {
            b.iter(|| {
                k = (k + 1) % ids.len();
                assert!(lookup_and_check(&reg, &identity, &admin, black_box(ids[k])));
            })
        });
        g.bench_with_input(BenchmarkId::new("lookup_and_access/standard_user", n), &n, |b, _| {
            b.iter(|| {
                k = (k + 1) % ids.len();
                assert!(lookup_and_check(&reg, &identity, &standard, black_box(ids[k])));
            })
        });
        g.bench_with_input(BenchmarkId::new("lookup_miss", n), &n, |b, _| {
            b.iter(|| reg.get(black_box(n + 17)).is_none())
        });
    }
    g.finish();

    // The standard user's team lookup, against the size of the whole
    // membership table (other users' memberships included).
    let mut g = c.benchmark_group("identity/teams_of");
    for n in [10u64, 10_000] {
        let identity = identity_with_users(3);
        identity.put_membership(TeamMembership { id: 1, user_id: 2, team_id: 7, role: TEAM_MEMBER });
        for m in 2..=n {
            identity.put_membership(TeamMembership {
                id: m,
                user_id: 1000 + m,
                team_id: 1 + m % 50,
                role: TEAM_MEMBER,
            });
        }
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| b.iter(|| identity.teams_of(black_box(2))));
    }
    g.finish();
}

fn metrics_updates(c: &mut Criterion) {
    let m = berth::metrics::Metrics::new();
    // Other endpoints' series exist too.
    for e in 1..50u64 {
        let id = e.to_string();
        m.proxy_requests.with_label_values(&[&id, "/containers/json", "2xx"]).inc();
    }
    // What a proxied request updates: request and response byte counters,
    // the request counter by status class and the latency histogram.
    c.bench_function("metrics/proxy_series_handles", |b| {
        b.iter(|| {
            let series = m.proxy_series(black_box(7));
            let route = series.route(&berth::metrics::docker_route_template(black_box("/v1.41/containers/json")));
            series.bytes_in.inc_by(0);
            series.bytes_out.inc_by(2048);
            route.requests(200).inc();
            route.duration.observe(0.000_4);
        })
    });
    // The same four updates through `with_label_values`, for comparison.
    c.bench_function("metrics/with_label_values_x4", |b| {
        b.iter(|| {
            let endpoint = black_box(7u64).to_string();
            let template = berth::metrics::docker_route_template(black_box("/v1.41/containers/json"));
            m.proxy_bytes_in.with_label_values(&[&endpoint]).inc_by(0);
            m.proxy_bytes_out.with_label_values(&[&endpoint]).inc_by(2048);
            m.proxy_requests.with_label_values(&[&endpoint, &template, berth::metrics::status_class(200)]).inc();
            m.proxy_duration.with_label_values(&[&endpoint, &template]).observe(0.000_4);
        })
    });
}

fn pre_forward(c: &mut Criterion) {
    let keys = JwtKeys::from_secret(&[42u8; 32]);
    let identity = identity_with_users(100);
    identity.put_membership(TeamMembership { id: 1, user_id: 2, team_id: 7, role: TEAM_MEMBER });
    let reg = registry(100, 10);
    let m = berth::metrics::Metrics::new();
    let mut g = c.benchmark_group("hot_path/pre_forward");
    for (who, uid, role) in [("admin", 1u64, ROLE_ADMIN), ("standard_user", 2, ROLE_USER)] {
        let headers = bearer(&token_for(&keys, uid, role));
        g.bench_function(who, |b| {
            b.iter(|| {
                let path = black_box("/api/endpoints/42/docker/v1.41/containers/json");
                let (raw_id, docker_path) = berth::proxy::route::split_docker_path(path).unwrap();
                let p = authenticate(&headers, None, &identity, &keys).unwrap();
                let id: u64 = raw_id.parse().unwrap();
                assert!(lookup_and_check(&reg, &identity, &p, id));
                let series = m.proxy_series(id);
                let route = series.route(&berth::metrics::docker_route_template(docker_path));
                route.requests(200).inc();
                route.duration.observe(0.000_4);
                Arc::strong_count(&p.user)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, auth_check, route_match, endpoint_lookup, metrics_updates, pre_forward);
criterion_main!(benches);
