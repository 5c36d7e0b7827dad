//! What the server counts and how it is reported. The event loop and the
//! worker threads update relaxed atomics (read for reporting, never to
//! synchronise); nothing takes a lock per request. Each process's `Stats`
//! lives in a `Region` every worker process shares, so any of them (and the
//! parent) reads all of them live: `report` turns them into JSON, Prometheus
//! text or the status page, served by `endpoint` on the `metrics` listener;
//! `watch` logs what goes wrong, once per episode.

pub mod endpoint;
mod histogram;
pub mod listen;
mod prometheus;
mod region;
pub mod report;
pub mod watch;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use histogram::{HistSnapshot, Histogram};
pub use region::{Region, StatsHandle};

/// Ages are kept as microseconds since this instant, set before any worker
/// process is forked, so every process measures from the same origin.
static EPOCH: OnceLock<Instant> = OnceLock::new();

pub fn init_clock() {
    EPOCH.get_or_init(Instant::now);
}

pub fn micros(at: Instant) -> u64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(at.saturating_duration_since(epoch).as_micros()).unwrap_or(u64::MAX)
}

/// How many queued requests keep their enqueue time (for the oldest wait);
/// past that the oldest known is reported, a lower bound.
const RING: usize = 1024;

/// Written by the event loop. Kept on cache lines of their own, apart from
/// the workers' counters.
#[repr(C, align(64))]
pub struct LoopCounters {
    pub connections_open: AtomicU64,
    /// Waiting for a request with nothing buffered (idle keep-alive).
    pub connections_idle: AtomicU64,
    pub connections_accepted: AtomicU64,
    pub closed_by_client: AtomicU64,
    pub closed_by_timeout: AtomicU64,
    pub closed_by_header_timeout: AtomicU64,
    pub closed_by_error: AtomicU64,
    pub closed_by_server: AtomicU64,
    pub limit_pauses: AtomicU64,
    /// When accepting paused at `connection_limit` (micros), 0 while accepting.
    pub paused_since: AtomicU64,
    /// Time paused at `connection_limit` in earlier episodes (micros).
    pub paused_micros: AtomicU64,
    pub fd_pauses: AtomicU64,
    /// 1 while accepting is paused for lack of file descriptors.
    pub fd_paused: AtomicU64,
    pub bad_requests: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// 1 once a stop began: `/health/ready` answers 503.
    pub draining: AtomicU64,
    /// Requests handed to the workers; minus `dequeued`, how many wait.
    pub enqueued: AtomicU64,
}

/// Written by the worker threads.
#[repr(C, align(64))]
pub struct WorkerCounters {
    pub dequeued: AtomicU64,
    /// Requests inside the app: each holds one worker thread.
    pub in_app: AtomicU64,
    pub app_errors: AtomicU64,
    /// Responses by status class, 1xx to 5xx (the loop's own 4xx included).
    pub by_status: [AtomicU64; 5],
    /// From a complete request head to a thread taking it.
    pub queue_wait: Histogram,
    /// From a complete request head to the app's response ending.
    pub duration: Histogram,
}

/// One process's counters. All-zero is the valid initial state (see `Region`).
#[repr(C)]
pub struct Stats {
    /// The process these are for; 0 for a slot no worker has used yet.
    pub pid: AtomicU64,
    pub threads: AtomicU64,
    pub lp: LoopCounters,
    pub wk: WorkerCounters,
    /// Enqueue times (micros) by enqueue number modulo `RING`.
    queued_at: [AtomicU64; RING],
}

fn z() -> AtomicU64 {
    AtomicU64::new(0)
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            pid: z(),
            threads: z(),
            lp: LoopCounters {
                connections_open: z(),
                connections_idle: z(),
                connections_accepted: z(),
                closed_by_client: z(),
                closed_by_timeout: z(),
                closed_by_header_timeout: z(),
                closed_by_error: z(),
                closed_by_server: z(),
                limit_pauses: z(),
                paused_since: z(),
                paused_micros: z(),
                fd_pauses: z(),
                fd_paused: z(),
                bad_requests: z(),
                bytes_in: z(),
                bytes_out: z(),
                draining: z(),
                enqueued: z(),
            },
            wk: WorkerCounters {
                dequeued: z(),
                in_app: z(),
                app_errors: z(),
                by_status: [const { AtomicU64::new(0) }; 5],
                queue_wait: Histogram::default(),
                duration: Histogram::default(),
            },
            queued_at: [const { AtomicU64::new(0) }; RING],
        }
    }
}

/// What the event loop counts into and reports from.
pub struct LoopStats {
    pub stats: StatsHandle,
    pub views: std::sync::Arc<listen::ListenViews>,
    /// The metrics listener and what it reports, if `metrics` is set.
    pub metrics: Option<(mio::net::TcpListener, std::sync::Arc<report::Reporter>)>,
}

