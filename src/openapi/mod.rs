//! `GET /api/openapi.json`: the OpenAPI 3.1 document of Berth's HTTP API,
//! generated from what serves it, so that it cannot drift from it.
//!
//! - The management routes are read from the route table itself
//!   ([`api::table`]): every path and method, and each method's [`Doc`]
//!   (summary, query, request body, answers), which the table cannot be
//!   built without. Bodies are the handlers' own Rust types, their schemas
//!   derived by `utoipa`.
//! - What the table knows is not written twice but derived here: the
//!   security requirement from the [`Policy`] (none for public routes), the
//!   path variables from the path (numeric ids by name), and the refusals
//!   every route of a kind can answer: 401 and 403 for authenticated
//!   routes, 400 and 404 for a path with an id, 400, 408 and 413 for a
//!   body, 303 once the admin-initialisation window closed.
//! - The routes the router serves before the table (the Docker proxy, the
//!   fan-out, the terminals, this document) carry their [`Doc`] beside
//!   their handlers too, and are listed here from their own route lists.
//!
//! The document is built once, on first request ([`document`]). The unit
//! tests check that each (path, method) of the table is in the document
//! and each operation of the document is served.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use bytes::Bytes;
use http::Method;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder, ResponsesBuilder};
use utoipa::openapi::schema::{
    ArrayBuilder, ComponentsBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    ContactBuilder, InfoBuilder, LicenseBuilder, OpenApi, OpenApiBuilder, PathsBuilder, RefOr, Required,
};

use crate::api::doc::{json, Body, Content, Doc, Query, QueryType, Schemas, ANY_STATUS};
use crate::api::{self, Policy};
use crate::error::ErrorBody;

/// Where the document is served. Public, as Portainer's API documentation
/// is: it tells a client how to call Berth, not anything about this
/// instance (no endpoint, user or setting), and a client needs it before
/// it has credentials (to log in).
pub const PATH: &str = "/api/openapi.json";

/// The name of the bearer (JWT) security scheme.
const BEARER: &str = "jwt";
/// The name of the `X-API-Key` security scheme.
const API_KEY: &str = "apiKey";

/// What this document itself is, for its own entry.
const SELF_DOC: Doc = Doc::new(
    "This document",
    &[api::doc::Reply::json(200, "The OpenAPI 3.1 document of Berth's API", json::<OpenApiDocument>)],
);

/// Stands for an OpenAPI document in the schema of [`PATH`]'s answer.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
#[schema(as = OpenApiDocument)]
struct OpenApiDocument {
    openapi: String,
    #[schema(value_type = Object)]
    info: (),
    #[schema(value_type = Object)]
    paths: (),
}

/// The document, serialised once.
pub fn document() -> Bytes {
    static DOC: LazyLock<Bytes> =
        LazyLock::new(|| Bytes::from(serde_json::to_vec(&build(&api::table())).unwrap_or_default()));
    DOC.clone()
}

/// One operation to describe: a table route's method, or one the router
/// serves itself.
struct Entry<'a> {
    path: &'a str,
    method: Method,
    policy: Policy,
    doc: &'a Doc,
    /// A route of the table (which the router closes with 303 once the
    /// admin-initialisation window passed without an administrator).
    table: bool,
}

/// Every operation Berth serves, the table's first.
fn entries(routes: &api::Routes) -> Vec<Entry<'_>> {
    let mut v: Vec<Entry<'_>> = routes
        .routes()
        .iter()
        .flat_map(|r| {
            r.methods.iter().map(|op| Entry {
                path: r.path,
                method: op.method.clone(),
                policy: op.policy,
                doc: op.doc,
                table: true,
            })
        })
        .collect();
    for kind in crate::terminal::Kind::ALL {
        v.push(Entry {
            path: kind.template(),
            method: Method::GET,
            policy: Policy::Authenticated,
            doc: &crate::terminal::DOC,
            table: false,
        });
    }
    for kind in crate::fanout::Kind::ALL {
        v.push(Entry {
            path: kind.template(),
            method: Method::GET,
            policy: Policy::Authenticated,
            doc: &crate::fanout::DOC,
            table: false,
        });
    }
    for method in [Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::DELETE] {
        v.push(Entry {
            path: DOCKER_PATH,
            method,
            policy: Policy::Restricted,
            doc: &crate::proxy::route::DOC,
            table: false,
        });
    }
    v.push(Entry { path: PATH, method: Method::GET, policy: Policy::Public, doc: &SELF_DOC, table: false });
    v
}

/// The Docker proxy's path in the document: the rest of the path is one
/// variable (OpenAPI has no multi-segment variable; Portainer's
/// documentation writes it the same way).
const DOCKER_PATH: &str = "/api/endpoints/{id}/docker/{path}";

