//! The scheduling policy of the loop and worker threads, and how often a
//! thread blocked.
//!
//! When a worker hands a response back it wakes the loop, and on a shared core
//! Linux lets the woken loop preempt the worker at once: the loop writes one
//! response, sleeps, and the worker resumes, a pair of context switches per
//! handful of requests (a fifth of all CPU time with a hello-world app).
//! Marked `SCHED_BATCH`, the loop no longer preempts on wake-up: the worker
//! finishes what is queued, then the loop writes every response in one round.
//! The same holds the other way: a worker the loop wakes for a job preempted
//! the loop in the middle of its round of sockets (0.25 involuntary switches
//! per request on `close`); as `SCHED_BATCH` it runs once the loop sleeps
//! (0.03 per request; CPU per request -5% on plaintext, -1.6% on a 64 KiB
//! POST, unchanged on close, Flask and Django). With a core to spare a woken thread still runs at once, on an
//! idle core; on a saturated core it waits at most one scheduler tick. The
//! policy is the thread's only: `nice` and CPU shares are unchanged, and
//! threads an app starts from a request inherit it.

/// How many times the calling thread has blocked (voluntary context
/// switches); `None` where it cannot be read (Linux only has `RUSAGE_THREAD`).
pub fn thread_blocked_count() -> Option<u64> {
    imp::thread_blocked_count()
}

/// Applies to the calling thread; returns whether it did.
pub fn batch_this_thread() -> bool {
    imp::batch_this_thread()
}

#[cfg(target_os = "linux")]
mod imp {
    use std::os::raw::c_int;

    const SCHED_BATCH: c_int = 3;

    #[repr(C)]
    struct SchedParam {
        sched_priority: c_int,
    }

    extern "C" {
        fn sched_setscheduler(pid: c_int, policy: c_int, param: *const SchedParam) -> c_int;
    }

    pub fn batch_this_thread() -> bool {
        let param = SchedParam { sched_priority: 0 };
        // SAFETY: declared as in <sched.h>; pid 0 is the calling thread, and
        // `param` is a valid struct that outlives the call, which only reads it.
        let ok = unsafe { sched_setscheduler(0, SCHED_BATCH, &param) } == 0;
        if !ok {
            log::debug!(
                target: "maitre",
                "could not make {} SCHED_BATCH: {}",
                std::thread::current().name().unwrap_or("a thread"),
                std::io::Error::last_os_error()
            );
        }
        ok
    }

    pub fn thread_blocked_count() -> Option<u64> {
        // SAFETY: an all-zero rusage is a valid value of this plain C struct.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `usage` is valid and writable for the call, which only
        // writes it; RUSAGE_THREAD asks for the calling thread.
        let ok = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) } == 0;
        ok.then(|| u64::try_from(usage.ru_nvcsw).unwrap_or(0))
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub fn batch_this_thread() -> bool {
        false
    }

    pub fn thread_blocked_count() -> Option<u64> {
        None
    }
}

#[cfg(test)]
mod tests {
    /// The scheduling policy of the calling thread (field 41 of its stat).
    #[cfg(target_os = "linux")]
    fn policy() -> u32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        after_comm.split(' ').nth(38).unwrap().parse().unwrap()
    }

    #[test]
    fn applies_to_the_calling_thread_only() {
        let applied = std::thread::spawn(|| {
            let applied = super::batch_this_thread();
            #[cfg(target_os = "linux")]
            assert_eq!(policy(), 3, "SCHED_BATCH");
            applied
        })
        .join()
        .unwrap();
        assert_eq!(applied, cfg!(target_os = "linux"));
        #[cfg(target_os = "linux")]
        assert_eq!(policy(), 0, "this thread stays SCHED_OTHER");
    }
}
