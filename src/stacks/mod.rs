//! Stacks: Compose and swarm projects Berth deploys on an endpoint's
//! behalf, from a string, an uploaded file or a git repository
//! (`/api/stacks`, handlers in [`crate::api::stacks`]).
//!
//! - [`Stacks`] holds the stacks in memory (mirroring the `stacks` table),
//!   the detected deployer programs, and one lock per (endpoint, stack
//!   name): operations on one stack are serialised, while deploys on other
//!   stacks or endpoints never wait on each other (Portainer serialises all
//!   deploys behind one global lock).
//! - [`ops`] and [`changes`] carry out the API's operations; [`deploy`]
//!   runs the deployers, [`process`] the child processes (environment from
//!   an allow list), [`git`] the repository fetches ([`git_guard`]: where a
//!   standard user's URL may lead), [`quota`] the per-user limits.
//! - [`yaml`] reads stack files as the deployers do and [`policy`] decides
//!   what a standard user's file may ask for; [`env`] carries a stack's
//!   variables to Compose in an env file, [`render`] substitutes them into
//!   swarm files.
//! - Project files live in `<data>/compose/<stackId>/`; runs get private
//!   scratch folders under `<data>/tmp/`, emptied at start-up.
//!
//! Deleting an endpoint leaves its stacks in place, orphaned, as Portainer
//! does: they are listed only with `IncludeOrphanedStacks` (admins), and an
//! admin may delete one, which removes the record and files without
//! contacting any host.

pub mod changes;
pub mod deploy;
pub mod env;
pub mod git;
pub mod git_guard;
pub mod ops;
pub mod policy;
pub mod process;
pub mod quota;
pub mod render;
pub mod scratch;
pub mod shared;
pub mod tools;
pub mod yaml;

use std::path::PathBuf;
use std::sync::Arc;

use dashmap::DashMap;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::store::model::{Id, Pair, ResourceControl, Stack};
use crate::table::Table;

type LockKey = (Id, String);

pub struct Stacks {
    map: Table<Id, Arc<Stack>>,
    locks: Arc<DashMap<LockKey, Arc<tokio::sync::Mutex<()>>>>,
    pub tools: Arc<deploy::Tools>,
    /// `<data>/compose`, absolute.
    pub compose_root: PathBuf,
    /// `<data>/tmp`, absolute: scratch folders of runs and clones.
    pub scratch_root: PathBuf,
    /// Per-user limits on stacks, clones and deployer runs.
    pub quota: quota::Quota,
    /// For name locks that hold across replicas (PostgreSQL store).
    store: Option<crate::store::Store>,
}

/// Held while one stack (endpoint, name) is being changed.
pub struct NameLock {
    /// The same lock across replicas (shared store only), released first.
    shared: Option<crate::store::SharedLock>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    key: LockKey,
    locks: Arc<DashMap<LockKey, Arc<tokio::sync::Mutex<()>>>>,
}

impl Drop for NameLock {
    fn drop(&mut self) {
        drop(self.shared.take());
        drop(self.guard.take());
        // Nobody else holds or waits for it: forget it, so the map does not
        // grow with every name ever used. Cloning happens under the same
        // shard lock, so a waiter cannot slip in between.
        self.locks.remove_if(&self.key, |_, m| Arc::strong_count(m) == 1);
    }
}

