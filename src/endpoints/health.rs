//! The health checker: pings every endpoint every `health_interval` (and once
//! at start), sets `Status` (1 up, 2 down) and keeps the latest snapshot.
//!
//! Checks run concurrently, at most `health_concurrency` at once, each bounded
//! by `health_timeout`, so thousands of dead hosts cost time in this task only
//! and never delay the API or the proxy. Results are applied in batches: one
//! store transaction (one fsync) for many endpoints instead of one each, under
//! the registry's write lock, re-reading the stored record so a concurrent
//! `PUT` is never overwritten with a stale copy. The entry's `Upstream` is kept
//! as is: a status change must not drop the pool requests are using.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::map::{EndpointEntry, EndpointMap};
use crate::connector::{Series, Upstream, UpstreamError};
use crate::metrics::Metrics;
use crate::store::model::{DockerSnapshot, Endpoint, Id, SnapshotRecord, ENDPOINT_DOWN, ENDPOINT_UP};
use crate::store::{Store, ENDPOINTS, SNAPSHOTS};

/// Bounds one transaction, so the write lock (which API changes also
/// need) is never held for long.
const BATCH: usize = 512;
/// Longest a finished result waits before it is applied, so a round slowed
/// by dead hosts still publishes the live ones promptly.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Carried from a check task to the batch that applies it.
#[derive(Debug)]
pub struct Outcome {
    pub id: Id,
    pub duration: Duration,
    /// `Ok(None)`: up, but no snapshot could be read (e.g. `/info` failed).
    pub result: Result<Option<DockerSnapshot>, String>,
}

impl Outcome {
    fn status(&self) -> u8 {
        if self.result.is_ok() {
            ENDPOINT_UP
        } else {
            ENDPOINT_DOWN
        }
    }
}

/// Pings the host, then reads the documents a snapshot is made of. Only the
/// ping decides up or down; a failing snapshot step is logged and its counts
/// left at zero, as Portainer does. Everything fits in `timeout`, on one
/// connection that is closed afterwards unless the pool lent it (see
/// [`Series`]): a check leaves nothing open behind it.
pub async fn check(upstream: &Upstream, timeout: Duration) -> Result<Option<DockerSnapshot>, UpstreamError> {
    let deadline = Instant::now() + timeout;
    let mut conn = upstream.series();
    conn.ping(timeout).await?;
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    let snapshot = snapshot_on(&mut conn, left).await;
    conn.finish();
    Ok(snapshot)
}

/// Reads `/info`, `/version`, `/containers/json?all=1`, `/images/json`,
/// `/volumes` (and `/services`, `/nodes` on a swarm manager) within
/// `timeout`, one after the other on `conn`. `None` when `/info` itself
/// cannot be read (then nothing else is asked).
pub async fn snapshot_on(conn: &mut Series<'_>, timeout: Duration) -> Option<DockerSnapshot> {
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    let url = conn.url().to_string();
    let ok = |what: &str, r: Result<serde_json::Value, UpstreamError>| match r {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::debug!(url = %url, error = %e, "snapshot: {what} failed");
            None
        }
    };
    let info = ok("/info", conn.get_json("/info", left()).await)?;
    let version = ok("/version", conn.get_json("/version", left()).await);
    let containers = ok("/containers/json", conn.get_json("/containers/json?all=1", left()).await);
    let images = ok("/images/json", conn.get_json("/images/json", left()).await);
    let volumes = ok("/volumes", conn.get_json("/volumes", left()).await);
    let manager = info.pointer("/Swarm/ControlAvailable").and_then(|v| v.as_bool()).unwrap_or(false);
    let (services, nodes) = if manager {
        let services = ok("/services", conn.get_json("/services", left()).await);
        (services, ok("/nodes", conn.get_json("/nodes", left()).await))
    } else {
        (None, None)
    };
    Some(build_snapshot(
        &info,
        version.as_ref(),
        containers.as_ref(),
        images.as_ref(),
        volumes.as_ref(),
        services.as_ref(),
        nodes.as_ref(),
    ))
}

