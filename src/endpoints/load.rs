//! Building connection pools from records, and filling the registry from the
//! store at start-up.
//!
//! Start-up is lenient where the API is strict: an endpoint whose TLS files
//! went missing (restored backup, hand-edited data directory) must not keep
//! the daemon from starting or vanish from lists; it loads, is marked down,
//! and a warning says why. The API refuses such material with a 400 instead.

use anyhow::Context;

use super::map::{build_upstream, EndpointEntry, EndpointMap};
use super::tls_files;
use crate::config::Config;
use crate::connector::{validate_tls_files, ConnectorSettings, DockerUrl, TlsOptions, Upstream};
use crate::store::model::{Endpoint, EndpointGroup, SnapshotRecord, Tag, ENDPOINT_DOWN};
use crate::store::{Store, ENDPOINTS, ENDPOINT_GROUPS, SNAPSHOTS, TAGS};

pub const UNASSIGNED_GROUP: u64 = 1;

pub fn connector_settings(config: &Config) -> ConnectorSettings {
    ConnectorSettings {
        connect_timeout: config.connect_timeout,
        pool_idle_timeout: config.pool_idle_timeout,
        pool_max_idle_per_host: config.pool_max_idle,
        pool_shards: config.shards(),
        response_header_timeout: config.response_header_timeout,
        breaker_failures: config.breaker_failures,
        breaker_cooldown: config.breaker_cooldown,
    }
}

/// The pool for a record whose TLS files are on disk, checked the way an
/// upload is. The `Err` is user-facing.
pub fn upstream_for(record: &Endpoint, config: &Config) -> Result<Upstream, String> {
    let files = if record.tls.tls { tls_files::read_files(&record.tls)? } else { Default::default() };
    if record.tls.tls {
        validate_tls_files(&files, record.tls.skip_verify, record.tls.skip_client_verify)?;
    }
    build_upstream(record, files, &connector_settings(config)).map_err(|e| e.to_string())
}

/// A pool that can never connect, for an endpoint whose configuration is
/// unusable. It dials a socket path that cannot exist inside the endpoint's
/// private TLS directory and whose name says what is wrong, so the proxy's
/// 502 points at the cause. Never a plaintext or unverified fallback: that
/// would silently downgrade a TLS endpoint.
pub fn unavailable_upstream(config: &Config, record: &Endpoint) -> Upstream {
    let path = tls_files::tls_dir(&config.data, record.id).join("TLS-FILES-MISSING-OR-INVALID");
    let url = DockerUrl::Unix(path);
    Upstream::new(&url, &TlsOptions::default(), &connector_settings(config))
        .expect("a plain unix upstream needs no TLS material and cannot fail")
}

/// Loads endpoints, groups, tags and snapshots into `registry`, creating
/// group 1 ("Unassigned") on first start.
pub async fn load(store: &Store, registry: &EndpointMap, config: &Config) -> anyhow::Result<()> {
    let mut groups: Vec<EndpointGroup> = store.load_all(ENDPOINT_GROUPS).context("loading endpoint groups")?;
    if !groups.iter().any(|g| g.id == UNASSIGNED_GROUP) {
        let g = EndpointGroup {
            id: UNASSIGNED_GROUP,
            name: "Unassigned".into(),
            description: "Unassigned environments".into(),
            tag_ids: Vec::new(),
            user_access_policies: Default::default(),
            team_access_policies: Default::default(),
        };
        let g2 = g.clone();
        store
            .write(move |tx| {
                // Consume id 1 of the sequence so user-created groups start at 2.
                tx.next_id(ENDPOINT_GROUPS)?;
                tx.put(ENDPOINT_GROUPS, UNASSIGNED_GROUP, &g2)
            })
            .await
            .context("creating the default endpoint group")?;
        groups.push(g);
    }
    for g in groups {
        registry.put_group(g);
    }
    for t in store.load_all::<Tag>(TAGS).context("loading tags")? {
        registry.put_tag(t);
    }
    let endpoints: Vec<Endpoint> = store.load_all(ENDPOINTS).context("loading endpoints")?;
    for mut record in endpoints {
        let upstream = match upstream_for(&record, config) {
            Ok(u) => u,
            Err(reason) => {
                tracing::warn!(
                    endpoint = record.id,
                    name = %record.name,
                    %reason,
                    "endpoint loaded but unusable until its TLS files or URL are fixed; marked down"
                );
                record.status = ENDPOINT_DOWN;
                unavailable_upstream(config, &record)
            }
        };
        registry.insert(EndpointEntry { record, upstream });
    }
    for s in store.load_all::<SnapshotRecord>(SNAPSHOTS).context("loading snapshots")? {
        if let (Some(d), true) = (s.docker, registry.get(s.endpoint_id).is_some()) {
            registry.put_snapshot(s.endpoint_id, d);
        }
    }
    Ok(())
}