/// Builds the document from a route table.
pub fn build(routes: &api::Routes) -> OpenApi {
    let mut schemas: Schemas = Vec::new();
    let error = json::<ErrorBody<'static>>(&mut schemas);
    let mut paths: BTreeMap<&str, Vec<(HttpMethod, Operation)>> = BTreeMap::new();
    let mut tags: Vec<String> = Vec::new();
    for e in entries(routes) {
        let tag = tag_of(e.path);
        if !tags.contains(&tag) {
            tags.push(tag.clone());
        }
        let op = operation(&e, &tag, &error, &mut schemas);
        paths.entry(e.path).or_default().push((http_method(&e.method), op));
    }
    let mut pb = PathsBuilder::new();
    for (path, ops) in paths {
        let mut ops = ops.into_iter();
        let Some((m, first)) = ops.next() else { continue };
        let mut item = PathItem::new(m, first);
        for (m, op) in ops {
            item.merge_operations(PathItem::new(m, op));
        }
        pb = pb.path(path, item);
    }
    let mut components = ComponentsBuilder::new()
        .security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A session token from POST /api/auth (also accepted as the portainer_api_key cookie)",
                    ))
                    .build(),
            ),
        )
        .security_scheme(
            API_KEY,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "An API key from POST /api/users/{id}/tokens",
            ))),
        );
    // A type met twice (a list and an object) is registered once.
    let mut seen = std::collections::BTreeSet::new();
    for (name, schema) in schemas {
        if seen.insert(name.clone()) {
            components = components.schema(name, schema);
        }
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Berth")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Berth's HTTP API: Portainer's management API (the routes Berth serves, in Portainer's \
                     shapes), the Docker proxy, and Berth's own additions (fan-out, client bundles, scoped \
                     API keys, the audit trail). Errors are `{\"message\", \"details\"}`. JSON field names \
                     of request bodies match ignoring case, as Portainer's do.",
                ))
                .license(Some(LicenseBuilder::new().name("Apache-2.0").identifier(Some("Apache-2.0")).build()))
                .contact(Some(ContactBuilder::new().name(Some("Berth")).build()))
                .build(),
        )
        .paths(pb.build())
        .components(Some(components.build()))
        .tags(Some(tags.into_iter().map(utoipa::openapi::tag::Tag::new)))
        .build()
}

fn http_method(m: &Method) -> HttpMethod {
    match *m {
        Method::GET => HttpMethod::Get,
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::DELETE => HttpMethod::Delete,
        Method::HEAD => HttpMethod::Head,
        Method::PATCH => HttpMethod::Patch,
        Method::OPTIONS => HttpMethod::Options,
        _ => HttpMethod::Trace,
    }
}

/// The resource a path is about: its first segment after `/api`.
fn tag_of(path: &str) -> String {
    path.trim_start_matches("/api/").split('/').next().unwrap_or("api").trim_end_matches(".json").to_string()
}

/// `getUsersByIdTokens` for `GET /api/users/{id}/tokens`: unique, since
/// (path, method) is.
fn operation_id(method: &Method, path: &str) -> String {
    let mut id = method.as_str().to_ascii_lowercase();
    for seg in path.trim_start_matches("/api/").split(['/', '_', '.']) {
        let (prefix, seg) = match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(var) => ("By", var),
            None => ("", seg),
        };
        id.push_str(prefix);
        let mut c = seg.chars();
        if let Some(f) = c.next() {
            id.extend(f.to_uppercase());
            id.push_str(c.as_str());
        }
    }
    id
}

/// The variables of a path template, in order.
fn path_variables(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
}

/// Numeric route variables: `id` and `...Id` (`keyId`, `endpointId`),
/// read with `ApiRequest::id`, which answers 400 for anything else.
fn is_id(var: &str) -> bool {
    var == "id" || var.ends_with("Id")
}

fn integer() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .build()
        .into()
}

fn string() -> Schema {
    ObjectBuilder::new().schema_type(Type::String).build().into()
}

fn query_schema(kind: QueryType) -> Schema {
    match kind {
        QueryType::Integer => integer(),
        QueryType::Boolean => ObjectBuilder::new().schema_type(Type::Boolean).build().into(),
        QueryType::String => string(),
        QueryType::IntegerList => ArrayBuilder::new().items(RefOr::T(integer())).build().into(),
    }
}

fn query_parameter(q: &Query) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(q.name)
        .parameter_in(ParameterIn::Query)
        .required(if q.required { Required::True } else { Required::False })
        .description(Some(q.description))
        .schema(Some(query_schema(q.kind)))
        .build()
}

fn error_response(description: &str, error: &RefOr<Schema>) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", ContentBuilder::new().schema(Some(error.clone())).build())
        .build()
}

