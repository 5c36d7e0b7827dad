//! The pool of Python worker threads. Each is a Rust thread attached to the
//! interpreter once for its whole life; it holds the GIL only while it runs
//! Python and releases it to wait for work. A busy worker takes the next job
//! without releasing the GIL or sleeping (see `queue`).

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Receiver;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::config::Config;
use crate::stats::{decr, Stats};
use crate::workers::queue::JobReceiver;
use crate::workers::{Job, LoopHandle};
use crate::wsgi::task::Task;
use crate::wsgi::WsgiContext;

pub struct WorkerShared {
    pub app: Py<PyAny>,
    pub cfg: Arc<Config>,
    pub stats: Arc<Stats>,
    pub jobs: JobReceiver<Job>,
    pub handle: LoopHandle,
    /// Response `bytes` objects the loop has finished writing.
    pub garbage: Receiver<Py<PyBytes>>,
}

pub fn spawn(shared: Arc<WorkerShared>, count: usize) -> std::io::Result<Vec<JoinHandle<()>>> {
    (0..count)
        .map(|i| {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("maitre-worker-{i}"))
                .spawn(move || run(&shared))
        })
        .collect()
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
        while let Some(job) = shared.jobs.next(py) {
            decr(&shared.stats.requests_in_queue);
            // Decref what the loop has written, here where the GIL is held.
            while shared.garbage.try_recv().is_ok() {}
            Task::new(py, &ctx, shared, job).run(app);
        }
    });
}
