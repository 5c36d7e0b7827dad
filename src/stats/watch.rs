//! Looks at the numbers once a second from the event loop and logs, once per
//! episode and with the numbers, what is going wrong and what to change.

use std::time::{Duration, Instant};

use super::listen::{host_listen_overflows, ListenViews, ListenerInfo};
use super::report::seconds;
use super::Stats;
use crate::config::Config;

const EVERY: Duration = Duration::from_secs(1);
/// A new episode this soon after the last one logged stays quiet.
const QUIET: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Episode {
    on: bool,
    logged: Option<Instant>,
}

impl Episode {
    /// Whether an episode starts now and may be logged.
    fn begins(&mut self, on: bool, now: Instant) -> bool {
        let starts = on && !self.on;
        self.on = on;
        if starts && self.logged.is_none_or(|t| now.duration_since(t) >= QUIET) {
            self.logged = Some(now);
            return true;
        }
        false
    }
}

pub struct Watch {
    next: Instant,
    saturated: Episode,
    at_limit: Episode,
    no_fds: Episode,
    dropping: Episode,
    overflows: Option<u64>,
    /// Each listener's kernel drops at the last tick, in `ListenViews` order
    /// (with `reuse_port` one address has a socket per worker).
    drops: Vec<Option<u64>>,
}

/// The listeners whose kernel drops grew since `before`, with how many.
fn grown<'a>(
    before: &[Option<u64>],
    listeners: &'a [ListenerInfo],
) -> Vec<(&'a ListenerInfo, u64)> {
    listeners
        .iter()
        .zip(before)
        .filter_map(|(l, was)| {
            let more = l.drops?.checked_sub((*was)?)?;
            (more > 0).then_some((l, more))
        })
        .collect()
}

fn drop_counts(listeners: &[ListenerInfo]) -> Vec<Option<u64>> {
    listeners.iter().map(|l| l.drops).collect()
}

impl Watch {
    pub fn new(now: Instant, views: &ListenViews) -> Watch {
        Watch {
            next: now + EVERY,
            saturated: Episode::default(),
            at_limit: Episode::default(),
            no_fds: Episode::default(),
            dropping: Episode::default(),
            overflows: host_listen_overflows(),
            drops: drop_counts(&views.read()),
        }
    }

    /// When the loop should call `tick` next.
    pub fn next(&self) -> Instant {
        self.next
    }

    pub fn tick(&mut self, now: Instant, stats: &Stats, cfg: &Config, views: &ListenViews) {
        if now < self.next {
            return;
        }
        self.next = now + EVERY;
        let s = stats.snapshot(now);
        if self
            .saturated
            .begins(s.waiting > 0 && s.in_app >= s.threads, now)
        {
            log::warn!(
                target: "maitre",
                "all {} worker threads are busy and {} request(s) wait for one (the oldest for \
                 {:.1} s): requests arrive faster than the app answers them. If the app waits \
                 on I/O (a database, an API), raise threads (now threads={}); if it is CPU-bound, \
                 raise workers",
                s.threads,
                s.waiting,
                seconds(s.oldest_wait_micros),
                cfg.threads
            );
        }
        let listeners = views.read();
        let queued: u32 = listeners.iter().filter_map(|l| l.queue_length).sum();
        let backlog = listeners.first().and_then(|l| l.backlog_effective);
        if self.at_limit.begins(s.limit_paused > 0, now) {
            log::warn!(
                target: "maitre",
                "connection_limit={} reached ({} open, {} of them idle keep-alive): new \
                 connections wait in the listen backlog ({} queued, backlog {}) until one \
                 closes. Raise connection_limit, or lower channel_timeout so idle connections \
                 close sooner",
                cfg.connection_limit,
                s.open,
                s.idle,
                queued,
                backlog.map_or_else(|| "unknown".to_owned(), |b| b.to_string())
            );
        }
        if self.no_fds.begins(s.fd_paused > 0, now) {
            log::warn!(
                target: "maitre",
                "accepting paused: out of file descriptors with {} connections open; raise the \
                 limit (`ulimit -n`, LimitNOFILE= in systemd) or lower connection_limit={}",
                s.open,
                cfg.connection_limit
            );
        }
        let backlog_text = backlog.map_or_else(|| "unknown".to_owned(), |b| b.to_string());
        let advice = format!(
            "Connections arrive faster than maitre accepts them: raise connection_limit (now {}) \
             if it is reached, else backlog (capped by somaxconn)",
            cfg.connection_limit
        );
        let overflows = host_listen_overflows();
        let host_dropped = match (self.overflows, overflows) {
            (Some(before), Some(after)) => after.saturating_sub(before),
            _ => 0,
        };
        self.overflows = overflows;
        let ours = grown(&self.drops, &listeners);
        let per_socket = listeners.iter().any(|l| l.drops.is_some());
        self.drops = drop_counts(&listeners);
        if per_socket {
            if self.dropping.begins(!ours.is_empty(), now) {
                let on: Vec<String> = ours
                    .iter()
                    .map(|(l, n)| {
                        let worker = l
                            .worker
                            .map_or_else(String::new, |w| format!(", worker {w}"));
                        let queue = l.queue_length.map_or(0, u64::from);
                        format!("{n} on {} ({queue} queued{worker})", l.address)
                    })
                    .collect();
                log::warn!(
                    target: "maitre",
                    "the kernel dropped connections in the last second because the accept \
                     queue was full: {} (backlog {}). {}",
                    on.join(", "),
                    backlog_text,
                    advice
                );
            }
            return;
        }
        // Only the host's count, which covers every socket: blame ours only
        // when its queue is full.
        let full = listeners.iter().any(|l| {
            matches!((l.queue_length, l.backlog_effective),
                (Some(q), Some(b)) if i64::from(q) >= i64::from(b))
        });
        if self.dropping.begins(host_dropped > 0 && full, now) {
            log::warn!(
                target: "maitre",
                "the kernel dropped {} connection(s) in the last second: the listen backlog is \
                 full ({} queued, backlog {}). {}",
                host_dropped,
                queued,
                backlog_text,
                advice
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_episode_is_logged_once_and_a_quick_repeat_not_at_all() {
        let t0 = Instant::now();
        let mut e = Episode::default();
        assert!(e.begins(true, t0));
        assert!(!e.begins(true, t0 + EVERY));
        assert!(!e.begins(false, t0 + 2 * EVERY));
        assert!(
            !e.begins(true, t0 + 3 * EVERY),
            "within QUIET of the last log"
        );
        assert!(!e.begins(false, t0 + QUIET));
        assert!(e.begins(true, t0 + QUIET + EVERY));
    }

    #[test]
    fn only_listeners_whose_drops_grew_are_named() {
        let info = |address: &str, worker, drops| ListenerInfo {
            address: address.to_owned(),
            kind: "tcp",
            worker,
            backlog_requested: 1,
            backlog_effective: Some(1),
            queue_length: Some(1),
            drops,
        };
        // reuse_port: two sockets on one address, only worker 1's dropped.
        let now = [
            info("a:1", Some(0), Some(3)),
            info("a:1", Some(1), Some(9)),
            info("unix:x", None, None),
        ];
        let before = [Some(3), Some(5), None];
        let named: Vec<_> = grown(&before, &now)
            .into_iter()
            .map(|(l, n)| (l.worker, n))
            .collect();
        assert_eq!(named, [(Some(1), 4)]);
        assert_eq!(drop_counts(&now), [Some(3), Some(9), None]);
        // The sockets were forgotten (stopping): nothing grew.
        assert!(grown(&before, &[]).is_empty());
    }
}
