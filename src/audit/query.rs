//! Reading the trail back: `GET /api/useractivity/logs` and `.../authlogs`
//! in the shape of Portainer's business edition (`{"logs": [...],
//! "totalCount": N}`; `offset`, `limit`, `sortBy`, `sortDesc`, `keyword`,
//! `after`, `before`), and their CSV export.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{Event, Kind};

/// Most entries one page may hold.
pub const MAX_LIMIT: usize = 1000;
/// Entries a page holds when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;

/// Which of the two logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Log {
    /// Changes: management API, proxied Docker calls, terminals.
    Activity,
    /// Logins, failed logins, logouts.
    Auth,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SortBy {
    Timestamp,
    Username,
    Action,
    Context,
    Origin,
}

/// A parsed query.
#[derive(Debug)]
pub struct Query {
    offset: usize,
    limit: usize,
    sort_by: SortBy,
    sort_desc: bool,
    keyword: Option<String>,
    after: Option<u64>,
    before: Option<u64>,
}

/// Parses the query string; `Err` holds what is wrong, for a 400.
pub fn parse(pairs: &[(String, String)]) -> Result<Query, String> {
    let mut q = Query {
        offset: 0,
        limit: DEFAULT_LIMIT,
        sort_by: SortBy::Timestamp,
        sort_desc: true,
        keyword: None,
        after: None,
        before: None,
    };
    let mut seen = std::collections::HashSet::new();
    for (k, v) in pairs {
        if !seen.insert(k.as_str()) {
            return Err(format!("{k} is given more than once"));
        }
        let number = |name: &str| v.parse::<u64>().map_err(|_| format!("{name} must be a non-negative integer"));
        match k.as_str() {
            "offset" => q.offset = usize::try_from(number("offset")?).map_err(|_| "offset is too large".to_string())?,
            "limit" => {
                let n = number("limit")?;
                if n == 0 || n > MAX_LIMIT as u64 {
                    return Err(format!("limit must be between 1 and {MAX_LIMIT}"));
                }
                q.limit = n as usize;
            }
            "sortBy" => {
                q.sort_by = match v.as_str() {
                    "timestamp" => SortBy::Timestamp,
                    "username" => SortBy::Username,
                    "action" => SortBy::Action,
                    "context" => SortBy::Context,
                    "origin" => SortBy::Origin,
                    _ => return Err("sortBy must be one of timestamp, username, action, context, origin".into()),
                }
            }
            "sortDesc" => {
                q.sort_desc = match v.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err("sortDesc must be true or false".into()),
                }
            }
            "keyword" => {
                if v.len() > 256 {
                    return Err("keyword is longer than 256 bytes".into());
                }
                q.keyword = (!v.is_empty()).then(|| v.to_lowercase());
            }
            "after" => q.after = Some(number("after")?),
            "before" => q.before = Some(number("before")?),
            // Berth's own clients send nothing else; unknown parameters
            // (a UI's cache-busters) are ignored, as Portainer does.
            _ => {}
        }
    }
    Ok(q)
}

/// The context column: where it happened ("Portainer" for the management
/// API, as Portainer writes it; the endpoint's name for Docker calls).
fn context(e: &Event, endpoint_name: &dyn Fn(u64) -> Option<String>) -> String {
    match e.endpoint_id {
        Some(id) => endpoint_name(id).unwrap_or_else(|| format!("endpoint {id}")),
        None => "Portainer".to_string(),
    }
}

fn matches(q: &Query, log: Log, e: &Event, ctx: &str) -> bool {
    let is_auth = e.kind == Some(Kind::Auth);
    if (log == Log::Auth) != is_auth {
        return false;
    }
    if q.after.is_some_and(|t| e.timestamp < t) || q.before.is_some_and(|t| e.timestamp > t) {
        return false;
    }
    match &q.keyword {
        None => true,
        Some(k) => [e.username.as_str(), e.action.as_str(), ctx, e.origin.as_str(), e.object.as_deref().unwrap_or("")]
            .iter()
            .any(|f| f.to_lowercase().contains(k.as_str())),
    }
}

