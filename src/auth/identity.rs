//! Users, teams, memberships, API keys and revoked tokens, held in memory
//! (dashmap) and loaded from the store at start. The request path reads
//! only these maps; every change is stored durably first, then applied here.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use dashmap::DashMap;

use super::jwt::{Claims, JwtKeys};
use crate::store::model::{ApiKey, Id, Team, TeamMembership, User};
use crate::store::{Store, StoreError, API_KEYS, TEAMS, TEAM_MEMBERSHIPS, USERS};
use crate::table::Table;

#[derive(Default)]
pub struct Identity {
    users: Table<Id, Arc<User>>,
    /// Lower-cased username → id: logins ignore case, as Portainer's do.
    by_name: Table<String, Id>,
    api_keys: Table<[u8; 32], Arc<ApiKey>>,
    /// Key id → last use (unix seconds), recorded at most once a minute per
    /// key and flushed to the store by the background task, so using a key
    /// never waits on a write.
    api_key_last_used: Table<Id, u64>,
    revoked: Table<String, u64>,
    teams: Table<Id, Team>,
    memberships: Table<Id, TeamMembership>,
    /// user → (membership id, team id, role): the request path asks for a
    /// user's teams on every call of a standard user, and scanning every
    /// membership of the instance made that O(memberships).
    by_user: DashMap<Id, Vec<(Id, Id, u8)>>,
    /// Taken by membership writers only, so `memberships` and `by_user`
    /// change together; readers never take it.
    membership_writes: Mutex<()>,
    /// Session tokens whose signature and claims have been checked.
    verified: VerifiedTokens,
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
            id.teams.put(t.id, t);
        }
        for m in store.load_all::<TeamMembership>(TEAM_MEMBERSHIPS)? {
            id.put_membership(m);
        }
        let now = super::now_secs();
        for (jti, exp) in store.load_revoked()? {
            if exp >= now {
                id.revoked.put(jti, exp);
            }
        }
        Ok(id)
    }

    pub fn user(&self, id: Id) -> Option<Arc<User>> {
        self.users.get(&id)
    }

    pub fn user_by_name(&self, name: &str) -> Option<Arc<User>> {
        let id = self.by_name.get(&name.to_lowercase())?;
        self.user(id)
    }

    pub fn users(&self) -> Vec<Arc<User>> {
        self.users.all()
    }

    pub fn admin_count(&self) -> usize {
        self.users.count(|u| u.is_admin())
    }

    pub fn put_user(&self, u: User) {
        if let Some(old) = self.users.get(&u.id) {
            let old_key = old.username.to_lowercase();
            if old_key != u.username.to_lowercase() {
                self.by_name.remove(&old_key);
            }
        }
        self.by_name.put(u.username.to_lowercase(), u.id);
        self.users.put(u.id, Arc::new(u));
    }

    pub fn remove_user(&self, id: Id) {
        if let Some(u) = self.users.remove(&id) {
            self.by_name.remove(&u.username.to_lowercase());
        }
        self.api_keys.retain(|_, k| k.user_id != id);
        let _w = self.membership_writes.lock().unwrap_or_else(PoisonError::into_inner);
        self.memberships.retain(|_, m| m.user_id != id);
        self.by_user.remove(&id);
    }

    pub fn put_api_key(&self, k: ApiKey) {
        if let Some(d) = decode_digest(&k.digest) {
            self.api_keys.put(d, Arc::new(k));
        }
    }

    pub fn api_key_by_digest(&self, d: &[u8; 32]) -> Option<Arc<ApiKey>> {
        self.api_keys.get(d)
    }

    /// Notes that a key was used; cheap enough for every request (one map
    /// read, a write at most once a minute).
    pub fn touch_api_key(&self, key: &ApiKey, now: u64) {
        let last = self.api_key_last_used.get(&key.id).unwrap_or(key.last_used);
        if now >= last + 60 {
            self.api_key_last_used.put(key.id, now);
        }
    }

    /// Keys whose recorded use is newer than their stored record, for the
    /// periodic flush.
    pub fn api_keys_to_flush(&self) -> Vec<ApiKey> {
        self.api_keys
            .all()
            .into_iter()
            .filter_map(|k| {
                let used = self.api_key_last_used.get(&k.id)?;
                (used > k.last_used).then(|| ApiKey { last_used: used, ..(*k).clone() })
            })
            .collect()
    }

    /// Last use as clients should see it: the recorded one, or the stored one.
    pub fn api_key_last_used(&self, key: &ApiKey) -> u64 {
        self.api_key_last_used.get(&key.id).map(|v| v.max(key.last_used)).unwrap_or(key.last_used)
    }

    /// Replaces a key's record only while the key still exists, so a flush
    /// racing a deletion cannot bring the key back.
    pub fn refresh_api_key(&self, k: ApiKey) {
        if let Some(d) = decode_digest(&k.digest) {
            self.api_keys.update(&d, |e| *e = Arc::new(k));
        }
    }

    pub fn api_keys_of(&self, user: Id) -> Vec<Arc<ApiKey>> {
        let mut v = self.api_keys.filter(|k| k.user_id == user);
        v.sort_by_key(|k| k.id);
        v
    }

    pub fn api_key(&self, id: Id) -> Option<Arc<ApiKey>> {
        self.api_keys.find(|k| k.id == id)
    }

    pub fn remove_api_key(&self, id: Id) {
        self.api_keys.retain(|_, k| k.id != id);
        self.api_key_last_used.remove(&id);
    }

    pub fn revoke(&self, jti: String, exp: u64) {
        self.revoked.put(jti, exp);
    }

    pub fn is_revoked(&self, jti: &str) -> bool {
        self.revoked.contains(jti)
    }

    pub fn prune_revoked(&self, now: u64) {
        self.revoked.retain(|_, exp| *exp >= now);
        self.verified.map.retain(|_, c| c.exp >= now);
    }

    pub fn team(&self, id: Id) -> Option<Team> {
        self.teams.get(&id)
    }

    pub fn teams(&self) -> Vec<Team> {
        self.teams.all()
    }

    pub fn put_team(&self, t: Team) {
        self.teams.put(t.id, t);
    }

    pub fn remove_team(&self, id: Id) {
        self.teams.remove(&id);
        let _w = self.membership_writes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut users = Vec::new();
        self.memberships.retain(|_, m| {
            if m.team_id == id {
                users.push(m.user_id);
            }
            m.team_id != id
        });
        for u in users {
            self.unindex(u, |&(_, team, _)| team == id);
        }
    }

    pub fn memberships(&self) -> Vec<TeamMembership> {
        self.memberships.all()
    }

    pub fn membership(&self, id: Id) -> Option<TeamMembership> {
        self.memberships.get(&id)
    }

    pub fn put_membership(&self, m: TeamMembership) {
        let _w = self.membership_writes.lock().unwrap_or_else(PoisonError::into_inner);
        let (id, user, team, role) = (m.id, m.user_id, m.team_id, m.role);
        if let Some(old) = self.memberships.put(id, m) {
            self.unindex(old.user_id, |&(mid, _, _)| mid == id);
        }
        self.by_user.entry(user).or_default().push((id, team, role));
    }

    pub fn remove_membership(&self, id: Id) {
        let _w = self.membership_writes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = self.memberships.remove(&id) {
            self.unindex(old.user_id, |&(mid, _, _)| mid == id);
        }
    }

    /// Drops `user`'s index entries matching `gone`; the caller holds
    /// `membership_writes`.
    fn unindex(&self, user: Id, gone: impl Fn(&(Id, Id, u8)) -> bool) {
        if let dashmap::Entry::Occupied(mut e) = self.by_user.entry(user) {
            e.get_mut().retain(|x| !gone(x));
            if e.get().is_empty() {
                e.remove();
            }
        }
    }

    /// Team ids of a user: used by access checks of standard users. One map
    /// lookup, whatever the number of memberships in the instance.
    pub fn teams_of(&self, user: Id) -> Vec<Id> {
        self.by_user.get(&user).map(|v| v.iter().map(|&(_, team, _)| team).collect()).unwrap_or_default()
    }

    pub fn is_leader_of(&self, user: Id, team: Id) -> bool {
        self.by_user
            .get(&user)
            .is_some_and(|v| v.iter().any(|&(_, t, role)| t == team && role == crate::store::model::TEAM_LEADER))
    }

    pub fn is_any_leader(&self, user: Id) -> bool {
        self.by_user.get(&user).is_some_and(|v| v.iter().any(|&(_, _, role)| role == crate::store::model::TEAM_LEADER))
    }

    /// Verifies a session token's signature, algorithm and expiry with
    /// `keys`, remembering tokens that passed so that a client sending the
    /// same token with every request pays for the HMAC and the JSON parsing
    /// once. Only the signature check is skipped on a hit: expiry is checked
    /// again here, and revocation and the user's token generation by the
    /// caller, on every request.
    pub fn verify_token(&self, keys: &JwtKeys, token: &str) -> Result<Arc<Claims>, super::jwt::JwtError> {
        self.verified.verify(keys, token)
    }
}

