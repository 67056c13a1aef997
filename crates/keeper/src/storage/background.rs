//! Background work at the lowest CPU priority: out of the way of request handling, never
//! starved, and never holding a lock that request threads wait for.
//!
//! Owns: the background worker, one long-lived thread that runs producers (the snapshot
//! encoder) at Linux's SCHED_IDLE while their output is consumed at normal priority
//! ([`produce_in_background`]); measuring how long it has waited for a CPU (the scheduler's
//! run-queue delay) and raising it to nice 10 once that wait shows the machine has no idle
//! time to give it. Must not: change the priority of any other thread, or do I/O on the
//! lowered one.
//!
//! Why SCHED_IDLE first: measured on 2 vCPUs (1M znodes, 8 clients of a 90/10 get/set load,
//! snapshots every ~5 s), the p99.9 of requests sent while a snapshot thread at nice 10 was
//! writing was 1.65-1.85x that of the rest of the run, against 0.73-1.76x at SCHED_IDLE: a
//! nice-10 thread that holds a CPU keeps it for its slice before a woken request thread gets
//! on; at SCHED_IDLE any woken normal thread preempts it at once. Why not SCHED_IDLE alone:
//! on a saturated machine it would get almost no CPU, the snapshot would never finish and
//! the log would grow without bound (nice 19 already starved snapshots in a parallel test
//! run).

use std::cell::Cell;
use std::fs::File;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::Duration;

/// Total run-queue wait after which a lowered thread is raised to nice 10: a snapshot that
/// has waited this long for a CPU is not finding idle time and must take some. On the
/// benchmark above a 200 MB snapshot waited 70-700 ms in total at SCHED_IDLE.
pub(crate) const STARVED_AFTER: Duration = Duration::from_secs(1);

/// The nice value a starved background thread is raised to: about a tenth of a normal
/// thread's CPU share against a CPU-bound competitor.
const RAISED_NICE: i32 = 10;

/// The priority state of one lowered thread. Create it on the thread it governs.
pub(crate) struct BackgroundPriority<'a> {
    clock: &'a RunQueueClock,
    /// The thread's run-queue wait when it was lowered; None when it could not be lowered to
    /// SCHED_IDLE (it then runs at nice 10 throughout) or the kernel does not report the wait.
    idle_since_wait: Option<Duration>,
    raised: Cell<bool>,
    waited: Cell<Duration>,
    /// [`STARVED_AFTER`], but for tests.
    starved_after: Duration,
}

