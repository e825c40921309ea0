//! Changes to existing stacks: update, stop, start, delete, git redeploy.
//! Each runs under the stack name's lock and rereads the stack and its
//! endpoint once it holds it. A failed update restores the previous file;
//! a failed redeploy the previous tree.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::deploy::{self, DeployOptions};
use super::git;
use super::ops::{
    blocking, check_content, check_docker_names, check_fetched, check_stored, deploy_failed, deploy_job,
    endpoint_not_found, git_failed, job, logins_for, owner_is_admin, remove_dir, remove_job, rules, save,
    stack_not_found, JobSpec, Ops,
};
use crate::auth::Principal;
use crate::endpoints::EndpointEntry;
use crate::error::{ApiError, ApiResult};
use crate::store::model::{GitAuth, Id, Pair, Stack, STACK_ACTIVE, STACK_INACTIVE, STACK_SWARM};
use crate::store::STACKS;

/// Fetches a repository into `dest` within the caller's clone limit.
pub async fn clone(state: &Ops<'_>, p: &Principal, src: &git::Source, dest: &std::path::Path) -> ApiResult<String> {
    let _slot = state.stacks.quota.clone_slot(p, state.config)?;
    let limits = git::Limits {
        timeout: state.config.git_clone_timeout,
        max_size: state.config.max_clone_size,
        guard: (!p.is_admin()).then(|| git::AddressGuard::new(&state.config.git_allowed_hosts)),
    };
    git::fetch(&state.stacks.tools, src, dest, &state.stacks.scratch_root, &limits).await.map_err(|e| git_failed(&e, p))
}

/// Holds the stack name's lock; then the stack and its endpoint as they
/// are now.
async fn locked(state: &Ops<'_>, id: Id) -> ApiResult<(super::NameLock, Arc<Stack>, Arc<EndpointEntry>)> {
    let stack = state.stacks.get(id).ok_or_else(stack_not_found)?;
    let lock = state.stacks.lock(stack.endpoint_id, &stack.name).await.map_err(crate::response::store_err)?;
    let stack = state.stacks.get(id).ok_or_else(stack_not_found)?;
    let entry = state.endpoints.get(stack.endpoint_id).ok_or_else(endpoint_not_found)?;
    Ok((lock, stack, entry))
}

fn spec<'s>(stack: &'s Stack, env: &'s Option<Vec<Pair>>, owner_admin: bool, checked: bool) -> JobSpec<'s> {
    JobSpec {
        dir: PathBuf::from(&stack.project_path),
        files: super::files_of(stack),
        name: &stack.name,
        env,
        owner_is_admin: owner_admin,
        files_checked: checked,
    }
}

/// `PUT /api/stacks/{id}`: a new entry file and environment, redeployed.
pub async fn update(
    state: &Ops<'_>,
    p: Principal,
    id: Id,
    teams: Vec<Id>,
    text: Vec<u8>,
    env: Option<Vec<Pair>>,
    opts: DeployOptions,
) -> ApiResult<super::StackView> {
    let (_lock, stack, entry) = locked(state, id).await?;
    let owner_admin = owner_is_admin(state, &stack);
    let rules = rules(&p, owner_admin, &entry);
    check_content(rules.as_ref(), &stack.entry_point, &text)?;
    let dir = PathBuf::from(&stack.project_path);
    let path = dir.join(&stack.entry_point);
    let p2 = path.clone();
    let previous = blocking(move || match std::fs::read(&p2) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    })
    .await
    .map_err(|e| ApiError::internal("Unable to read the stack file", e))?;
    let p2 = path.clone();
    blocking(move || crate::fsutil::write_atomic(&p2, &text, 0o600))
        .await
        .map_err(|e| ApiError::internal("Unable to persist the stack file on disk", e))?;
    // The other files (a git stack's additional files) run again too.
    let checked = check_stored(rules, &dir, super::files_of(&stack)).await;
    let deployed = match checked {
        Ok(()) => {
            let job = job(
                state,
                &entry,
                spec(&stack, &env, owner_admin, true),
                logins_for(state, &p, stack.endpoint_id, &teams),
            );
            let _run = state.stacks.quota.deployer_slot(&p, state.config)?;
            deploy_job(state, stack.kind, "update", &job, opts)
                .await
                .map_err(|e| deploy_failed("Unable to update stack", e))
        }
        Err(e) => Err(e),
    };
    if let Err(e) = deployed {
        let p2 = path.clone();
        let restored = blocking(move || match previous {
            Some(b) => crate::fsutil::write_atomic(&p2, &b, 0o600),
            None => std::fs::remove_file(&p2),
        })
        .await;
        if let Err(re) = restored {
            tracing::error!(stack = stack.id, error = %re, "restoring the previous stack file failed");
        }
        tracing::warn!(stack = stack.id, error = %e.details, "stack update failed; previous file restored");
        return Err(e);
    }
    let mut rec = (*stack).clone();
    rec.env = env;
    rec.git_config = None;
    save(state, redeployed(rec, &p, opts)).await
}

