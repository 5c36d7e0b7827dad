//! `Engine`: what the Python `Server` drives. It binds at construction (so the
//! real ports are known before `run`), starts the loop and worker threads,
//! waits for them with the GIL released, and stops them cleanly.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Poll, Waker};
use parking_lot::{Condvar, Mutex};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::access_log::RefusedLog;
use crate::config::{Config, ListenAddr};
use crate::event_loop::{EventLoop, WAKER};
use crate::handoff::queue;
use crate::handoff::{Control, Garbage, LoopHandle, LoopWaker, WorkerLink, WorkerShared};
use crate::net::listener::{self, Listener, Port};
use crate::stats::listen::{self, ListenViews};
use crate::stats::report::Reporter;
use crate::stats::{LoopStats, Region, StatsHandle};
use crate::workers;

/// How long a stopped server waits for its worker threads to leave: an idle
/// one leaves at once when the loop drops the job queue; one still in the app
/// after the drain deadline may never leave.
const JOIN_GRACE: Duration = Duration::from_millis(500);

/// Joins the threads that finish within `grace` and leaves the others running
/// (dropping a handle detaches its thread); returns how many were left.
fn join_prompt(threads: Vec<JoinHandle<()>>, grace: Duration) -> usize {
    let deadline = Instant::now() + grace;
    let mut pending = threads;
    loop {
        let (done, rest): (Vec<_>, Vec<_>) = pending.into_iter().partition(|t| t.is_finished());
        for t in done {
            let _ = t.join();
        }
        pending = rest;
        if pending.is_empty() || Instant::now() >= deadline {
            return pending.len();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sockets bound but not yet served.
struct Bound_ {
    poll: Poll,
    listeners: Vec<Listener>,
    metrics: Option<TcpListener>,
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
/// one accept queue, or with `reuse_port` each serves its own of a TCP
/// address's sockets (see `Listener::bind_group`); either way the parent holds
/// them all, so a worker that dies takes no queued connection with it.
/// The stats region is made here too, before fork, for the same reason.
#[pyclass(module = "maitre._maitre")]
pub struct Listeners {
    sockets: Mutex<Option<Vec<Listener>>>,
    metrics: Mutex<Option<TcpListener>>,
    effective: Vec<(String, Port)>,
    effective_metrics: Option<(String, u16)>,
    /// What the supervising parent reports (the workers count into `region`).
    reporter: Reporter,
}

/// Binds one `listen` entry: one socket, or with `reuse_port` one per worker
/// for a TCP address. A failure is an OSError with its errno, which callers
/// check (EADDRINUSE).
fn bind(addr: &ListenAddr, cfg: &Config) -> PyResult<Vec<Listener>> {
    let (bound, shown) = match addr {
        ListenAddr::Tcp(a) if cfg.reuse_port => (
            Listener::bind_group(*a, cfg.backlog, cfg.workers),
            a.to_string(),
        ),
        ListenAddr::Tcp(a) => (
            Listener::bind(*a, cfg.backlog).map(|l| vec![l]),
            a.to_string(),
        ),
        #[cfg(unix)]
        ListenAddr::Unix(path) => (
            Listener::bind_unix(path, cfg.unix_socket_perms, cfg.backlog).map(|l| vec![l]),
            format!("unix:{path}"),
        ),
        #[cfg(not(unix))]
        ListenAddr::Unix(path) => (
            Err(std::io::ErrorKind::Unsupported.into()),
            format!("unix:{path}"),
        ),
    };
    bound.map_err(|e| os_error(e, &shown))
}

/// The metrics endpoint's listener.
fn bind_metrics(addr: std::net::SocketAddr) -> PyResult<TcpListener> {
    listener::bind_tcp(addr, 64).map_err(|e| os_error(e, &addr.to_string()))
}

/// OSError(errno, text) sets `.errno`: callers check EADDRINUSE.
fn os_error(e: std::io::Error, shown: &str) -> PyErr {
    let text = format!("could not listen on {shown}: {e}");
    match e.raw_os_error() {
        Some(errno) => PyOSError::new_err((errno, text)),
        None => PyOSError::new_err(text),
    }
}

/// Checked before binding: with `strict_backlog`, a backlog the kernel would
/// clamp is refused.
fn refuse_clamped_backlog(cfg: &Config) -> PyResult<()> {
    match listen::somaxconn() {
        Some(max) if cfg.strict_backlog && cfg.backlog > max => {
            Err(PyValueError::new_err(format!(
                "backlog={} is more than the kernel allows: somaxconn={} would clamp it \
                 (strict_backlog is set). Raise it with `{}`, or lower backlog",
                cfg.backlog,
                max,
                listen::somaxconn_sysctl(cfg.backlog)
            )))
        }
        _ => Ok(()),
    }
}

/// Checked after binding, with the backlog in force read back where the OS
/// tells it: a clamped backlog is one WARNING.
fn warn_clamped_backlog(cfg: &Config, views: &ListenViews) {
    let clamped = views
        .read()
        .into_iter()
        .find(|l| l.backlog_effective.is_some_and(|b| b < cfg.backlog));
    let Some(l) = clamped else { return };
    let in_force = l.backlog_effective.unwrap_or_default();
    let somaxconn = views.somaxconn();
    if somaxconn.is_some_and(|cap| in_force < cap) {
        // Not the kernel's cap: a socket given already listening keeps the
        // backlog its creator chose.
        log::warn!(
            target: "maitre",
            "backlog={} requested but {} was already listening with a backlog of {} when \
             maitre was given it (sockets=, or socket activation), and keeps it: connections \
             past that are refused while maitre is busy. Raise it where the socket is made \
             (listen(), or systemd's Backlog=)",
            cfg.backlog,
            l.address,
            in_force
        );
        return;
    }
    log::warn!(
        target: "maitre",
        "backlog={} requested but the kernel caps it at somaxconn={}: the backlog in force \
         on {} is {}, so connections past that are refused while maitre is busy. Raise \
         the cap with `{}` (persist it in /etc/sysctl.d/), or set strict_backlog to refuse \
         to start",
        cfg.backlog,
        somaxconn.map_or_else(|| "?".to_owned(), |m| m.to_string()),
        l.address,
        in_force,
        listen::somaxconn_sysctl(cfg.backlog)
    );
}

/// The sockets the caller bound (`sockets=`), served on duplicates of their
/// descriptors: theirs stay open, and usable once the server has stopped.
#[cfg(unix)]
fn adopt(config: &Bound<'_, PyDict>, backlog: i32) -> PyResult<Vec<Listener>> {
    use std::os::fd::{BorrowedFd, RawFd};
    let Some(given) = config.get_item("sockets")? else {
        return Ok(Vec::new());
    };
    let mut adopted = Vec::new();
    for sock in given.try_iter()? {
        let sock = sock?;
        let fd: RawFd = sock.call_method0("fileno")?.extract()?;
        if fd < 0 {
            return Err(PyValueError::new_err("sockets: a socket is closed"));
        }
        // SAFETY: `sock` holds the descriptor open while this runs: it is a
        // live socket object (fileno() is -1 once closed, checked above), and
        // the GIL we hold keeps other Python threads from closing it.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let listener = Listener::adopt(fd, backlog).map_err(|e| {
            let text = format!(
                "sockets: cannot serve {}: {e}",
                sock.repr()
                    .map_or_else(|_| "a socket".into(), |r| r.to_string())
            );
            match e.raw_os_error() {
                Some(errno) => PyOSError::new_err((errno, text)),
                None => PyValueError::new_err(text),
            }
        })?;
        adopted.push(listener);
    }
    Ok(adopted)
}

#[cfg(not(unix))]
fn adopt(config: &Bound<'_, PyDict>, _backlog: i32) -> PyResult<Vec<Listener>> {
    match config.get_item("sockets")? {
        Some(given) if !given.is_empty()? => Err(PyValueError::new_err(
            "sockets= needs a Unix system: on Windows, listen on addresses instead",
        )),
        _ => Ok(Vec::new()),
    }
}

#[pymethods]
impl Listeners {
    #[new]
    fn new(config: &Bound<'_, PyDict>) -> PyResult<Self> {
        crate::refresh_logging();
        crate::stats::init_clock();
        let cfg = Config::from_dict(config)?;
        refuse_clamped_backlog(&cfg)?;
        crate::os::limits::ensure_fds(cfg.connection_limit);
        let mut sockets = Vec::new();
        for addr in &cfg.listen {
            sockets.extend(bind(addr, &cfg)?);
        }
        sockets.extend(adopt(config, cfg.backlog)?);
        if sockets.is_empty() {
            return Err(PyValueError::new_err("listen: no address to listen on"));
        }
        let views = Arc::new(ListenViews::new(&sockets, cfg.backlog));
        warn_clamped_backlog(&cfg, &views);
        let metrics = cfg.metrics.map(bind_metrics).transpose()?;
        // An address once, however many workers' sockets listen on it.
        let effective = sockets
            .iter()
            .filter(|l| l.worker.is_none_or(|slot| slot == 0))
            .map(|l| l.effective.clone())
            .collect();
        Ok(Listeners {
            sockets: Mutex::new(Some(sockets)),
            effective,
            effective_metrics: metrics
                .as_ref()
                .and_then(|l| l.local_addr().ok())
                .map(|a| (a.ip().to_string(), a.port())),
            metrics: Mutex::new(metrics),
            reporter: Reporter {
                region: Arc::new(Region::new(cfg.workers)?),
                own: None,
                views,
                connection_limit: cfg.connection_limit,
            },
        })
    }

    /// Every `(host, port)` actually bound; `("unix", path)` for a Unix socket.
    #[getter]
    fn effective_listen(&self) -> Vec<(String, Port)> {
        self.effective.clone()
    }

    /// The metrics endpoint's `(host, port)`, if `metrics` is set.
    #[getter]
    fn effective_metrics(&self) -> Option<(String, u16)> {
        self.effective_metrics.clone()
    }

    /// Every worker process's numbers and the sockets', as JSON.
    fn stats_json(&self) -> String {
        self.reporter.json()
    }

    /// Closes the sockets (when no engine took them over).
    fn close(&self) {
        self.reporter.views.forget();
        self.sockets.lock().take();
        self.metrics.lock().take();
    }
}

#[pyclass(module = "maitre._maitre")]
pub struct Engine {
    app: Py<PyAny>,
    cfg: Arc<Config>,
    stats: StatsHandle,
    views: Arc<ListenViews>,
    reporter: Arc<Reporter>,
    control: Arc<Control>,
    bound: Mutex<Option<Bound_>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    finished: Arc<Finished>,
}

#[pymethods]
impl Engine {
    /// Serves `app` on the sockets of `listeners`, which it takes over;
    /// counts into slot `worker_slot` (of `workers`) of their stats region.
    #[new]
    #[pyo3(signature = (app, config, listeners, worker_slot = 0))]
    fn new(
        app: Py<PyAny>,
        config: &Bound<'_, PyDict>,
        listeners: &Bound<'_, Listeners>,
        worker_slot: usize,
    ) -> PyResult<Self> {
        crate::refresh_logging();
        let cfg = Config::from_dict(config)?;
        let listeners = listeners.borrow();
        let Some(mut sockets) = listeners.sockets.lock().take() else {
            return Err(PyRuntimeError::new_err(
                "these listeners are already in use",
            ));
        };
        // With reuse_port, the other workers' sockets are theirs: this
        // process closes its copies (the parent keeps them open).
        sockets.retain(|l| l.worker.is_none_or(|slot| slot == worker_slot));
        let region = Arc::clone(&listeners.reporter.region);
        let Some(stats) = StatsHandle::new(region, worker_slot) else {
            return Err(PyValueError::new_err(format!(
                "worker_slot {worker_slot} is not below workers={}",
                cfg.workers
            )));
        };
        stats.claim(cfg.threads);
        // This process's own view: the parent's may be locked across fork.
        let views = Arc::new(ListenViews::new(&sockets, cfg.backlog));
        let reporter = Arc::new(Reporter {
            region: Arc::clone(stats.region()),
            own: Some(stats.slot()),
            views: Arc::clone(&views),
            connection_limit: cfg.connection_limit,
        });
        let metrics = listeners.metrics.lock().take();
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        Ok(Engine {
            app,
            cfg: Arc::new(cfg),
            stats,
            views,
            reporter,
            control: Arc::new(Control {
                waker: Arc::new(LoopWaker::new(waker)),
                stop: Default::default(),
            }),
            bound: Mutex::new(Some(Bound_ {
                poll,
                listeners: sockets,
                metrics,
            })),
            threads: Mutex::new(Vec::new()),
            finished: Arc::new(Finished::default()),
        })
    }

    /// Starts the event loop and the worker threads; returns at once.
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        let Some(Bound_ {
            poll,
            listeners,
            metrics,
        }) = self.bound.lock().take()
        else {
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
        let garbage = Garbage::default();
        let refused = RefusedLog::default();
        let event_loop = EventLoop::new(
            poll,
            listeners,
            Arc::clone(&self.cfg),
            LoopStats {
                stats: self.stats.clone(),
                views: Arc::clone(&self.views),
                metrics: metrics.map(|l| (l, Arc::clone(&self.reporter))),
            },
            WorkerLink {
                jobs: job_tx,
                completions: done_rx,
                garbage: garbage.clone(),
                refused: refused.clone(),
            },
            Arc::clone(&self.control),
        )?;
        let shared = Arc::new(WorkerShared {
            app: self.app.clone_ref(py),
            cfg: Arc::clone(&self.cfg),
            stats: self.stats.clone(),
            jobs: job_rx,
            handle: LoopHandle {
                completions: done_tx,
                control: Arc::clone(&self.control),
                garbage,
            },
            refused,
        });
        let mut threads = self.threads.lock();
        threads.extend(workers::spawn(shared, self.cfg.threads)?);
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
    /// `None`, infinity or a timeout too large for a deadline wait without end;
    /// a negative one polls; NaN is a `ValueError`.
    ///
    /// Once the event loop has stopped (after at most the drain deadline) the
    /// worker threads that leave promptly are joined; one still inside the app
    /// is left behind, so a stuck app cannot keep the server from stopping.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let deadline = match timeout {
            Some(t) if t.is_nan() => {
                return Err(PyValueError::new_err("timeout must be a number, not NaN"))
            }
            Some(t) => Duration::try_from_secs_f64(t.max(0.0))
                .ok()
                .and_then(|d| Instant::now().checked_add(d)),
            None => None,
        };
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
                let left = py.detach(|| join_prompt(threads, JOIN_GRACE));
                if left > 0 {
                    log::warn!(
                        target: "maitre",
                        "stopped with {left} worker thread(s) still inside the application"
                    );
                }
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

    /// The live numbers as JSON (see `stats::report`).
    fn stats_json(&self) -> String {
        self.reporter.json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_prompt_leaves_a_stuck_thread_behind() {
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
        let threads = vec![
            std::thread::spawn(|| {}),
            std::thread::spawn(move || {
                let _ = release_rx.recv();
            }),
        ];
        let t0 = Instant::now();
        assert_eq!(join_prompt(threads, Duration::from_millis(100)), 1);
        assert!(t0.elapsed() < Duration::from_secs(2));
        drop(release_tx);
    }

    #[test]
    fn join_prompt_joins_threads_that_finish_in_time() {
        let threads = (0..3)
            .map(|_| std::thread::spawn(|| std::thread::sleep(Duration::from_millis(20))))
            .collect();
        assert_eq!(join_prompt(threads, Duration::from_secs(5)), 0);
    }
}
