//! Portainer's `/api/*` routes: the route table with each route's access
//! policy, request decoding with limits, and JSON answers. One file per
//! Portainer resource.

pub mod auth;
pub mod bundles;
pub mod decode;
pub mod endpoint_groups;
pub mod endpoints;
pub mod form;
pub mod key_scope;
pub mod registries;
pub mod resource_controls;
pub mod settings;
pub mod stacks;
pub mod status;
pub mod tags;
pub mod teams;
pub mod useractivity;
pub mod users;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{header, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use crate::auth::Principal;
use crate::body::ResponseBody;
use crate::error::ApiResult;
use crate::state::AppState;
pub use decode::{decode_json, parse_id};

/// Who may call a route (Portainer's "bouncer" levels). There is no default:
/// a route without a declared policy cannot be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Public,
    Authenticated,
    /// Authenticated; the handler filters or checks the resource itself.
    Restricted,
    TeamLeader,
    Admin,
}

pub type Handler = fn(Arc<AppState>, ApiRequest) -> BoxFuture<'static, ApiResult<Response<ResponseBody>>>;

/// Wraps an `async fn(Arc<AppState>, ApiRequest) -> ApiResult<Response>` as a [`Handler`].
macro_rules! h {
    ($f:path) => {
        |s, r| Box::pin($f(s, r))
    };
}

pub struct Route {
    pub path: &'static str,
    pub methods: Vec<(Method, Policy, Handler)>,
}

/// The request as handlers see it.
pub struct ApiRequest {
    pub parts: http::request::Parts,
    pub body: Option<crate::body::ClientBody>,
    pub params: Vec<(String, String)>,
    pub principal: Option<Principal>,
    pub client_ip: IpAddr,
    pub max_json_body: usize,
}

