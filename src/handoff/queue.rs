//! The job queue from the loop to the workers: a crossbeam channel for the
//! jobs, and a condvar of our own where idle workers sleep.
//!
//! Why not crossbeam's blocking `recv`: it spins and calls `sched_yield`
//! before it parks, and every `send` unparks a receiver. With the loop and the
//! workers sharing a core, that bounced the CPU between threads for nothing
//! (strace: ~3.5 `sched_yield` per request). Here an idle worker sleeps at
//! once; the loop wakes one worker per batch of jobs (after it has handled
//! every ready socket), and a worker that takes a job while more are queued
//! wakes the next, so an app that blocks, releasing the GIL, still finds
//! another thread ready for the next request. Only one woken worker is on its
//! way at a time: with a GIL-bound app, more would only queue for the GIL.
//!
//! That woken worker is a spare: while another worker is awake and keeps
//! taking jobs, it waits without asking for the GIL, and asks only once no
//! job has been taken for `STALL` (the awake ones are blocked, GIL released,
//! or in a long request; a spare woken longer than that after the last job
//! was taken asks at once). Asking at once made it wait for the GIL behind a
//! worker running a GIL-bound app, and after Python's switch interval (5 ms)
//! take it in the middle of that worker's request: about one request in 45
//! of a Django view took 5-10 ms longer (p99 16.8 ms, 8.8 ms without). The
//! spare looks for progress every `STALL` itself: its timer's wake-ups cost
//! 7% of plaintext while they preempted the busy worker, nothing measurable
//! since worker threads are `SCHED_BATCH` (`os::sched`). (The loop watched
//! for the stall instead, but it sleeps through one that begins after its
//! last look: a request queued behind one that blocked waited 20 ms.)
//!
//! It waits only while the app is seen to hold the GIL: a worker counts how
//! often its thread blocked, other than waiting for a job, over `WINDOW`
//! jobs, and one that blocked in half of them or more (an app waiting on a
//! database, say, with the GIL released) lets spares join at once, as
//! before: with 0.5 ms of `time.sleep` per request, waiting cost 23% of the
//! requests per second. (Blocking, not CPU time: on a busy host a GIL-bound
//! worker gets less CPU without ever releasing the GIL.) Where a thread's
//! blocking cannot be counted (off Linux), spares always join at once.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use parking_lot::{Condvar, Mutex, MutexGuard};
use pyo3::Python;

use crate::os::sched::thread_blocked_count as blocked_count;

/// How long a spare lets awake workers go without taking a queued job before
/// it joins them. Far above a typical request's CPU time (50-150 µs for a
/// Flask or Django view), far below Python's 5 ms switch interval.
const STALL: Duration = Duration::from_millis(1);

/// Jobs over which a worker counts how often it blocked.
const WINDOW: u32 = 16;

struct Idle {
    state: Mutex<IdleState>,
    /// Where idle workers sleep.
    cv: Condvar,
    /// Where the spare waits for a stall.
    spare_cv: Condvar,
    /// When the last job was taken, in ns since `epoch`: progress, as the
    /// spare sees it.
    last_take: AtomicU64,
    epoch: Instant,
    /// The worker that last counted `WINDOW` jobs seldom blocked in them:
    /// the app holds the GIL, a spare would only queue for it.
    gil_bound: AtomicBool,
}

impl Default for Idle {
    fn default() -> Self {
        Idle {
            state: Mutex::default(),
            cv: Condvar::new(),
            spare_cv: Condvar::new(),
            last_take: AtomicU64::new(0),
            epoch: Instant::now(),
            gil_bound: AtomicBool::new(false),
        }
    }
}

#[derive(Default)]
struct IdleState {
    sleepers: usize,
    /// Workers woken but not yet holding a job. While one is on its way (it
    /// may be waiting for the GIL), waking more would only add threads
    /// queueing for the GIL; it wakes the next itself once it has a job.
    searching: usize,
    /// Workers neither asleep nor searching: holding a job or about to.
    awake: usize,
    closed: bool,
}

/// Why `Idle::sleep` returned.
#[derive(PartialEq, Eq)]
enum Woke {
    /// There was work without sleeping.
    Ready,
    Notified,
    Closed,
}

/// What a spare found while it waited (see `Idle::wait_for_stall`).
enum Spare {
    /// No awake worker took a job for `STALL`, or none is awake.
    Join,
    /// The awake workers emptied the queue.
    Drained,
    Closed,
}