/// The page of `events` (in store order, oldest first) the query asks
/// for, and how many match in all.
pub fn page(
    q: &Query,
    log: Log,
    events: Vec<Event>,
    endpoint_name: &dyn Fn(u64) -> Option<String>,
) -> (Vec<(Event, String)>, usize) {
    let mut hits: Vec<(Event, String)> = events
        .into_iter()
        .filter_map(|e| {
            let ctx = context(&e, endpoint_name);
            matches(q, log, &e, &ctx).then_some((e, ctx))
        })
        .collect();
    let total = hits.len();
    match q.sort_by {
        // Store order is time order (ids grow with time).
        SortBy::Timestamp => {}
        SortBy::Username => hits.sort_by(|a, b| a.0.username.cmp(&b.0.username)),
        SortBy::Action => hits.sort_by(|a, b| a.0.action.cmp(&b.0.action)),
        SortBy::Context => hits.sort_by(|a, b| a.1.cmp(&b.1)),
        SortBy::Origin => hits.sort_by(|a, b| a.0.origin.cmp(&b.0.origin)),
    }
    if q.sort_desc {
        hits.reverse();
    }
    let page = hits.into_iter().skip(q.offset).take(q.limit).collect();
    (page, total)
}

/// An authentication log row as the API shows it.
pub fn render_auth(e: &Event) -> AuthLogEntry {
    AuthLogEntry {
        id: e.id,
        timestamp: e.timestamp,
        username: e.username.clone(),
        context: 1,
        origin: e.origin.clone(),
        kind: e.auth_type.unwrap_or(0),
    }
}

/// An activity log row, the context column resolved.
pub fn render_activity(e: &Event, ctx: &str) -> ActivityLogEntry {
    ActivityLogEntry {
        id: e.id,
        timestamp: e.timestamp,
        username: e.username.clone(),
        context: ctx.to_string(),
        action: e.action.clone(),
        payload: e.payload.clone(),
        kind: e.kind,
        user_id: e.user_id,
        api_key_id: e.api_key_id,
        bundle_id: e.bundle_id,
        endpoint_id: e.endpoint_id,
        object: e.object.clone(),
        status: e.status,
        succeeded: e.succeeded(),
        origin: e.origin.clone(),
    }
}

/// A page of the authentication log.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthLogPage {
    pub logs: Vec<AuthLogEntry>,
    /// Entries matching the query, over all pages.
    pub total_count: usize,
}

/// A page of the activity log.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActivityLogPage {
    pub logs: Vec<ActivityLogEntry>,
    pub total_count: usize,
}

/// A login, failed login or logout, in Portainer's (business edition) shape.
#[derive(Serialize, ToSchema)]
pub struct AuthLogEntry {
    id: u64,
    /// Unix seconds.
    timestamp: u64,
    username: String,
    /// Portainer's authentication method: 1 = internal.
    context: u8,
    origin: String,
    /// 1 login, 2 failed login, 3 logout.
    #[serde(rename = "type")]
    kind: u8,
}

/// A change: a management API call, a proxied Docker call, a terminal.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActivityLogEntry {
    id: u64,
    /// Unix seconds.
    timestamp: u64,
    username: String,
    /// "Portainer" for the management API, else the endpoint's name.
    context: String,
    /// `METHOD /route/template`, `exec start`, ...
    action: String,
    /// Path parameters and byte counts; never a body or a secret.
    #[schema(value_type = Object)]
    payload: serde_json::Map<String, Value>,
    kind: Option<Kind>,
    user_id: Option<u64>,
    api_key_id: Option<u64>,
    bundle_id: Option<u64>,
    endpoint_id: Option<u64>,
    object: Option<String>,
    status: u16,
    succeeded: bool,
    origin: String,
}

/// A CSV cell: quoted, quotes doubled, and a cell a spreadsheet would run
/// as a formula (`=`, `+`, `-`, `@`, tab, CR) prefixed with `'`.
fn cell(s: &str) -> String {
    let risky = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let body = if risky { format!("'{s}") } else { s.to_string() };
    format!("\"{}\"", body.replace('"', "\"\""))
}

