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
//! another thread ready for the next request.

use std::cell::Cell;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use parking_lot::{Condvar, Mutex};
use pyo3::Python;

use super::Job;

#[derive(Default)]
struct Idle {
    state: Mutex<IdleState>,
    cv: Condvar,
}

#[derive(Default)]
struct IdleState {
    sleepers: usize,
    closed: bool,
}

impl Idle {
    fn wake_one(&self) {
        let state = self.state.lock();
        if state.sleepers > 0 {
            self.cv.notify_one();
        }
    }

    /// Sleeps unless `ready()`; returns false once the queue is closed. The
    /// check runs under the lock a waker takes, so no wake-up is lost.
    fn sleep(&self, ready: impl Fn() -> bool) -> bool {
        let mut state = self.state.lock();
        if !state.closed && !ready() {
            state.sleepers += 1;
            self.cv.wait(&mut state);
            state.sleepers -= 1;
        }
        !state.closed
    }

    fn close(&self) {
        self.state.lock().closed = true;
        self.cv.notify_all();
    }
}

pub fn channel() -> (JobSender, JobReceiver) {
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
pub struct JobSender {
    tx: Sender<Job>,
    idle: Arc<Idle>,
    /// Jobs were queued since the last `announce`.
    unannounced: Cell<bool>,
}

impl JobSender {
    /// Queues a job; no worker is woken until `announce`. False if the
    /// workers are gone.
    pub fn send(&self, job: Job) -> bool {
        let sent = self.tx.send(job).is_ok();
        if sent {
            self.unannounced.set(true);
        }
        sent
    }

    /// Wakes one idle worker if jobs were queued since the last call.
    pub fn announce(&self) {
        if self.unannounced.replace(false) {
            self.idle.wake_one();
        }
    }
}

impl Drop for JobSender {
    fn drop(&mut self) {
        self.idle.close();
    }
}

/// The workers' end, shared by all of them.
pub struct JobReceiver {
    rx: Receiver<Job>,
    idle: Arc<Idle>,
}

impl JobReceiver {
    /// A queued job, if any, without waiting (for tests that act as the workers).
    #[cfg(test)]
    pub fn try_recv(&self) -> Result<Job, TryRecvError> {
        self.rx.try_recv()
    }

    /// The next job, sleeping with the GIL released while there is none;
    /// `None` once the loop has gone and the queue is empty.
    pub fn next(&self, py: Python<'_>) -> Option<Job> {
        loop {
            match self.rx.try_recv() {
                Ok(job) => {
                    if !self.rx.is_empty() {
                        self.idle.wake_one();
                    }
                    return Some(job);
                }
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {
                    if !py.detach(|| self.idle.sleep(|| !self.rx.is_empty())) {
                        return self.rx.try_recv().ok();
                    }
                }
            }
        }
    }
}
