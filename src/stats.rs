//! Counters the event loop and the workers update with relaxed atomics (they
//! are read for reporting, never for synchronisation).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Default, Debug)]
pub struct Stats {
    pub connections_accepted: AtomicU64,
    pub connections_open: AtomicU64,
    pub connection_limit_pauses: AtomicU64,
    /// Closed for not sending a request head (or a body asked for) within header_timeout.
    pub connections_header_timeout: AtomicU64,
    pub requests: AtomicU64,
    pub requests_rejected: AtomicU64,
    pub requests_in_queue: AtomicU64,
    pub requests_in_app: AtomicU64,
    pub app_errors: AtomicU64,
}

impl Stats {
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        vec![
            (
                "connections_accepted",
                self.connections_accepted.load(Relaxed),
            ),
            ("connections_open", self.connections_open.load(Relaxed)),
            (
                "connection_limit_pauses",
                self.connection_limit_pauses.load(Relaxed),
            ),
            (
                "connections_header_timeout",
                self.connections_header_timeout.load(Relaxed),
            ),
            ("requests", self.requests.load(Relaxed)),
            ("requests_rejected", self.requests_rejected.load(Relaxed)),
            ("requests_in_queue", self.requests_in_queue.load(Relaxed)),
            ("requests_in_app", self.requests_in_app.load(Relaxed)),
            ("app_errors", self.app_errors.load(Relaxed)),
        ]
    }
}

pub fn incr(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

pub fn decr(c: &AtomicU64) {
    c.fetch_sub(1, Relaxed);
}
