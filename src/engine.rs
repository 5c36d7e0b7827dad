//! `Engine`: what the Python `Server` drives. It binds at construction (so the
//! real ports are known before `run`), starts the loop and worker threads,
//! waits for them with the GIL released, and stops them cleanly.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Poll, Waker};
use parking_lot::{Condvar, Mutex};
use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::config::Config;
use crate::event_loop::{Control, EventLoop, WAKER};
use crate::net::listener::{somaxconn, Listener};
use crate::stats::Stats;
use crate::workers::pool::{self, WorkerShared};
use crate::workers::queue;
use crate::workers::{LoopHandle, LoopWaker, WorkerLink};

/// Sockets bound but not yet served.
struct Bound_ {
    poll: Poll,
    listeners: Vec<Listener>,
}

/// Set when the event loop thread has finished (also if it panicked).
#[derive(Default)]
struct Finished {
    done: Mutex<bool>,
    cv: Condvar,
}

struct SetOnDrop(Arc<Finished>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        *self.0.done.lock() = true;
        self.0.cv.notify_all();
    }
}

/// The listening sockets, bound (and `listen()`ed) before any thread or
/// process exists: worker processes forked afterwards inherit them and share
/// one accept queue, so a worker that dies takes no queued connection with it.
#[pyclass(module = "maitre._maitre")]
pub struct Listeners {
    sockets: Mutex<Option<Vec<Listener>>>,
    effective: Vec<(String, u16)>,
}

#[pymethods]
impl Listeners {
    #[new]
    fn new(config: &Bound<'_, PyDict>) -> PyResult<Self> {
        crate::refresh_logging();
        let cfg = Config::from_dict(config)?;
        if let Some(max) = somaxconn() {
            if cfg.backlog > max {
                log::warn!(
                    target: "maitre",
                    "backlog={} is more than the kernel allows: listen() clamps it to \
                     net.core.somaxconn={} (raise it with `sysctl -w net.core.somaxconn={}`)",
                    cfg.backlog,
                    max,
                    cfg.backlog
                );
            }
        }
        let sockets = cfg
            .listen
            .iter()
            .map(|&addr| {
                Listener::bind(addr, cfg.backlog).map_err(|e| {
                    let text = format!("could not listen on {addr}: {e}");
                    // OSError(errno, text) sets .errno: callers check EADDRINUSE.
                    match e.raw_os_error() {
                        Some(errno) => PyOSError::new_err((errno, text)),
                        None => PyOSError::new_err(text),
                    }
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        let effective = sockets
            .iter()
            .map(|l| (l.addr.ip().to_string(), l.addr.port()))
            .collect();
        Ok(Listeners {
            sockets: Mutex::new(Some(sockets)),
            effective,
        })
    }

    /// Every `(host, port)` actually bound.
    #[getter]
    fn effective_listen(&self) -> Vec<(String, u16)> {
        self.effective.clone()
    }

    /// Closes the sockets (when no engine took them over).
    fn close(&self) {
        self.sockets.lock().take();
    }
}

#[pyclass(module = "maitre._maitre")]
pub struct Engine {
    app: Py<PyAny>,
    cfg: Arc<Config>,
    stats: Arc<Stats>,
    control: Arc<Control>,
    bound: Mutex<Option<Bound_>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    finished: Arc<Finished>,
}

#[pymethods]
impl Engine {
    /// Serves `app` on the sockets of `listeners`, which it takes over.
    #[new]
    fn new(
        app: Py<PyAny>,
        config: &Bound<'_, PyDict>,
        listeners: &Bound<'_, Listeners>,
    ) -> PyResult<Self> {
        crate::refresh_logging();
        let cfg = Config::from_dict(config)?;
        let listeners = listeners.borrow();
        let Some(sockets) = listeners.sockets.lock().take() else {
            return Err(PyRuntimeError::new_err(
                "these listeners are already in use",
            ));
        };
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        Ok(Engine {
            app,
            cfg: Arc::new(cfg),
            stats: Arc::new(Stats::default()),
            control: Arc::new(Control {
                waker: Arc::new(LoopWaker::new(waker)),
                stop: Default::default(),
            }),
            bound: Mutex::new(Some(Bound_ {
                poll,
                listeners: sockets,
            })),
            threads: Mutex::new(Vec::new()),
            finished: Arc::new(Finished::default()),
        })
    }

    /// Starts the event loop and the worker threads; returns at once.
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        let Some(Bound_ { poll, listeners }) = self.bound.lock().take() else {
            return Err(PyRuntimeError::new_err(
                "the server was already started or closed",
            ));
        };
        if self.control.stop.load(Ordering::Acquire) {
            *self.finished.done.lock() = true;
            return Ok(());
        }
        crate::os::malloc::tune();
        let (job_tx, job_rx) = queue::channel();
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let (garbage_tx, garbage_rx) = crossbeam_channel::unbounded();
        let event_loop = EventLoop::new(
            poll,
            listeners,
            Arc::clone(&self.cfg),
            Arc::clone(&self.stats),
            WorkerLink {
                jobs: job_tx,
                completions: done_rx,
                garbage: garbage_rx.clone(),
            },
            Arc::clone(&self.control),
        )?;
        let shared = Arc::new(WorkerShared {
            app: self.app.clone_ref(py),
            cfg: Arc::clone(&self.cfg),
            stats: Arc::clone(&self.stats),
            jobs: job_rx,
            handle: LoopHandle {
                completions: done_tx,
                waker: Arc::clone(&self.control.waker),
                garbage: garbage_tx,
            },
            garbage: garbage_rx,
        });
        let mut threads = self.threads.lock();
        threads.extend(pool::spawn(shared, self.cfg.threads)?);
        let finished = SetOnDrop(Arc::clone(&self.finished));
        threads.push(
            std::thread::Builder::new()
                .name("maitre-loop".to_owned())
                .spawn(move || {
                    let _finished = finished;
                    event_loop.run();
                })?,
        );
        Ok(())
    }

    /// Waits until the server has stopped (True) or `timeout` seconds passed
    /// (False). The GIL is released while waiting; signal handlers still run.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let deadline = timeout.map(|t| Instant::now() + Duration::from_secs_f64(t.max(0.0)));
        loop {
            let slice = deadline.map_or(Duration::from_millis(50), |d| {
                d.saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(50))
            });
            let finished = &self.finished;
            let done = py.detach(|| {
                let mut done = finished.done.lock();
                if !*done {
                    finished.cv.wait_for(&mut done, slice);
                }
                *done
            });
            if done {
                let threads: Vec<_> = self.threads.lock().drain(..).collect();
                py.detach(|| {
                    for t in threads {
                        let _ = t.join();
                    }
                });
                return Ok(true);
            }
            py.check_signals()?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
        }
    }

    /// Asks the server to stop: stop accepting, finish in-flight responses,
    /// close. Safe from any thread; returns at once.
    fn close(&self) {
        self.control.stop.store(true, Ordering::Release);
        if self.bound.lock().take().is_some() {
            // Never started: dropping the sockets is all there is to do.
            *self.finished.done.lock() = true;
            self.finished.cv.notify_all();
        }
        self.control.waker.wake();
    }

    /// Live counters: connections, requests, queue depth, errors.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.stats.snapshot() {
            d.set_item(k, v)?;
        }
        Ok(d)
    }
}
