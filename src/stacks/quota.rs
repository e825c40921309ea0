//! Limits per user on what stacks cost Berth's host: stacks owned
//! (standard users; admins are trusted with their host), clones running at
//! once (each up to `max_clone_size` on disk) and deployer processes
//! running at once. Past a limit the request is refused at once with a
//! clear error (403 for the stack count, 429 for work in flight) instead of
//! queueing behind the user's own earlier requests.

use std::sync::Arc;

use dashmap::DashMap;
use http::StatusCode;

use crate::auth::Principal;
use crate::config::Config;
use crate::error::{ApiError, ApiResult};
use crate::store::model::Id;

type Counts = Arc<DashMap<Id, usize>>;

#[derive(Default)]
pub struct Quota {
    creating: Counts,
    clones: Counts,
    deployers: Counts,
}

/// Held while the counted thing is in flight; gives its place back when
/// dropped.
pub struct Slot {
    counts: Counts,
    user: Id,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(mut n) = self.counts.get_mut(&self.user) {
            *n = n.saturating_sub(1);
        }
        self.counts.remove_if(&self.user, |_, n| *n == 0);
    }
}

/// Takes a place among at most `limit` (counting `already` as taken).
fn take(counts: &Counts, user: Id, already: usize, limit: usize) -> Option<Slot> {
    let mut n = counts.entry(user).or_insert(0);
    if already + *n >= limit {
        drop(n);
        counts.remove_if(&user, |_, n| *n == 0);
        return None;
    }
    *n += 1;
    Some(Slot { counts: counts.clone(), user })
}

fn too_many(what: &str, limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("Too many {what} at once"),
        format!("a user may run at most {limit} {what} at once; retry when one has finished"),
    )
}

impl Quota {
    /// A place for one more stack of this user (none needed for admins).
    pub fn stack_slot(&self, stacks: &super::Stacks, p: &Principal, config: &Config) -> ApiResult<Option<Slot>> {
        if p.is_admin() {
            return Ok(None);
        }
        let limit = config.max_stacks_per_user;
        let owned = stacks.all().iter().filter(|s| s.created_by == p.user.username).count();
        match take(&self.creating, p.id(), owned, limit) {
            Some(s) => Ok(Some(s)),
            None => Err(ApiError::forbidden(
                "Stack limit reached",
                format!("a user may own at most {limit} stacks; delete one first"),
            )),
        }
    }

    pub fn clone_slot(&self, p: &Principal, config: &Config) -> ApiResult<Slot> {
        let limit = config.max_concurrent_clones;
        take(&self.clones, p.id(), 0, limit).ok_or_else(|| too_many("repository clones", limit))
    }

    pub fn deployer_slot(&self, p: &Principal, config: &Config) -> ApiResult<Slot> {
        let limit = config.max_concurrent_deploys;
        take(&self.deployers, p.id(), 0, limit).ok_or_else(|| too_many("stack deployments", limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_count_and_return() {
        let c: Counts = Arc::default();
        let a = take(&c, 1, 0, 2).unwrap();
        let b = take(&c, 1, 0, 2).unwrap();
        assert!(take(&c, 1, 0, 2).is_none());
        assert!(take(&c, 2, 0, 2).is_some(), "per user");
        drop(a);
        let _c2 = take(&c, 1, 0, 2).unwrap();
        assert!(take(&c, 1, 0, 2).is_none());
        drop((b, _c2));
        assert!(c.is_empty(), "forgotten when free");
        assert!(take(&c, 1, 3, 3).is_none(), "already owned counts");
    }
}
