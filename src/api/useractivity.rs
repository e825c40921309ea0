//! `GET /api/useractivity/logs` and `GET /api/useractivity/authlogs`
//! (admins only): the audit trail, in the shape of Portainer's business
//! edition; `Accept: text/csv` exports the same page as CSV.

use std::sync::Arc;

use http::{header, HeaderValue, Response, StatusCode};

use super::doc::{json, Doc, Query, QueryType, Reply};
use super::{json_response, ApiRequest, ApiResult};
use crate::audit::query::{self, ActivityLogPage, AuthLogPage, Log};
use crate::audit::Event;
use crate::body::ResponseBody;
use crate::error::ApiError;
use crate::response::store_err;
use crate::state::AppState;

/// The query both logs read (`crate::audit::query::parse`).
const QUERY: &[Query] = &[
    Query::optional("offset", QueryType::Integer, "Entries to skip"),
    Query::optional("limit", QueryType::Integer, "Entries per page, 1 to 1000 (100)"),
    Query::optional("sortBy", QueryType::String, "timestamp, username, action, context or origin"),
    Query::optional("sortDesc", QueryType::Boolean, "Newest first (true)"),
    Query::optional("keyword", QueryType::String, "Substring searched in the rows, at most 256 bytes"),
    Query::optional("after", QueryType::Integer, "Unix seconds: entries from then on"),
    Query::optional("before", QueryType::Integer, "Unix seconds: entries until then"),
];

const CSV_NOTE: &str = "`Accept: text/csv` exports the same page as CSV.";
const TOTAL: &[(&str, &str)] = &[("X-Total-Count", "Entries matching the query (CSV answers)")];

pub const LOGS: Doc = Doc::new(
    "Activity log",
    &[
        Reply::json(200, "A page of the activity log", json::<ActivityLogPage>),
        Reply::bytes(200, "The page as CSV", "text/csv").with_headers(TOTAL),
    ],
)
.describe(CSV_NOTE)
.query(QUERY);

pub const AUTHLOGS: Doc = Doc::new(
    "Authentication log",
    &[
        Reply::json(200, "A page of the authentication log", json::<AuthLogPage>),
        Reply::bytes(200, "The page as CSV", "text/csv").with_headers(TOTAL),
    ],
)
.describe(CSV_NOTE)
.query(QUERY);

pub async fn logs(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    answer(&state, &req, Log::Activity).await
}

pub async fn authlogs(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    answer(&state, &req, Log::Auth).await
}

fn wants_csv(req: &ApiRequest) -> bool {
    req.parts
        .headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| m.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("text/csv"))
}

async fn answer(state: &AppState, req: &ApiRequest, log: Log) -> ApiResult<Response<ResponseBody>> {
    let q = query::parse(&req.query_pairs()).map_err(|d| ApiError::bad_request("Invalid query parameter", d))?;
    let store = state.store.clone();
    // A full read of a bounded table (AuditLogMaxEntries): off the workers.
    let events: Vec<Event> = tokio::task::spawn_blocking(move || store.load_all(crate::store::AUDIT))
        .await
        .map_err(|e| ApiError::internal("Unable to read the audit trail", e))?
        .map_err(store_err)?;
    let names = |id: u64| state.endpoints.get(id).map(|e| e.record.name.clone());
    let (rows, total) = query::page(&q, log, events, &names);
    if wants_csv(req) {
        let mut resp = Response::new(ResponseBody::full(query::csv(log, &rows)));
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
        let file = match log {
            Log::Activity => "attachment; filename=\"useractivity-logs.csv\"",
            Log::Auth => "attachment; filename=\"useractivity-authlogs.csv\"",
        };
        h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static(file));
        h.insert("x-total-count", HeaderValue::from(total));
        return Ok(resp);
    }
    Ok(match log {
        Log::Activity => {
            let logs = rows.iter().map(|(e, ctx)| query::render_activity(e, ctx)).collect();
            json_response(StatusCode::OK, &ActivityLogPage { logs, total_count: total })
        }
        Log::Auth => {
            let logs = rows.iter().map(|(e, _)| query::render_auth(e)).collect();
            json_response(StatusCode::OK, &AuthLogPage { logs, total_count: total })
        }
    })
}
