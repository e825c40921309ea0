//! Records as stored. Field names follow Portainer's JSON where the record
//! is also what the API returns; secrets (password hashes, key digests,
//! registry passwords) live in fields the API views never serialise.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub type Id = u64;

pub const ROLE_ADMIN: u8 = 1;
pub const ROLE_USER: u8 = 2;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub id: Id,
    pub username: String,
    /// bcrypt hash; never leaves the store module's callers through the API.
    pub password_hash: String,
    pub role: u8,
    /// Tokens issued before this instant (unix seconds) are refused: bumped
    /// on password and role changes.
    pub token_issue_at: u64,
    /// Bumped with `token_issue_at`; tokens carry it, so revocation is exact
    /// even within one second.
    #[serde(default)]
    pub token_generation: u64,
    #[serde(default)]
    pub theme_color: String,
    #[serde(default = "yes")]
    pub use_cache: bool,
}

fn yes() -> bool {
    true
}

impl User {
    /// A new account as Portainer creates one: no tokens issued yet, the
    /// default theme, caching on. Every place that creates a user goes
    /// through here, so a new field gets its default in one place.
    pub fn new(id: Id, username: impl Into<String>, password_hash: String, role: u8) -> User {
        User {
            id,
            username: username.into(),
            password_hash,
            role,
            token_issue_at: 0,
            token_generation: 0,
            theme_color: String::new(),
            use_cache: true,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == ROLE_ADMIN
    }

    /// Portainer's user object, without the hash.
    pub fn to_api(&self) -> UserView {
        UserView {
            id: self.id,
            username: self.username.clone(),
            role: self.role,
            token_issue_at: self.token_issue_at,
            theme_settings: ThemeView { color: self.theme_color.clone() },
            use_cache: self.use_cache,
            portainer_authorizations: None,
            endpoint_authorizations: None,
        }
    }
}

/// A user as the API shows one (Portainer's object; never the hash).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = User)]
pub struct UserView {
    pub id: Id,
    pub username: String,
    /// 1 administrator, 2 standard user.
    pub role: u8,
    pub token_issue_at: u64,
    pub theme_settings: ThemeView,
    pub use_cache: bool,
    /// Always null: Berth has no per-user authorizations (Portainer's BE).
    #[schema(value_type = Option<Object>)]
    pub portainer_authorizations: Option<()>,
    #[schema(value_type = Option<Object>)]
    pub endpoint_authorizations: Option<()>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ThemeView {
    pub color: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct Team {
    pub id: Id,
    pub name: String,
}

pub const TEAM_LEADER: u8 = 1;
pub const TEAM_MEMBER: u8 = 2;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TeamMembership {
    #[serde(rename = "Id")]
    pub id: Id,
    #[serde(rename = "UserID")]
    pub user_id: Id,
    #[serde(rename = "TeamID")]
    pub team_id: Id,
    #[serde(rename = "Role")]
    pub role: u8,
}

/// A client bundle (issue 18): a certificate of Berth's CA that
/// authenticates its user over HTTPS. The private key is never stored; a
/// certificate whose bundle is gone (revoked) is refused.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Bundle {
    pub id: Id,
    pub user_id: Id,
    pub description: String,
    /// The certificate's serial number, lower-case hex.
    pub serial: String,
    /// SHA-256 of the certificate (DER), lower-case hex.
    pub fingerprint: String,
    pub date_created: u64,
    /// End of the certificate's validity (unix seconds).
    pub expires_at: u64,
    /// What the bundle may reach beyond its user's own rights (which
    /// always apply too), as for API keys; `None`: no restriction.
    #[serde(default)]
    pub scope: Option<KeyScope>,
}

impl Bundle {
    /// The API's view (lowerCamel, like API keys).
    pub fn to_api(&self) -> BundleView {
        BundleView {
            id: self.id,
            user_id: self.user_id,
            description: self.description.clone(),
            serial: self.serial.clone(),
            fingerprint: self.fingerprint.clone(),
            date_created: self.date_created,
            expires_at: self.expires_at,
            endpoint_ids: self.scope.as_ref().map(|s| s.endpoint_ids.clone()).unwrap_or_default(),
            group_ids: self.scope.as_ref().map(|s| s.group_ids.clone()).unwrap_or_default(),
            access: self.scope.as_ref().map_or(KeyAccess::Full, |s| s.access),
        }
    }
}

/// A client bundle as the API shows one (never its private key, which
/// only the zip handed out at creation holds).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Bundle)]
pub struct BundleView {
    pub id: Id,
    pub user_id: Id,
    pub description: String,
    /// The certificate's serial number, lower-case hex.
    pub serial: String,
    /// SHA-256 of the certificate (DER), lower-case hex.
    pub fingerprint: String,
    pub date_created: u64,
    /// End of the certificate's validity (unix seconds).
    pub expires_at: u64,
    /// Endpoints the bundle is limited to; empty: no endpoint limit.
    pub endpoint_ids: Vec<Id>,
    pub group_ids: Vec<Id>,
    pub access: KeyAccess,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: Id,
    pub user_id: Id,
    pub description: String,
    pub prefix: String,
    /// SHA-256 of the raw key, standard base64 (Portainer's scheme).
    pub digest: String,
    pub date_created: u64,
    pub last_used: u64,
    /// Unix seconds after which the key no longer authenticates; 0 = never
    /// (Portainer's keys, and keys stored before scopes existed).
    #[serde(default)]
    pub expires_at: u64,
    /// What the key may reach, beyond its user's own rights (which always
    /// apply too). Defaults to no restriction, so older records load as
    /// the unrestricted keys they were.
    #[serde(default)]
    pub scope: KeyScope,
}

/// How far a key may act: the pure decision on these fields is in
/// `access::scope`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyAccess {
    /// GET and HEAD only, on the Docker API and the management API.
    Read,
    /// Read, plus starting, stopping and exec-ing into existing containers.
    Operate,
    /// Everything the key's user may do.
    #[default]
    Full,
}

impl KeyAccess {
    pub fn name(self) -> &'static str {
        match self {
            KeyAccess::Read => "read",
            KeyAccess::Operate => "operate",
            KeyAccess::Full => "full",
        }
    }
}

