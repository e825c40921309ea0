//! Portainer's `/api/*` routes: the route table with each route's access
//! policy, request decoding with limits, and JSON answers. One file per
//! Portainer resource.

pub mod auth;
pub mod bundles;
pub mod decode;
pub mod doc;
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

/// One method of a route: an `async fn(Arc<AppState>, ApiRequest) ->
/// ApiResult<Response>` handler, the policy it is served under, and its
/// description in the API document.
macro_rules! op {
    ($m:ident, $p:ident, $f:path, $doc:path) => {
        Op { method: Method::$m, policy: Policy::$p, handler: |s, r| Box::pin($f(s, r)), doc: &$doc }
    };
}

pub struct Route {
    pub path: &'static str,
    pub methods: Vec<Op>,
}

/// A method of a route. The description is part of the table so that the
/// API document (`crate::openapi`) is made from what is served.
pub struct Op {
    pub method: Method,
    pub policy: Policy,
    pub handler: Handler,
    pub doc: &'static doc::Doc,
}

/// The routes that keep answering after the admin-initialisation window
/// closed with no administrator (the router answers every other one 303).
pub const OPEN_WITHOUT_ADMIN: [&str; 3] = ["/api/status", "/api/system/status", "/api/settings/public"];

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

/// A JSON answer: a typed view (whose schema is in the API document) or a
/// `serde_json::Value`.
pub fn json_response<T: serde::Serialize + ?Sized>(status: StatusCode, v: &T) -> Response<ResponseBody> {
    json_bytes_response(status, serde_json::to_vec(v).unwrap_or_default())
}

/// A JSON document already encoded.
pub fn json_bytes_response(status: StatusCode, body: Vec<u8>) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub fn ok_json<T: serde::Serialize + ?Sized>(v: &T) -> ApiResult<Response<ResponseBody>> {
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
        match route.methods.iter().find(|op| op.method == want) {
            Some(op) => Match::Found { policy: op.policy, handler: op.handler, template: route.path, params },
            None => Match::MethodNotAllowed(route),
        }
    }

    /// Every route, in the order of [`table`].
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