/// The page as CSV, header first.
pub fn csv(log: Log, rows: &[(Event, String)]) -> String {
    let mut out = String::new();
    match log {
        Log::Auth => out.push_str("id,timestamp,username,context,origin,type\r\n"),
        Log::Activity => {
            out.push_str("id,timestamp,username,context,action,endpointId,object,status,origin,payload\r\n")
        }
    }
    for (e, ctx) in rows {
        let line = match log {
            Log::Auth => [
                e.id.to_string(),
                e.timestamp.to_string(),
                cell(&e.username),
                "1".to_string(),
                cell(&e.origin),
                e.auth_type.unwrap_or(0).to_string(),
            ]
            .join(","),
            Log::Activity => [
                e.id.to_string(),
                e.timestamp.to_string(),
                cell(&e.username),
                cell(ctx),
                cell(&e.action),
                e.endpoint_id.map(|i| i.to_string()).unwrap_or_default(),
                cell(e.object.as_deref().unwrap_or("")),
                e.status.to_string(),
                cell(&e.origin),
                cell(&Value::Object(e.payload.clone()).to_string()),
            ]
            .join(","),
        };
        out.push_str(&line);
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(s: &str) -> Vec<(String, String)> {
        serde_urlencoded::from_str(s).unwrap()
    }

    fn ev(id: u64, t: u64, user: &str, action: &str, kind: Kind) -> Event {
        Event {
            id,
            timestamp: t,
            username: user.into(),
            action: action.into(),
            kind: Some(kind),
            origin: "127.0.0.1".into(),
            ..Event::default()
        }
    }

    #[test]
    fn queries_are_parsed_strictly() {
        assert!(parse(&pairs("offset=2&limit=10&sortBy=username&sortDesc=false&keyword=bob&after=1&before=9")).is_ok());
        for bad in
            ["limit=0", "limit=1001", "offset=-1", "sortBy=password", "sortDesc=maybe", "after=x", "limit=1&limit=2"]
        {
            assert!(parse(&pairs(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn pages_filter_sort_and_split() {
        let events = vec![
            ev(1, 10, "alice", "POST /api/users", Kind::Api),
            ev(2, 20, "bob", "login", Kind::Auth),
            ev(3, 30, "bob", "DELETE /api/teams/{id}", Kind::Api),
            ev(4, 40, "carol", "POST /containers/{id}/start", Kind::Docker),
        ];
        let none = |_: u64| None;
        let q = parse(&pairs("")).unwrap();
        let (rows, total) = page(&q, Log::Activity, events.clone(), &none);
        assert_eq!(total, 3);
        assert_eq!(rows.iter().map(|r| r.0.id).collect::<Vec<_>>(), vec![4, 3, 1], "newest first");
        let q = parse(&pairs("keyword=BOB")).unwrap();
        assert_eq!(page(&q, Log::Activity, events.clone(), &none).1, 1);
        assert_eq!(page(&q, Log::Auth, events.clone(), &none).1, 1);
        let q = parse(&pairs("after=15&before=35&sortDesc=false")).unwrap();
        assert_eq!(page(&q, Log::Activity, events.clone(), &none).0[0].0.id, 3);
        let q = parse(&pairs("offset=1&limit=1")).unwrap();
        let (rows, total) = page(&q, Log::Activity, events, &none);
        assert_eq!((rows.len(), rows[0].0.id, total), (1, 3, 3));
    }

    #[test]
    fn csv_cells_are_quoted_and_formulas_neutralised() {
        let mut e = ev(1, 10, "=cmd|' /C calc'!A0", "POST \"x\"", Kind::Api);
        e.payload.insert("id".into(), "3".into());
        let out = csv(Log::Activity, &[(e, "Portainer".into())]);
        let line = out.lines().nth(1).unwrap();
        assert!(line.contains("\"'=cmd|' /C calc'!A0\""), "{line}");
        assert!(line.contains("\"POST \"\"x\"\"\""), "{line}");
        assert!(out.starts_with("id,timestamp,username,context,action"));
    }
}
