//! `/api/status` and `/api/system/*`: what a client probes before logging in.

use std::sync::Arc;

use http::Response;

use super::{ok_json, ApiRequest};
use crate::body::ResponseBody;
use crate::error::ApiResult;
use crate::state::AppState;

/// The Portainer API version Berth answers as, so that clients that gate
/// features on it take the modern code paths.
pub const PORTAINER_API_VERSION: &str = "2.23.0";

pub async fn status(state: Arc<AppState>, _req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    ok_json(&serde_json::json!({
        "Version": PORTAINER_API_VERSION,
        "InstanceID": state.instance_id,
        "BerthVersion": env!("CARGO_PKG_VERSION"),
        // Which store and which replica answered: behind a load balancer,
        // tells the replicas apart. The database's address is not shown.
        "Store": {
            "Backend": state.store.backend_name(),
            "Replica": state.config.replica_name,
            "ChangeFeed": state.store.is_shared().then(|| state.store.stats().feed_up.get() == 1),
        },
        // Which Compose deploys standalone stacks; null when none answers,
        // {"Flavor":"detecting"} while Berth is still asking (start-up).
        "Compose": match state.stacks.tools.compose_detected() {
            None => serde_json::json!({"Flavor": "detecting"}),
            Some(None) => serde_json::Value::Null,
            Some(Some(c)) => serde_json::json!({
                "Flavor": c.flavor(),
                "Version": c.version,
                "Program": c.program.display().to_string(),
            }),
        },
    }))
}

pub async fn version(_state: Arc<AppState>, _req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    ok_json(&serde_json::json!({
        "UpdateAvailable": false,
        "LatestVersion": "",
        "ServerVersion": PORTAINER_API_VERSION,
        "ServerEdition": "CE",
        "DatabaseVersion": PORTAINER_API_VERSION,
        "Build": {"BuildNumber": "", "ImageTag": "", "GitCommit": "", "GoVersion": "", "BerthVersion": env!("CARGO_PKG_VERSION")},
    }))
}
