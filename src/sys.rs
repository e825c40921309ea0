//! The few system calls Berth makes that the standard library lacks, behind
//! safe functions. This is the one module where `unsafe` is allowed (the
//! workspace denies it everywhere else), so a reviewer finds every unsafe
//! block of the product here, each with its safety argument. Where `rustix`
//! has a safe wrapper, it is used instead of an unsafe `libc` call.

#![allow(unsafe_code)]

use std::io;

use rustix::process::{Pid, Signal};

/// A policy of the kernel's fair scheduling class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FairPolicy {
    Normal,
    /// CPU-bound work: the thread never preempts another one when it wakes
    /// up, and is scheduled by its weight (nice) like a normal thread.
    Batch,
    /// Runs only on CPU time no other thread wants.
    Idle,
}

/// Sets the calling thread's fair policy, nice value and time slice in one
/// `sched_setattr(2)` (per thread on Linux; `0` names the caller). The slice
/// is how long the thread may run once picked before the scheduler looks
/// again; kernels with EEVDF (6.12 on) honour it (clamped to 0.1–100 ms),
/// older ones ignore it. Lowering one's own priority needs no privilege.
pub fn set_current_thread_fair(policy: FairPolicy, nice: i32, slice: std::time::Duration) -> io::Result<()> {
    let policy = policy_number(policy);
    let attr = libc::sched_attr {
        size: std::mem::size_of::<libc::sched_attr>() as u32,
        sched_policy: policy as u32,
        sched_flags: 0,
        sched_nice: nice,
        sched_priority: 0,
        sched_runtime: u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX),
        sched_deadline: 0,
        sched_period: 0,
    };
    // SAFETY: sched_setattr(2) reads `size` bytes of the sched_attr we pass
    // by reference for the duration of the call and keeps no pointer to it;
    // `size` is that struct's own size. Neither libc nor rustix wraps it.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const libc::sched_attr, 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets the calling thread's fair policy alone with `sched_setscheduler(2)`
/// (the nice value is kept): the fallback where a seccomp filter refuses
/// `sched_setattr` but lets this older call through, which systemd's
/// `RestrictRealtime=` can filter by policy.
pub fn set_current_thread_policy(policy: FairPolicy) -> io::Result<()> {
    let policy = policy_number(policy);
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler(2) reads the sched_param we pass by
    // reference for the duration of the call and keeps no pointer to it.
    // rustix has no wrapper for it.
    if unsafe { libc::sched_setscheduler(0, policy, &param) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn policy_number(policy: FairPolicy) -> libc::c_int {
    match policy {
        FairPolicy::Normal => libc::SCHED_OTHER,
        FairPolicy::Batch => libc::SCHED_BATCH,
        FairPolicy::Idle => libc::SCHED_IDLE,
    }
}

/// Sets the nice value of the calling thread: on Linux `setpriority(2)` with
/// `PRIO_PROCESS` and pid `0` applies to the caller thread only.
pub fn set_current_thread_nice(nice: i32) -> io::Result<()> {
    rustix::process::setpriority_process(None, nice).map_err(io::Error::from)
}

/// The kernel's id of the calling thread, as `/proc/self/task/<tid>` names it.
pub fn current_thread_id() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// Sends `SIGKILL` to every process of group `pgid`. Ids 0 and 1 are refused:
/// `kill(0)` would signal our own group and `kill(-1)` every process we may
/// signal. The caller guarantees the group is one it leads through a child
/// it has not reaped, so the id cannot have been recycled.
pub fn kill_process_group(pgid: u32) {
    let Some(pid) = i32::try_from(pgid).ok().filter(|&p| p > 1).and_then(Pid::from_raw) else { return };
    // ESRCH (the group is gone) is the expected outcome of a late kill.
    let _ = rustix::process::kill_process_group(pid, Signal::KILL);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kills_a_whole_group() {
        use std::os::unix::process::{CommandExt, ExitStatusExt};
        let mut child =
            std::process::Command::new("/bin/sh").args(["-c", "sleep 30 & wait"]).process_group(0).spawn().unwrap();
        kill_process_group(child.id());
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn thread_ids_differ_between_threads() {
        let main = current_thread_id();
        let other = std::thread::spawn(current_thread_id).join().unwrap();
        assert!(main > 0 && other > 0 && main != other);
    }
}