/// Every `/api/*` route Berth serves, with its policy.
pub fn table() -> Routes {
    let mut v: Vec<Route> = Vec::new();
    let mut add = |path: &'static str, methods: Vec<Op>| v.push(Route { path, methods });
    add("/api/status", vec![op!(GET, Public, status::status, status::STATUS)]);
    add("/api/system/status", vec![op!(GET, Public, status::status, status::STATUS)]);
    add("/api/system/version", vec![op!(GET, Authenticated, status::version, status::VERSION)]);
    add("/api/status/version", vec![op!(GET, Authenticated, status::version, status::VERSION)]);
    add("/api/settings/public", vec![op!(GET, Public, settings::public, settings::PUBLIC)]);
    add(
        "/api/settings",
        vec![op!(GET, Admin, settings::get, settings::GET), op!(PUT, Admin, settings::update, settings::UPDATE)],
    );
    add("/api/auth", vec![op!(POST, Public, auth::login, auth::LOGIN)]);
    add("/api/auth/logout", vec![op!(POST, Public, auth::logout, auth::LOGOUT)]);
    add("/api/users/admin/check", vec![op!(GET, Public, users::admin_check, users::ADMIN_CHECK)]);
    add("/api/users/admin/init", vec![op!(POST, Public, users::admin_init, users::ADMIN_INIT)]);
    add(
        "/api/users",
        vec![op!(GET, Restricted, users::list, users::LIST), op!(POST, Admin, users::create, users::CREATE)],
    );
    add("/api/users/me", vec![op!(GET, Authenticated, users::me, users::ME)]);
    add(
        "/api/users/{id}",
        vec![
            op!(GET, Restricted, users::inspect, users::INSPECT),
            op!(PUT, Authenticated, users::update, users::UPDATE),
            op!(DELETE, Admin, users::delete, users::DELETE),
        ],
    );
    add("/api/users/{id}/passwd", vec![op!(PUT, Authenticated, users::update_password, users::UPDATE_PASSWORD)]);
    add("/api/users/{id}/memberships", vec![op!(GET, Restricted, users::memberships, users::MEMBERSHIPS)]);
    add(
        "/api/users/{id}/tokens",
        vec![
            op!(GET, Restricted, users::list_tokens, users::LIST_TOKENS),
            op!(POST, Restricted, users::create_token, users::CREATE_TOKEN),
        ],
    );
    add("/api/users/{id}/tokens/{keyId}", vec![op!(DELETE, Restricted, users::delete_token, users::DELETE_TOKEN)]);
    add(
        "/api/users/{id}/bundles",
        vec![
            op!(GET, Restricted, bundles::list, bundles::LIST),
            op!(POST, Restricted, bundles::create, bundles::CREATE),
        ],
    );
    add("/api/users/{id}/bundles/{bundleId}", vec![op!(DELETE, Restricted, bundles::delete, bundles::DELETE)]);
    add("/api/useractivity/logs", vec![op!(GET, Admin, useractivity::logs, useractivity::LOGS)]);
    add("/api/useractivity/authlogs", vec![op!(GET, Admin, useractivity::authlogs, useractivity::AUTHLOGS)]);
    add(
        "/api/teams",
        vec![op!(GET, Restricted, teams::list, teams::LIST), op!(POST, Admin, teams::create, teams::CREATE)],
    );
    add(
        "/api/teams/{id}",
        vec![
            op!(GET, TeamLeader, teams::inspect, teams::INSPECT),
            op!(PUT, Admin, teams::update, teams::UPDATE),
            op!(DELETE, Admin, teams::delete, teams::DELETE),
        ],
    );
    add("/api/teams/{id}/memberships", vec![op!(GET, TeamLeader, teams::memberships, teams::MEMBERSHIPS)]);
    add(
        "/api/team_memberships",
        vec![
            op!(GET, TeamLeader, teams::list_memberships, teams::LIST_MEMBERSHIPS),
            op!(POST, TeamLeader, teams::create_membership, teams::CREATE_MEMBERSHIP),
        ],
    );
    add(
        "/api/team_memberships/{id}",
        vec![
            op!(PUT, TeamLeader, teams::update_membership, teams::UPDATE_MEMBERSHIP),
            op!(DELETE, TeamLeader, teams::delete_membership, teams::DELETE_MEMBERSHIP),
        ],
    );
    add("/api/roles", vec![op!(GET, Admin, users::roles, users::ROLES)]);
    add(
        "/api/registries",
        vec![
            op!(GET, Admin, registries::list, registries::LIST),
            op!(POST, Admin, registries::create, registries::CREATE),
        ],
    );
    add(
        "/api/registries/{id}",
        vec![
            op!(GET, Authenticated, registries::inspect, registries::INSPECT),
            op!(PUT, Admin, registries::update, registries::UPDATE),
            op!(DELETE, Admin, registries::delete, registries::DELETE),
        ],
    );
    add(
        "/api/endpoints",
        vec![
            op!(GET, Restricted, endpoints::list, endpoints::LIST),
            op!(POST, Admin, endpoints::create, endpoints::CREATE),
            op!(DELETE, Admin, endpoints::delete_many, endpoints::DELETE_MANY),
        ],
    );
    add("/api/endpoints/snapshot", vec![op!(POST, Admin, endpoints::snapshot_all, endpoints::SNAPSHOT_ALL)]);
    add(
        "/api/endpoints/{id}",
        vec![
            op!(GET, Restricted, endpoints::inspect, endpoints::INSPECT),
            op!(PUT, Admin, endpoints::update, endpoints::UPDATE),
            op!(DELETE, Admin, endpoints::delete, endpoints::DELETE),
        ],
    );
    add("/api/endpoints/{id}/settings", vec![op!(PUT, Admin, endpoints::update_settings, endpoints::UPDATE_SETTINGS)]);
    add("/api/endpoints/{id}/snapshot", vec![op!(POST, Admin, endpoints::snapshot_one, endpoints::SNAPSHOT_ONE)]);
    add("/api/upload/tls/{certificate}", vec![op!(POST, Admin, endpoints::upload_tls, endpoints::UPLOAD_TLS)]);
    add(
        "/api/endpoint_groups",
        vec![
            op!(GET, Restricted, endpoint_groups::list, endpoint_groups::LIST),
            op!(POST, Admin, endpoint_groups::create, endpoint_groups::CREATE),
        ],
    );
    add(
        "/api/endpoint_groups/{id}",
        vec![
            op!(GET, Admin, endpoint_groups::inspect, endpoint_groups::INSPECT),
            op!(PUT, Admin, endpoint_groups::update, endpoint_groups::UPDATE),
            op!(DELETE, Admin, endpoint_groups::delete, endpoint_groups::DELETE),
        ],
    );
    add(
        "/api/endpoint_groups/{id}/endpoints/{endpointId}",
        vec![
            op!(PUT, Admin, endpoint_groups::add_endpoint, endpoint_groups::ADD_ENDPOINT),
            op!(DELETE, Admin, endpoint_groups::remove_endpoint, endpoint_groups::REMOVE_ENDPOINT),
        ],
    );
    add(
        "/api/tags",
        vec![op!(GET, Authenticated, tags::list, tags::LIST), op!(POST, Admin, tags::create, tags::CREATE)],
    );
    add("/api/tags/{id}", vec![op!(DELETE, Admin, tags::delete, tags::DELETE)]);
    add(
        "/api/endpoints/{id}/registries",
        vec![op!(GET, Authenticated, registries::for_endpoint, registries::FOR_ENDPOINT)],
    );
    add("/api/endpoints/{id}/registries/{registryId}", vec![op!(PUT, Admin, registries::grant, registries::GRANT)]);
    add("/api/resource_controls", vec![op!(POST, Admin, resource_controls::create, resource_controls::CREATE)]);
    add(
        "/api/resource_controls/{id}",
        vec![
            op!(PUT, Authenticated, resource_controls::update, resource_controls::UPDATE),
            op!(DELETE, Admin, resource_controls::delete, resource_controls::DELETE),
        ],
    );
    add(
        "/api/stacks",
        vec![
            op!(GET, Restricted, stacks::list, stacks::LIST),
            op!(POST, Restricted, stacks::create_legacy, stacks::CREATE_LEGACY),
        ],
    );
    add("/api/stacks/create/{type}/{method}", vec![op!(POST, Restricted, stacks::create, stacks::CREATE)]);
    add(
        "/api/stacks/{id}",
        vec![
            op!(GET, Restricted, stacks::inspect, stacks::INSPECT),
            op!(PUT, Restricted, stacks::update, stacks::UPDATE),
            op!(DELETE, Restricted, stacks::delete, stacks::DELETE),
        ],
    );
    add("/api/stacks/{id}/file", vec![op!(GET, Restricted, stacks::file, stacks::FILE)]);
    add("/api/stacks/{id}/start", vec![op!(POST, Restricted, stacks::start, stacks::START)]);
    add("/api/stacks/{id}/stop", vec![op!(POST, Restricted, stacks::stop, stacks::STOP)]);
    add("/api/stacks/{id}/git/redeploy", vec![op!(PUT, Restricted, stacks::git_redeploy, stacks::GIT_REDEPLOY)]);
    Routes::new(v)
}

/// Parses `id` route values for handlers that take several.
pub fn params_map(params: &[(String, String)]) -> HashMap<&str, &str> {
    params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}
