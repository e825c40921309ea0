//! bcrypt hashing (Portainer's scheme, so imported hashes verify), on a
//! small pool of its own with admission control. A cost-10 hash takes
//! about 60 ms of CPU, so five logins a second want 30% of a core: when the
//! cores are saturated by proxy traffic, that time is taken from the
//! proxied requests, and the only choices are how much, and what happens to
//! the logins beyond it (docs/PERFORMANCE.md, login storm).
//!
//! - The pool has half the cores' threads (at least one), under
//!   `SCHED_BATCH` at nice [`HASH_NICE`] with a short time slice
//!   ([`HASH_SLICE`]). When the cores have room, hashing runs at full
//!   speed. When they are busy, the scheduler gives each hashing thread a
//!   small bounded share (its weight at nice 10 is 110 against a normal
//!   thread's 1024: about 10% of a core the proxy keeps busy, so a cost-10
//!   hash ends in about 0.6 s), and a batch thread never preempts a
//!   proxy thread when it wakes up. A hashing thread never sleeps, though,
//!   and once picked it would keep the core until the scheduler next looks
//!   (a wakeup, or a tick: 4 ms at HZ=250), whatever slice it asked for:
//!   that wait lengthened the proxied requests' tail (p99 × 1.67 during a
//!   storm). So the hash is computed in slices of about 0.2 ms
//!   (`paced_bcrypt`), and between two the thread gives the core back
//!   (`sched_yield`): a proxied request waits at most a slice behind it
//!   (p99 × 1.06 at nice 12, throughput × 0.98, in the same login-storm
//!   run; see [`HASH_NICE`] for nice 10). Under
//!   `SCHED_IDLE` (an earlier shape) the pool got no share at all on a
//!   saturated core, and logins waited five seconds and more, for as long
//!   as the storm lasted.
//! - Admission: a login is refused at once ([`Busy`], answered 503 with
//!   `Retry-After`) when the jobs ahead of it, at the pool's recent pace,
//!   would make it wait past [`WAIT_BUDGET`], and any job when
//!   [`MAX_ADMITTED`] are already in (setting a password waits its turn up
//!   to that cap). A person at a login prompt is told within a second either
//!   way, and the queue cannot grow without bound whatever the login rate
//!   limiter lets through (it counts per address; a storm from many
//!   addresses passes it).
//!
//! Tokio's blocking pool is not used because its threads also carry store
//! commits and file I/O, which must not inherit the lowered priority.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use http::{header, HeaderValue, StatusCode};

use super::paced_bcrypt;
use crate::error::ApiError;
use crate::sys::FairPolicy;

/// Niceness of the hashing threads: weight 110 against a normal thread's
/// 1024, so on a core the proxy keeps busy a hashing thread gets about 10%
/// and one cost-10 hash (60 ms of CPU) takes about 0.6 s. With paced
/// hashing, login-storm.sh (5 rounds, 5 logins/s on a saturated core) gave
/// at nice 10: proxied p99 × 1.07, throughput × 0.96, 43 of 200 logins
/// answered 200 at 0.84 s p50 and 187 of 200 answered within 1 s; at nice
/// 12 (weight 70): p99 × 1.04, throughput × 0.99, 30 answered 200 at
/// 1.25 s p50, 170 within 1 s. Nice 15 (weight 36) makes a hash alone
/// outlast the wait budget.
pub const HASH_NICE: i32 = 10;

/// Time slice of the hashing threads: once picked, a hashing thread gives
/// the core back after this long at the scheduler's next look, not the
/// default 1.4 ms or more (same weight, default slice: p99 ×1.51 against
/// ×1.21 with this one in the same login-storm run).
pub const HASH_SLICE: Duration = Duration::from_micros(200);

/// Longest a login may expect to wait for the pool (queue and its own
/// hash) before it is refused instead.
pub const WAIT_BUDGET: Duration = Duration::from_secs(1);

/// Most jobs admitted at once (waiting or running), whatever the estimate:
/// a guard for when the estimate is low (cheap hashes, or none measured
/// yet), high enough for a burst of cheap ones (50 concurrent admin inits
/// at cost 4 in the tests).
pub const MAX_ADMITTED: usize = 64;

type Job = Box<dyn FnOnce() + Send>;

/// The pool is full: retry after about this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy {
    pub retry_after: Duration,
}

impl From<Busy> for ApiError {
    fn from(b: Busy) -> Self {
        let secs = b.retry_after.as_secs_f64().ceil().max(1.0) as u64;
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many password checks in progress",
            format!("The server is busy checking passwords; retry in {secs} s"),
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from(secs))
    }
}

