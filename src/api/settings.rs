//! `/api/settings`: the settings the identity side uses (session lifetime,
//! password length, login rate limit, snapshot interval) and the security
//! settings new endpoints start with, stored durably.

use std::sync::Arc;

use http::Response;
use serde::Deserialize;

use super::{ok_json, store_err, ApiRequest};
use crate::body::ResponseBody;
use crate::error::{ApiError, ApiResult};
use crate::state::{parse_go_duration, AppState};
use crate::store::model::Settings;

pub const SETTINGS_KEY: &str = "settings";

pub async fn public(state: Arc<AppState>, _req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let s = state.settings();
    ok_json(&serde_json::json!({
        "LogoURL": s.logo_url,
        "AuthenticationMethod": 1,
        "RequiredPasswordLength": s.required_password_length,
        "GlobalDeploymentOptions": {"hideStacksFunctionality": false},
        "EnableEdgeComputeFeatures": false,
        "Features": {},
        "OAuthLoginURI": "",
        "OAuthLogoutURI": "",
        "EnableTelemetry": false,
        "KubeconfigExpiry": "0",
        "TeamSync": false,
        "IsAMTEnabled": false,
        "Edge": {"PingInterval": 0, "SnapshotInterval": 0, "CommandInterval": 0, "CheckinInterval": 0},
        "IsDockerDesktopExtension": false,
    }))
}

fn full(s: &Settings) -> serde_json::Value {
    serde_json::json!({
        "LogoURL": s.logo_url,
        "BlackListedLabels": [],
        "AuthenticationMethod": 1,
        "InternalAuthSettings": {"RequiredPasswordLength": s.required_password_length},
        "SnapshotInterval": s.snapshot_interval,
        "UserSessionTimeout": s.user_session_timeout,
        "EnableTelemetry": false,
        "EnableEdgeComputeFeatures": false,
        "KubeconfigExpiry": "0",
        "LoginRateLimit": {"Burst": s.login_rate_burst, "PerSecond": s.login_rate_per_second},
        "AdminInitWindow": s.admin_init_window,
        "PortainerSecurityDefaults": s.portainer_security_defaults,
        "AuditLogRetentionDays": s.audit_log_retention_days,
        "AuditLogMaxEntries": s.audit_log_max_entries,
    })
}

pub async fn get(state: Arc<AppState>, _req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    ok_json(&full(&state.settings()))
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
struct InternalAuth {
    #[serde(alias = "RequiredPasswordLength", alias = "requiredpasswordlength")]
    requiredpasswordlength: Option<usize>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
struct RateLimit {
    #[serde(alias = "Burst")]
    burst: Option<u32>,
    #[serde(alias = "PerSecond")]
    persecond: Option<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
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
        assert_eq!(super::full(&s)["PortainerSecurityDefaults"], true);
        // Settings stored before the flag existed keep the secure default.
        let mut old = serde_json::to_value(Settings::default()).unwrap();
        old.as_object_mut().unwrap().remove("PortainerSecurityDefaults");
        assert!(!serde_json::from_value::<Settings>(old).unwrap().portainer_security_defaults);
    }
}