/// Why a connection closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    Client,
    Timeout,
    /// `header_timeout`: a request head (or a body asked for) did not come.
    HeaderTimeout,
    Error,
    Server,
}

impl Stats {
    /// A process takes this slot: a worker replacing a dead one keeps its
    /// totals but not the gauges it left behind.
    pub fn claim(&self, threads: usize) {
        for gauge in [
            &self.lp.connections_open,
            &self.lp.connections_idle,
            &self.lp.paused_since,
            &self.lp.fd_paused,
            &self.lp.draining,
            &self.wk.in_app,
        ] {
            gauge.store(0, Relaxed);
        }
        self.wk
            .dequeued
            .store(self.lp.enqueued.load(Relaxed), Relaxed);
        self.threads.store(threads as u64, Relaxed);
        self.pid.store(u64::from(std::process::id()), Relaxed);
    }

    /// The loop hands a request to the workers (the loop is the only writer
    /// of `enqueued`, so its time is stored before the count is published).
    pub fn enqueue(&self, now: Instant) {
        let n = self.lp.enqueued.load(Relaxed);
        self.queued_at[n as usize % RING].store(micros(now), Relaxed);
        self.lp
            .enqueued
            .store(n + 1, std::sync::atomic::Ordering::Release);
    }

    /// A worker took a request queued at `queued_at`.
    pub fn dequeue(&self, queued_at: Instant, now: Instant) {
        incr(&self.wk.dequeued);
        self.wk
            .queue_wait
            .observe(now.saturating_duration_since(queued_at));
    }

    /// A request's response ended with `status` (0: none was sent).
    pub fn responded(&self, status: u16, took: Duration) {
        self.count_status(status);
        self.wk.duration.observe(took);
    }

    pub fn count_status(&self, status: u16) {
        if let Some(c) = self
            .wk
            .by_status
            .get(usize::from(status / 100).wrapping_sub(1))
        {
            incr(c);
        }
    }

    pub fn closed(&self, why: Closed) {
        decr(&self.lp.connections_open);
        incr(match why {
            Closed::Client => &self.lp.closed_by_client,
            Closed::Timeout => &self.lp.closed_by_timeout,
            Closed::HeaderTimeout => &self.lp.closed_by_header_timeout,
            Closed::Error => &self.lp.closed_by_error,
            Closed::Server => &self.lp.closed_by_server,
        });
    }

    /// Accepting paused at `connection_limit` (true) or resumed.
    pub fn limit_paused(&self, paused: bool, now: Instant) {
        let since = self.lp.paused_since.load(Relaxed);
        if paused && since == 0 {
            incr(&self.lp.limit_pauses);
            self.lp.paused_since.store(micros(now).max(1), Relaxed);
        } else if !paused && since != 0 {
            add(&self.lp.paused_micros, micros(now).saturating_sub(since));
            self.lp.paused_since.store(0, Relaxed);
        }
    }

    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let load = |c: &AtomicU64| c.load(Relaxed);
        let lp = &self.lp;
        let enqueued = lp.enqueued.load(std::sync::atomic::Ordering::Acquire);
        let dequeued = load(&self.wk.dequeued);
        let waiting = enqueued.saturating_sub(dequeued);
        let now_us = micros(now);
        let oldest_wait_micros = if waiting == 0 {
            0
        } else {
            let oldest = dequeued.max(enqueued.saturating_sub(RING as u64));
            now_us.saturating_sub(load(&self.queued_at[oldest as usize % RING]))
        };
        let since = load(&lp.paused_since);
        let current_pause = if since == 0 {
            0
        } else {
            now_us.saturating_sub(since)
        };
        Snapshot {
            pid: load(&self.pid),
            threads: load(&self.threads),
            open: load(&lp.connections_open),
            idle: load(&lp.connections_idle),
            accepted: load(&lp.connections_accepted),
            closed_by_client: load(&lp.closed_by_client),
            closed_by_timeout: load(&lp.closed_by_timeout),
            closed_by_header_timeout: load(&lp.closed_by_header_timeout),
            closed_by_error: load(&lp.closed_by_error),
            closed_by_server: load(&lp.closed_by_server),
            limit_paused: u64::from(since != 0),
            limit_pauses: load(&lp.limit_pauses),
            paused_micros: load(&lp.paused_micros) + current_pause,
            fd_paused: load(&lp.fd_paused),
            fd_pauses: load(&lp.fd_pauses),
            draining: load(&lp.draining),
            requests: enqueued,
            waiting,
            oldest_wait_micros,
            in_app: load(&self.wk.in_app),
            by_status: std::array::from_fn(|i| load(&self.wk.by_status[i])),
            bad_requests: load(&lp.bad_requests),
            app_errors: load(&self.wk.app_errors),
            bytes_in: load(&lp.bytes_in),
            bytes_out: load(&lp.bytes_out),
            queue_wait: self.wk.queue_wait.snapshot(),
            duration: self.wk.duration.snapshot(),
        }
    }
}