/// How the hashing threads are scheduled and how long a job may wait.
#[derive(Debug, Clone, Copy)]
struct Shape {
    threads: usize,
    policy: FairPolicy,
    nice: i32,
    slice: Duration,
    wait_budget: Duration,
    max_admitted: usize,
}

impl Shape {
    fn for_this_machine() -> Shape {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Shape {
            threads: (cores / 2).max(1),
            policy: FairPolicy::Batch,
            nice: HASH_NICE,
            slice: HASH_SLICE,
            wait_budget: WAIT_BUDGET,
            max_admitted: MAX_ADMITTED,
        }
    }
}

/// Whether a job with `ahead` jobs admitted before it (waiting or running)
/// may join, given the recent wall time of one job: `Err` holds how long
/// until the pool has drained what it holds. A job that finds a thread free
/// always joins, so a hash slower than the budget still runs.
/// How a job is admitted. Logins must be answered soon or not at all: a
/// person is waiting, and a storm of them must not queue without end.
/// Setting a password (the first admin, a user an admin creates, a
/// password change) is done by someone already trusted or once per
/// instance: it waits its turn, bounded only by [`MAX_ADMITTED`], rather
/// than failing a script that creates users in parallel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    /// Refused when the expected wait passes the budget.
    Budget,
    /// Queued whatever the wait, up to the cap.
    Queue,
}

fn admission(ahead: usize, shape: &Shape, service: Duration, wait: Wait) -> Result<(), Duration> {
    let threads = shape.threads.max(1);
    if ahead < threads {
        return Ok(());
    }
    // Jobs start `threads` at a time: this one starts after the rounds
    // ahead of it, then takes its own.
    let rounds = u32::try_from(ahead / threads).unwrap_or(u32::MAX);
    let expected = service.saturating_mul(rounds.saturating_add(1));
    if ahead < shape.max_admitted && (wait == Wait::Queue || expected <= shape.wait_budget) {
        return Ok(());
    }
    let drain = service.saturating_mul(u32::try_from(ahead.div_ceil(threads)).unwrap_or(u32::MAX));
    Err(drain)
}

/// The larger of the average job time and the age of the oldest running
/// job (`started`: start times plus one, 0 for an idle thread), all in µs.
fn expected_service(average: u64, started: impl Iterator<Item = u64>, now: u64) -> Duration {
    let oldest = started.filter(|&s| s != 0).map(|s| now.saturating_sub(s - 1)).max().unwrap_or(0);
    Duration::from_micros(average.max(oldest))
}

struct Pool {
    tx: mpsc::Sender<Job>,
    shape: Shape,
    /// Jobs admitted and not finished.
    admitted: AtomicUsize,
    /// Recent wall time of one job, in µs (moving average, 1/4 weight to
    /// the newest). Under contention it grows with the share the scheduler
    /// gives the pool, so admission follows the machine's load; 0 until the
    /// first job ends.
    service_us: AtomicU64,
    /// When each thread's current job started, in µs since `epoch` plus
    /// one (0: idle). A job running longer than the average shows at once
    /// that the pool has slowed down (a storm has just begun), before the
    /// average catches up.
    running: Vec<AtomicU64>,
    epoch: Instant,
}