impl Idle {
    /// Wakes a sleeper unless one is already on its way; a spare waiting for
    /// a stall joins at once if no other worker is awake.
    fn wake_one(&self, state: &mut IdleState) {
        if state.searching > 0 {
            if state.awake == 0 {
                self.spare_cv.notify_one();
            }
        } else if state.sleepers > 0 {
            state.searching += 1;
            self.cv.notify_one();
        }
    }

    /// A worker took a job: it stops searching if it was woken for it, and
    /// wakes the next if more jobs wait. `more` is asked under the lock: a job
    /// announced between an unlocked check and this lock would find
    /// `searching` still set, wake nobody, and wait for a busy worker.
    fn took_job(&self, was_woken: bool, more: impl Fn() -> bool, at: Instant) {
        self.last_take
            .store(self.since_epoch(at), Ordering::Relaxed);
        if !was_woken && !more() {
            return;
        }
        #[cfg(test)]
        tests::widen_window();
        let mut state = self.state.lock();
        if was_woken {
            // Saturating: a spurious wake-up may have had no matching count.
            state.searching = state.searching.saturating_sub(1);
        }
        if more() {
            self.wake_one(&mut state);
        }
    }

    /// Sleeps unless `ready()` (checked under the lock a waker takes, so no
    /// wake-up is lost) or the queue is closed. Woken as the spare, it
    /// returns once it should take a job (or sleeps again if there is none).
    fn sleep(&self, mut was_woken: bool, ready: impl Fn() -> bool) -> Woke {
        let mut state = self.state.lock();
        let mut counted_awake = true;
        let woke = loop {
            if was_woken {
                state.searching = state.searching.saturating_sub(1);
            }
            if state.closed {
                break Woke::Closed;
            }
            if ready() {
                break Woke::Ready;
            }
            state.sleepers += 1;
            if counted_awake {
                state.awake = state.awake.saturating_sub(1);
                counted_awake = false;
                if state.awake == 0 {
                    // A spare must not wait out `STALL` for the last one gone.
                    self.spare_cv.notify_one();
                }
            }
            self.cv.wait(&mut state);
            state.sleepers -= 1;
            match self.wait_for_stall(&mut state, &ready) {
                Spare::Join => break Woke::Notified,
                Spare::Closed => break Woke::Closed,
                // Sleeps again, no longer searching.
                Spare::Drained => was_woken = true,
            }
        };
        if !counted_awake {
            state.awake += 1;
        }
        woke
    }

    /// The spare's wait: while another worker is awake and keeps taking jobs,
    /// lets it (see the module's comment). Woken for chores (no job queued),
    /// it waits the same way: an awake worker does them before its next job.
    fn wait_for_stall(
        &self,
        state: &mut MutexGuard<'_, IdleState>,
        ready: impl Fn() -> bool,
    ) -> Spare {
        let mut waited = false;
        loop {
            if state.closed {
                return Spare::Closed;
            }
            if state.awake == 0 {
                return Spare::Join;
            }
            // Jobs were taken while it waited (else it would have joined):
            // the awake ones did the chores too.
            if waited && !ready() {
                return Spare::Drained;
            }
            if !waited && !self.spare_waits(Instant::now()) {
                return Spare::Join;
            }
            let seen = self.last_take.load(Ordering::Relaxed);
            let timed_out = self.spare_cv.wait_for(state, STALL).timed_out();
            if timed_out && self.last_take.load(Ordering::Relaxed) == seen {
                return Spare::Join;
            }
            waited = true;
        }
    }

    /// Whether a spare woken at `now` waits at all: only if the app holds
    /// the GIL and a job was taken less than `STALL` ago (else the busy one
    /// is blocked, in a long request, or the server is quiet: it joins at
    /// once, as fast as a worker that had been idle).
    fn spare_waits(&self, now: Instant) -> bool {
        self.gil_bound.load(Ordering::Relaxed) && self.since_last_take(now) < STALL
    }

    fn since_last_take(&self, now: Instant) -> Duration {
        let last = Duration::from_nanos(self.last_take.load(Ordering::Relaxed));
        Duration::from_nanos(self.since_epoch(now)).saturating_sub(last)
    }

