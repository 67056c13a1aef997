//! The CPU priority of the snapshot thread: out of the way of request handling, never starved.
//!
//! Owns: lowering the calling thread to Linux's SCHED_IDLE, measuring how long it has waited
//! for a CPU since (the scheduler's run-queue delay), and raising it to nice 10 once that wait
//! shows the machine has no idle time to give it. Must not: touch any thread but the caller.
//!
//! Why SCHED_IDLE first: measured on 2 vCPUs (1M znodes, 8 clients of a 90/10 get/set load,
//! snapshots every ~5 s), the p99.9 of requests sent while a snapshot thread at nice 10 was
//! writing was 1.65-1.85x that of the rest of the run, against 0.73-1.76x at SCHED_IDLE: a
//! nice-10 thread that holds a CPU keeps it for its slice before a woken request thread gets
//! on; at SCHED_IDLE any woken normal thread preempts it at once. Why not SCHED_IDLE alone: on a saturated machine it
//! would get almost no CPU, the snapshot would never finish and the log would grow without
//! bound (nice 19 already starved snapshots in a parallel test run).

use std::cell::Cell;
use std::time::Duration;

/// Total run-queue wait after which a lowered thread is raised to nice 10: a snapshot that
/// has waited this long for a CPU is not finding idle time and must take some. On the
/// benchmark above a 200 MB snapshot waited 70-700 ms in total at SCHED_IDLE.
pub(crate) const STARVED_AFTER: Duration = Duration::from_secs(1);

/// The nice value a starved background thread is raised to: about a tenth of a normal
/// thread's CPU share against a CPU-bound competitor.
const RAISED_NICE: i32 = 10;

/// The priority state of one lowered thread. Create it on the thread it governs.
pub(crate) struct BackgroundPriority {
    /// The thread's run-queue wait when it was lowered; None when it could not be lowered to
    /// SCHED_IDLE (it then runs at nice 10 throughout) or the kernel does not report the wait.
    idle_since_wait: Option<Duration>,
    raised: Cell<bool>,
    waited: Cell<Duration>,
    /// [`STARVED_AFTER`], but for tests.
    starved_after: Duration,
}

impl BackgroundPriority {
    /// Lowers the calling thread: SCHED_IDLE where the thread can later be raised out of it
    /// again, nice 10 elsewhere.
    pub(crate) fn lower_this_thread() -> BackgroundPriority {
        let idle_since_wait = match run_queue_wait() {
            Some(w) if can_leave_idle_policy() && set_idle_policy() => Some(w),
            _ => {
                set_normal_policy(RAISED_NICE);
                None
            }
        };
        BackgroundPriority {
            raised: Cell::new(idle_since_wait.is_none()),
            idle_since_wait,
            waited: Cell::new(Duration::ZERO),
            starved_after: STARVED_AFTER,
        }
    }

    /// Call between pieces of work: raises the thread to nice 10 once it has waited
    /// [`STARVED_AFTER`] for a CPU since it was lowered.
    pub(crate) fn check(&self) {
        let Some(start) = self.idle_since_wait else {
            return;
        };
        if let Some(now) = run_queue_wait() {
            self.waited.set(now.saturating_sub(start));
        }
        if !self.raised.get() && self.waited.get() >= self.starved_after {
            self.raised.set(true);
            set_normal_policy(RAISED_NICE);
            tracing::info!(
                waited_ms = self.waited.get().as_millis() as u64,
                "snapshot thread starved of CPU at idle priority; raised to nice {RAISED_NICE}"
            );
        }
    }

    /// How long the thread has waited for a CPU since it was lowered (as of the last check).
    pub(crate) fn waited(&self) -> Duration {
        self.waited.get()
    }

    /// Whether the thread runs at nice 10 (raised, or never at SCHED_IDLE).
    pub(crate) fn raised(&self) -> bool {
        self.raised.get()
    }
}

/// The calling thread's total time spent runnable but waiting for a CPU: the second field
/// of /proc/thread-self/schedstat, in nanoseconds.
fn run_queue_wait() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = text.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Leaving SCHED_IDLE for nice 10 needs CAP_SYS_NICE or an RLIMIT_NICE of at least 10 (an
/// ordinary user's is 0): without either, a thread lowered to SCHED_IDLE stays there, and
/// could starve. Tried once, on a throwaway thread, since no capability check is simpler or
/// surer than the attempt.
fn can_leave_idle_policy() -> bool {
    static CAN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CAN.get_or_init(|| {
        std::thread::Builder::new()
            .name("corral-prio-probe".into())
            .spawn(|| set_idle_policy() && set_normal_policy(RAISED_NICE))
            .ok()
            .and_then(|t| t.join().ok())
            .unwrap_or(false)
    })
}

#[cfg(target_os = "linux")]
fn set_idle_policy() -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a live, initialised sched_param that the kernel only reads during
    // the call; pid 0 names the calling thread, so no other thread is affected.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) == 0 }
}

#[cfg(target_os = "linux")]
fn set_normal_policy(nice: i32) -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: as in set_idle_policy; gettid and setpriority take and return plain integers,
    // and setpriority on our own thread id can at worst fail with an error code.
    unsafe {
        if libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) != 0 {
            return false;
        }
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice) == 0
    }
}

#[cfg(not(target_os = "linux"))]
fn set_idle_policy() -> bool {
    false
}

#[cfg(not(target_os = "linux"))]
fn set_normal_policy(_: i32) -> bool {
    false
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn policy_and_nice() -> (i32, i32) {
        // SAFETY: both calls take plain integers and only read the calling thread's state.
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            (
                libc::sched_getscheduler(0),
                libc::getpriority(libc::PRIO_PROCESS, tid),
            )
        }
    }

    #[test]
    fn lowered_to_idle_and_raised_to_nice_10_once_starved() {
        std::thread::spawn(|| {
            let mut p = BackgroundPriority::lower_this_thread();
            if !can_leave_idle_policy() {
                // Unprivileged with RLIMIT_NICE 0: never lowered to where it could starve.
                assert!(p.raised());
                assert_eq!(policy_and_nice(), (libc::SCHED_OTHER, RAISED_NICE));
                return;
            }
            assert!(!p.raised());
            assert_eq!(policy_and_nice().0, libc::SCHED_IDLE);
            p.check();
            // A thread that has not waited is left where it is.
            assert!(p.waited() < STARVED_AFTER);
            assert_eq!(policy_and_nice().0, libc::SCHED_IDLE);
            // Any wait at all now counts as starved.
            p.starved_after = Duration::ZERO;
            p.check();
            assert!(p.raised());
            assert_eq!(policy_and_nice(), (libc::SCHED_OTHER, RAISED_NICE));
        })
        .join()
        .expect("priority test thread");
    }
}
