//! Users, teams and endpoint grants for the restricted-access tests.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::Daemon;

pub fn password(name: &str) -> String {
    format!("{name}-password-12")
}

/// Creates a standard user and returns its id.
pub async fn create_user(d: &Daemon, admin: &str, name: &str) -> u64 {
    let (s, v) =
        d.post_json("/api/users", Some(admin), &json!({"Username": name, "Password": password(name), "Role": 2})).await;
    assert_eq!(s, StatusCode::OK, "create user {name}: {v}");
    v["Id"].as_u64().unwrap()
}

/// Creates a team with these members and returns its id.
pub async fn create_team(d: &Daemon, admin: &str, name: &str, members: &[u64]) -> u64 {
    let (s, v) = d.post_json("/api/teams", Some(admin), &json!({"Name": name})).await;
    assert_eq!(s, StatusCode::OK, "create team {name}: {v}");
    let team = v["Id"].as_u64().unwrap();
    for m in members {
        let body = json!({"UserID": m, "TeamID": team, "Role": 2});
        let (s, v) = d.post_json("/api/team_memberships", Some(admin), &body).await;
        assert_eq!(s, StatusCode::OK, "membership {m} in {name}: {v}");
    }
    team
}

/// Lets these users use the endpoint (its security settings untouched:
/// Berth's secure default).
pub async fn grant(d: &Daemon, admin: &str, endpoint: u64, users: &[u64]) {
    let policies: serde_json::Map<String, Value> =
        users.iter().map(|u| (u.to_string(), json!({"RoleId": 0}))).collect();
    let (s, v) =
        d.put_json(&format!("/api/endpoints/{endpoint}"), Some(admin), &json!({"UserAccessPolicies": policies})).await;
    assert_eq!(s, StatusCode::OK, "grant: {v}");
}

/// The value of one series in the metrics text, if present.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}
