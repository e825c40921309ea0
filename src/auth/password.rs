//! bcrypt hashing (Portainer's scheme, so imported hashes verify), on a
//! pool of its own: a hash takes tens of milliseconds of CPU, and a stream
//! of logins must not slow the proxied requests sharing those cores.
//!
//! The pool's threads run under `SCHED_IDLE` (or, where that is refused,
//! at nice [`HASH_NICE`]): when the cores are busy with proxy traffic, the
//! request path keeps them and hashing waits, so a login storm delays
//! logins rather than every proxied request (docs/PERFORMANCE.md, login
//! storm). When the cores have room, hashing runs at full speed. Tokio's blocking pool is not used for this because
//! its threads also carry store commits and file I/O, which must not
//! inherit the lowered priority.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crate::error::ApiError;

/// Niceness of the hashing threads where `SCHED_IDLE` is refused: a weight
/// of about 1.5% of a normal thread's when both want the same core.
pub const HASH_NICE: i32 = 19;

type Job = Box<dyn FnOnce() + Send>;

/// Jobs wait in an unbounded queue: its length is bounded by the login
/// rate limiter and the connection cap, not here.
fn queue() -> &'static mpsc::Sender<Job> {
    static QUEUE: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new().name(format!("berth-bcrypt-{i}")).spawn(move || {
                lower_priority();
                loop {
                    // The lock is held only while waiting for the next job.
                    let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password hashing thread");
            }
        }
        tx
    })
}

/// Moves the calling thread to `SCHED_IDLE`: it runs only on CPU time no
/// normal thread wants, and any normal thread that wakes up preempts it at
/// once. Where that policy is refused (a seccomp filter, an old kernel),
/// the thread is niced to [`HASH_NICE`] instead. On Linux both are per
/// thread (`0` names the caller). Neither needs a privilege; if both fail,
/// hashing competes at normal priority, which is logged, not fatal.
fn lower_priority() {
    let Err(idle_err) = crate::sys::set_current_thread_idle() else { return };
    if let Err(nice_err) = crate::sys::set_current_thread_nice(HASH_NICE) {
        tracing::warn!(
            sched_idle = %idle_err,
            nice = %nice_err,
            "cannot lower the priority of password hashing"
        );
    }
}

/// Runs `f` on the hashing pool and waits for it without blocking the
/// async worker. `None` if the pool could not run it (no thread started).
async fn on_pool<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    queue().send(job).ok()?;
    rx.await.ok()
}

/// Hashes off the async workers. Passwords over 72 bytes are refused rather
/// than silently truncated.
pub async fn hash(password: String, cost: u32) -> Result<String, ApiError> {
    on_pool(move || bcrypt::non_truncating_hash(password.as_bytes(), cost))
        .await
        .ok_or_else(|| ApiError::internal("Unable to hash password", "the hashing pool is not running"))?
        .map_err(|e| match e {
            bcrypt::BcryptError::Truncation(_) => {
                ApiError::invalid_payload("Password must not be longer than 72 bytes")
            }
            other => ApiError::internal("Unable to hash password", other),
        })
}

/// Verifies off the async workers. Any malformed hash is a plain mismatch.
pub async fn verify(password: String, hash: String) -> bool {
    on_pool(move || bcrypt::verify(password.as_bytes(), &hash).unwrap_or(false)).await.unwrap_or(false)
}

/// A hash to verify against when the user does not exist, so that an
/// unknown username costs the same time as a wrong password.
pub fn dummy_hash(cost: u32) -> String {
    bcrypt::hash(rand::random::<[u8; 16]>(), cost).expect("bcrypt of random bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scheduling policy of a thread, from /proc (field 41 of its stat
    /// line, counted from the state after the command name).
    fn policy_of(tid: i32) -> i64 {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        after_comm.split(' ').nth(38).unwrap().parse().unwrap()
    }

    #[tokio::test]
    async fn hashing_runs_on_lowered_priority_threads_and_verifies() {
        let h = hash("correct horse".into(), 4).await.unwrap();
        assert!(verify("correct horse".into(), h.clone()).await);
        assert!(!verify("wrong horse".into(), h).await);
        let (tid, name) = on_pool(|| {
            let tid = crate::sys::current_thread_id();
            (tid, std::thread::current().name().map(str::to_owned))
        })
        .await
        .unwrap();
        assert!(name.unwrap().starts_with("berth-bcrypt-"));
        assert_eq!(policy_of(tid), libc::SCHED_IDLE as i64, "the hashing thread runs under SCHED_IDLE");
        assert_eq!(policy_of(std::process::id() as i32), libc::SCHED_OTHER as i64, "the rest of the process does not");
    }

    #[tokio::test]
    async fn over_long_passwords_are_refused() {
        let e = hash("x".repeat(73), 4).await.unwrap_err();
        assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
        assert!(e.details.contains("72 bytes"), "{}", e.details);
    }
}