/// An API key's restrictions. Empty lists mean "no endpoint restriction"
/// (creation refuses an explicitly empty list, so the two cannot be confused).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyScope {
    #[serde(default)]
    pub endpoint_ids: Vec<Id>,
    #[serde(default)]
    pub group_ids: Vec<Id>,
    #[serde(default)]
    pub access: KeyAccess,
}

impl KeyScope {
    /// Whether an endpoint list (by id or by group) narrows the key.
    pub fn limits_endpoints(&self) -> bool {
        !self.endpoint_ids.is_empty() || !self.group_ids.is_empty()
    }

    pub fn is_unrestricted(&self) -> bool {
        !self.limits_endpoints() && self.access == KeyAccess::Full
    }
}

impl ApiKey {
    /// Whether anything narrows the key: only such keys pay for scope checks.
    pub fn is_restricted(&self) -> bool {
        self.expires_at != 0 || !self.scope.is_unrestricted()
    }

    /// Portainer's lowerCamel key object; the digest is shown only at
    /// creation. A key without restrictions keeps Portainer's exact shape;
    /// a restricted one also shows its scope and expiry.
    pub fn to_api(&self, with_digest: bool) -> ApiKeyView {
        let restricted = self.is_restricted();
        ApiKeyView {
            id: self.id,
            user_id: self.user_id,
            description: self.description.clone(),
            prefix: self.prefix.clone(),
            date_created: self.date_created,
            last_used: self.last_used,
            digest: with_digest.then(|| self.digest.clone()),
            expires_at: restricted.then_some(self.expires_at),
            endpoint_ids: restricted.then(|| self.scope.endpoint_ids.clone()),
            group_ids: restricted.then(|| self.scope.group_ids.clone()),
            access: restricted.then_some(self.scope.access),
        }
    }
}

/// An API key as the API shows one: Portainer's object, plus Berth's
/// restrictions (issue 17) on a key that has any.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ApiKey)]
pub struct ApiKeyView {
    pub id: Id,
    pub user_id: Id,
    pub description: String,
    /// The first characters of the raw key, to tell keys apart.
    pub prefix: String,
    pub date_created: u64,
    pub last_used: u64,
    /// SHA-256 of the key, standard base64: at creation only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Unix seconds after which the key stops working; 0 never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_ids: Option<Vec<Id>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_ids: Option<Vec<Id>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<KeyAccess>,
}

