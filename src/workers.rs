//! The pool of Python worker threads. Each is a Rust thread attached to the
//! interpreter once for its whole life; it holds the GIL only while it runs
//! Python and releases it to wait for work. A busy worker takes the next job
//! without releasing the GIL or sleeping (see `handoff::queue`).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;

use pyo3::prelude::*;

use crate::handoff::{Completion, Kind, Pieces, WorkerShared};
use crate::os::tempfile;
use crate::stats::incr;
use crate::wsgi::task::Task;
use crate::wsgi::WsgiContext;

pub fn spawn(shared: Arc<WorkerShared>, count: usize) -> std::io::Result<Vec<JoinHandle<()>>> {
    (0..count)
        .map(|i| spawn_one(Arc::clone(&shared), i))
        .collect()
}

fn spawn_one(shared: Arc<WorkerShared>, i: usize) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("maitre-worker-{i}"))
        .spawn(move || {
            crate::os::sched::batch_this_thread();
            let _replace = ReplaceIfDying(Arc::clone(&shared), i);
            run(&shared);
        })
}

/// A worker thread that dies anyway (a panic outside a request) is replaced,
/// so the pool never shrinks for good.
struct ReplaceIfDying(Arc<WorkerShared>, usize);

impl Drop for ReplaceIfDying {
    fn drop(&mut self) {
        if std::thread::panicking() {
            log::error!(target: "maitre", "worker thread {} died; starting a new one", self.1);
            if let Err(e) = spawn_one(Arc::clone(&self.0), self.1) {
                log::error!(target: "maitre", "could not replace a worker thread: {e}");
            }
        }
    }
}

fn run(shared: &WorkerShared) {
    Python::attach(|py| {
        let ctx = match WsgiContext::new(py, &shared.cfg) {
            Ok(ctx) => ctx,
            Err(e) => {
                log::error!(target: "maitre", "worker could not start: {e}");
                return;
            }
        };
        let app = shared.app.bind(py);
        // Before each job and before sleeping (the loop wakes an idle worker
        // for them), so a sent body is freed at once, the access lines of
        // requests the loop refused are written soon, and spool files the
        // loop retired are closed off its thread.
        let chores = || {
            shared.handle.garbage.release(py);
            if tempfile::POOL.has_retired() {
                // Freeing the pages of big files takes milliseconds.
                py.detach(|| tempfile::POOL.close_retired());
            }
            if let Some(format) = &shared.cfg.access_log {
                shared.refused.emit(format);
            }
        };
        let mut jobs = shared.jobs.worker();
        while let Some((job, taken_at)) = jobs.next(py, chores) {
            shared.stats.dequeue(job.queued_at, taken_at);
            chores();
            let req = job.req;
            let task = Task::new(py, &ctx, shared, job, taken_at);
            // No panic may take the thread with it: the request is broken
            // off and the worker goes on to the next.
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| task.run(app))) {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                log::error!(target: "maitre", "internal error while serving a request ({why}); closing its connection");
                incr(&shared.stats.wk.app_errors);
                shared.handle.send(Completion {
                    req,
                    data: Pieces::new(),
                    kind: Kind::Abort,
                });
            }
        }
        // What the loop refused while stopping, and what was lost.
        chores();
        shared.refused.report_loss(true);
    });
}