impl<'a> BackgroundPriority<'a> {
    /// Lowers the calling thread (whose clock `clock` is): SCHED_IDLE where the thread can
    /// later be raised out of it again, nice 10 elsewhere.
    fn lower_this_thread(clock: &'a RunQueueClock) -> BackgroundPriority<'a> {
        let idle_since_wait = match clock.waited() {
            Some(w) if can_leave_idle_policy() && set_idle_policy() => Some(w),
            _ => {
                set_normal_policy(RAISED_NICE);
                None
            }
        };
        BackgroundPriority {
            clock,
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
        if let Some(now) = self.clock.waited() {
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

    fn report(&self) -> BackgroundReport {
        BackgroundReport {
            waited: self.waited(),
            raised: self.raised(),
        }
    }
}

/// How a background producer fared: its wait for a CPU, and whether it had to be raised.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BackgroundReport {
    pub waited: Duration,
    pub raised: bool,
}

/// What [`produce_in_background`] hands back.
pub(crate) struct Produced<T> {
    /// What `produce` returned.
    pub value: T,
    /// The first error of `consume`; the producer was stopped there.
    pub consumed: io::Result<()>,
    pub report: BackgroundReport,
}

/// Buffers passed between the producer and the consumer: a piece of up to this size is
/// copied without growing one (the snapshot encoder hands out ~1 MB, more only after a node
/// of up to 1 MB of data).
const HANDOFF_BYTES: usize = 3 << 20;
const HANDOFF_BUFFERS: usize = 3;

/// Runs `produce` on the background worker, a thread lowered to background priority, and
/// hands each piece it gives its sink to `consume` on the calling thread, which keeps its own
/// priority. `produce` also gets a scratch buffer that the worker keeps between calls.
///
/// A thread at SCHED_IDLE that holds a lock and is preempted keeps every normal thread
/// that needs the lock waiting until a CPU falls idle, which on a busy machine takes
/// milliseconds. So the lowered thread only computes:
/// - all I/O happens on the calling thread: writing a file takes filesystem journal handles
///   that log writes need too;
/// - it allocates nothing once warm: malloc's arena locks are shared with request threads,
///   and large allocations take the process's address-space lock. Its pieces are copied
///   into buffers allocated and freed here, and its scratch buffer is reused;
/// - it is one long-lived thread, not one per call: a thread's start and exit go through
///   the allocator's shared state too.
///
/// Measured on 2 vCPUs, a 20,000-znode tree snapshotted every ~0.5 s under a 90/10 get/set
/// load: with a new SCHED_IDLE thread per snapshot doing its own writes, requests sent while
/// a snapshot was written had a p99.9 of 3.7-6.5 ms against 1.3 ms for the rest of the run,
/// the slowest of them sent just after a snapshot began or just before it ended; at nice 10
/// throughout, 1.6-1.9 ms (but at 1M znodes nice 10 doubled the p99.9 during snapshots).
pub(crate) fn produce_in_background<T: Send + 'static>(
    produce: impl FnOnce(&mut Vec<u8>, &mut dyn FnMut(&[u8]) -> io::Result<()>) -> T + Send + 'static,
    consume: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<Produced<T>> {
    let (full_tx, full_rx) = mpsc::sync_channel::<Vec<u8>>(HANDOFF_BUFFERS);
    let (empty_tx, empty_rx) = mpsc::sync_channel::<Vec<u8>>(HANDOFF_BUFFERS);
    let (done_tx, done_rx) = mpsc::sync_channel(1);
    for _ in 0..HANDOFF_BUFFERS {
        // Written once here, so that the producer's first copy into it takes no page faults
        // (`vec![0; n]` would get fresh zero pages from calloc without touching them).
        #[allow(clippy::slow_vector_initialization)]
        let mut buf = Vec::with_capacity(HANDOFF_BYTES);
        buf.resize(HANDOFF_BYTES, 0);
        buf.clear();
        // Cannot fail: the channel holds exactly this many and its receiver is alive.
        let _ = empty_tx.send(buf);
    }
    submit(Box::new(move |priority, scratch| {
        let value = produce(scratch, &mut |piece: &[u8]| {
            if piece.is_empty() {
                return Ok(());
            }
            priority.check();
            let mut buf = empty_rx.recv().map_err(|_| consumer_stopped())?;
            buf.clear();
            buf.extend_from_slice(piece);
            full_tx.send(buf).map_err(|_| consumer_stopped())
        });
        // The buffers go back to the consumer to be freed: the empty ones once its sender is
        // the channel's last end, the full ones as it takes them. Then its loop ends.
        drop(empty_rx);
        drop(full_tx);
        let _ = done_tx.send((value, priority.report()));
    }))?;
    let mut consumed = Ok(());
    // Ends when the producer is done (or panicked) and its sender is gone.
    for buf in full_rx.iter() {
        if let Err(e) = consume(&buf) {
            consumed = Err(e);
            break;
        }
        // Fails only once the producer is gone; the buffer is then freed here.
        let _ = empty_tx.send(buf);
    }
    // A producer still sending, or waiting for an empty buffer after the consumer failed,
    // now gets an error from its sink and stops.
    drop(full_rx);
    drop(empty_tx);
    let done = done_rx.recv();
    let (value, report) = done.map_err(|_| io::Error::other("the background producer panicked"))?;
    Ok(Produced {
        value,
        consumed,
        report,
    })
}

fn consumer_stopped() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the consumer stopped taking pieces",
    )
}

type Job = Box<dyn FnOnce(&BackgroundPriority<'_>, &mut Vec<u8>) + Send>;

/// Hands `job` to the background worker, starting it on first use (or after it died).
fn submit(job: Job) -> io::Result<()> {
    static WORKER: OnceLock<Mutex<Option<mpsc::Sender<Job>>>> = OnceLock::new();
    // The slot holds only a sender: whatever a panicking holder left is still usable.
    let mut slot = WORKER
        .get_or_init(|| Mutex::new(None))
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let job = match slot.as_ref() {
        Some(tx) => match tx.send(job) {
            Ok(()) => return Ok(()),
            Err(mpsc::SendError(job)) => job,
        },
        None => job,
    };
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("corral-encoder".into())
        .spawn(move || run_worker(rx))?;
    tx.send(job)
        .map_err(|_| io::Error::other("the background worker exited at start"))?;
    *slot = Some(tx);
    Ok(())
}

/// The background worker: lowered afresh for each job (a raise lasts one job), one scratch
/// buffer for all of them.
fn run_worker(jobs: mpsc::Receiver<Job>) {
    let clock = RunQueueClock::for_this_thread();
    let mut scratch = Vec::new();
    for job in jobs.iter() {
        let priority = BackgroundPriority::lower_this_thread(&clock);
        // A panicking job has reported nothing (its result channel is dropped); the worker
        // carries on with the next.
        if catch_unwind(AssertUnwindSafe(|| job(&priority, &mut scratch))).is_err() {
            scratch = Vec::new();
        }
    }
}

/// A thread's total time spent runnable but waiting for a CPU: the second field of its
/// /proc/thread-self/schedstat, in nanoseconds. The file is opened once, on the thread it
/// describes (the link resolves at open), and read into a stack buffer: no allocation.
struct RunQueueClock {
    file: Option<File>,
}

impl RunQueueClock {
    /// The calling thread's clock.
    fn for_this_thread() -> RunQueueClock {
        RunQueueClock {
            file: File::open("/proc/thread-self/schedstat").ok(),
        }
    }

    fn waited(&self) -> Option<Duration> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            let mut buf = [0u8; 128];
            let n = self.file.as_ref()?.read_at(&mut buf, 0).ok()?;
            let text = std::str::from_utf8(&buf[..n]).ok()?;
            let ns = text.split_whitespace().nth(1)?.parse::<u64>().ok()?;
            Some(Duration::from_nanos(ns))
        }
        #[cfg(not(unix))]
        {
            None
        }
    }
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
            let clock = RunQueueClock::for_this_thread();
            let mut p = BackgroundPriority::lower_this_thread(&clock);
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

