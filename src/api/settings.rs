//! `/api/settings`: the settings the identity side uses (session lifetime,
//! password length, login rate limit, snapshot interval) and the security
//! settings new endpoints start with, stored durably.

use std::sync::Arc;

use std::collections::BTreeMap;

use http::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::doc::{json, Body, Doc, Reply};
use super::{ok_json, store_err, ApiRequest};
use crate::body::ResponseBody;
use crate::error::{ApiError, ApiResult};
use crate::state::{parse_go_duration, AppState};
use crate::store::model::Settings;

pub const SETTINGS_KEY: &str = "settings";

/// `GET /api/settings/public`: what the login page needs. Berth has one
/// authentication method (1, internal) and no edge, OAuth or Kubernetes
/// features; their Portainer fields are answered fixed so that clients
/// find them.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct PublicSettings {
    #[serde(rename = "LogoURL")]
    logo_url: String,
    authentication_method: u8,
    required_password_length: usize,
    global_deployment_options: DeploymentOptions,
    enable_edge_compute_features: bool,
    features: BTreeMap<String, bool>,
    #[serde(rename = "OAuthLoginURI")]
    oauth_login_uri: &'static str,
    #[serde(rename = "OAuthLogoutURI")]
    oauth_logout_uri: &'static str,
    enable_telemetry: bool,
    kubeconfig_expiry: &'static str,
    team_sync: bool,
    #[serde(rename = "IsAMTEnabled")]
    is_amt_enabled: bool,
    edge: EdgeIntervals,
    is_docker_desktop_extension: bool,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentOptions {
    hide_stacks_functionality: bool,
}

#[derive(Serialize, ToSchema, Default)]
#[serde(rename_all = "PascalCase")]
pub struct EdgeIntervals {
    ping_interval: u32,
    snapshot_interval: u32,
    command_interval: u32,
    checkin_interval: u32,
}

pub const PUBLIC: Doc = Doc::new("Public settings", &[Reply::json(200, "Settings", json::<PublicSettings>)]);

pub async fn public(state: Arc<AppState>, _req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let s = state.settings();
    ok_json(&PublicSettings {
        logo_url: s.logo_url.clone(),
        authentication_method: 1,
        required_password_length: s.required_password_length,
        global_deployment_options: DeploymentOptions { hide_stacks_functionality: false },
        enable_edge_compute_features: false,
        features: BTreeMap::new(),
        oauth_login_uri: "",
        oauth_logout_uri: "",
        enable_telemetry: false,
        kubeconfig_expiry: "0",
        team_sync: false,
        is_amt_enabled: false,
        edge: EdgeIntervals::default(),
        is_docker_desktop_extension: false,
    })
}

