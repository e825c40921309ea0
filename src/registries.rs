//! Container registries: the in-memory map the proxy reads and the access
//! rule. What the proxy does with them (`X-Registry-Auth`) is in
//! `proxy::registry_auth`.

use std::sync::Arc;

use crate::auth::Principal;
use crate::store::model::{Id, Registry};
use crate::table::Table;

/// The container registries in memory, by id (`Table::all` lists them in
/// id order). Not to be confused with [`crate::endpoints::EndpointMap`].
pub type Registries = Table<Id, Arc<Registry>>;

/// Admins use every registry; others need a grant on this endpoint, for
/// themselves or one of their teams.
pub fn may_use(r: &Registry, p: &Principal, endpoint: Id, teams: &[Id]) -> bool {
    if p.is_admin() {
        return true;
    }
    let Some(a) = r.registry_accesses.get(&endpoint.to_string()) else { return false };
    a.user_access_policies.contains_key(&p.id().to_string())
        || teams.iter().any(|t| a.team_access_policies.contains_key(&t.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::model::{AccessPolicies, RegistryAccess};

    fn principal(role: u8, id: u64) -> Principal {
        Principal::for_tests(id, role)
    }

    fn registry() -> Registry {
        Registry {
            id: 1,
            kind: 3,
            name: "r".into(),
            url: "reg.example:5000".into(),
            base_url: String::new(),
            authentication: true,
            username: "bob".into(),
            sealed_password: "x".into(),
            gitlab: serde_json::Value::Null,
            quay: serde_json::Value::Null,
            ecr: serde_json::Value::Null,
            registry_accesses: Default::default(),
        }
    }

    #[test]
    fn admins_use_every_registry_others_need_a_grant_on_the_endpoint() {
        let mut r = registry();
        assert!(may_use(&r, &principal(1, 1), 1, &[]));
        assert!(!may_use(&r, &principal(2, 5), 1, &[]));
        let mut users = AccessPolicies::default();
        users.insert("5".into(), Default::default());
        let mut teams = AccessPolicies::default();
        teams.insert("7".into(), Default::default());
        r.registry_accesses.insert(
            "1".into(),
            RegistryAccess { user_access_policies: users, team_access_policies: teams, namespaces: Vec::new() },
        );
        assert!(may_use(&r, &principal(2, 5), 1, &[]));
        assert!(!may_use(&r, &principal(2, 5), 2, &[]), "the grant is per endpoint");
        assert!(may_use(&r, &principal(2, 6), 1, &[7]), "through a team");
        assert!(!may_use(&r, &principal(2, 6), 1, &[8]));
    }
}