/// `{"RoleId": n}` keyed by user or team id as a string, as Portainer stores it.
pub type AccessPolicies = BTreeMap<String, AccessPolicy>;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct AccessPolicy {
    #[serde(rename = "RoleId", default)]
    pub role_id: u64,
}

/// Settings that the identity and endpoint features use, in Portainer's names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Settings {
    /// Go-style duration ("8h") of new JWTs.
    pub user_session_timeout: String,
    pub required_password_length: usize,
    /// Go-style duration between endpoint health checks and snapshots.
    pub snapshot_interval: String,
    /// Login limiter: burst size and refill per second.
    pub login_rate_burst: u32,
    pub login_rate_per_second: f64,
    /// Admin-init window as a duration string (informational: the daemon
    /// closes the window this long after start).
    pub admin_init_window: String,
    #[serde(default)]
    pub logo_url: String,
    /// Berth: new endpoints start with Portainer's permissive
    /// [`SecuritySettings::portainer_defaults`] instead of Berth's
    /// everything-denied default. Off unless an admin turns it on.
    #[serde(default)]
    pub portainer_security_defaults: bool,
    /// Berth's audit trail: entries older than this many days are pruned.
    #[serde(default = "default_audit_days")]
    pub audit_log_retention_days: u32,
    /// Berth's audit trail: at most this many entries are kept (oldest go first).
    #[serde(default = "default_audit_entries")]
    pub audit_log_max_entries: u64,
}

fn default_audit_days() -> u32 {
    90
}

fn default_audit_entries() -> u64 {
    100_000
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            user_session_timeout: "8h".into(),
            required_password_length: 12,
            snapshot_interval: "5m".into(),
            login_rate_burst: 10,
            login_rate_per_second: 1.0,
            admin_init_window: "5m".into(),
            logo_url: String::new(),
            portainer_security_defaults: false,
            audit_log_retention_days: default_audit_days(),
            audit_log_max_entries: default_audit_entries(),
        }
    }
}

/// TLS settings of an endpoint; the file paths point into `<data>/tls/<id>/`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EndpointTls {
    #[serde(rename = "TLS")]
    pub tls: bool,
    #[serde(rename = "TLSSkipVerify")]
    pub skip_verify: bool,
    #[serde(rename = "TLSSkipClientVerify", default)]
    pub skip_client_verify: bool,
    #[serde(rename = "TLSCACert", default, skip_serializing_if = "String::is_empty")]
    pub ca_cert: String,
    #[serde(rename = "TLSCert", default, skip_serializing_if = "String::is_empty")]
    pub cert: String,
    #[serde(rename = "TLSKey", default, skip_serializing_if = "String::is_empty")]
    pub key: String,
}

/// What standard users may do on an endpoint (Portainer's lowerCamel keys),
/// enforced by [`crate::access`]. `Default` is Berth's secure default for a
/// new endpoint: everything denied until an admin allows it (Portainer
/// allows all but the volume browser; [`SecuritySettings::portainer_defaults`]
/// restores that for servers that want it).
///
/// Records stored before a flag existed keep their meaning when read back
/// (see [`StoredSecuritySettings`]): a missing Portainer flag takes
/// Portainer's default, and the Berth-only
/// `allowSecurityOptionsForRegularUsers` follows
/// `allowPrivilegedModeForRegularUsers` (disabling seccomp or AppArmor is a
/// part of what privileged mode grants, so an admin who allowed one allowed
/// the other, and one who denied privileged mode meant both).
///
/// (`Default` is derived on purpose: every flag false is the secure default.)
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase", from = "StoredSecuritySettings")]
pub struct SecuritySettings {
    pub allow_bind_mounts_for_regular_users: bool,
    pub allow_privileged_mode_for_regular_users: bool,
    pub allow_volume_browser_for_regular_users: bool,
    pub allow_host_namespace_for_regular_users: bool,
    pub allow_device_mapping_for_regular_users: bool,
    pub allow_stack_management_for_regular_users: bool,
    pub allow_container_capabilities_for_regular_users: bool,
    pub allow_sysctl_setting_for_regular_users: bool,
    /// Berth: `SecurityOpt` beyond `no-new-privileges` (seccomp, AppArmor,
    /// SELinux label, `systempaths=unconfined`), `MaskedPaths` /
    /// `ReadonlyPaths`, runtimes other than runc, OCI annotations, and the
    /// same knobs of swarm services (`Privileges`).
    pub allow_security_options_for_regular_users: bool,
    pub enable_host_management_features: bool,
}

