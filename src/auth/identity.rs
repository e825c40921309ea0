//! Users, teams, memberships, API keys and revoked tokens, held in memory
//! (dashmap) and loaded from the store at start. The request path reads
//! only these maps; every change is stored durably first, then applied here.

use std::sync::Arc;

use dashmap::DashMap;

use crate::store::model::{ApiKey, Id, Team, TeamMembership, User};
use crate::store::{Store, StoreError, API_KEYS, TEAMS, TEAM_MEMBERSHIPS, USERS};

#[derive(Default)]
pub struct Identity {
    users: DashMap<Id, Arc<User>>,
    /// Lower-cased username → id: logins ignore case, as Portainer's do.
    by_name: DashMap<String, Id>,
    api_keys: DashMap<[u8; 32], Arc<ApiKey>>,
    /// Key id → last use (unix seconds), recorded at most once a minute per
    /// key and flushed to the store by the background task, so using a key
    /// never waits on a write.
    api_key_last_used: DashMap<Id, u64>,
    revoked: DashMap<String, u64>,
    teams: DashMap<Id, Team>,
    memberships: DashMap<Id, TeamMembership>,
    /// Serialises identity writes whose validity depends on current
    /// contents (unique names, last admin): never taken on the request path.
    pub write_lock: tokio::sync::Mutex<()>,
}

impl Identity {
    pub fn load(store: &Store) -> Result<Identity, StoreError> {
        let id = Identity::default();
        for u in store.load_all::<User>(USERS)? {
            id.put_user(u);
        }
        for k in store.load_all::<ApiKey>(API_KEYS)? {
            id.put_api_key(k);
        }
        for t in store.load_all::<Team>(TEAMS)? {
            id.teams.insert(t.id, t);
        }
        for m in store.load_all::<TeamMembership>(TEAM_MEMBERSHIPS)? {
            id.memberships.insert(m.id, m);
        }
        let now = super::now_secs();
        for (jti, exp) in store.load_revoked()? {
            if exp >= now {
                id.revoked.insert(jti, exp);
            }
        }
        Ok(id)
    }

    pub fn user(&self, id: Id) -> Option<Arc<User>> {
        self.users.get(&id).map(|u| u.clone())
    }

    pub fn user_by_name(&self, name: &str) -> Option<Arc<User>> {
        let id = *self.by_name.get(&name.to_lowercase())?;
        self.user(id)
    }

    pub fn users(&self) -> Vec<Arc<User>> {
        let mut v: Vec<_> = self.users.iter().map(|u| u.clone()).collect();
        v.sort_by_key(|u| u.id);
        v
    }

    pub fn admin_count(&self) -> usize {
        self.users.iter().filter(|u| u.is_admin()).count()
    }

    pub fn put_user(&self, u: User) {
        if let Some(old) = self.users.get(&u.id) {
            let old_key = old.username.to_lowercase();
            if old_key != u.username.to_lowercase() {
                self.by_name.remove(&old_key);
            }
        }
        self.by_name.insert(u.username.to_lowercase(), u.id);
        self.users.insert(u.id, Arc::new(u));
    }

    pub fn remove_user(&self, id: Id) {
        if let Some((_, u)) = self.users.remove(&id) {
            self.by_name.remove(&u.username.to_lowercase());
        }
        self.api_keys.retain(|_, k| k.user_id != id);
        self.memberships.retain(|_, m| m.user_id != id);
    }

    pub fn put_api_key(&self, k: ApiKey) {
        if let Some(d) = decode_digest(&k.digest) {
            self.api_keys.insert(d, Arc::new(k));
        }
    }

    pub fn api_key_by_digest(&self, d: &[u8; 32]) -> Option<Arc<ApiKey>> {
        self.api_keys.get(d).map(|k| k.clone())
    }

    /// Notes that a key was used; cheap enough for every request (one map
    /// read, a write at most once a minute).
    pub fn touch_api_key(&self, key: &ApiKey, now: u64) {
        let last = self.api_key_last_used.get(&key.id).map(|v| *v).unwrap_or(key.last_used);
        if now >= last + 60 {
            self.api_key_last_used.insert(key.id, now);
        }
    }

    /// Keys whose recorded use is newer than their stored record, for the
    /// periodic flush.
    pub fn api_keys_to_flush(&self) -> Vec<ApiKey> {
        self.api_keys
            .iter()
            .filter_map(|k| {
                let used = *self.api_key_last_used.get(&k.id)?;
                (used > k.last_used).then(|| ApiKey { last_used: used, ..(**k).clone() })
            })
            .collect()
    }

