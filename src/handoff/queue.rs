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

use std::cell::Cell;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use parking_lot::{Condvar, Mutex};
use pyo3::Python;

#[derive(Default)]
struct Idle {
    state: Mutex<IdleState>,
    cv: Condvar,
}

#[derive(Default)]
struct IdleState {
    sleepers: usize,
    /// Workers woken but not yet holding a job. While one is on its way (it
    /// may be waiting for the GIL), waking more would only add threads
    /// queueing for the GIL; it wakes the next itself once it has a job.
    searching: usize,
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

impl Idle {
    /// Wakes a sleeper unless one is already on its way.
    fn wake_one(state: &mut IdleState, cv: &Condvar) {
        if state.sleepers > 0 && state.searching == 0 {
            state.searching += 1;
            cv.notify_one();
        }
    }

    /// A worker took a job: it stops searching if it was woken for it, and
    /// wakes the next if more jobs wait. `more` is asked under the lock: a job
    /// announced between an unlocked check and this lock would find
    /// `searching` still set, wake nobody, and wait for a busy worker.
    fn took_job(&self, was_woken: bool, more: impl Fn() -> bool) {
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
            Idle::wake_one(&mut state, &self.cv);
        }
    }

    /// Sleeps unless `ready()` (checked under the lock a waker takes, so no
    /// wake-up is lost) or the queue is closed.
    fn sleep(&self, was_woken: bool, ready: impl Fn() -> bool) -> Woke {
        let mut state = self.state.lock();
        if was_woken {
            state.searching = state.searching.saturating_sub(1);
        }
        if state.closed {
            return Woke::Closed;
        }
        if ready() {
            return Woke::Ready;
        }
        state.sleepers += 1;
        self.cv.wait(&mut state);
        state.sleepers -= 1;
        if state.closed {
            Woke::Closed
        } else {
            Woke::Notified
        }
    }

    fn close(&self) {
        self.state.lock().closed = true;
        self.cv.notify_all();
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
            Idle::wake_one(&mut self.idle.state.lock(), &self.idle.cv);
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

    /// The next job, sleeping with the GIL released while there is none;
    /// `None` once the loop has gone and the queue is empty. `chores` runs,
    /// with the GIL, each time before the worker sleeps.
    pub fn next(&self, py: Python<'_>, mut chores: impl FnMut()) -> Option<T> {
        let mut woken = false;
        loop {
            match self.rx.try_recv() {
                Ok(job) => {
                    self.idle.took_job(woken, || !self.rx.is_empty());
                    return Some(job);
                }
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {
                    chores();
                    match py.detach(|| self.idle.sleep(woken, || !self.rx.is_empty())) {
                        Woke::Closed => return self.rx.try_recv().ok(),
                        woke => woken = woke == Woke::Notified,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

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
                    while let Some(job) = Python::attach(|py| rx.next(py, || {})) {
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
}