impl SecuritySettings {
    /// What a newly registered endpoint starts with: Berth's secure default,
    /// unless the server's `PortainerSecurityDefaults` setting asks for
    /// Portainer's.
    pub fn for_new_endpoint(settings: &Settings) -> Self {
        if settings.portainer_security_defaults {
            Self::portainer_defaults()
        } else {
            Self::default()
        }
    }

    /// Portainer's defaults for a new endpoint (everything but the volume
    /// browser allowed): what a server that opts out of Berth's secure
    /// default gives new endpoints.
    pub fn portainer_defaults() -> Self {
        SecuritySettings {
            allow_bind_mounts_for_regular_users: true,
            allow_privileged_mode_for_regular_users: true,
            allow_volume_browser_for_regular_users: false,
            allow_host_namespace_for_regular_users: true,
            allow_device_mapping_for_regular_users: true,
            allow_stack_management_for_regular_users: true,
            allow_container_capabilities_for_regular_users: true,
            allow_sysctl_setting_for_regular_users: true,
            allow_security_options_for_regular_users: true,
            enable_host_management_features: false,
        }
    }
}

/// The stored shape of [`SecuritySettings`], every flag optional, so that a
/// record written before a flag existed still loads with the meaning it had
/// (Portainer's value; the security-options flag follows privileged mode).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredSecuritySettings {
    allow_bind_mounts_for_regular_users: Option<bool>,
    allow_privileged_mode_for_regular_users: Option<bool>,
    allow_volume_browser_for_regular_users: Option<bool>,
    allow_host_namespace_for_regular_users: Option<bool>,
    allow_device_mapping_for_regular_users: Option<bool>,
    allow_stack_management_for_regular_users: Option<bool>,
    allow_container_capabilities_for_regular_users: Option<bool>,
    allow_sysctl_setting_for_regular_users: Option<bool>,
    allow_security_options_for_regular_users: Option<bool>,
    enable_host_management_features: Option<bool>,
}

impl From<StoredSecuritySettings> for SecuritySettings {
    fn from(s: StoredSecuritySettings) -> Self {
        let p = SecuritySettings::portainer_defaults();
        let privileged = s.allow_privileged_mode_for_regular_users.unwrap_or(p.allow_privileged_mode_for_regular_users);
        SecuritySettings {
            allow_bind_mounts_for_regular_users: s
                .allow_bind_mounts_for_regular_users
                .unwrap_or(p.allow_bind_mounts_for_regular_users),
            allow_privileged_mode_for_regular_users: privileged,
            allow_volume_browser_for_regular_users: s
                .allow_volume_browser_for_regular_users
                .unwrap_or(p.allow_volume_browser_for_regular_users),
            allow_host_namespace_for_regular_users: s
                .allow_host_namespace_for_regular_users
                .unwrap_or(p.allow_host_namespace_for_regular_users),
            allow_device_mapping_for_regular_users: s
                .allow_device_mapping_for_regular_users
                .unwrap_or(p.allow_device_mapping_for_regular_users),
            allow_stack_management_for_regular_users: s
                .allow_stack_management_for_regular_users
                .unwrap_or(p.allow_stack_management_for_regular_users),
            allow_container_capabilities_for_regular_users: s
                .allow_container_capabilities_for_regular_users
                .unwrap_or(p.allow_container_capabilities_for_regular_users),
            allow_sysctl_setting_for_regular_users: s
                .allow_sysctl_setting_for_regular_users
                .unwrap_or(p.allow_sysctl_setting_for_regular_users),
            allow_security_options_for_regular_users: s.allow_security_options_for_regular_users.unwrap_or(privileged),
            enable_host_management_features: s
                .enable_host_management_features
                .unwrap_or(p.enable_host_management_features),
        }
    }
}

pub const ENDPOINT_UP: u8 = 1;
pub const ENDPOINT_DOWN: u8 = 2;