fn operation(e: &Entry<'_>, tag: &str, error: &RefOr<Schema>, schemas: &mut Schemas) -> Operation {
    let doc = e.doc;
    let mut b =
        OperationBuilder::new().tag(tag).summary(Some(doc.summary)).operation_id(Some(operation_id(&e.method, e.path)));
    if !doc.description.is_empty() {
        b = b.description(Some(doc.description));
    }
    for var in path_variables(e.path) {
        let p = ParameterBuilder::new().name(var).parameter_in(ParameterIn::Path).required(Required::True);
        // Id 1 exists on every instance (the first administrator, the
        // Unassigned group, the first endpoint): an example that reaches a
        // handler's logic rather than its 404.
        let p = if is_id(var) { p.schema(Some(integer())).example(Some(1.into())) } else { p.schema(Some(string())) };
        b = b.parameter(p);
    }
    for q in doc.query {
        b = b.parameter(query_parameter(q));
    }
    b = match doc.body {
        Body::None => b,
        Body::Json(f) => b.request_body(Some(
            RequestBodyBuilder::new()
                .content("application/json", ContentBuilder::new().schema(Some(f(schemas))).build())
                .required(Some(Required::True))
                .build(),
        )),
        Body::Form(f) => b.request_body(Some(form_body(f(schemas), None))),
        Body::JsonOrForm(j, f) => b.request_body(Some(form_body(f(schemas), Some(j(schemas))))),
    };
    let mut responses = ResponsesBuilder::new();
    // Successful answers, those of one status merged (JSON or CSV).
    let mut by_status: BTreeMap<u16, ResponseBuilder> = BTreeMap::new();
    for r in doc.replies {
        let mut rb = by_status.remove(&r.status).unwrap_or_else(|| ResponseBuilder::new().description(r.description));
        match r.content {
            Content::None => {}
            Content::Json(f) => {
                rb = rb.content("application/json", ContentBuilder::new().schema(Some(f(schemas))).build())
            }
            Content::Bytes(media) => {
                let bytes = ObjectBuilder::new().schema_type(Type::String).content_media_type(media).build();
                rb = rb.content(media, ContentBuilder::new().schema(Some(bytes)).build());
            }
        }
        for (name, description) in r.headers {
            rb = rb.header(*name, HeaderBuilder::new().schema(string()).description(Some(*description)).build());
        }
        by_status.insert(r.status, rb);
    }
    for (status, rb) in by_status {
        let key = if status == ANY_STATUS { "default".to_string() } else { status.to_string() };
        responses = responses.response(key, rb.build());
    }
    for (status, description) in refusals(e) {
        responses = responses.response(status.to_string(), error_response(&description, error));
    }
    b = b.responses(responses.build());
    b = if e.policy == Policy::Public {
        b.securities(Some(Vec::<SecurityRequirement>::new()))
    } else {
        b.securities(Some([
            SecurityRequirement::new(BEARER, Vec::<String>::new()),
            SecurityRequirement::new(API_KEY, Vec::<String>::new()),
        ]))
    };
    b.build()
}

/// A form body (`multipart/form-data` or URL-encoded), and JSON beside it
/// when the operation takes either.
fn form_body(form: RefOr<Schema>, json: Option<RefOr<Schema>>) -> utoipa::openapi::request_body::RequestBody {
    let mut rb = RequestBodyBuilder::new()
        .content("multipart/form-data", ContentBuilder::new().schema(Some(form.clone())).build())
        .content("application/x-www-form-urlencoded", ContentBuilder::new().schema(Some(form)).build())
        .required(Some(Required::True));
    if let Some(j) = json {
        rb = rb.content("application/json", ContentBuilder::new().schema(Some(j)).build());
    }
    rb.build()
}

/// The error answers of an operation: its own, and those that follow from
/// its route. Listed once per status, the operation's own wording first.
fn refusals(e: &Entry<'_>) -> Vec<(u16, String)> {
    let mut out: BTreeMap<u16, String> = BTreeMap::new();
    let mut add = |status: u16, why: &str| {
        out.entry(status)
            .and_modify(|d| {
                if !d.contains(why) {
                    d.push_str("; ");
                    d.push_str(why);
                }
            })
            .or_insert_with(|| why.to_string());
    };
    for (status, why) in e.doc.errors {
        add(*status, why);
    }
    if e.policy != Policy::Public {
        add(401, "No valid credentials (session token, API key or client certificate)");
        add(403, "Not allowed: the route's policy, a scoped API key's limits, or a cross-site cookie request");
    }
    if path_variables(e.path).any(is_id) {
        add(400, "A path identifier is not a number");
        add(404, "No such object");
    }
    if !e.doc.query.is_empty() {
        add(400, "Invalid query parameter");
    }
    if !matches!(e.doc.body, Body::None) {
        add(400, "Invalid request payload");
        add(408, "The request body stalled");
        add(413, "The request body is too large");
    }
    if e.table && !api::OPEN_WITHOUT_ADMIN.contains(&e.path) {
        add(303, "The administrator-initialisation window closed without an administrator (restart Berth)");
    }
    add(500, "Berth failed (the cause is in its log)");
    out.into_iter().collect()
}

#[cfg(test)]
mod tests;