    #[test]
    fn pieces_arrive_in_order_from_one_long_lived_lowered_thread() {
        // Empty (skipped), small, and past one handoff buffer, more pieces than buffers.
        const SIZES: [usize; 10] = [
            0,
            1,
            4096,
            HANDOFF_BYTES,
            HANDOFF_BYTES + 1,
            17,
            1 << 20,
            3,
            0,
            5,
        ];
        let run = || {
            let mut got = Vec::new();
            let p = produce_in_background(
                |_, sink| {
                    for (i, &len) in SIZES.iter().enumerate() {
                        sink(&vec![i as u8; len])?;
                    }
                    Ok::<_, io::Error>((std::thread::current().id(), policy_and_nice()))
                },
                &mut |piece| {
                    got.extend_from_slice(piece);
                    Ok(())
                },
            )
            .expect("producer ran");
            p.consumed.expect("consumer took everything");
            let expected: Vec<u8> = SIZES
                .iter()
                .enumerate()
                .flat_map(|(i, &len)| vec![i as u8; len])
                .collect();
            assert!(got == expected, "pieces out of order or lost");
            p.value.expect("producer finished")
        };
        let (first_thread, (policy, nice)) = run();
        let (second_thread, _) = run();
        assert_eq!(first_thread, second_thread, "a new thread per call");
        assert_ne!(first_thread, std::thread::current().id());
        if can_leave_idle_policy() {
            assert_eq!(policy, libc::SCHED_IDLE);
        } else {
            assert_eq!((policy, nice), (libc::SCHED_OTHER, RAISED_NICE));
        }
    }

    #[test]
    fn a_consumer_error_stops_the_producer_and_is_returned() {
        // On a thread of its own, so that a deadlock fails the test instead of hanging it.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut taken = 0;
            let p = produce_in_background(
                |_, sink| {
                    let mut accepted = 0;
                    for _ in 0..1000 {
                        if sink(b"piece").is_err() {
                            return (accepted, true);
                        }
                        accepted += 1;
                    }
                    (accepted, false)
                },
                &mut |_| {
                    taken += 1;
                    // A slow consumer: the producer keeps every buffer in flight, so when
                    // the consumer fails, the producer is waiting for an empty one.
                    std::thread::sleep(Duration::from_millis(30));
                    if taken == 3 {
                        Err(io::Error::other("disk full"))
                    } else {
                        Ok(())
                    }
                },
            );
            let _ = tx.send((p, taken));
        });
        let (p, taken) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("deadlock: producer and consumer still waiting after 30 s");
        let p = p.expect("producer ran");
        let err = p.consumed.expect_err("the consumer's error");
        assert_eq!(err.to_string(), "disk full");
        let (accepted, stopped) = p.value;
        assert!(stopped, "the producer was not told to stop");
        // At most the pieces in flight when the consumer failed got through.
        assert!(accepted < 3 + HANDOFF_BUFFERS + 1, "accepted {accepted}");
        assert_eq!(taken, 3);
    }

    #[test]
    fn the_scratch_buffer_is_kept_and_a_panicking_producer_is_reported() {
        let keep = |scratch: &mut Vec<u8>, _: &mut dyn FnMut(&[u8]) -> io::Result<()>| {
            let before = scratch.capacity();
            scratch.clear();
            scratch.reserve(1 << 20);
            before
        };
        let discard = |_: &[u8]| Ok(());
        produce_in_background(keep, &mut discard.clone()).expect("first call");
        let before = produce_in_background(keep, &mut discard.clone())
            .expect("second call")
            .value;
        assert!(before >= 1 << 20, "scratch not kept: capacity {before}");
        let panicked =
            produce_in_background(|_, _| -> () { panic!("encoder bug") }, &mut discard.clone());
        let err = panicked.err().expect("a panic is an error");
        assert!(err.to_string().contains("panicked"), "{err}");
        // The worker survives it.
        let after = produce_in_background(|_, sink| sink(b"x").map(|()| 7), &mut discard.clone())
            .expect("call after a panic");
        assert_eq!(after.value.expect("produced"), 7);
    }
}
