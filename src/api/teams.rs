//! Teams and team memberships (`/api/teams`, `/api/team_memberships`).

use std::sync::Arc;

use http::Response;
use serde::Deserialize;
use utoipa::ToSchema;

use super::doc::{json, list as list_of, Body, Doc, Query, QueryType, Reply};
use super::{no_content, ok_json, store_err, ApiRequest};
use crate::body::ResponseBody;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::model::{Team, TeamMembership, TEAM_LEADER, TEAM_MEMBER};
use crate::store::{StoreError, TEAMS, TEAM_MEMBERSHIPS};

pub const LIST: Doc = Doc::new("List teams", &[Reply::json(200, "Teams", list_of::<Team>)])
    .describe("Admins see every team, others the teams they are in.")
    .query(&[Query::optional("onlyLedTeams", QueryType::Boolean, "Only the teams the caller leads")]);

pub async fn list(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let p = req.principal();
    let only_led = req.query("onlyLedTeams").is_some_and(|v| v == "true");
    let teams: Vec<_> = state
        .identity
        .teams()
        .into_iter()
        .filter(|t| {
            if only_led {
                state.identity.is_leader_of(p.id(), t.id)
            } else {
                p.is_admin() || state.identity.teams_of(p.id()).contains(&t.id)
            }
        })
        .collect();
    ok_json(&teams)
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
struct CreateTeam {
    #[serde(default)]
    name: String,
    #[serde(default)]
    teamleaders: Vec<u64>,
}

pub const CREATE: Doc = Doc::new("Create a team", &[Reply::json(200, "The team", json::<Team>)])
    .body(Body::Json(json::<CreateTeam>))
    .errors(&[(409, "A team has this name")]);

pub async fn create(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let body: CreateTeam = req.json().await?;
    let name = body.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 128 {
        return Err(ApiError::invalid_payload("Invalid team name"));
    }
    for l in &body.teamleaders {
        if state.identity.user(*l).is_none() {
            return Err(ApiError::invalid_payload(format!("Invalid team leader: user {l} does not exist")));
        }
    }
    let _guard = state.identity.write_lock.lock().await;
    // A leader listed twice gets one membership.
    let mut leaders = body.teamleaders.clone();
    leaders.sort_unstable();
    leaders.dedup();
    let r = state
        .write(move |tx| {
            let teams: Vec<Team> = tx.all(TEAMS)?;
            if teams.iter().any(|t| t.name.eq_ignore_ascii_case(&name)) {
                return Err(StoreError::Conflict("A team with the same name already exists".into()));
            }
            let id = tx.next_id(TEAMS)?;
            let team = Team { id, name };
            tx.put(TEAMS, id, &team)?;
            let mut ms = Vec::new();
            for user_id in leaders {
                let mid = tx.next_id(TEAM_MEMBERSHIPS)?;
                let m = TeamMembership { id: mid, user_id, team_id: id, role: TEAM_LEADER };
                tx.put(TEAM_MEMBERSHIPS, mid, &m)?;
                ms.push(m);
            }
            Ok((team, ms))
        })
        .await
        .map_err(store_err)?;
    state.identity.put_team(r.0.clone());
    for m in r.1 {
        state.identity.put_membership(m);
    }
    ok_json(&r.0)
}

fn team_of(state: &AppState, req: &ApiRequest) -> ApiResult<Team> {
    let id = req.id("id", "team")?;
    state.identity.team(id).ok_or_else(|| ApiError::not_found("a team"))
}

/// Admins, or leaders of this very team.
fn may_lead(state: &AppState, req: &ApiRequest, team: u64) -> ApiResult<()> {
    let p = req.principal();
    if p.is_admin() || state.identity.is_leader_of(p.id(), team) {
        Ok(())
    } else {
        Err(ApiError::access_denied())
    }
}

pub const INSPECT: Doc = Doc::new("Inspect a team", &[Reply::json(200, "The team", json::<Team>)]);

pub async fn inspect(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let t = team_of(&state, &req)?;
    may_lead(&state, &req, t.id)?;
    ok_json(&t)
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
struct UpdateTeam {
    name: Option<String>,
}

pub const UPDATE: Doc = Doc::new("Rename a team", &[Reply::json(200, "The team", json::<Team>)])
    .body(Body::Json(json::<UpdateTeam>))
    .errors(&[(409, "A team has this name")]);

pub async fn update(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let mut t = team_of(&state, &req)?;
    let body: UpdateTeam = req.json().await?;
    if let Some(n) = body.name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty()) {
        if n.chars().count() > 128 {
            return Err(ApiError::invalid_payload("Invalid team name"));
        }
        t.name = n;
    }
    let _guard = state.identity.write_lock.lock().await;
    let t2 = t.clone();
    state
        .write(move |tx| {
            let teams: Vec<Team> = tx.all(TEAMS)?;
            if teams.iter().any(|o| o.id != t2.id && o.name.eq_ignore_ascii_case(&t2.name)) {
                return Err(StoreError::Conflict("A team with the same name already exists".into()));
            }
            if tx.get::<Team>(TEAMS, t2.id)?.is_none() {
                return Err(StoreError::NotFound);
            }
            tx.put(TEAMS, t2.id, &t2)
        })
        .await
        .map_err(store_err)?;
    state.identity.put_team(t.clone());
    ok_json(&t)
}

pub const DELETE: Doc = Doc::new("Delete a team", &[Reply::empty(204, "Deleted, with its memberships")]);

pub async fn delete(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let t = team_of(&state, &req)?;
    let _guard = state.identity.write_lock.lock().await;
    let ms: Vec<u64> = state.identity.memberships().iter().filter(|m| m.team_id == t.id).map(|m| m.id).collect();
    let id = t.id;
    state
        .write(move |tx| {
            tx.delete(TEAMS, id)?;
            for m in ms {
                tx.delete(TEAM_MEMBERSHIPS, m)?;
            }
            Ok(())
        })
        .await
        .map_err(store_err)?;
    state.identity.remove_team(id);
    no_content()
}

pub const MEMBERSHIPS: Doc =
    Doc::new("A team's memberships", &[Reply::json(200, "Memberships", list_of::<TeamMembership>)]);

pub async fn memberships(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let t = team_of(&state, &req)?;
    may_lead(&state, &req, t.id)?;
    let v: Vec<_> = state.identity.memberships().into_iter().filter(|m| m.team_id == t.id).collect();
    ok_json(&v)
}

/// Admins see every membership; a team leader only those of the teams they
/// lead (Portainer shows leaders every team's, which tells them who is in
/// teams they have no part in).
pub const LIST_MEMBERSHIPS: Doc =
    Doc::new("List team memberships", &[Reply::json(200, "Memberships", list_of::<TeamMembership>)])
        .describe("Admins see all; a team leader those of the teams they lead.");

pub async fn list_memberships(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let p = req.principal();
    let v: Vec<_> = state
        .identity
        .memberships()
        .into_iter()
        .filter(|m| p.is_admin() || state.identity.is_leader_of(p.id(), m.team_id))
        .collect();
    ok_json(&v)
}

/// `{"UserID", "TeamID", "Role"}`, field names matched ignoring case as Go
/// does (`userId`, `teamID`, `userid` all work).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = MembershipPayload)]
struct MembershipBody {
    #[serde(rename = "userid", default)]
    user_id: u64,
    #[serde(rename = "teamid", default)]
    team_id: u64,
    /// 1 leader, 2 member.
    #[serde(default)]
    role: u8,
}

fn validate_membership(state: &AppState, b: &MembershipBody) -> ApiResult<()> {
    if b.user_id == 0 || state.identity.user(b.user_id).is_none() {
        return Err(ApiError::invalid_payload("Invalid UserID"));
    }
    if b.team_id == 0 || state.identity.team(b.team_id).is_none() {
        return Err(ApiError::invalid_payload("Invalid TeamID"));
    }
    if b.role != TEAM_LEADER && b.role != TEAM_MEMBER {
        return Err(ApiError::invalid_payload("Invalid role value. Value must be one of: 1 (leader) or 2 (member)"));
    }
    Ok(())
}

pub const CREATE_MEMBERSHIP: Doc =
    Doc::new("Add a user to a team", &[Reply::json(200, "The membership", json::<TeamMembership>)])
        .body(Body::Json(json::<MembershipBody>))
        .errors(&[(409, "The user is already in the team")]);

pub async fn create_membership(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let b: MembershipBody = req.json().await?;
    validate_membership(&state, &b)?;
    may_lead(&state, &req, b.team_id)?;
    let _guard = state.identity.write_lock.lock().await;
    let m = state
        .write(move |tx| {
            let all: Vec<TeamMembership> = tx.all(TEAM_MEMBERSHIPS)?;
            if all.iter().any(|m| m.user_id == b.user_id && m.team_id == b.team_id) {
                return Err(StoreError::Conflict("Team membership already registered".into()));
            }
            let id = tx.next_id(TEAM_MEMBERSHIPS)?;
            let m = TeamMembership { id, user_id: b.user_id, team_id: b.team_id, role: b.role };
            tx.put(TEAM_MEMBERSHIPS, id, &m)?;
            Ok(m)
        })
        .await
        .map_err(store_err)?;
    state.identity.put_membership(m.clone());
    ok_json(&m)
}

pub const UPDATE_MEMBERSHIP: Doc =
    Doc::new("Change a membership", &[Reply::json(200, "The membership", json::<TeamMembership>)])
        .body(Body::Json(json::<MembershipBody>))
        .errors(&[(409, "The user is already in the team")]);

pub async fn update_membership(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let id = req.id("id", "membership")?;
    let existing = state.identity.membership(id).ok_or_else(|| ApiError::not_found("a team membership"))?;
    let b: MembershipBody = req.json().await?;
    validate_membership(&state, &b)?;
    may_lead(&state, &req, existing.team_id)?;
    may_lead(&state, &req, b.team_id)?;
    let m = TeamMembership { id, user_id: b.user_id, team_id: b.team_id, role: b.role };
    let m2 = m.clone();
    let _guard = state.identity.write_lock.lock().await;
    state
        .write(move |tx| {
            let all: Vec<TeamMembership> = tx.all(TEAM_MEMBERSHIPS)?;
            if all.iter().any(|o| o.id != m2.id && o.user_id == m2.user_id && o.team_id == m2.team_id) {
                return Err(StoreError::Conflict("Team membership already registered".into()));
            }
            if tx.get::<TeamMembership>(TEAM_MEMBERSHIPS, m2.id)?.is_none() {
                return Err(StoreError::NotFound);
            }
            tx.put(TEAM_MEMBERSHIPS, id, &m2)
        })
        .await
        .map_err(store_err)?;
    state.identity.put_membership(m.clone());
    ok_json(&m)
}

pub const DELETE_MEMBERSHIP: Doc = Doc::new("Remove a membership", &[Reply::empty(204, "Removed")]);

pub async fn delete_membership(state: Arc<AppState>, req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let id = req.id("id", "membership")?;
    let existing = state.identity.membership(id).ok_or_else(|| ApiError::not_found("a team membership"))?;
    may_lead(&state, &req, existing.team_id)?;
    state.write(move |tx| tx.delete(TEAM_MEMBERSHIPS, id)).await.map_err(store_err)?;
    state.identity.remove_membership(id);
    no_content()
}
