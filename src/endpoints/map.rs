//! The endpoint map the request path reads: id → `Arc<EndpointEntry>`, in a
//! [`Table`].
//!
//! An entry bundles the stored record with its connection pool
//! ([`Upstream`]). A change is stored durably first, then a whole new entry
//! is swapped in, so a reader sees the old endpoint or the new one, never
//! half of one; dropping the last `Arc` of an old entry drops its pool.

use std::sync::Arc;

use crate::auth::Principal;
use crate::connector::{ConnectorSettings, DockerUrl, TlsFiles, TlsOptions, Upstream, UpstreamError};
use crate::store::model::{DockerSnapshot, Endpoint, EndpointGroup, Id, Tag};
use crate::table::Table;

pub struct EndpointEntry {
    pub record: Endpoint,
    pub upstream: Upstream,
}

#[derive(Default)]
pub struct EndpointMap {
    map: Table<Id, Arc<EndpointEntry>>,
    groups: Table<Id, EndpointGroup>,
    tags: Table<Id, Tag>,
    /// Latest snapshot per endpoint; kept apart from the entry so that a
    /// snapshot every few minutes does not rebuild entries the proxy holds.
    snapshots: Table<Id, Arc<DockerSnapshot>>,
    /// Serialises changes to endpoints, groups and tags (API writes and the
    /// health checker's status updates) so that a read-modify-store-swap
    /// never loses a concurrent one. Never taken on the proxy path.
    pub write_lock: tokio::sync::Mutex<()>,
}

impl EndpointMap {
    pub fn get(&self, id: Id) -> Option<Arc<EndpointEntry>> {
        self.map.get(&id)
    }

    pub fn insert(&self, entry: EndpointEntry) {
        self.map.put(entry.record.id, Arc::new(entry));
    }

    pub fn remove(&self, id: Id) -> Option<Arc<EndpointEntry>> {
        self.map.remove(&id)
    }

    pub fn all(&self) -> Vec<Arc<EndpointEntry>> {
        self.map.all()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn group(&self, id: Id) -> Option<EndpointGroup> {
        self.groups.get(&id)
    }

    pub fn groups(&self) -> Vec<EndpointGroup> {
        self.groups.all()
    }

    pub fn put_group(&self, g: EndpointGroup) {
        self.groups.put(g.id, g);
    }

    pub fn remove_group(&self, id: Id) {
        self.groups.remove(&id);
    }

    pub fn tag(&self, id: Id) -> Option<Tag> {
        self.tags.get(&id)
    }

    pub fn tags(&self) -> Vec<Tag> {
        self.tags.all()
    }

    pub fn put_tag(&self, t: Tag) {
        self.tags.put(t.id, t);
    }

    pub fn remove_tag(&self, id: Id) {
        self.tags.remove(&id);
    }

    pub fn snapshot(&self, id: Id) -> Option<Arc<DockerSnapshot>> {
        self.snapshots.get(&id)
    }

    pub fn put_snapshot(&self, id: Id, s: DockerSnapshot) {
        self.snapshots.put(id, Arc::new(s));
    }

    pub fn remove_snapshot(&self, id: Id) {
        self.snapshots.remove(&id);
    }

    /// Endpoints up and down, for the status gauge.
    pub fn status_counts(&self) -> (usize, usize) {
        let up = self.map.count(|e| e.record.status == crate::store::model::ENDPOINT_UP);
        (up, self.map.len() - up)
    }

    /// Portainer's rule: a standard user may use an endpoint when they, or
    /// one of their teams, hold a policy on the endpoint or on its group.
    /// A scoped API key must also cover the endpoint, admins' keys too:
    /// the scope narrows whatever the user may do.
    pub fn may_access(&self, p: &Principal, record: &Endpoint, teams: &[Id]) -> bool {
        if !p.endpoint_in_scope(record) {
            return false;
        }
        if p.is_admin() {
            return true;
        }
        // Policies are keyed by decimal ids (Portainer's JSON); format them
        // on the stack, this runs on every request of a standard user.
        let mut ubuf = [0u8; 20];
        let uid = decimal(p.id(), &mut ubuf);
        let mut tbuf = [0u8; 20];
        let mut in_team = |policies: &crate::store::model::AccessPolicies| {
            teams.iter().any(|&t| policies.contains_key(decimal(t, &mut tbuf)))
        };
        if record.user_access_policies.contains_key(uid) || in_team(&record.team_access_policies) {
            return true;
        }
        // Looked at in place: no copy of the group on the request path.
        self.groups
            .read(&record.group_id, |g| g.user_access_policies.contains_key(uid) || in_team(&g.team_access_policies))
            .unwrap_or(false)
    }
}

/// `n` in decimal, written into `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).expect("ASCII digits")
}

/// Reads an endpoint's stored TLS files back into memory.
pub fn load_tls_files(record: &Endpoint) -> std::io::Result<TlsFiles> {
    let read = |p: &str| -> std::io::Result<Option<Vec<u8>>> {
        if p.is_empty() {
            Ok(None)
        } else {
            std::fs::read(p).map(Some)
        }
    };
    Ok(TlsFiles { ca: read(&record.tls.ca_cert)?, cert: read(&record.tls.cert)?, key: read(&record.tls.key)? })
}

/// Builds the connection pool for a record (and its TLS material).
pub fn build_upstream(
    record: &Endpoint,
    files: TlsFiles,
    settings: &ConnectorSettings,
) -> Result<Upstream, UpstreamError> {
    let url = DockerUrl::parse(&record.url).map_err(|m| UpstreamError::Io(m.into()))?;
    let tls = TlsOptions { enabled: record.tls.tls, skip_verify: record.tls.skip_verify, files };
    Upstream::new(&url, &tls, settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_format_as_decimal() {
        let mut b = [0u8; 20];
        for n in [0u64, 7, 10, 12345, u64::MAX] {
            assert_eq!(decimal(n, &mut b), n.to_string());
        }
    }
}