/// An endpoint (environment) as stored. Field names are Portainer's, so the
/// API view is this record plus computed fields.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Endpoint {
    pub id: Id,
    pub name: String,
    #[serde(rename = "Type")]
    pub kind: u8,
    #[serde(rename = "URL")]
    pub url: String,
    #[serde(rename = "PublicURL", default)]
    pub public_url: String,
    #[serde(default = "one")]
    pub group_id: Id,
    #[serde(rename = "TLSConfig", default)]
    pub tls: EndpointTls,
    #[serde(default)]
    pub tag_ids: Vec<Id>,
    #[serde(default = "one_u8")]
    pub status: u8,
    #[serde(default)]
    pub user_access_policies: AccessPolicies,
    #[serde(default)]
    pub team_access_policies: AccessPolicies,
    /// A record stored without settings predates them: it keeps Portainer's
    /// defaults, the meaning it had (new endpoints get `Default`, denied).
    #[serde(default = "SecuritySettings::portainer_defaults")]
    pub security_settings: SecuritySettings,
}

fn one() -> Id {
    1
}

fn one_u8() -> u8 {
    1
}

/// Endpoint group; group 1 ("Unassigned") always exists.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointGroup {
    pub id: Id,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tag_ids: Vec<Id>,
    #[serde(default)]
    pub user_access_policies: AccessPolicies,
    #[serde(default)]
    pub team_access_policies: AccessPolicies,
}

/// Tag; note Portainer spells its id `ID`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tag {
    #[serde(rename = "ID")]
    pub id: Id,
    #[serde(rename = "Name")]
    pub name: String,
}

/// A registry's grants on one endpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct RegistryAccess {
    #[serde(default)]
    pub user_access_policies: AccessPolicies,
    #[serde(default)]
    pub team_access_policies: AccessPolicies,
    #[serde(default)]
    pub namespaces: Vec<String>,
}

/// A container registry. The password is stored sealed (AES-256-GCM with a
/// key in the data directory) and never returned by the API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Registry {
    pub id: Id,
    #[serde(rename = "Type")]
    pub kind: u8,
    pub name: String,
    #[serde(rename = "URL")]
    pub url: String,
    #[serde(rename = "BaseURL", default)]
    pub base_url: String,
    #[serde(default)]
    pub authentication: bool,
    #[serde(default)]
    pub username: String,
    /// Sealed password (base64 of nonce ‖ ciphertext); empty when none.
    #[serde(default)]
    pub sealed_password: String,
    #[serde(default)]
    pub gitlab: serde_json::Value,
    #[serde(default)]
    pub quay: serde_json::Value,
    #[serde(default)]
    pub ecr: serde_json::Value,
    /// Keyed by endpoint id as a string.
    #[serde(default)]
    pub registry_accesses: BTreeMap<String, RegistryAccess>,
}

/// The latest health-check snapshot of a Docker endpoint, in Portainer's
/// `DockerSnapshot` names (the raw Docker documents are not kept: with
/// thousands of endpoints they would dominate memory for no client benefit).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(rename_all = "PascalCase", default)]
pub struct DockerSnapshot {
    /// Unix seconds.
    pub time: i64,
    pub docker_version: String,
    /// The node is a swarm manager.
    pub swarm: bool,
    #[serde(rename = "TotalCPU")]
    pub total_cpu: i64,
    pub total_memory: i64,
    pub container_count: u64,
    pub running_container_count: u64,
    pub stopped_container_count: u64,
    pub healthy_container_count: u64,
    pub unhealthy_container_count: u64,
    pub volume_count: u64,
    pub image_count: u64,
    pub service_count: u64,
    pub stack_count: u64,
    pub node_count: u64,
    pub gpu_use_all: bool,
    pub gpu_use_list: Vec<String>,
    pub is_podman: bool,
}

/// What the `snapshots` table holds, keyed by endpoint id (Portainer's shape).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SnapshotRecord {
    #[serde(rename = "EndpointId")]
    pub endpoint_id: Id,
    #[serde(rename = "Docker")]
    pub docker: Option<DockerSnapshot>,
}

/// Portainer's `{"name","value"}` pair (stack environment).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Pair {
    pub name: String,
    pub value: String,
}

/// One user's (or team's) access in a resource control; the level is
/// always 1 (read-write), as in Portainer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct UserAccess {
    #[serde(rename = "UserId")]
    pub user_id: Id,
    #[serde(rename = "AccessLevel")]
    pub access_level: u8,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct TeamAccess {
    #[serde(rename = "TeamId")]
    pub team_id: Id,
    #[serde(rename = "AccessLevel")]
    pub access_level: u8,
}