impl Stacks {
    /// Loads stored stacks, prepares the folders and detects the deployers.
    pub async fn load(store: &crate::store::Store, config: &crate::config::Config) -> anyhow::Result<Stacks> {
        use anyhow::Context;
        let data = std::fs::canonicalize(&config.data)
            .with_context(|| format!("resolving the data directory {}", config.data.display()))?;
        let compose_root = data.join("compose");
        let scratch_root = data.join("tmp");
        for d in [&compose_root, &scratch_root] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("securing {}", d.display()))?;
        }
        // Scratch folders of runs cut short by a crash: credentials may be
        // in them.
        if let Ok(rd) = std::fs::read_dir(&scratch_root) {
            for e in rd.flatten() {
                deploy::remove_dir_logged(&e.path());
            }
        }
        let stacks: Vec<Stack> = store.load_all(crate::store::STACKS).context("loading stacks")?;
        let map = Table::default();
        for s in stacks {
            map.put(s.id, Arc::new(s));
        }
        // Project folders without a record: a creation cut short by a crash.
        // A git redeploy cut short between its two renames left the old
        // tree as `<id>.old-*`: it goes back in place.
        if let Ok(rd) = std::fs::read_dir(&compose_root) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some((id, _)) = name.split_once(".old-") {
                    let live = compose_root.join(id);
                    if id.parse::<Id>().is_ok_and(|id| map.contains(&id)) && !live.exists() {
                        tracing::warn!(folder = %live.display(), "restoring a stack folder after an interrupted redeploy");
                        if std::fs::rename(e.path(), &live).is_ok() {
                            continue;
                        }
                    }
                    deploy::remove_dir_logged(&e.path());
                    continue;
                }
                if name.parse::<Id>().map_or(true, |id| !map.contains(&id)) {
                    tracing::warn!(folder = %e.path().display(), "removing a stack folder without a stack");
                    deploy::remove_dir_logged(&e.path());
                }
            }
        }
        let tools =
            Arc::new(deploy::Tools::new(&config.docker_bin, &config.compose_bin, &config.git_bin, &scratch_root));
        let t = tools.clone();
        tokio::spawn(async move {
            t.compose().await;
        });
        Ok(Stacks {
            map,
            locks: Arc::default(),
            tools,
            compose_root,
            scratch_root,
            quota: Default::default(),
            store: Some(store.clone()),
        })
    }

    pub fn get(&self, id: Id) -> Option<Arc<Stack>> {
        self.map.get(&id)
    }

    /// Every stack, in id order.
    pub fn all(&self) -> Vec<Arc<Stack>> {
        self.map.all()
    }

    pub fn put(&self, s: Stack) {
        self.map.put(s.id, Arc::new(s));
    }

    pub fn remove(&self, id: Id) {
        self.map.remove(&id);
    }

    /// No stack at all (the admins' proxy path asks before decorating lists).
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// A Berth stack of that name on that endpoint.
    pub fn find(&self, endpoint: Id, name: &str) -> Option<Arc<Stack>> {
        self.map.find(|s| s.endpoint_id == endpoint && s.name == name)
    }

    pub fn project_dir(&self, id: Id) -> PathBuf {
        self.compose_root.join(id.to_string())
    }

    /// Waits for, then holds, the lock of one (endpoint, name): in this
    /// process, then, on a shared store, across every replica (so two
    /// replicas never deploy one stack at once). Fails only when the shared
    /// store cannot be reached.
    pub async fn lock(&self, endpoint: Id, name: &str) -> Result<NameLock, crate::store::StoreError> {
        let key = (endpoint, name.to_string());
        let m = self.locks.entry(key.clone()).or_default().clone();
        let guard = m.lock_owned().await;
        let mut lock = NameLock { shared: None, guard: Some(guard), key, locks: self.locks.clone() };
        if let Some(store) = &self.store {
            lock.shared = store.shared_lock(&format!("stack:{endpoint}:{name}")).await?;
        }
        Ok(lock)
    }

    /// Locks currently known (held or waited for).
    pub fn lock_count(&self) -> usize {
        self.locks.len()
    }

    #[cfg(test)]
    pub(crate) fn empty() -> Stacks {
        Stacks {
            map: Table::default(),
            locks: Arc::default(),
            tools: Arc::new(deploy::Tools::new(
                "docker",
                "docker-compose",
                "git",
                std::path::Path::new("/nonexistent"),
            )),
            compose_root: PathBuf::from("/nonexistent"),
            scratch_root: PathBuf::from("/nonexistent"),
            quota: Default::default(),
            store: None,
        }
    }
}

/// Portainer's rule: lower-cased, every character outside `[-_a-z0-9]`
/// removed.
pub fn normalize_name(raw: &str) -> String {
    raw.to_lowercase().chars().filter(|c| matches!(c, 'a'..='z' | '0'..='9' | '-' | '_')).collect()
}

/// Longest stack name: Docker names services `<stack>_<service>` and caps
/// names at 63 characters; a longer stack name can never deploy.
pub const MAX_NAME: usize = 63;

/// Checks a normalised name. A name that starts with `-` would read as an
/// option to the deployers, and Compose v2 refuses it anyway.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("Invalid stack name".into());
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!("Invalid stack name: {name:?} must start with a letter or a digit"));
    }
    if name.len() > MAX_NAME {
        return Err(format!("Invalid stack name: longer than {MAX_NAME} characters"));
    }
    Ok(())
}

pub use env::check_env;

/// The resource control stored with a new stack: its creator's, and
/// administrators-only when the creator is an admin.
pub fn resource_control(id: Id, endpoint: Id, name: &str, creator: &Principal) -> ResourceControl {
    ResourceControl {
        id,
        resource_id: format!("{endpoint}_{name}"),
        sub_resource_ids: Vec::new(),
        kind: crate::store::model::RESOURCE_CONTROL_STACK,
        user_accesses: vec![crate::store::model::UserAccess { user_id: creator.id(), access_level: 1 }],
        team_accesses: Vec::new(),
        public: false,
        administrators_only: creator.is_admin(),
        system: false,
    }
}

/// Whether a standard user's resource control lets them at the stack.
/// Admins pass everywhere; the endpoint rules are checked separately.
pub fn control_grants(rc: &ResourceControl, p: &Principal, teams: &[Id]) -> bool {
    if p.is_admin() {
        return true;
    }
    if rc.administrators_only {
        return false;
    }
    rc.public
        || rc.user_accesses.iter().any(|a| a.user_id == p.id())
        || rc.team_accesses.iter().any(|a| teams.contains(&a.team_id))
}