/// `POST /api/stacks/{id}/stop`.
pub async fn stop(state: &Ops<'_>, p: Principal, id: Id, teams: Vec<Id>) -> ApiResult<super::StackView> {
    let (_lock, stack, entry) = locked(state, id).await?;
    if stack.status != STACK_ACTIVE {
        return Err(ApiError::bad_request("Stack is already inactive", "Stack is already inactive"));
    }
    remove(state, &p, &stack, &entry, &teams, "stop").await.map_err(|e| deploy_failed("Unable to stop stack", e))?;
    let mut rec = (*stack).clone();
    rec.status = STACK_INACTIVE;
    save(state, rec).await
}

/// Takes the stack down. Its files are read by Compose only when they
/// pass the owner's checks; otherwise `down` works from the labels.
async fn remove(
    state: &Ops<'_>,
    p: &Principal,
    stack: &Stack,
    entry: &EndpointEntry,
    teams: &[Id],
    method: &str,
) -> Result<String, deploy::DeployError> {
    let owner_admin = owner_is_admin(state, stack);
    let dir = PathBuf::from(&stack.project_path);
    let checked = check_stored(rules(p, owner_admin, entry), &dir, super::files_of(stack)).await.is_ok();
    let job = job(
        state,
        entry,
        spec(stack, &stack.env, owner_admin, checked),
        logins_for(state, p, stack.endpoint_id, teams),
    );
    let _run = state
        .stacks
        .quota
        .deployer_slot(p, state.config)
        .map_err(|e| deploy::DeployError { details: e.details.clone(), timed_out: false })?;
    remove_job(state, entry, stack.kind, method, &job).await
}

/// `POST /api/stacks/{id}/start`: the stored files, checked again under
/// the owner's rules (they may predate them).
pub async fn start(state: &Ops<'_>, p: Principal, id: Id, teams: Vec<Id>) -> ApiResult<super::StackView> {
    let (_lock, stack, entry) = locked(state, id).await?;
    if stack.status != STACK_INACTIVE {
        return Err(ApiError::bad_request("Stack is already active", "Stack is already active"));
    }
    let owner_admin = owner_is_admin(state, &stack);
    let dir = PathBuf::from(&stack.project_path);
    check_stored(rules(&p, owner_admin, &entry), &dir, super::files_of(&stack)).await?;
    // While it was stopped, something else may have taken the name.
    check_docker_names(&entry, &stack.name, stack.kind).await?;
    let job = job(
        state,
        &entry,
        spec(&stack, &stack.env, owner_admin, true),
        logins_for(state, &p, stack.endpoint_id, &teams),
    );
    let deployed = {
        let _run = state.stacks.quota.deployer_slot(&p, state.config)?;
        deploy_job(state, stack.kind, "start", &job, DeployOptions::default()).await
    };
    if let Err(e) = deployed {
        let _ = remove_job(state, &entry, stack.kind, "rollback", &job).await;
        return Err(deploy_failed("Unable to start stack", e));
    }
    let mut rec = (*stack).clone();
    rec.status = STACK_ACTIVE;
    save(state, rec).await
}

/// `DELETE /api/stacks/{id}`; an orphaned stack (no endpoint) has no host
/// to remove anything from.
pub async fn delete(state: &Ops<'_>, p: Principal, id: Id, teams: Vec<Id>, orphan: bool) -> ApiResult<()> {
    let stack = state.stacks.get(id).ok_or_else(stack_not_found)?;
    let _lock = state.stacks.lock(stack.endpoint_id, &stack.name).await.map_err(crate::response::store_err)?;
    let stack = state.stacks.get(id).ok_or_else(stack_not_found)?;
    let entry = if orphan { None } else { state.endpoints.get(stack.endpoint_id) };
    if let Some(entry) = &entry {
        if stack.status == STACK_ACTIVE {
            remove(state, &p, &stack, entry, &teams, "remove")
                .await
                .map_err(|e| deploy_failed("Unable to remove stack", e))?;
        }
    }
    let sid = stack.id;
    state
        .write(move |tx| {
            tx.delete(STACKS, sid)?;
            tx.delete(crate::store::STACK_FILES, sid).map(drop)
        })
        .await
        .map_err(crate::response::store_err)?;
    state.stacks.remove(sid);
    remove_dir(PathBuf::from(&stack.project_path)).await;
    tracing::info!(stack = sid, name = %stack.name, endpoint = stack.endpoint_id, "stack removed");
    Ok(())
}