/// `GET /api/settings` (admins): what Berth stores and uses, in Portainer's
/// names where Portainer has the setting, plus Berth's own (login rate
/// limit, admin-init window, security defaults, audit trail bounds).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct SettingsView {
    #[serde(rename = "LogoURL")]
    logo_url: String,
    black_listed_labels: Vec<String>,
    authentication_method: u8,
    internal_auth_settings: InternalAuthView,
    /// A Go duration (`5m`).
    snapshot_interval: String,
    /// A Go duration (`8h`): the lifetime of new sessions.
    user_session_timeout: String,
    enable_telemetry: bool,
    enable_edge_compute_features: bool,
    kubeconfig_expiry: &'static str,
    login_rate_limit: RateLimitView,
    admin_init_window: String,
    portainer_security_defaults: bool,
    audit_log_retention_days: u32,
    audit_log_max_entries: u64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct InternalAuthView {
    required_password_length: usize,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct RateLimitView {
    burst: u32,
    per_second: f64,
}

fn full(s: &Settings) -> SettingsView {
    SettingsView {
        logo_url: s.logo_url.clone(),
        black_listed_labels: Vec::new(),
        authentication_method: 1,
        internal_auth_settings: InternalAuthView { required_password_length: s.required_password_length },
        snapshot_interval: s.snapshot_interval.clone(),
        user_session_timeout: s.user_session_timeout.clone(),
        enable_telemetry: false,
        enable_edge_compute_features: false,
        kubeconfig_expiry: "0",
        login_rate_limit: RateLimitView { burst: s.login_rate_burst, per_second: s.login_rate_per_second },
        admin_init_window: s.admin_init_window.clone(),
        portainer_security_defaults: s.portainer_security_defaults,
        audit_log_retention_days: s.audit_log_retention_days,
        audit_log_max_entries: s.audit_log_max_entries,
    }
}

pub const GET: Doc = Doc::new("Settings", &[Reply::json(200, "Settings", json::<SettingsView>)]);

pub async fn get(state: Arc<AppState>, _req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    ok_json(&full(&state.settings()))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
struct InternalAuth {
    #[serde(alias = "RequiredPasswordLength", alias = "requiredpasswordlength")]
    requiredpasswordlength: Option<usize>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
struct RateLimit {
    #[serde(alias = "Burst")]
    burst: Option<u32>,
    #[serde(alias = "PerSecond")]
    persecond: Option<f64>,
}

/// `PUT /api/settings`: the fields to change; each is checked, and nothing
/// changes unless all are valid.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = SettingsUpdate)]
struct Update {
    logourl: Option<String>,
    usersessiontimeout: Option<String>,
    snapshotinterval: Option<String>,
    internalauthsettings: Option<InternalAuth>,
    requiredpasswordlength: Option<usize>,
    loginratelimit: Option<RateLimit>,
    portainersecuritydefaults: Option<bool>,
    auditlogretentiondays: Option<u32>,
    auditlogmaxentries: Option<u64>,
}

pub const UPDATE: Doc = Doc::new("Change settings", &[Reply::json(200, "The settings now", json::<SettingsView>)])
    .body(Body::Json(json::<Update>));

pub async fn update(state: Arc<AppState>, mut req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let u: Update = req.json().await?;
    let mut s = (*state.settings()).clone();
    let mut problems = Vec::new();
    if let Some(v) = u.usersessiontimeout {
        match parse_go_duration(&v) {
            Some(d) if !d.is_zero() => s.user_session_timeout = v,
            _ => problems.push(format!("UserSessionTimeout: invalid duration {v:?}")),
        }
    }
    if let Some(v) = u.snapshotinterval {
        match parse_go_duration(&v) {
            Some(d) if !d.is_zero() => s.snapshot_interval = v,
            _ => problems.push(format!("SnapshotInterval: invalid duration {v:?}")),
        }
    }
    if let Some(v) = u.logourl {
        let is_url = v.starts_with("http://") || v.starts_with("https://");
        if !v.is_empty() && !is_url {
            problems.push("LogoURL: must be an http(s) URL".into());
        } else {
            s.logo_url = v;
        }
    }
    let len = u.internalauthsettings.and_then(|i| i.requiredpasswordlength).or(u.requiredpasswordlength);
    if let Some(n) = len {
        if !(1..=72).contains(&n) {
            problems.push("RequiredPasswordLength: must be between 1 and 72".into());
        } else {
            s.required_password_length = n;
        }
    }
    if let Some(rl) = u.loginratelimit {
        if let Some(b) = rl.burst {
            if b == 0 {
                problems.push("LoginRateLimit.Burst: must be greater than 0".into());
            } else {
                s.login_rate_burst = b;
            }
        }
        if let Some(p) = rl.persecond {
            if !(p > 0.0 && p.is_finite()) {
                problems.push("LoginRateLimit.PerSecond: must be greater than 0".into());
            } else {
                s.login_rate_per_second = p;
            }
        }
    }
    if let Some(v) = u.portainersecuritydefaults {
        s.portainer_security_defaults = v;
    }
    let audit_changed = u.auditlogretentiondays.is_some() || u.auditlogmaxentries.is_some();
    if let Some(v) = u.auditlogretentiondays {
        if (1..=3650).contains(&v) {
            s.audit_log_retention_days = v;
        } else {
            problems.push("AuditLogRetentionDays: must be between 1 and 3650".into());
        }
    }
    if let Some(v) = u.auditlogmaxentries {
        if (1..=10_000_000).contains(&v) {
            s.audit_log_max_entries = v;
        } else {
            problems.push("AuditLogMaxEntries: must be between 1 and 10000000".into());
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid_payload(problems.join("; ")));
    }
    let stored = s.clone();
    state.write(move |tx| tx.put_meta(SETTINGS_KEY, &stored)).await.map_err(store_err)?;
    state.set_settings(s.clone());
    if audit_changed {
        // New limits apply at once, not at the next housekeeping round.
        if let Err(e) = crate::audit::prune(&state.store, s.audit_log_retention_days, s.audit_log_max_entries).await {
            tracing::warn!(error = %e, "pruning the audit trail failed");
        }
    }
    ok_json(&full(&s))
}

#[cfg(test)]
mod tests {
    use crate::store::model::{SecuritySettings, Settings};

    #[test]
    fn new_endpoints_are_secure_unless_the_server_asks_for_portainers_defaults() {
        let mut s = Settings::default();
        assert!(!s.portainer_security_defaults);
        assert_eq!(SecuritySettings::for_new_endpoint(&s), SecuritySettings::default());
        s.portainer_security_defaults = true;
        assert_eq!(SecuritySettings::for_new_endpoint(&s), SecuritySettings::portainer_defaults());
        assert!(super::full(&s).portainer_security_defaults);
        // Settings stored before the flag existed keep the secure default.
        let mut old = serde_json::to_value(Settings::default()).unwrap();
        old.as_object_mut().unwrap().remove("PortainerSecurityDefaults");
        assert!(!serde_json::from_value::<Settings>(old).unwrap().portainer_security_defaults);
    }
}