    /// Last use as clients should see it: the recorded one, or the stored one.
    pub fn api_key_last_used(&self, key: &ApiKey) -> u64 {
        self.api_key_last_used.get(&key.id).map(|v| (*v).max(key.last_used)).unwrap_or(key.last_used)
    }

    /// Replaces a key's record only while the key still exists, so a flush
    /// racing a deletion cannot bring the key back.
    pub fn refresh_api_key(&self, k: ApiKey) {
        if let Some(d) = decode_digest(&k.digest) {
            if let Some(mut e) = self.api_keys.get_mut(&d) {
                *e = Arc::new(k);
            }
        }
    }

    pub fn api_keys_of(&self, user: Id) -> Vec<Arc<ApiKey>> {
        let mut v: Vec<_> = self.api_keys.iter().filter(|k| k.user_id == user).map(|k| k.clone()).collect();
        v.sort_by_key(|k| k.id);
        v
    }

    pub fn api_key(&self, id: Id) -> Option<Arc<ApiKey>> {
        self.api_keys.iter().find(|k| k.id == id).map(|k| k.clone())
    }

    pub fn remove_api_key(&self, id: Id) {
        self.api_keys.retain(|_, k| k.id != id);
        self.api_key_last_used.remove(&id);
    }

    pub fn revoke(&self, jti: String, exp: u64) {
        self.revoked.insert(jti, exp);
    }

    pub fn is_revoked(&self, jti: &str) -> bool {
        self.revoked.contains_key(jti)
    }

    pub fn prune_revoked(&self, now: u64) {
        self.revoked.retain(|_, exp| *exp >= now);
    }

    pub fn team(&self, id: Id) -> Option<Team> {
        self.teams.get(&id).map(|t| t.clone())
    }

    pub fn teams(&self) -> Vec<Team> {
        let mut v: Vec<_> = self.teams.iter().map(|t| t.clone()).collect();
        v.sort_by_key(|t| t.id);
        v
    }

    pub fn put_team(&self, t: Team) {
        self.teams.insert(t.id, t);
    }

    pub fn remove_team(&self, id: Id) {
        self.teams.remove(&id);
        self.memberships.retain(|_, m| m.team_id != id);
    }

    pub fn memberships(&self) -> Vec<TeamMembership> {
        let mut v: Vec<_> = self.memberships.iter().map(|m| m.clone()).collect();
        v.sort_by_key(|m| m.id);
        v
    }

    pub fn membership(&self, id: Id) -> Option<TeamMembership> {
        self.memberships.get(&id).map(|m| m.clone())
    }

    pub fn put_membership(&self, m: TeamMembership) {
        self.memberships.insert(m.id, m);
    }

    pub fn remove_membership(&self, id: Id) {
        self.memberships.remove(&id);
    }

    /// Team ids of a user: used by access checks of standard users.
    pub fn teams_of(&self, user: Id) -> Vec<Id> {
        self.memberships.iter().filter(|m| m.user_id == user).map(|m| m.team_id).collect()
    }

    pub fn is_leader_of(&self, user: Id, team: Id) -> bool {
        self.memberships
            .iter()
            .any(|m| m.user_id == user && m.team_id == team && m.role == crate::store::model::TEAM_LEADER)
    }

    pub fn is_any_leader(&self, user: Id) -> bool {
        self.memberships.iter().any(|m| m.user_id == user && m.role == crate::store::model::TEAM_LEADER)
    }
}

fn decode_digest(b64: &str) -> Option<[u8; 32]> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(b64).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: Id) -> ApiKey {
        let raw = crate::auth::apikey::generate();
        ApiKey {
            id,
            user_id: 1,
            description: "k".into(),
            prefix: crate::auth::apikey::display_prefix(&raw),
            digest: crate::auth::apikey::digest_b64(&crate::auth::apikey::digest(&raw)),
            date_created: 0,
            last_used: 0,
        }
    }

    #[test]
    fn key_use_is_recorded_once_a_minute_and_flushed_without_resurrecting() {
        let id = Identity::default();
        let k = key(1);
        id.put_api_key(k.clone());
        id.touch_api_key(&k, 1000);
        id.touch_api_key(&k, 1030);
        assert_eq!(id.api_key_last_used(&k), 1000);
        id.touch_api_key(&k, 1061);
        let flush = id.api_keys_to_flush();
        assert_eq!(flush.len(), 1);
        assert_eq!(flush[0].last_used, 1061);
        id.refresh_api_key(flush[0].clone());
        assert!(id.api_keys_to_flush().is_empty());
        // A flush that lands after a deletion does not bring the key back.
        id.remove_api_key(1);
        id.refresh_api_key(flush[0].clone());
        assert!(id.api_key(1).is_none());
    }
}