/// `PUT /api/stacks/{id}/git/redeploy`: a fresh fetch swapped in for the
/// old tree, which comes back if the deploy fails.
pub async fn redeploy(
    state: &Ops<'_>,
    p: Principal,
    id: Id,
    teams: Vec<Id>,
    src: git::Source,
    env: Option<Vec<Pair>>,
    opts: DeployOptions,
) -> ApiResult<super::StackView> {
    let (_lock, stack, entry) = locked(state, id).await?;
    let git_config = stack.git_config.clone().ok_or_else(|| {
        ApiError::bad_request("Stack is not deployed from a git repository", "the stack was edited meanwhile")
    })?;
    let owner_admin = owner_is_admin(state, &stack);
    let t = Instant::now();
    let fresh = state.stacks.scratch_root.join(format!("clone-{:016x}", rand::random::<u64>()));
    // The owner's address rules too: an admin redeploying a standard
    // user's stack must not fetch what the user could not.
    let cloner = if owner_admin { p.clone() } else { standard_view(&p) };
    let commit = clone(state, &cloner, &src, &fresh).await?;
    tracing::debug!(stack = stack.id, elapsed = ?t.elapsed(), "repository fetched");
    if let Err(e) = check_fetched(rules(&p, owner_admin, &entry), &fresh, super::files_of(&stack)).await {
        remove_dir(fresh).await;
        return Err(e);
    }
    let dir = PathBuf::from(&stack.project_path);
    let old = state.stacks.compose_root.join(format!("{}.old-{:08x}", stack.id, rand::random::<u32>()));
    let (d2, o2, f2) = (dir.clone(), old.clone(), fresh.clone());
    if let Err(e) = blocking(move || {
        std::fs::rename(&d2, &o2)?;
        if let Err(e) = std::fs::rename(&f2, &d2) {
            let _ = std::fs::rename(&o2, &d2);
            return Err(e);
        }
        Ok(())
    })
    .await
    {
        remove_dir(fresh).await;
        return Err(ApiError::internal("Unable to replace the stack's files", e));
    }
    let job =
        job(state, &entry, spec(&stack, &env, owner_admin, true), logins_for(state, &p, stack.endpoint_id, &teams));
    let deployed = match state.stacks.quota.deployer_slot(&p, state.config) {
        Ok(_run) => deploy_job(state, stack.kind, "redeploy", &job, opts)
            .await
            .map_err(|e| deploy_failed("Unable to redeploy stack", e)),
        Err(e) => Err(e),
    };
    if let Err(e) = deployed {
        let (d2, o2) = (dir.clone(), old.clone());
        let back = blocking(move || {
            deploy::remove_dir_logged(&d2);
            std::fs::rename(&o2, &d2)
        })
        .await;
        if let Err(re) = back {
            tracing::error!(stack = stack.id, error = %re, "restoring the previous stack files failed");
        }
        return Err(e);
    }
    remove_dir(old).await;
    let mut rec = (*stack).clone();
    let mut g = git_config;
    g.reference_name = src.reference.clone();
    g.config_hash = commit;
    g.authentication =
        src.credentials.as_ref().map(|(u, pw)| GitAuth { username: u.clone(), sealed_password: state.sealer.seal(pw) });
    rec.git_config = Some(g);
    rec.env = env;
    save(state, redeployed(rec, &p, opts)).await
}

/// The record of a stack deployed again by `p` (update, git redeploy).
fn redeployed(mut rec: Stack, p: &Principal, opts: DeployOptions) -> Stack {
    rec.status = STACK_ACTIVE;
    rec.update_date = crate::auth::now_secs() as i64;
    rec.updated_by = p.user.username.clone();
    if rec.kind == STACK_SWARM {
        rec.option = Some(json!({ "Prune": opts.prune }));
    }
    rec
}

/// The caller with a standard user's rights, for checks that follow a
/// standard owner (same id, so limits still count against the caller).
fn standard_view(p: &Principal) -> Principal {
    let mut user = (*p.user).clone();
    user.role = crate::store::model::ROLE_USER;
    Principal { user: Arc::new(user), ..p.clone() }
}