/// One admitted job; dropping it (job done, or dropped unrun) frees the
/// place.
struct Ticket(Arc<Pool>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Pool {
    /// Starts the threads; each lowers its own priority first.
    fn start(shape: Shape) -> Arc<Pool> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = shape.threads.max(1);
        let pool = Arc::new(Pool {
            tx,
            shape,
            admitted: AtomicUsize::new(0),
            service_us: AtomicU64::new(0),
            running: (0..threads).map(|_| AtomicU64::new(0)).collect(),
            epoch: Instant::now(),
        });
        for i in 0..threads {
            let rx = rx.clone();
            // The threads hold the pool weakly: dropping the last handle
            // closes the queue, which ends them.
            let me = Arc::downgrade(&pool);
            let spawned = std::thread::Builder::new().name(format!("berth-bcrypt-{i}")).spawn(move || {
                lower_priority(&shape);
                loop {
                    // The lock is held only while waiting for the next job.
                    let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    let Ok(job) = job else { return };
                    let pool = me.upgrade();
                    if let Some(p) = &pool {
                        p.running[i].store(p.since_epoch_us() + 1, Ordering::Relaxed);
                    }
                    job();
                    if let Some(p) = &pool {
                        p.running[i].store(0, Ordering::Relaxed);
                    }
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password hashing thread");
            }
        }
        pool
    }

    fn since_epoch_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX - 1)
    }

    /// The time one job is expected to take now: the recent average, or
    /// longer if a running job has already taken longer.
    fn service(&self) -> Duration {
        let started = self.running.iter().map(|r| r.load(Ordering::Relaxed));
        expected_service(self.service_us.load(Ordering::Relaxed), started, self.since_epoch_us())
    }

    fn record(&self, took: Duration) {
        let new = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let _ = self.service_us.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
            Some(if old == 0 { new } else { old - old / 4 + new / 4 })
        });
    }

    fn admit(self: &Arc<Self>, wait: Wait) -> Result<Ticket, Busy> {
        let ahead = self.admitted.fetch_add(1, Ordering::AcqRel);
        let ticket = Ticket(self.clone());
        match admission(ahead, &self.shape, self.service(), wait) {
            Ok(()) => Ok(ticket),
            Err(drain) => Err(Busy { retry_after: drain }),
        }
    }

    /// Runs `f` on the pool and waits for it without blocking the async
    /// worker. A job whose caller has gone (the client hung up) by the time
    /// a thread takes it is skipped. `Ok(None)` if no thread is running.
    async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        wait: Wait,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<Option<T>, Busy> {
        let ticket = self.admit(wait)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            if tx.is_closed() {
                return;
            }
            let start = Instant::now();
            let out = f();
            ticket.0.record(start.elapsed());
            drop(ticket);
            let _ = tx.send(out);
        });
        if self.tx.send(job).is_err() {
            return Ok(None);
        }
        Ok(rx.await.ok())
    }
}

fn pool() -> &'static Arc<Pool> {
    static POOL: OnceLock<Arc<Pool>> = OnceLock::new();
    POOL.get_or_init(|| Pool::start(Shape::for_this_machine()))
}

/// Lowers the calling thread to the shape's policy, nice value and slice.
/// Where `sched_setattr` is refused (a seccomp filter such as an older copy
/// of deploy/berth.service, an old kernel), the policy and the nice value
/// are set with the two older calls and only the short slice is lost.
/// None of them needs a privilege; whatever still fails leaves hashing
/// competing at a higher priority (still bounded by the pool's size and its
/// admission), which is logged, not fatal.
fn lower_priority(shape: &Shape) {
    if let Err(attr_err) = crate::sys::set_current_thread_fair(shape.policy, shape.nice, shape.slice) {
        let policy = crate::sys::set_current_thread_policy(shape.policy);
        let nice = crate::sys::set_current_thread_nice(shape.nice);
        if policy.is_err() || nice.is_err() {
            tracing::warn!(
                sched_setattr = %attr_err,
                sched_setscheduler = ?policy.err(),
                setpriority = ?nice.err(),
                "cannot lower the priority of password hashing"
            );
        }
    }
}

/// Between two slices of a hash (see `paced_bcrypt`): the core goes to
/// whatever else wants it, and comes straight back when nothing does.
fn give_way() {
    std::thread::yield_now();
}

fn not_running() -> ApiError {
    ApiError::internal("Unable to check the password", "the hashing pool is not running")
}

/// Hashes off the async workers. Passwords over 72 bytes are refused rather
/// than silently truncated.
pub async fn hash(password: String, cost: u32) -> Result<String, ApiError> {
    pool()
        .run(Wait::Queue, move || paced_bcrypt::hash(password.as_bytes(), cost, &mut give_way))
        .await?
        .ok_or_else(not_running)?
        .map_err(|e| match e {
            bcrypt::BcryptError::Truncation(_) => {
                ApiError::invalid_payload("Password must not be longer than 72 bytes")
            }
            other => ApiError::internal("Unable to hash password", other),
        })
}

/// Verifies off the async workers. Any malformed hash is a plain mismatch;
/// `Err` when the pool is full (503 with `Retry-After`) or not running. The
/// admission decision does not depend on the hash, so an unknown user
/// (checked against [`dummy_hash`]) is refused exactly like a known one.
pub async fn verify(password: String, hash: String) -> Result<bool, ApiError> {
    pool()
        .run(Wait::Budget, move || paced_bcrypt::verify(password.as_bytes(), &hash, &mut give_way))
        .await?
        .ok_or_else(not_running)
}