    fn since_epoch(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    fn close(&self) {
        self.state.lock().closed = true;
        self.cv.notify_all();
        self.spare_cv.notify_all();
    }
}

pub fn channel<T>() -> (JobSender<T>, JobReceiver<T>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let idle = Arc::new(Idle::default());
    (
        JobSender {
            tx,
            idle: Arc::clone(&idle),
            unannounced: Cell::new(false),
        },
        JobReceiver { rx, idle },
    )
}

/// The loop's end. Dropping it lets every idle worker leave.
pub struct JobSender<T> {
    tx: Sender<T>,
    idle: Arc<Idle>,
    /// Jobs were queued since the last `announce`.
    unannounced: Cell<bool>,
}

impl<T> JobSender<T> {
    /// Queues a job; no worker is woken until `announce`. False if the
    /// workers are gone.
    pub fn send(&self, job: T) -> bool {
        let sent = self.tx.send(job).is_ok();
        if sent {
            self.unannounced.set(true);
        }
        sent
    }

    /// Wakes one idle worker if jobs were queued since the last call, or if
    /// `chores` wait (work for whichever worker is idle: see `next`).
    pub fn announce(&self, chores: bool) {
        if self.unannounced.replace(false) || chores {
            self.idle.wake_one(&mut self.idle.state.lock());
        }
    }
}

impl<T> Drop for JobSender<T> {
    fn drop(&mut self) {
        self.idle.close();
    }
}

/// The workers' end, shared by all of them.
pub struct JobReceiver<T> {
    rx: Receiver<T>,
    idle: Arc<Idle>,
}

impl<T: Send> JobReceiver<T> {
    /// A queued job, if any, without waiting (for tests that act as the workers).
    #[cfg(test)]
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.rx.try_recv()
    }

    /// A worker thread's end of the queue: it counts as awake until it
    /// sleeps, and from its first job to its end.
    pub fn worker(&self) -> Worker<'_, T> {
        self.idle.state.lock().awake += 1;
        Worker {
            rx: self,
            window: None,
            jobs: 0,
            waits: 0,
        }
    }
}

pub struct Worker<'a, T> {
    rx: &'a JobReceiver<T>,
    /// How often its thread had blocked, and had waited in the queue, when
    /// the current `WINDOW` of jobs began; how many it took since.
    window: Option<(u64, u64)>,
    jobs: u32,
    /// The times it blocked waiting for a job (or as a spare), or for the
    /// GIL after that.
    waits: u64,
}

impl<T: Send> Worker<'_, T> {
    /// The next job and when it was taken, sleeping with the GIL released
    /// while there is none; `None` once the loop has gone and the queue is
    /// empty. `chores` runs, with the GIL, each time before the worker sleeps.
    pub fn next(&mut self, py: Python<'_>, mut chores: impl FnMut()) -> Option<(T, Instant)> {
        let JobReceiver { rx, idle } = self.rx;
        let mut woken = false;
        loop {
            match rx.try_recv() {
                Ok(job) => {
                    let at = Instant::now();
                    idle.took_job(woken, || !rx.is_empty(), at);
                    self.measure();
                    return Some((job, at));
                }
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {
                    chores();
                    // Blocking from here until it holds the GIL again is
                    // waiting for a job, not the app's (see `measure`).
                    let before = blocked_count();
                    let woke = py.detach(|| idle.sleep(woken, || !rx.is_empty()));
                    if let (Some(before), Some(after)) = (before, blocked_count()) {
                        self.waits += after.saturating_sub(before);
                    }
                    match woke {
                        Woke::Closed => return rx.try_recv().ok().map(|job| (job, Instant::now())),
                        woke => woken = woke == Woke::Notified,
                    }
                }
            }
        }
    }
}

impl<T> Worker<'_, T> {
    /// Counts a job taken; every `WINDOW` jobs (one `getrusage`) says whether
    /// the app held the GIL through them (see the module's comment).
    fn measure(&mut self) {
        self.jobs += 1;
        if self.window.is_some() && self.jobs < WINDOW {
            return;
        }
        let now = blocked_count().map(|n| (n, self.waits));
        if let (Some((before, waits0)), Some((after, waits1))) = (self.window, now) {
            // Waiting for jobs is not the app's blocking.
            let blocked = after
                .saturating_sub(before)
                .saturating_sub(waits1.saturating_sub(waits0));
            let held = blocked * 2 < u64::from(WINDOW);
            self.rx.idle.gil_bound.store(held, Ordering::Relaxed);
        }
        self.window = now;
        self.jobs = 0;
    }
}