/// Portainer's stack object (git password blanked, sealed secrets never
/// included).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = Stack)]
pub struct StackView {
    id: Id,
    name: String,
    /// 1 swarm, 2 compose.
    #[serde(rename = "Type")]
    kind: u8,
    endpoint_id: Id,
    swarm_id: String,
    entry_point: String,
    env: Option<Vec<Pair>>,
    resource_control: ResourceControl,
    /// 1 active, 2 inactive.
    status: u8,
    project_path: String,
    creation_date: i64,
    created_by: String,
    update_date: i64,
    updated_by: String,
    additional_files: Option<Vec<String>>,
    /// Always null: Berth does not update stacks by itself.
    #[schema(value_type = Option<Object>)]
    auto_update: Option<()>,
    /// `{"Prune": bool}` once an update asked for pruning.
    option: Option<Value>,
    git_config: Option<GitConfigView>,
    from_app_template: bool,
    namespace: &'static str,
    is_compose_format: bool,
}

/// Where a git stack comes from; the password is never shown.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = StackGitConfig)]
pub struct GitConfigView {
    #[serde(rename = "URL")]
    url: String,
    reference_name: String,
    config_file_path: String,
    authentication: Option<GitAuthView>,
    /// The commit deployed.
    config_hash: String,
    #[serde(rename = "TLSSkipVerify")]
    tls_skip_verify: bool,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = StackGitAuthentication)]
pub struct GitAuthView {
    username: String,
    /// Always empty.
    password: &'static str,
    #[serde(rename = "GitCredentialID")]
    git_credential_id: u64,
}

pub fn view(s: &Stack) -> StackView {
    let git = s.git_config.as_ref().map(|g| GitConfigView {
        url: g.url.clone(),
        reference_name: g.reference_name.clone(),
        config_file_path: g.config_file_path.clone(),
        authentication: g.authentication.as_ref().map(|a| GitAuthView {
            username: a.username.clone(),
            password: "",
            git_credential_id: 0,
        }),
        config_hash: g.config_hash.clone(),
        tls_skip_verify: g.tls_skip_verify,
    });
    StackView {
        id: s.id,
        name: s.name.clone(),
        kind: s.kind,
        endpoint_id: s.endpoint_id,
        swarm_id: s.swarm_id.clone(),
        entry_point: s.entry_point.clone(),
        env: s.env.clone(),
        resource_control: s.resource_control.clone(),
        status: s.status,
        project_path: s.project_path.clone(),
        creation_date: s.creation_date,
        created_by: s.created_by.clone(),
        update_date: s.update_date,
        updated_by: s.updated_by.clone(),
        additional_files: s.additional_files.clone(),
        auto_update: None,
        option: s.option.clone(),
        git_config: git,
        from_app_template: s.from_app_template,
        namespace: "",
        is_compose_format: false,
    }
}

/// The compose files of a stack: entry point, then additional files.
pub fn files_of(s: &Stack) -> Vec<String> {
    let mut v = vec![s.entry_point.clone()];
    if let Some(extra) = &s.additional_files {
        v.extend(extra.iter().cloned());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn name_locks_serialise_one_name_only_and_are_forgotten() {
        let stacks = Arc::new(Stacks::empty());
        let held = stacks.lock(1, "web").await.unwrap();
        // Another name, and the same name on another endpoint, are free.
        let other = tokio::time::timeout(std::time::Duration::from_secs(1), stacks.lock(1, "db")).await;
        let elsewhere = tokio::time::timeout(std::time::Duration::from_secs(1), stacks.lock(2, "web")).await;
        assert!(other.is_ok() && elsewhere.is_ok());
        drop((other, elsewhere));
        let s2 = stacks.clone();
        let waiter = tokio::spawn(async move {
            let _g = s2.lock(1, "web").await;
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(!waiter.is_finished(), "the same name waits");
        drop(held);
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter).await.unwrap().unwrap();
        assert_eq!(stacks.lock_count(), 0, "unused locks are forgotten");
    }

    #[test]
    fn controls() {
        let p = |role, id| Principal::for_tests(id, role);
        let rc = resource_control(3, 1, "web", &p(2, 5));
        assert_eq!(rc.resource_id, "1_web");
        assert!(control_grants(&rc, &p(2, 5), &[]));
        assert!(!control_grants(&rc, &p(2, 6), &[]));
        assert!(control_grants(&rc, &p(1, 1), &[]));
        let admin_rc = resource_control(4, 1, "web", &p(1, 1));
        assert!(admin_rc.administrators_only);
        assert!(!control_grants(&admin_rc, &p(2, 1), &[]));
    }
}