/// Most tokens remembered by [`VerifiedTokens`] (about 0.5 KB each).
const VERIFIED_TOKENS_MAX: usize = 4096;

/// Tokens that passed verification, keyed by the whole token: a hit needs
/// the exact bytes of a token this daemon's key signed, so a forged or
/// altered token can never hit. Bounded: when full, expired tokens are
/// dropped, and if that frees nothing the whole cache is.
#[derive(Default)]
struct VerifiedTokens {
    map: DashMap<Box<str>, Arc<Claims>>,
    /// Address of the `JwtKeys` the entries were verified with: a daemon
    /// has one for its lifetime, but a caller passing other keys must not
    /// be answered from this cache.
    keys: AtomicUsize,
}

impl VerifiedTokens {
    fn verify(&self, keys: &JwtKeys, token: &str) -> Result<Arc<Claims>, super::jwt::JwtError> {
        let keys_addr = keys as *const JwtKeys as usize;
        let same_keys = self.keys.load(Ordering::Acquire) == keys_addr;
        if same_keys {
            if let Some(c) = self.map.get(token).map(|c| c.clone()) {
                // Exactly jsonwebtoken's rule with no leeway: expired once exp < now.
                if c.exp < super::now_secs() {
                    self.map.remove(token);
                    return Err(super::jwt::JwtError::Expired);
                }
                return Ok(c);
            }
        }
        let claims = Arc::new(keys.verify(token)?);
        if !same_keys {
            self.map.clear();
            self.keys.store(keys_addr, Ordering::Release);
        }
        if self.map.len() >= VERIFIED_TOKENS_MAX {
            let now = super::now_secs();
            self.map.retain(|_, c| c.exp >= now);
            if self.map.len() >= VERIFIED_TOKENS_MAX {
                self.map.clear();
            }
        }
        self.map.insert(token.into(), claims.clone());
        Ok(claims)
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
        crate::auth::apikey::for_tests(id, 1).1
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

#[cfg(test)]
mod index_and_token_cache_tests {
    use super::*;
    use crate::auth::jwt::test_claims as claims;
    use crate::store::model::{TEAM_LEADER, TEAM_MEMBER};

    fn m(id: Id, user_id: Id, team_id: Id, role: u8) -> TeamMembership {
        TeamMembership { id, user_id, team_id, role }
    }

    fn sorted(mut v: Vec<Id>) -> Vec<Id> {
        v.sort_unstable();
        v
    }

    #[test]
    fn membership_index_follows_every_change() {
        let id = Identity::default();
        id.put_membership(m(1, 10, 100, TEAM_MEMBER));
        id.put_membership(m(2, 10, 200, TEAM_LEADER));
        id.put_membership(m(3, 11, 100, TEAM_MEMBER));
        assert_eq!(sorted(id.teams_of(10)), [100, 200]);
        assert!(id.is_leader_of(10, 200) && !id.is_leader_of(10, 100) && !id.is_leader_of(11, 100));
        assert!(id.is_any_leader(10) && !id.is_any_leader(11));

        // Rewriting a membership moves it, including to another user.
        id.put_membership(m(2, 11, 300, TEAM_LEADER));
        assert_eq!(id.teams_of(10), [100]);
        assert_eq!(sorted(id.teams_of(11)), [100, 300]);
        assert!(!id.is_any_leader(10) && id.is_leader_of(11, 300));

        id.remove_membership(1);
        assert!(id.teams_of(10).is_empty());
        id.remove_team(100);
        assert_eq!(id.teams_of(11), [300]);
        assert_eq!(id.memberships().len(), 1);
        id.remove_user(11);
        assert!(id.teams_of(11).is_empty() && id.memberships().is_empty());
        assert!(id.by_user.is_empty(), "no empty index entries are left behind");
    }

    #[test]
    fn verified_tokens_are_reused_only_for_the_same_token_and_keys() {
        let id = Identity::default();
        let keys = JwtKeys::from_secret(&[7u8; 32]);
        let other = JwtKeys::from_secret(&[8u8; 32]);
        let token = keys.sign(&claims(super::super::now_secs() + 600));
        assert_eq!(id.verify_token(&keys, &token).unwrap().username, "admin");
        assert_eq!(id.verified.map.len(), 1);
        assert_eq!(id.verify_token(&keys, &token).unwrap().username, "admin", "a hit answers the same");
        // The same token is not valid under other keys, cached or not.
        assert!(id.verify_token(&other, &token).is_err());
        assert!(id.verify_token(&keys, &token).is_ok());
        // A token differing in any byte is verified afresh (and fails).
        let mut tampered = token.clone();
        tampered.push('A');
        assert!(id.verify_token(&keys, &tampered).is_err());
        assert_eq!(id.verified.map.len(), 1, "failures are never remembered");
    }

    #[test]
    fn remembered_tokens_still_expire() {
        let id = Identity::default();
        let keys = JwtKeys::from_secret(&[7u8; 32]);
        let token = keys.sign(&claims(super::super::now_secs() + 600));
        id.verify_token(&keys, &token).unwrap();
        // Pretend time has passed the token's expiry.
        id.verified.map.insert(token.as_str().into(), Arc::new(claims(super::super::now_secs() - 1)));
        assert!(matches!(id.verify_token(&keys, &token), Err(super::super::jwt::JwtError::Expired)));
        assert!(id.verified.map.is_empty());
        let expired = keys.sign(&claims(super::super::now_secs() - 10));
        assert!(matches!(id.verify_token(&keys, &expired), Err(super::super::jwt::JwtError::Expired)));
        assert!(id.verified.map.is_empty());
        // Pruning drops expired entries.
        id.verify_token(&keys, &token).unwrap();
        id.prune_revoked(super::super::now_secs() + 601);
        assert!(id.verified.map.is_empty());
    }

    #[test]
    fn the_cache_stays_bounded() {
        let id = Identity::default();
        let keys = JwtKeys::from_secret(&[7u8; 32]);
        let exp = super::super::now_secs() + 600;
        for i in 0..VERIFIED_TOKENS_MAX + 10 {
            let mut c = claims(exp);
            c.jti = format!("j{i}");
            id.verify_token(&keys, &keys.sign(&c)).unwrap();
        }
        assert!(id.verified.map.len() <= VERIFIED_TOKENS_MAX);
    }
}