impl<T> Drop for Worker<'_, T> {
    fn drop(&mut self) {
        let mut state = self.rx.idle.state.lock();
        state.awake = state.awake.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use pyo3::Python;

    thread_local! {
        static WIDEN: Cell<bool> = const { Cell::new(false) };
    }

    /// Makes this thread pause between taking a job and locking the idle
    /// state: the window where a lost wake-up used to hide.
    pub(super) fn widen_window() {
        if WIDEN.with(Cell::get) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Issue 13 item 3 (lost wake-up in the job queue): a job announced while
    /// the woken worker is between taking its own job and locking must still
    /// wake an idle worker, not wait for the busy one to finish.
    #[test]
    fn job_announced_in_the_window_wakes_an_idle_worker() {
        Python::initialize();
        let (tx, rx) = super::channel::<u32>();
        let rx = Arc::new(rx);
        let (got_tx, got) = crossbeam_channel::unbounded();
        let release = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (rx, got_tx, release) = (Arc::clone(&rx), got_tx.clone(), Arc::clone(&release));
                std::thread::spawn(move || {
                    WIDEN.with(|w| w.set(true));
                    let mut end = rx.worker();
                    while let Some((job, _)) = Python::attach(|py| end.next(py, || {})) {
                        let _ = got_tx.send(job);
                        // A long-polling app: job 1 holds its worker until the end.
                        while job == 1 && !release.load(Ordering::Acquire) {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100)); // both asleep
        tx.send(1);
        tx.announce(false);
        std::thread::sleep(Duration::from_millis(50)); // a worker holds job 1, inside the window
        tx.send(2);
        tx.announce(false);
        let first = got.recv_timeout(Duration::from_secs(2));
        let second = got.recv_timeout(Duration::from_secs(2));
        release.store(true, Ordering::Release);
        drop(tx);
        for w in workers {
            w.join().expect("worker thread");
        }
        assert_eq!(first.ok(), Some(1));
        assert_eq!(second.ok(), Some(2), "job 2 waited for the busy worker");
    }

    /// A spare that sees no job taken joins by itself after `STALL`: nothing
    /// else watches. (That it waits while jobs are taken depends on timing;
    /// `test_a_gil_bound_apps_requests_run_one_after_another` checks it.)
    #[test]
    fn a_spare_joins_by_itself_after_a_stall() {
        use super::{Idle, Spare, STALL};
        let idle = Idle::default();
        idle.gil_bound.store(true, Ordering::Relaxed);
        idle.state.lock().awake = 1;
        idle.last_take
            .store(idle.since_epoch(Instant::now()), Ordering::Relaxed);
        let t0 = Instant::now();
        let spare = idle.wait_for_stall(&mut idle.state.lock(), || true);
        let waited = t0.elapsed();
        assert!(matches!(spare, Spare::Join));
        assert!(waited >= STALL, "joined before the stall: {waited:?}");
        assert!(waited < Duration::from_secs(1), "waited {waited:?}");
    }

    /// A spare joins at once unless the app holds the GIL and a job was
    /// taken less than `STALL` ago (a quiet server whose one busy worker is
    /// blocked or in a long request must not make it wait).
    #[test]
    fn a_spare_waits_only_while_jobs_are_being_taken() {
        use super::{Idle, STALL};
        let idle = Idle::default();
        let t0 = idle.epoch + STALL;
        idle.last_take
            .store(idle.since_epoch(t0), Ordering::Relaxed);
        assert!(!idle.spare_waits(t0), "the app is not seen to hold the GIL");
        idle.gil_bound.store(true, Ordering::Relaxed);
        assert!(idle.spare_waits(t0 + STALL / 4));
        assert!(!idle.spare_waits(t0 + STALL));
        assert!(!idle.spare_waits(t0 + STALL * 10));
    }

    /// A worker whose jobs block (an app waiting with the GIL released) lets
    /// spares join at once; one whose jobs never block marks the app as
    /// holding the GIL. Waiting for jobs does not count.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_worker_tells_blocking_jobs_from_gil_bound_ones() {
        use super::WINDOW;
        Python::initialize();
        let (tx, rx) = super::channel::<u32>();
        let mut worker = rx.worker();
        let mut run = |work: &dyn Fn()| {
            for i in 0..=WINDOW {
                tx.send(i);
                tx.announce(false);
                Python::attach(|py| worker.next(py, || {})).expect("a job");
                work();
            }
        };
        let bound = || rx.idle.gil_bound.load(Ordering::Relaxed);
        run(&|| std::thread::sleep(Duration::from_millis(1)));
        assert!(!bound(), "jobs that sleep do not hold the GIL");
        run(&|| {
            let t = Instant::now();
            while t.elapsed() < Duration::from_micros(200) {
                std::hint::spin_loop();
            }
        });
        assert!(bound(), "jobs that never block hold it");
    }
}