impl ApiRequest {
    /// The caller; present on every route whose policy is not public.
    pub fn principal(&self) -> &Principal {
        self.principal.as_ref().expect("the router authenticates non-public routes")
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A numeric route variable; Portainer's 400 when it is not a number.
    pub fn id(&self, name: &str, thing: &str) -> ApiResult<u64> {
        parse_id(self.param(name).unwrap_or(""), thing)
    }

    pub fn query_pairs(&self) -> Vec<(String, String)> {
        self.parts.uri.query().map(|q| serde_urlencoded::from_str(q).unwrap_or_default()).unwrap_or_default()
    }

    pub fn query(&self, name: &str) -> Option<String> {
        self.query_pairs().into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The whole body, refused past `limit` bytes with 413.
    pub async fn bytes(&mut self, limit: usize) -> ApiResult<Bytes> {
        let Some(body) = self.body.take() else { return Ok(Bytes::new()) };
        let declared =
            self.parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        form::read_body(body.into_data_stream(), declared, limit).await
    }

    /// Decodes a JSON body the way Go does: field names match
    /// case-insensitively (top level), unknown fields are ignored. Target
    /// structs use `#[serde(rename_all = "lowercase")]`.
    pub async fn json<T: DeserializeOwned>(&mut self) -> ApiResult<T> {
        let limit = self.max_json_body;
        let bytes = self.bytes(limit).await?;
        decode_json(&bytes)
    }
}

pub fn json_response(status: StatusCode, v: &serde_json::Value) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::full(serde_json::to_vec(v).unwrap_or_default()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub fn ok_json(v: &serde_json::Value) -> ApiResult<Response<ResponseBody>> {
    Ok(json_response(StatusCode::OK, v))
}

pub fn no_content() -> ApiResult<Response<ResponseBody>> {
    let mut r = Response::new(ResponseBody::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    Ok(r)
}

pub use crate::response::store_err;

/// The compiled route table.
pub struct Routes {
    router: matchit::Router<usize>,
    routes: Vec<Route>,
}

pub enum Match<'a> {
    Found { policy: Policy, handler: Handler, template: &'static str, params: Vec<(String, String)> },
    MethodNotAllowed(&'a Route),
    NotFound,
}

impl Routes {
    pub fn new(routes: Vec<Route>) -> Routes {
        let mut router = matchit::Router::new();
        for (i, r) in routes.iter().enumerate() {
            router.insert(r.path, i).unwrap_or_else(|e| panic!("route {}: {e}", r.path));
        }
        Routes { router, routes }
    }

    pub fn find(&self, method: &Method, path: &str) -> Match<'_> {
        let Ok(m) = self.router.at(path) else { return Match::NotFound };
        let route = &self.routes[*m.value];
        let params = m.params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        // HEAD is answered like GET where GET exists.
        let want = if method == Method::HEAD { &Method::GET } else { method };
        match route.methods.iter().find(|(mm, _, _)| mm == want) {
            Some((_, policy, handler)) => {
                Match::Found { policy: *policy, handler: *handler, template: route.path, params }
            }
            None => Match::MethodNotAllowed(route),
        }
    }
}

/// Every `/api/*` route Berth serves, with its policy.
pub fn table() -> Routes {
    use Method as M;
    use Policy::*;
    let mut v: Vec<Route> = Vec::new();
    let mut add = |path: &'static str, methods: Vec<(Method, Policy, Handler)>| v.push(Route { path, methods });
    add("/api/status", vec![(M::GET, Public, h!(status::status))]);
    add("/api/system/status", vec![(M::GET, Public, h!(status::status))]);
    add("/api/system/version", vec![(M::GET, Authenticated, h!(status::version))]);
    add("/api/status/version", vec![(M::GET, Authenticated, h!(status::version))]);
    add("/api/settings/public", vec![(M::GET, Public, h!(settings::public))]);
    add("/api/settings", vec![(M::GET, Admin, h!(settings::get)), (M::PUT, Admin, h!(settings::update))]);
    add("/api/auth", vec![(M::POST, Public, h!(auth::login))]);
    add("/api/auth/logout", vec![(M::POST, Public, h!(auth::logout))]);
    add("/api/users/admin/check", vec![(M::GET, Public, h!(users::admin_check))]);
    add("/api/users/admin/init", vec![(M::POST, Public, h!(users::admin_init))]);
    add("/api/users", vec![(M::GET, Restricted, h!(users::list)), (M::POST, Admin, h!(users::create))]);
    add("/api/users/me", vec![(M::GET, Authenticated, h!(users::me))]);
    add(
        "/api/users/{id}",
        vec![
            (M::GET, Restricted, h!(users::inspect)),
            (M::PUT, Authenticated, h!(users::update)),
            (M::DELETE, Admin, h!(users::delete)),
        ],
    );
    add("/api/users/{id}/passwd", vec![(M::PUT, Authenticated, h!(users::update_password))]);
    add("/api/users/{id}/memberships", vec![(M::GET, Restricted, h!(users::memberships))]);
    add(
        "/api/users/{id}/tokens",
        vec![(M::GET, Restricted, h!(users::list_tokens)), (M::POST, Restricted, h!(users::create_token))],
    );
    add("/api/users/{id}/tokens/{keyId}", vec![(M::DELETE, Restricted, h!(users::delete_token))]);
    add(
        "/api/users/{id}/bundles",
        vec![(M::GET, Restricted, h!(bundles::list)), (M::POST, Restricted, h!(bundles::create))],
    );
    add("/api/users/{id}/bundles/{bundleId}", vec![(M::DELETE, Restricted, h!(bundles::delete))]);
    add("/api/useractivity/logs", vec![(M::GET, Admin, h!(useractivity::logs))]);
    add("/api/useractivity/authlogs", vec![(M::GET, Admin, h!(useractivity::authlogs))]);
    add("/api/teams", vec![(M::GET, Restricted, h!(teams::list)), (M::POST, Admin, h!(teams::create))]);
    add(
        "/api/teams/{id}",
        vec![
            (M::GET, TeamLeader, h!(teams::inspect)),
            (M::PUT, Admin, h!(teams::update)),
            (M::DELETE, Admin, h!(teams::delete)),
        ],
    );
    add("/api/teams/{id}/memberships", vec![(M::GET, TeamLeader, h!(teams::memberships))]);
    add(
        "/api/team_memberships",
        vec![(M::GET, TeamLeader, h!(teams::list_memberships)), (M::POST, TeamLeader, h!(teams::create_membership))],
    );
    add(
        "/api/team_memberships/{id}",
        vec![(M::PUT, TeamLeader, h!(teams::update_membership)), (M::DELETE, TeamLeader, h!(teams::delete_membership))],
    );
    add("/api/roles", vec![(M::GET, Admin, h!(users::roles))]);
    add("/api/registries", vec![(M::GET, Admin, h!(registries::list)), (M::POST, Admin, h!(registries::create))]);
    add(
        "/api/registries/{id}",
        vec![
            (M::GET, Authenticated, h!(registries::inspect)),
            (M::PUT, Admin, h!(registries::update)),
            (M::DELETE, Admin, h!(registries::delete)),
        ],
    );
    add(
        "/api/endpoints",
        vec![
            (M::GET, Restricted, h!(endpoints::list)),
            (M::POST, Admin, h!(endpoints::create)),
            (M::DELETE, Admin, h!(endpoints::delete_many)),
        ],
    );
    add("/api/endpoints/snapshot", vec![(M::POST, Admin, h!(endpoints::snapshot_all))]);
    add(
        "/api/endpoints/{id}",
        vec![
            (M::GET, Restricted, h!(endpoints::inspect)),
            (M::PUT, Admin, h!(endpoints::update)),
            (M::DELETE, Admin, h!(endpoints::delete)),
        ],
    );
    add("/api/endpoints/{id}/settings", vec![(M::PUT, Admin, h!(endpoints::update_settings))]);
    add("/api/endpoints/{id}/snapshot", vec![(M::POST, Admin, h!(endpoints::snapshot_one))]);
    add("/api/upload/tls/{certificate}", vec![(M::POST, Admin, h!(endpoints::upload_tls))]);
    add(
        "/api/endpoint_groups",
        vec![(M::GET, Restricted, h!(endpoint_groups::list)), (M::POST, Admin, h!(endpoint_groups::create))],
    );
    add(
        "/api/endpoint_groups/{id}",
        vec![
            (M::GET, Admin, h!(endpoint_groups::inspect)),
            (M::PUT, Admin, h!(endpoint_groups::update)),
            (M::DELETE, Admin, h!(endpoint_groups::delete)),
        ],
    );
    add(
        "/api/endpoint_groups/{id}/endpoints/{endpointId}",
        vec![
            (M::PUT, Admin, h!(endpoint_groups::add_endpoint)),
            (M::DELETE, Admin, h!(endpoint_groups::remove_endpoint)),
        ],
    );
    add("/api/tags", vec![(M::GET, Authenticated, h!(tags::list)), (M::POST, Admin, h!(tags::create))]);
    add("/api/tags/{id}", vec![(M::DELETE, Admin, h!(tags::delete))]);
    add("/api/endpoints/{id}/registries", vec![(M::GET, Authenticated, h!(registries::for_endpoint))]);
    add("/api/endpoints/{id}/registries/{registryId}", vec![(M::PUT, Admin, h!(registries::grant))]);
    add("/api/resource_controls", vec![(M::POST, Admin, h!(resource_controls::create))]);
    add(
        "/api/resource_controls/{id}",
        vec![(M::PUT, Authenticated, h!(resource_controls::update)), (M::DELETE, Admin, h!(resource_controls::delete))],
    );
    add("/api/stacks", vec![(M::GET, Restricted, h!(stacks::list)), (M::POST, Restricted, h!(stacks::create_legacy))]);
    add("/api/stacks/create/{type}/{method}", vec![(M::POST, Restricted, h!(stacks::create))]);
    add(
        "/api/stacks/{id}",
        vec![
            (M::GET, Restricted, h!(stacks::inspect)),
            (M::PUT, Restricted, h!(stacks::update)),
            (M::DELETE, Restricted, h!(stacks::delete)),
        ],
    );
    add("/api/stacks/{id}/file", vec![(M::GET, Restricted, h!(stacks::file))]);
    add("/api/stacks/{id}/start", vec![(M::POST, Restricted, h!(stacks::start))]);
    add("/api/stacks/{id}/stop", vec![(M::POST, Restricted, h!(stacks::stop))]);
    add("/api/stacks/{id}/git/redeploy", vec![(M::PUT, Restricted, h!(stacks::git_redeploy))]);
    Routes::new(v)
}

/// Parses `id` route values for handlers that take several.
pub fn params_map(params: &[(String, String)]) -> HashMap<&str, &str> {
    params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}