fn len_of(v: Option<&serde_json::Value>) -> u64 {
    v.and_then(|v| v.as_array()).map(|a| a.len() as u64).unwrap_or(0)
}

/// Portainer's counting rules, from the raw Docker documents.
pub fn build_snapshot(
    info: &serde_json::Value,
    version: Option<&serde_json::Value>,
    containers: Option<&serde_json::Value>,
    images: Option<&serde_json::Value>,
    volumes: Option<&serde_json::Value>,
    services: Option<&serde_json::Value>,
    nodes: Option<&serde_json::Value>,
) -> DockerSnapshot {
    let mut s = DockerSnapshot {
        time: crate::auth::now_secs() as i64,
        swarm: info.pointer("/Swarm/ControlAvailable").and_then(|v| v.as_bool()).unwrap_or(false),
        total_cpu: info.get("NCPU").and_then(|v| v.as_i64()).unwrap_or(0),
        total_memory: info.get("MemTotal").and_then(|v| v.as_i64()).unwrap_or(0),
        docker_version: info.get("ServerVersion").and_then(|v| v.as_str()).unwrap_or("").to_owned(),
        node_count: 1,
        ..Default::default()
    };
    if let Some(v) = version {
        if let Some(ver) = v.get("Version").and_then(|v| v.as_str()) {
            s.docker_version = ver.to_owned();
        }
        s.is_podman = v.get("Components").and_then(|c| c.as_array()).is_some_and(|c| {
            c.iter().any(|c| c.get("Name").and_then(|n| n.as_str()).is_some_and(|n| n.contains("Podman")))
        });
    }
    let mut stacks = HashSet::new();
    for c in containers.and_then(|c| c.as_array()).map(Vec::as_slice).unwrap_or(&[]) {
        s.container_count += 1;
        match c.get("State").and_then(|v| v.as_str()).unwrap_or("") {
            "running" => s.running_container_count += 1,
            "exited" | "stopped" => s.stopped_container_count += 1,
            _ => {}
        }
        let status = c.get("Status").and_then(|v| v.as_str()).unwrap_or("");
        if status.contains("(healthy)") {
            s.healthy_container_count += 1;
        } else if status.contains("(unhealthy)") {
            s.unhealthy_container_count += 1;
        }
        let labels = c.get("Labels");
        for key in ["com.docker.compose.project", "com.docker.stack.namespace"] {
            if let Some(p) = labels.and_then(|l| l.get(key)).and_then(|v| v.as_str()) {
                stacks.insert(p.to_owned());
            }
        }
    }
    s.stack_count = stacks.len() as u64;
    s.image_count = len_of(images);
    s.volume_count = len_of(volumes.and_then(|v| v.get("Volumes")));
    s.service_count = len_of(services);
    if let Some(nodes) = nodes.and_then(|n| n.as_array()) {
        s.node_count = nodes.len() as u64;
        // A manager reports cluster capacity, not its own.
        s.total_cpu = nodes
            .iter()
            .filter_map(|n| n.pointer("/Description/Resources/NanoCPUs").and_then(|v| v.as_i64()))
            .sum::<i64>()
            / 1_000_000_000;
        s.total_memory =
            nodes.iter().filter_map(|n| n.pointer("/Description/Resources/MemoryBytes").and_then(|v| v.as_i64())).sum();
    }
    s
}

async fn check_one(entry: Arc<EndpointEntry>, timeout: Duration) -> Outcome {
    let started = Instant::now();
    let result = check(&entry.upstream, timeout).await.map_err(|e| e.to_string());
    Outcome { id: entry.record.id, duration: started.elapsed(), result }
}

/// What the checker reads and writes, and nothing else: it runs beside the
/// API and the proxy and depends on neither. [`crate::state::AppState::health`]
/// builds one; tests build their own.
#[derive(Clone, Copy)]
pub struct Checker<'a> {
    pub endpoints: &'a EndpointMap,
    pub store: &'a Store,
    pub metrics: &'a Metrics,
    /// Bounds one host's check (ping and snapshot together).
    pub timeout: Duration,
    /// Most checks in flight at once.
    pub concurrency: usize,
    /// Cancelling it ends a round early.
    pub shutdown: &'a CancellationToken,
}

