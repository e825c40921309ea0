//! The few system calls Berth makes that the standard library lacks, behind
//! safe functions. This is the one module where `unsafe` is allowed (the
//! workspace denies it everywhere else), so a reviewer finds every unsafe
//! block of the product here, each with its safety argument. Where `rustix`
//! has a safe wrapper, it is used instead of an unsafe `libc` call.

#![allow(unsafe_code)]

use std::io;

use rustix::process::{Pid, Signal};

/// Moves the calling thread to `SCHED_IDLE` (on Linux the policy is per
/// thread; `0` names the caller). Needs no privilege, but a seccomp filter
/// or an old kernel may refuse it.
pub fn set_current_thread_idle() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler(2) reads the sched_param we pass by
    // reference for the duration of the call and keeps no pointer to it.
    // rustix has no wrapper for it.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
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
