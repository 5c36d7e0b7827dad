//! A report of every process's numbers and the listening sockets, as JSON
//! (what `server.stats()` returns, parsed, and what `/stats` serves). The
//! layout is documented in README.md ("Live numbers") and typed in
//! `_maitre.pyi`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use super::histogram::BOUNDS_MICROS;
use super::listen::{host_listen_overflows, ListenViews, ListenerInfo};
use super::{HistSnapshot, Region, Snapshot};

/// Reads a region and the listening sockets; shared by `Engine`,
/// `Listeners` (the supervising parent) and the metrics endpoint.
pub struct Reporter {
    pub region: Arc<Region>,
    /// This process's slot; `None` in the supervising parent.
    pub own: Option<usize>,
    pub views: Arc<ListenViews>,
    pub connection_limit: usize,
}

pub struct Report {
    pub total: Snapshot,
    /// (slot, numbers) of each worker process that has started; empty
    /// with a single process.
    pub workers: Vec<(usize, Snapshot)>,
    pub listeners: Vec<ListenerInfo>,
    pub somaxconn: Option<i32>,
    pub host_overflows: Option<u64>,
    pub connection_limit: usize,
    pub draining: bool,
}

impl Reporter {
    pub fn report(&self) -> Report {
        let now = Instant::now();
        let slots = self.region.slots();
        let mut workers: Vec<(usize, Snapshot)> = slots
            .iter()
            .enumerate()
            .filter(|(i, s)| Some(*i) == self.own || s.pid.load(Relaxed) != 0)
            .map(|(i, s)| (i, s.snapshot(now)))
            .collect();
        let mut total = Snapshot::default();
        for (_, s) in &workers {
            total.add(s);
        }
        total.pid = u64::from(std::process::id());
        if slots.len() == 1 {
            workers.clear();
        }
        Report {
            total,
            workers,
            listeners: self.views.read(),
            somaxconn: self.views.somaxconn(),
            host_overflows: host_listen_overflows(),
            connection_limit: self.connection_limit,
            draining: self.draining(),
        }
    }

    /// This process is stopping (in the parent: never).
    pub fn draining(&self) -> bool {
        self.own
            .and_then(|i| self.region.slots().get(i))
            .is_some_and(|s| s.lp.draining.load(Relaxed) != 0)
    }

    pub fn json(&self) -> String {
        self.report().json()
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "null".to_owned(), |v| v.to_string())
}

pub fn seconds(micros: u64) -> f64 {
    micros as f64 / 1e6
}

impl Report {
    pub fn json(&self) -> String {
        let mut out = String::with_capacity(4096);
        let listeners: Vec<String> = self
            .listeners
            .iter()
            .map(|l| {
                // "worker" only with reuse_port, where each worker has its own.
                let worker = l
                    .worker
                    .map_or_else(String::new, |w| format!(r#""worker":{w},"#));
                format!(
                    r#"{{"address":"{}","kind":"{}",{worker}"backlog_requested":{},"backlog_effective":{},"queue_length":{},"drops":{}}}"#,
                    json_string_body(&l.address),
                    l.kind,
                    l.backlog_requested,
                    opt(l.backlog_effective),
                    opt(l.queue_length),
                    opt(l.drops)
                )
            })
            .collect();
        let _ = write!(
            out,
            r#"{{"pid":{},"draining":{},"listeners":[{}],"somaxconn":{},"listen_overflows_host":{},"#,
            self.total.pid,
            self.draining,
            listeners.join(","),
            opt(self.somaxconn),
            opt(self.host_overflows)
        );
        snapshot_json(&mut out, &self.total, self.connection_limit);
        out.push_str(r#","workers":["#);
        for (n, (slot, s)) in self.workers.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            let _ = write!(out, r#"{{"worker":{slot},"pid":{},"#, s.pid);
            snapshot_json(&mut out, s, self.connection_limit);
            out.push('}');
        }
        out.push_str("]}");
        out
    }
}

/// The `connections`, `requests`, `threads` and histogram members.
fn snapshot_json(out: &mut String, s: &Snapshot, connection_limit: usize) {
    let [s1, s2, s3, s4, s5] = s.by_status;
    let _ = write!(
        out,
        concat!(
            r#""connections":{{"open":{},"active":{},"idle":{},"accepted":{},"#,
            r#""closed_by_client":{},"closed_by_timeout":{},"closed_by_header_timeout":{},"#,
            r#""closed_by_error":{},"#,
            r#""closed_by_server":{},"limit":{},"accepting_paused":{},"limit_pauses":{},"#,
            r#""paused_seconds_total":{},"fd_paused":{},"fd_pauses":{}}},"#,
            r#""requests":{{"total":{},"waiting":{},"oldest_wait_seconds":{},"in_app":{},"#,
            r#""by_status":{{"1xx":{},"2xx":{},"3xx":{},"4xx":{},"5xx":{}}},"#,
            r#""bad_requests":{},"app_errors":{},"bytes_in":{},"bytes_out":{}}},"#,
            r#""threads":{{"total":{},"busy":{},"idle":{}}},"#
        ),
        s.open,
        s.active(),
        s.idle,
        s.accepted,
        s.closed_by_client,
        s.closed_by_timeout,
        s.closed_by_header_timeout,
        s.closed_by_error,
        s.closed_by_server,
        connection_limit,
        s.limit_paused,
        s.limit_pauses,
        seconds(s.paused_micros),
        s.fd_paused,
        s.fd_pauses,
        s.requests,
        s.waiting,
        seconds(s.oldest_wait_micros),
        s.in_app,
        s1,
        s2,
        s3,
        s4,
        s5,
        s.bad_requests,
        s.app_errors,
        s.bytes_in,
        s.bytes_out,
        s.threads,
        s.in_app,
        s.threads.saturating_sub(s.in_app),
    );
    out.push_str(r#""request_duration_seconds":"#);
    histogram_json(out, &s.duration);
    out.push_str(r#","queue_wait_seconds":"#);
    histogram_json(out, &s.queue_wait);
}

fn histogram_json(out: &mut String, h: &HistSnapshot) {
    let bounds: Vec<String> = BOUNDS_MICROS
        .iter()
        .map(|&b| seconds(b).to_string())
        .collect();
    let counts: Vec<String> = h.counts.iter().map(u64::to_string).collect();
    let _ = write!(
        out,
        r#"{{"bounds":[{}],"counts":[{}],"sum":{},"count":{}}}"#,
        bounds.join(","),
        counts.join(","),
        seconds(h.sum_micros),
        h.count()
    );
}

/// `s` escaped for use inside a JSON string (a unix socket's path may hold
/// quotes, backslashes or control characters).
fn json_string_body(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}