impl Checker<'_> {
    /// Stores and publishes results: status changes and snapshots in one
    /// transaction, then new map entries for endpoints whose status
    /// changed, then metrics. Endpoints deleted meanwhile are skipped.
    pub async fn apply(&self, outcomes: Vec<Outcome>) {
        if outcomes.is_empty() {
            return;
        }
        let _guard = self.endpoints.write_lock.lock().await;
        // Only what changes the store: a new status, or a snapshot. A round
        // over hosts that stay down writes nothing, so thousands of dead
        // endpoints cost no commit (and no fsync) per round.
        let updates: Vec<(Id, u8, Option<DockerSnapshot>)> = outcomes
            .iter()
            .map(|o| (o.id, o.status(), o.result.as_ref().ok().cloned().flatten()))
            .filter(|(id, status, snapshot)| {
                snapshot.is_some() || self.endpoints.get(*id).is_some_and(|cur| cur.record.status != *status)
            })
            .collect();
        let stored = if updates.is_empty() {
            Ok(())
        } else {
            let t = std::time::Instant::now();
            let stored = self
                .store
                .write(move |tx| {
                    for (id, status, snapshot) in updates {
                        let Some(mut rec) = tx.get::<Endpoint>(ENDPOINTS, id)? else { continue };
                        if rec.status != status {
                            rec.status = status;
                            tx.put(ENDPOINTS, id, &rec)?;
                        }
                        if let Some(docker) = snapshot {
                            tx.put(SNAPSHOTS, id, &SnapshotRecord { endpoint_id: id, docker: Some(docker) })?;
                        }
                    }
                    Ok(())
                })
                .await;
            self.metrics.store_write.observe(t.elapsed().as_secs_f64());
            stored
        };
        if let Err(e) = &stored {
            tracing::warn!(error = %e, "storing endpoint health results failed; statuses stay as they were");
        }
        let m = self.metrics;
        for o in outcomes {
            let Some(cur) = self.endpoints.get(o.id) else { continue };
            let label = o.id.to_string();
            let status = o.status();
            m.health_duration.observe(o.duration.as_secs_f64());
            m.health_last_duration.with_label_values(&[&label]).set(o.duration.as_secs_f64());
            m.endpoint_up.with_label_values(&[&label]).set(i64::from(status == ENDPOINT_UP));
            match &o.result {
                Ok(_) => {}
                Err(e) => {
                    m.health_failures.with_label_values(&[&label]).inc();
                    if cur.record.status != ENDPOINT_DOWN {
                        tracing::warn!(endpoint = o.id, name = %cur.record.name, error = %e, "endpoint is down");
                    }
                }
            }
            if stored.is_ok() && cur.record.status != status {
                if status == ENDPOINT_UP {
                    tracing::info!(endpoint = o.id, name = %cur.record.name, "endpoint is up");
                }
                let mut record = cur.record.clone();
                record.status = status;
                self.endpoints.insert(EndpointEntry { record, upstream: cur.upstream.clone() });
            }
            if let Ok(Some(s)) = o.result {
                self.endpoints.put_snapshot(o.id, s);
            }
        }
        self.refresh_status_gauge();
    }

    pub fn refresh_status_gauge(&self) {
        let (up, down) = self.endpoints.status_counts();
        self.metrics.endpoints_by_status.with_label_values(&["up"]).set(up as i64);
        self.metrics.endpoints_by_status.with_label_values(&["down"]).set(down as i64);
    }

    /// Checks `entries` with bounded concurrency and applies results as they
    /// come in. Returns early (dropping running checks) on shutdown.
    pub async fn check_endpoints(&self, entries: Vec<Arc<EndpointEntry>>) {
        let timeout = self.timeout;
        let sem = Arc::new(Semaphore::new(self.concurrency.max(1)));
        let mut set: JoinSet<Outcome> = JoinSet::new();
        let mut pending: Vec<Outcome> = Vec::new();
        let mut last_flush = Instant::now();
        let mut queue = entries.into_iter();
        let mut next = queue.next();
        loop {
            if !pending.is_empty() && (pending.len() >= BATCH || last_flush.elapsed() >= FLUSH_EVERY) {
                self.apply(std::mem::take(&mut pending)).await;
                last_flush = Instant::now();
            }
            if next.is_none() && set.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => {
                    set.abort_all();
                    return;
                }
                Some(done) = set.join_next(), if !set.is_empty() => {
                    match done {
                        Ok(o) => pending.push(o),
                        Err(e) => tracing::warn!(error = %e, "an endpoint check task failed"),
                    }
                }
                permit = sem.clone().acquire_owned(), if next.is_some() => {
                    let Ok(permit) = permit else { break };
                    if let Some(entry) = next.take() {
                        set.spawn(async move {
                            let _permit = permit;
                            check_one(entry, timeout).await
                        });
                    }
                    next = queue.next();
                }
                _ = tokio::time::sleep_until(last_flush + FLUSH_EVERY), if !pending.is_empty() => {}
            }
        }
        self.apply(pending).await;
    }

    /// One endpoint, now (`POST /api/endpoints/{id}/snapshot`). Returns whether
    /// it is up.
    pub async fn check_now(&self, entry: Arc<EndpointEntry>) -> bool {
        let o = check_one(entry, self.timeout).await;
        let up = o.result.is_ok();
        self.apply(vec![o]).await;
        up
    }

    /// One round over every endpoint, those that were up first: a round
    /// slowed by many dead hosts timing out still refreshes the live ones at
    /// once.
    pub async fn round(&self) {
        let mut entries = self.endpoints.all();
        entries.sort_by_key(|e| (e.record.status != ENDPOINT_UP, e.record.id));
        self.check_endpoints(entries).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::map::build_upstream;
    use crate::store::model::{EndpointTls, SecuritySettings};
    use berth_testkit::{FailMode, MockDocker};
    use serde_json::json;

    fn record(id: Id, url: String) -> Endpoint {
        Endpoint {
            id,
            name: format!("e{id}"),
            kind: 1,
            url,
            public_url: String::new(),
            group_id: 1,
            tls: EndpointTls::default(),
            tag_ids: Vec::new(),
            status: ENDPOINT_UP,
            user_access_policies: Default::default(),
            team_access_policies: Default::default(),
            security_settings: SecuritySettings::default(),
        }
    }

    /// The checker's world and nothing more (no API, no proxy, no
    /// application state): a store holding `records`, the endpoint map
    /// built from them, fresh metrics.
    async fn world(dir: &std::path::Path, records: Vec<Endpoint>) -> (Store, Arc<EndpointMap>, Arc<Metrics>) {
        let store = Store::open(dir).unwrap();
        let endpoints = Arc::new(EndpointMap::default());
        let settings = crate::endpoints::load::connector_settings(&crate::config::Config::default());
        let stored = records.clone();
        store.write(move |tx| stored.iter().try_for_each(|r| tx.put(ENDPOINTS, r.id, r))).await.unwrap();
        for r in records {
            let upstream = build_upstream(&r, Default::default(), &settings).unwrap();
            endpoints.insert(EndpointEntry { record: r, upstream });
        }
        (store, endpoints, Arc::new(Metrics::new()))
    }

    /// Many hung hosts: checks stay within the concurrency bound, each is cut
    /// at the timeout, results are stored, and the write lock API changes
    /// need is never held for long.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn hung_hosts_are_bounded_and_do_not_hold_up_the_rest() {
        const DEAD: u64 = 120;
        const LIVE: u64 = 120;
        const CONCURRENCY: usize = 20;
        let dir = tempfile::tempdir().unwrap();
        let dead = MockDocker::start_unix(dir.path().join("dead.sock")).await.unwrap();
        dead.set_fail(FailMode::Hang).await;
        let live = MockDocker::start_unix(dir.path().join("live.sock")).await.unwrap();
        // Dead and live interleaved, all recorded as up.
        let records: Vec<Endpoint> = (1..=DEAD + LIVE)
            .map(|id| record(id, if id % 2 == 0 { dead.unix_url() } else { live.unix_url() }.unwrap()))
            .collect();
        let (store, endpoints, metrics) = world(dir.path(), records).await;

        let started = Instant::now();
        let round = tokio::spawn({
            let (endpoints, store, metrics) = (endpoints.clone(), store.clone(), metrics.clone());
            async move {
                let shutdown = CancellationToken::new();
                let checker = Checker {
                    endpoints: &endpoints,
                    store: &store,
                    metrics: &metrics,
                    timeout: Duration::from_millis(500),
                    concurrency: CONCURRENCY,
                    shutdown: &shutdown,
                };
                checker.check_endpoints(endpoints.all()).await
            }
        });
        let (mut max_open, mut max_lock_wait) = (0, Duration::ZERO);
        while !round.is_finished() {
            assert!(started.elapsed() < Duration::from_secs(30), "the round does not end");
            max_open = max_open.max(dead.connections_open());
            let t = Instant::now();
            drop(endpoints.write_lock.lock().await);
            max_lock_wait = max_lock_wait.max(t.elapsed());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        round.await.unwrap();
        let took = started.elapsed();

        let (up, down) = endpoints.status_counts();
        assert_eq!((up, down), (LIVE as usize, DEAD as usize));
        // Each dead host costs one timeout of one permit.
        let floor = Duration::from_millis(500) * (DEAD as u32) / (CONCURRENCY as u32);
        assert!(took >= floor, "round took {took:?}, less than {floor:?}: timeouts not applied?");
        assert!(took < floor * 3, "round took {took:?}");
        assert!(max_open as usize <= CONCURRENCY + 5, "{max_open} hung checks at once");
        assert!(max_open as usize >= CONCURRENCY / 2, "concurrency unused: {max_open}");
        assert!(max_lock_wait < Duration::from_millis(300), "write lock held {max_lock_wait:?}");
        // The statuses were stored, not only published.
        let downs = crate::store::Store::load_all::<Endpoint>(&store, ENDPOINTS)
            .unwrap()
            .iter()
            .filter(|r| r.status == ENDPOINT_DOWN)
            .count();
        assert_eq!(downs, DEAD as usize);
        assert!(endpoints.snapshot(1).is_some() && endpoints.snapshot(2).is_none());
    }

    /// A check (ping and snapshot) of an endpoint nobody uses leaves no
    /// connection behind: no idle pooled connection in Berth (each a hyper
    /// task with its buffers and a descriptor), none open at the host.
    /// Before, a check left six in the pool for its idle timeout: about
    /// 170 KB and six descriptors per registered endpoint.
    #[tokio::test]
    async fn a_check_leaves_no_connection_open() {
        let dir = tempfile::tempdir().unwrap();
        let mock = MockDocker::start_unix(dir.path().join("docker.sock")).await.unwrap();
        let settings = crate::endpoints::load::connector_settings(&crate::config::Config::default());
        let upstream = build_upstream(&record(1, mock.unix_url().unwrap()), Default::default(), &settings).unwrap();
        let snapshot = check(&upstream, Duration::from_secs(10)).await.unwrap();
        assert!(snapshot.is_some_and(|s| s.container_count > 0), "the snapshot was read");
        assert_eq!(upstream.idle_connections(), 0, "nothing pooled by the check");
        tokio::time::timeout(Duration::from_secs(10), async {
            while upstream.open_connections() > 0 || mock.connections_open() > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the check's connection is closed");
    }

    /// A round over hosts that stay down commits nothing; a host whose
    /// status changes does (and only then is the new status kept).
    #[tokio::test]
    async fn a_round_that_changes_nothing_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // No socket at these paths: every check is refused at once.
        let records: Vec<Endpoint> = (1..=20)
            .map(|id| Endpoint {
                status: ENDPOINT_DOWN,
                ..record(id, format!("unix://{}", dir.path().join(format!("none-{id}.sock")).display()))
            })
            .collect();
        let (store, endpoints, metrics) = world(dir.path(), records).await;
        let shutdown = CancellationToken::new();
        let checker = Checker {
            endpoints: &endpoints,
            store: &store,
            metrics: &metrics,
            timeout: Duration::from_secs(2),
            concurrency: 8,
            shutdown: &shutdown,
        };
        checker.round().await;
        assert_eq!(metrics.store_write.get_sample_count(), 0, "all down before and after: no commit");
        assert_eq!(metrics.health_failures.with_label_values(&["1"]).get(), 1, "the hosts were checked");
        // A checked endpoint keeps three series (up, last check, failures),
        // not a histogram of its own: the histogram covers all endpoints.
        let text = String::from_utf8(metrics.render()).unwrap();
        let own: Vec<&str> = text.lines().filter(|l| l.contains("endpoint=\"1\"")).collect();
        assert_eq!(own.len(), 3, "{own:#?}");
        assert!(text.contains("berth_endpoint_check_duration_seconds_count 20"), "{text}");

        // One recorded as up (as registration may leave it): its change is stored.
        let mut up = endpoints.get(7).unwrap().record.clone();
        up.status = ENDPOINT_UP;
        let stored = up.clone();
        store.write(move |tx| tx.put(ENDPOINTS, 7, &stored)).await.unwrap();
        endpoints.insert(EndpointEntry { record: up, upstream: endpoints.get(7).unwrap().upstream.clone() });
        checker.round().await;
        assert_eq!(metrics.store_write.get_sample_count(), 1, "one commit for the one change");
        let rec: Endpoint = store.write(|tx| tx.get(ENDPOINTS, 7)).await.unwrap().unwrap();
        assert_eq!(rec.status, ENDPOINT_DOWN);
        assert_eq!(endpoints.get(7).unwrap().record.status, ENDPOINT_DOWN);
    }

    #[test]
    fn snapshot_counts_follow_portainer() {
        let info =
            json!({"NCPU": 8, "MemTotal": 1024, "ServerVersion": "20.10.1", "Swarm": {"ControlAvailable": false}});
        let version = json!({"Version": "20.10.24", "Components": [{"Name": "Engine"}]});
        let containers = json!([
            {"State": "running", "Status": "Up 2 hours (healthy)", "Labels": {"com.docker.compose.project": "web"}},
            {"State": "running", "Status": "Up 1 hour (unhealthy)", "Labels": {"com.docker.compose.project": "web"}},
            {"State": "exited", "Status": "Exited (0)", "Labels": {"com.docker.stack.namespace": "db"}},
            {"State": "created", "Status": "Created", "Labels": null},
        ]);
        let images = json!([{}, {}, {}]);
        let volumes = json!({"Volumes": [{}, {}], "Warnings": null});
        let s = build_snapshot(&info, Some(&version), Some(&containers), Some(&images), Some(&volumes), None, None);
        assert_eq!(s.docker_version, "20.10.24");
        assert_eq!((s.total_cpu, s.total_memory, s.swarm), (8, 1024, false));
        assert_eq!((s.container_count, s.running_container_count, s.stopped_container_count), (4, 2, 1));
        assert_eq!((s.healthy_container_count, s.unhealthy_container_count), (1, 1));
        assert_eq!((s.stack_count, s.image_count, s.volume_count, s.node_count), (2, 3, 2, 1));
        assert!(!s.is_podman);

        let info = json!({"NCPU": 2, "MemTotal": 5, "Swarm": {"ControlAvailable": true}});
        let nodes = json!([
            {"Description": {"Resources": {"NanoCPUs": 4_000_000_000i64, "MemoryBytes": 100}}},
            {"Description": {"Resources": {"NanoCPUs": 2_000_000_000i64, "MemoryBytes": 50}}},
        ]);
        let services = json!([{}, {}, {}]);
        let s = build_snapshot(&info, None, None, None, None, Some(&services), Some(&nodes));
        assert!(s.swarm);
        assert_eq!((s.node_count, s.total_cpu, s.total_memory, s.service_count), (2, 6, 150, 3));
        assert_eq!(s.container_count, 0);
    }
}