/// One process's numbers at one moment, or several summed.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub pid: u64,
    pub threads: u64,
    pub open: u64,
    pub idle: u64,
    pub accepted: u64,
    pub closed_by_client: u64,
    pub closed_by_timeout: u64,
    pub closed_by_header_timeout: u64,
    pub closed_by_error: u64,
    pub closed_by_server: u64,
    pub limit_paused: u64,
    pub limit_pauses: u64,
    pub paused_micros: u64,
    pub fd_paused: u64,
    pub fd_pauses: u64,
    pub draining: u64,
    pub requests: u64,
    pub waiting: u64,
    pub oldest_wait_micros: u64,
    pub in_app: u64,
    pub by_status: [u64; 5],
    pub bad_requests: u64,
    pub app_errors: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub queue_wait: HistSnapshot,
    pub duration: HistSnapshot,
}

impl Snapshot {
    /// Adds another process's numbers: sums, except the oldest wait (the
    /// oldest of all) and the pid (kept).
    pub fn add(&mut self, o: &Snapshot) {
        let sums = [
            (&mut self.threads, o.threads),
            (&mut self.open, o.open),
            (&mut self.idle, o.idle),
            (&mut self.accepted, o.accepted),
            (&mut self.closed_by_client, o.closed_by_client),
            (&mut self.closed_by_timeout, o.closed_by_timeout),
            (
                &mut self.closed_by_header_timeout,
                o.closed_by_header_timeout,
            ),
            (&mut self.closed_by_error, o.closed_by_error),
            (&mut self.closed_by_server, o.closed_by_server),
            (&mut self.limit_paused, o.limit_paused),
            (&mut self.limit_pauses, o.limit_pauses),
            (&mut self.paused_micros, o.paused_micros),
            (&mut self.fd_paused, o.fd_paused),
            (&mut self.fd_pauses, o.fd_pauses),
            (&mut self.draining, o.draining),
            (&mut self.requests, o.requests),
            (&mut self.waiting, o.waiting),
            (&mut self.in_app, o.in_app),
            (&mut self.bad_requests, o.bad_requests),
            (&mut self.app_errors, o.app_errors),
            (&mut self.bytes_in, o.bytes_in),
            (&mut self.bytes_out, o.bytes_out),
        ];
        for (mine, theirs) in sums {
            *mine += theirs;
        }
        for (mine, theirs) in self.by_status.iter_mut().zip(o.by_status) {
            *mine += theirs;
        }
        self.oldest_wait_micros = self.oldest_wait_micros.max(o.oldest_wait_micros);
        self.queue_wait.add(&o.queue_wait);
        self.duration.add(&o.duration);
    }

    /// Connections with a request in progress or output to send.
    pub fn active(&self) -> u64 {
        self.open.saturating_sub(self.idle)
    }
}

pub fn incr(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

pub fn decr(c: &AtomicU64) {
    c.fetch_sub(1, Relaxed);
}

pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_wait_follows_the_queue_in_order() {
        let s = Stats::default();
        let t0 = Instant::now();
        s.enqueue(t0);
        s.enqueue(t0 + Duration::from_millis(50));
        let later = t0 + Duration::from_millis(100);
        let snap = s.snapshot(later);
        assert_eq!((snap.requests, snap.waiting), (2, 2));
        assert!(snap.oldest_wait_micros >= 99_000, "{snap:?}");
        s.dequeue(t0, later);
        let snap = s.snapshot(later);
        assert_eq!(snap.waiting, 1);
        assert!(
            (49_000..51_000).contains(&snap.oldest_wait_micros),
            "{snap:?}"
        );
        s.dequeue(t0, later);
        assert_eq!(s.snapshot(later).oldest_wait_micros, 0);
        assert_eq!(s.snapshot(later).queue_wait.count(), 2);
    }

    #[test]
    fn pauses_add_up_including_the_current_one() {
        let s = Stats::default();
        let t0 = Instant::now();
        s.limit_paused(true, t0);
        s.limit_paused(true, t0 + Duration::from_millis(5)); // same episode
        s.limit_paused(false, t0 + Duration::from_millis(10));
        s.limit_paused(true, t0 + Duration::from_millis(20));
        let snap = s.snapshot(t0 + Duration::from_millis(25));
        assert_eq!((snap.limit_pauses, snap.limit_paused), (2, 1));
        assert!((14_000..=16_000).contains(&snap.paused_micros), "{snap:?}");
    }

    #[test]
    fn status_classes_and_sums() {
        let s = Stats::default();
        for code in [200, 204, 404, 500, 0, 999] {
            s.count_status(code);
        }
        let mut total = s.snapshot(Instant::now());
        assert_eq!(total.by_status, [0, 2, 0, 1, 1]);
        total.add(&s.snapshot(Instant::now()));
        assert_eq!(total.by_status, [0, 4, 0, 2, 2]);
    }
}
