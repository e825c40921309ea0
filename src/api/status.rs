//! `/api/status` and `/api/system/*`: what a client probes before logging in.

use std::sync::Arc;

use http::Response;
use serde::Serialize;
use utoipa::ToSchema;

use super::doc::{json, Doc, Reply};
use super::{ok_json, ApiRequest};
use crate::body::ResponseBody;
use crate::error::ApiResult;
use crate::state::AppState;

/// The Portainer API version Berth answers as, so that clients that gate
/// features on it take the modern code paths.
pub const PORTAINER_API_VERSION: &str = "2.23.0";

/// `GET /api/status`: who answers, before any login.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct Status {
    /// The Portainer API version Berth speaks.
    #[schema(example = "2.23.0")]
    version: &'static str,
    #[serde(rename = "InstanceID")]
    instance_id: String,
    berth_version: &'static str,
    /// Which store and which replica answered: behind a load balancer, it
    /// tells the replicas apart. The database's address is not shown.
    store: StoreStatus,
    /// Which Compose deploys standalone stacks; null when none answers,
    /// `{"Flavor": "detecting"}` while Berth is still asking (start-up).
    compose: Option<ComposeStatus>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct StoreStatus {
    /// The store's backend: `embedded` (redb) or `postgres`.
    backend: &'static str,
    replica: String,
    /// A shared store's change feed is up; null for an embedded store.
    change_feed: Option<bool>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ComposeStatus {
    /// `plugin` (`docker compose`), `standalone-v2`, `v1`, or `detecting`.
    flavor: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    program: Option<String>,
}

pub const STATUS: Doc = Doc::new("Instance status", &[Reply::json(200, "Version and instance", json::<Status>)]);

pub async fn status(state: Arc<AppState>, _req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    let compose = match state.stacks.tools.compose_detected() {
        None => Some(ComposeStatus { flavor: "detecting", version: None, program: None }),
        Some(None) => None,
        Some(Some(c)) => Some(ComposeStatus {
            flavor: c.flavor(),
            version: Some(c.version.clone()),
            program: Some(c.program.display().to_string()),
        }),
    };
    ok_json(&Status {
        version: PORTAINER_API_VERSION,
        instance_id: state.instance_id.clone(),
        berth_version: env!("CARGO_PKG_VERSION"),
        store: StoreStatus {
            backend: state.store.backend_name(),
            replica: state.config.replica_name.clone(),
            change_feed: state.store.is_shared().then(|| state.store.stats().feed_up.get() == 1),
        },
        compose,
    })
}

/// `GET /api/system/version`, in Portainer's shape; Berth never offers an
/// update.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct Version {
    update_available: bool,
    latest_version: &'static str,
    server_version: &'static str,
    server_edition: &'static str,
    database_version: &'static str,
    build: Build,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct Build {
    build_number: &'static str,
    image_tag: &'static str,
    git_commit: &'static str,
    go_version: &'static str,
    berth_version: &'static str,
}

pub const VERSION: Doc = Doc::new("Server version", &[Reply::json(200, "Version", json::<Version>)]);

pub async fn version(_state: Arc<AppState>, _req: ApiRequest) -> ApiResult<Response<ResponseBody>> {
    ok_json(&Version {
        update_available: false,
        latest_version: "",
        server_version: PORTAINER_API_VERSION,
        server_edition: "CE",
        database_version: PORTAINER_API_VERSION,
        build: Build {
            build_number: "",
            image_tag: "",
            git_commit: "",
            go_version: "",
            berth_version: env!("CARGO_PKG_VERSION"),
        },
    })
}