/// A hash to verify against when the user does not exist, so that an
/// unknown username costs the same time as a wrong password. Made on the
/// pool at startup, which also gives admission its first estimate of a
/// hash's time.
pub async fn dummy_hash(cost: u32) -> Result<String, ApiError> {
    let secret: [u8; 16] = rand::random();
    pool()
        .run(Wait::Queue, move || paced_bcrypt::hash(&secret, cost, &mut give_way))
        .await?
        .ok_or_else(not_running)?
        .map_err(|e| ApiError::internal("Unable to hash password", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fields of a thread's stat line, counted from the state (the field
    /// after the command name): the nice value is field 19, the policy 41.
    fn stat_field(tid: i32, field: usize) -> i64 {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        after_comm.split(' ').nth(field - 3).unwrap().parse().unwrap()
    }

    /// The slice the scheduler uses for a thread, in ns, where the kernel
    /// shows it (`se.slice` in /proc/.../sched since EEVDF).
    fn slice_of(tid: i32) -> Option<u64> {
        let sched = std::fs::read_to_string(format!("/proc/self/task/{tid}/sched")).ok()?;
        let line = sched.lines().find(|l| l.starts_with("se.slice"))?;
        line.rsplit(' ').next()?.parse().ok()
    }

    /// Whether the kernel honours a thread's own slice (6.12 on).
    fn kernel_has_custom_slices() -> bool {
        let release = rustix::system::uname().release().to_string_lossy().into_owned();
        let mut parts = release.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse::<u32>().ok());
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (6, 12)
    }

    fn shape(threads: usize) -> Shape {
        Shape { threads, ..Shape::for_this_machine() }
    }

    #[tokio::test]
    async fn hashing_runs_on_a_small_batch_pool_at_lowered_priority_and_verifies() {
        let h = hash("correct horse".into(), 4).await.unwrap();
        assert!(verify("correct horse".into(), h.clone()).await.unwrap());
        assert!(!verify("wrong horse".into(), h).await.unwrap());
        assert!(!verify("x".into(), "not a bcrypt hash".into()).await.unwrap());
        let (tid, name) = pool()
            .run(Wait::Budget, || (crate::sys::current_thread_id(), std::thread::current().name().map(str::to_owned)))
            .await
            .unwrap()
            .unwrap();
        assert!(name.unwrap().starts_with("berth-bcrypt-"));
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(pool().shape.threads, (cores / 2).max(1), "half the cores, at least one");
        assert_eq!(stat_field(tid, 41), libc::SCHED_BATCH as i64, "the hashing thread runs under SCHED_BATCH");
        assert_eq!(stat_field(tid, 19), i64::from(HASH_NICE), "at nice {HASH_NICE}");
        if kernel_has_custom_slices() {
            assert_eq!(slice_of(tid), Some(HASH_SLICE.as_nanos() as u64), "with a short slice");
        }
        let me = crate::sys::current_thread_id();
        assert_eq!(stat_field(me, 41), libc::SCHED_OTHER as i64, "the rest of the process does not");
        assert_eq!(stat_field(me, 19), 0);
    }

    #[test]
    fn without_sched_setattr_the_policy_and_nice_value_still_apply() {
        // What lower_priority falls back to when a filter refuses
        // sched_setattr, on a thread of its own.
        let tid = std::thread::spawn(|| {
            crate::sys::set_current_thread_policy(FairPolicy::Batch).unwrap();
            crate::sys::set_current_thread_nice(HASH_NICE).unwrap();
            let tid = crate::sys::current_thread_id();
            (stat_field(tid, 41), stat_field(tid, 19))
        })
        .join()
        .unwrap();
        assert_eq!(tid, (libc::SCHED_BATCH as i64, i64::from(HASH_NICE)));
    }

    #[test]
    fn admission_keeps_the_expected_wait_within_the_budget() {
        let one = shape(1);
        let ms = Duration::from_millis;
        // A free thread always takes the job, even a hash slower than the budget.
        assert_eq!(admission(0, &one, ms(5000), Wait::Budget), Ok(()));
        // 60 ms a hash (an idle core at cost 10): 16 may be in (16 × 60 ms < 1 s).
        assert_eq!(admission(15, &one, ms(60), Wait::Budget), Ok(()));
        assert_eq!(admission(16, &one, ms(60), Wait::Budget), Err(ms(960)));
        // 600 ms a hash (a tenth of a busy core): only the running one.
        assert_eq!(admission(1, &one, ms(600), Wait::Budget), Err(ms(600)));
        // Two threads take two at a time.
        assert_eq!(admission(1, &shape(2), ms(400), Wait::Budget), Ok(()));
        assert_eq!(admission(2, &shape(2), ms(400), Wait::Budget), Ok(()));
        assert_eq!(admission(4, &shape(2), ms(400), Wait::Budget), Err(ms(800)));
        // No estimate yet (no job has ended): only the hard cap applies.
        assert_eq!(admission(MAX_ADMITTED - 1, &one, Duration::ZERO, Wait::Budget), Ok(()));
        assert!(admission(MAX_ADMITTED, &one, Duration::ZERO, Wait::Budget).is_err());
        // Setting a password waits its turn past the budget, up to the cap.
        assert_eq!(admission(16, &one, ms(600), Wait::Queue), Ok(()));
        assert!(admission(MAX_ADMITTED, &one, ms(600), Wait::Queue).is_err());
    }

    #[test]
    fn a_job_running_longer_than_the_average_raises_the_estimate() {
        let ms = |n: u64| n * 1000;
        // Idle threads (0) count for nothing.
        assert_eq!(expected_service(ms(60), [0, 0].into_iter(), ms(10_000)), Duration::from_millis(60));
        // A job started 700 ms ago (stored as start + 1) outweighs a 60 ms average.
        assert_eq!(expected_service(ms(60), [0, ms(9_300) + 1].into_iter(), ms(10_000)), Duration::from_millis(700));
        // A recent start does not lower the average.
        assert_eq!(expected_service(ms(600), [ms(9_990) + 1].into_iter(), ms(10_000)), Duration::from_millis(600));
    }

    /// Starts a job that keeps one of the pool's threads until the sender
    /// is used, and returns once it runs.
    async fn hold_the_thread(
        pool: &Arc<Pool>,
    ) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<Result<Option<()>, Busy>>) {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let pool = pool.clone();
        let job = tokio::spawn(async move {
            pool.run(Wait::Budget, move || {
                let _ = started_tx.send(());
                let _ = held.recv();
            })
            .await
        });
        started.await.unwrap();
        (release, job)
    }

    #[tokio::test]
    async fn a_full_pool_refuses_at_once_and_frees_its_places() {
        let pool = Pool::start(shape(1));
        // The running job holds the only thread until released.
        let (release, running) = hold_the_thread(&pool).await;
        // A hash has been measured at 600 ms: a second job would end after 1.2 s.
        pool.service_us.store(600_000, Ordering::Relaxed);
        let refused = pool.run(Wait::Budget, || ()).await.unwrap_err();
        // (More if the running job has already taken longer.)
        assert!(refused.retry_after >= Duration::from_millis(600), "{refused:?}");
        let e = ApiError::from(refused);
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(e.details.contains("retry in"), "{}", e.details);
        assert!(e.headers.iter().any(|(name, _)| name == header::RETRY_AFTER));
        assert_eq!(pool.admitted.load(Ordering::Acquire), 1, "the refused job left no place taken");
        release.send(()).unwrap();
        running.await.unwrap().unwrap().unwrap();
        assert_eq!(pool.admitted.load(Ordering::Acquire), 0);
        // With the pool free again, jobs are taken.
        assert_eq!(pool.run(Wait::Budget, || 7).await.unwrap(), Some(7));
    }

    #[tokio::test]
    async fn a_job_whose_caller_left_is_not_run() {
        let pool = Pool::start(shape(1));
        let (release, first) = hold_the_thread(&pool).await;
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let waiting = tokio::spawn({
            let (pool, ran) = (pool.clone(), ran.clone());
            async move { pool.run(Wait::Budget, move || ran.store(true, Ordering::Release)).await }
        });
        // Wait until the second job is queued, then let its caller go.
        while pool.admitted.load(Ordering::Acquire) < 2 {
            tokio::task::yield_now().await;
        }
        waiting.abort();
        let _ = waiting.await;
        release.send(()).unwrap();
        first.await.unwrap().unwrap().unwrap();
        // A later job runs after the skipped one: the pool's one thread has
        // passed it by then.
        assert_eq!(pool.run(Wait::Budget, || 1).await.unwrap(), Some(1));
        assert!(!ran.load(Ordering::Acquire), "the abandoned job was skipped");
        assert_eq!(pool.admitted.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn over_long_passwords_are_refused() {
        let e = hash("x".repeat(73), 4).await.unwrap_err();
        assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
        assert!(e.details.contains("72 bytes"), "{}", e.details);
    }
}
