//! What the API document (`GET /api/openapi.json`, assembled by
//! `crate::openapi`) says of one operation of the route table.
//!
//! Every [`super::Op`] of [`super::table`] carries a [`Doc`], so a route
//! cannot be added without its description: the document is generated from
//! the table, not written beside it. Request and response bodies are named
//! by their Rust types ([`json`], [`list`]), whose schemas `utoipa` derives
//! from the very structs the handlers decode and encode; a field added to
//! one of them is in the document on the next build. What the table itself
//! knows (the path, its variables, the access policy, whether a body is
//! read) is not repeated here: `crate::openapi` derives the security
//! requirement and the refusals every operation of its kind can answer
//! (401, 403, 400 for a bad id, 404, 413...) from it.

use utoipa::openapi::schema::{ArrayBuilder, Schema};
use utoipa::openapi::{Ref, RefOr};
use utoipa::ToSchema;

/// The document's named schemas (`components.schemas`), filled as
/// operations refer to types.
pub type Schemas = Vec<(String, RefOr<Schema>)>;

/// Registers a type's schema (and those it refers to) and answers a
/// reference to it. A function pointer rather than a value, so that a
/// [`Doc`] can be a `const` next to its handler.
pub type SchemaFn = fn(&mut Schemas) -> RefOr<Schema>;

/// The schema of `T`, registered under its type name.
pub fn json<T: ToSchema>(schemas: &mut Schemas) -> RefOr<Schema> {
    let name = T::name();
    schemas.push((name.to_string(), T::schema()));
    T::schemas(schemas);
    Ref::from_schema_name(name).into()
}

/// A JSON array of `T`.
pub fn list<T: ToSchema>(schemas: &mut Schemas) -> RefOr<Schema> {
    ArrayBuilder::new().items(json::<T>(schemas)).into()
}

/// The request body an operation reads.
#[derive(Clone, Copy)]
pub enum Body {
    None,
    /// JSON; top-level field names match ignoring case, as Go's decoder
    /// (and so Portainer) does.
    Json(SchemaFn),
    /// `multipart/form-data` (also accepted URL-encoded).
    Form(SchemaFn),
    /// Either, by `Content-Type` (stack creation: a file upload or JSON).
    JsonOrForm(SchemaFn, SchemaFn),
}

/// The status of a [`Reply`] that is whatever another server answered (the
/// Docker proxy's pass-through): OpenAPI's `default` response.
pub const ANY_STATUS: u16 = 0;

/// The body of an answer.
#[derive(Clone, Copy)]
pub enum Content {
    None,
    Json(SchemaFn),
    /// Bytes of a media type (a zip, CSV).
    Bytes(&'static str),
}

/// One answer an operation gives when it does what was asked.
#[derive(Clone, Copy)]
pub struct Reply {
    /// The HTTP status, or [`ANY_STATUS`].
    pub status: u16,
    pub description: &'static str,
    pub content: Content,
    /// Response headers worth naming: (name, description).
    pub headers: &'static [(&'static str, &'static str)],
}

impl Reply {
    pub const fn json(status: u16, description: &'static str, schema: SchemaFn) -> Reply {
        Reply { status, description, content: Content::Json(schema), headers: &[] }
    }

    pub const fn empty(status: u16, description: &'static str) -> Reply {
        Reply { status, description, content: Content::None, headers: &[] }
    }

    pub const fn bytes(status: u16, description: &'static str, media_type: &'static str) -> Reply {
        Reply { status, description, content: Content::Bytes(media_type), headers: &[] }
    }

    pub const fn with_headers(self, headers: &'static [(&'static str, &'static str)]) -> Reply {
        Reply { headers, ..self }
    }
}

/// The type of a query parameter's value.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum QueryType {
    Integer,
    Boolean,
    String,
    /// `name[]=1&name[]=2` (the parameter's name carries the brackets).
    IntegerList,
}

/// A query parameter an operation reads.
#[derive(Clone, Copy)]
pub struct Query {
    pub name: &'static str,
    pub kind: QueryType,
    pub required: bool,
    pub description: &'static str,
}

impl Query {
    pub const fn optional(name: &'static str, kind: QueryType, description: &'static str) -> Query {
        Query { name, kind, required: false, description }
    }

    pub const fn required(name: &'static str, kind: QueryType, description: &'static str) -> Query {
        Query { name, kind, required: true, description }
    }
}

/// The description of one operation (a method of a route).
#[derive(Clone, Copy)]
pub struct Doc {
    pub summary: &'static str,
    pub description: &'static str,
    pub query: &'static [Query],
    pub body: Body,
    /// Its successful answers (at least one).
    pub replies: &'static [Reply],
    /// Refusals particular to this operation (409, 422, 429, a 403 a
    /// public route answers...), with what they mean. Those that follow
    /// from the route (policy, path variables, body) are added by the
    /// document builder and need not be listed.
    pub errors: &'static [(u16, &'static str)],
}

impl Doc {
    /// An operation that reads no body and answers `replies`.
    pub const fn new(summary: &'static str, replies: &'static [Reply]) -> Doc {
        Doc { summary, description: "", query: &[], body: Body::None, replies, errors: &[] }
    }

    pub const fn describe(self, description: &'static str) -> Doc {
        Doc { description, ..self }
    }

    pub const fn query(self, query: &'static [Query]) -> Doc {
        Doc { query, ..self }
    }

    pub const fn body(self, body: Body) -> Doc {
        Doc { body, ..self }
    }

    pub const fn errors(self, errors: &'static [(u16, &'static str)]) -> Doc {
        Doc { errors, ..self }
    }
}
