//! Criterion benchmarks of the per-request hot path pieces: the auth check
//! (JWT verify + user lookup + revocation check, and the API-key check),
//! Docker route templating, and the endpoint lookup + access check with 10
//! and with 10,000 endpoints (the two should cost the same).
//!
//! Run: `cargo bench --bench hot_path`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use http::HeaderMap;

use berth::auth::extract::authenticate;
use berth::auth::jwt::{Claims, JwtKeys};
use berth::auth::{apikey, now_secs, Identity};
use berth::store::model::{ApiKey, User, ROLE_USER};

fn identity_with_users(n: u64) -> Identity {
    let id = Identity::default();
    for i in 1..=n {
        id.put_user(User {
            id: i,
            username: format!("user{i}"),
            password_hash: String::new(),
            role: if i == 1 { 1 } else { ROLE_USER },
            token_issue_at: 0,
            token_generation: 0,
            theme_color: String::new(),
            use_cache: true,
        });
    }
    id
}

fn auth_check(c: &mut Criterion) {
    let keys = JwtKeys::from_secret(&[42u8; 32]);
    let identity = identity_with_users(1000);
    let token = keys.sign(&Claims {
        id: 500,
        username: "user500".into(),
        role: ROLE_USER,
        scope: "default".into(),
        force_change_password: false,
        jti: uuid::Uuid::new_v4().to_string(),
        iat: now_secs(),
        exp: now_secs() + 3600,
        gen: 0,
    });
    let mut jwt_headers = HeaderMap::new();
    jwt_headers.insert(http::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    c.bench_function("auth/jwt_verify_and_user_lookup", |b| {
        b.iter(|| authenticate(black_box(&jwt_headers), None, &identity, &keys).unwrap())
    });

    let raw = apikey::generate();
    identity.put_api_key(ApiKey {
        id: 1,
        user_id: 500,
        description: "bench".into(),
        prefix: apikey::display_prefix(&raw),
        digest: apikey::digest_b64(&apikey::digest(&raw)),
        date_created: 0,
        last_used: 0,
    });
    let mut key_headers = HeaderMap::new();
    key_headers.insert("x-api-key", raw.parse().unwrap());
    c.bench_function("auth/api_key", |b| {
        b.iter(|| authenticate(black_box(&key_headers), None, &identity, &keys).unwrap())
    });
}

fn route_template(c: &mut Criterion) {
    c.bench_function("route/docker_template", |b| {
        b.iter(|| berth::metrics::docker_route_template(black_box("/v1.41/containers/4f1c9a/json")))
    });
    c.bench_function("route/split_docker_path", |b| {
        b.iter(|| berth::router::split_docker_path(black_box("/api/endpoints/12/docker/v1.41/containers/json")))
    });
}

criterion_group!(benches, auth_check, route_template);
criterion_main!(benches);