/// Resource control types, Portainer's numbers (`portainer.ResourceControlType`).
pub const RESOURCE_CONTROL_CONTAINER: u8 = 1;
pub const RESOURCE_CONTROL_SERVICE: u8 = 2;
pub const RESOURCE_CONTROL_VOLUME: u8 = 3;
pub const RESOURCE_CONTROL_NETWORK: u8 = 4;
pub const RESOURCE_CONTROL_SECRET: u8 = 5;
/// Resource control type of a stack.
pub const RESOURCE_CONTROL_STACK: u8 = 6;
pub const RESOURCE_CONTROL_CONFIG: u8 = 7;
pub const RESOURCE_CONTROL_CUSTOM_TEMPLATE: u8 = 8;
pub const RESOURCE_CONTROL_AZURE_CONTAINER_GROUP: u8 = 9;

/// Portainer's resource control: who besides admins may see and act on one
/// Docker object (or stack). A stack's control is kept inside the stack
/// record, a Docker object's in the controls table, at most one per
/// (`ResourceId`, `Type`); both take ids from one sequence
/// ([`crate::controls::stack_ids`]). The policy that reads them is
/// [`crate::access::control`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ResourceControl {
    pub id: Id,
    pub resource_id: String,
    #[serde(default)]
    pub sub_resource_ids: Vec<String>,
    #[serde(rename = "Type")]
    pub kind: u8,
    #[serde(default)]
    pub user_accesses: Vec<UserAccess>,
    #[serde(default)]
    pub team_accesses: Vec<TeamAccess>,
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub administrators_only: bool,
    #[serde(default)]
    pub system: bool,
}

impl ResourceControl {
    /// A control that only `user` (and admins) may use: what Berth stores
    /// when a standard user creates an object through the proxy.
    pub fn private(id: Id, resource_id: impl Into<String>, kind: u8, user: Id) -> Self {
        ResourceControl {
            id,
            resource_id: resource_id.into(),
            sub_resource_ids: Vec::new(),
            kind,
            user_accesses: vec![UserAccess { user_id: user, access_level: 1 }],
            team_accesses: Vec::new(),
            public: false,
            administrators_only: false,
            system: false,
        }
    }
}

/// Git credentials of a stack. The password is sealed like registry
/// passwords and never returned by the API.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct GitAuth {
    pub username: String,
    #[serde(default)]
    pub sealed_password: String,
}

/// Where a stack's files come from when it was deployed from git.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct StackGitConfig {
    #[serde(rename = "URL")]
    pub url: String,
    /// Branch, tag or full ref; empty for the remote's default branch.
    #[serde(default)]
    pub reference_name: String,
    pub config_file_path: String,
    #[serde(default)]
    pub authentication: Option<GitAuth>,
    /// Commit deployed (`git rev-parse HEAD`).
    #[serde(default)]
    pub config_hash: String,
    #[serde(rename = "TLSSkipVerify", default)]
    pub tls_skip_verify: bool,
}

pub const STACK_SWARM: u8 = 1;
pub const STACK_COMPOSE: u8 = 2;
pub const STACK_ACTIVE: u8 = 1;
pub const STACK_INACTIVE: u8 = 2;

/// A stack as stored. The API view ([`crate::stacks::view`]) is built from
/// it with secrets blanked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Stack {
    pub id: Id,
    pub name: String,
    #[serde(rename = "Type")]
    pub kind: u8,
    pub endpoint_id: Id,
    #[serde(default)]
    pub swarm_id: String,
    pub entry_point: String,
    #[serde(default)]
    pub env: Option<Vec<Pair>>,
    pub status: u8,
    pub project_path: String,
    pub creation_date: i64,
    pub created_by: String,
    #[serde(default)]
    pub update_date: i64,
    #[serde(default)]
    pub updated_by: String,
    #[serde(default)]
    pub additional_files: Option<Vec<String>>,
    /// `{"Prune": bool}` once an update asked for pruning (swarm).
    #[serde(default)]
    pub option: Option<serde_json::Value>,
    #[serde(default)]
    pub git_config: Option<StackGitConfig>,
    pub resource_control: ResourceControl,
    #[serde(default)]
    pub from_app_template: bool,
}
