//! The report in Prometheus text format (version 0.0.4). The conventional
//! names carry the whole server (every worker process summed); with worker
//! processes each one's numbers follow as `maitre_worker_*{worker="N"}`, so a
//! `sum()` over either family counts nothing twice.

use std::fmt::Write as _;

use super::histogram::BOUNDS_MICROS;
use super::listen::ListenerInfo;
use super::report::{seconds, Report};
use super::{HistSnapshot, Snapshot};

struct Out {
    text: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.text, "{name} {value}");
        } else {
            let _ = writeln!(self.text, "{name}{{{labels}}} {value}");
        }
    }
}

/// Joins label pairs (`worker="1"` and `state="idle"`).
fn labels(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a},{b}"),
    }
}

pub fn render(r: &Report) -> String {
    let mut out = Out {
        text: String::with_capacity(8192),
    };
    process_metrics(&mut out, "maitre_", &[(String::new(), &r.total)], r);
    if !r.workers.is_empty() {
        let per_worker: Vec<(String, &Snapshot)> = r
            .workers
            .iter()
            .map(|(slot, s)| (format!("worker=\"{slot}\""), s))
            .collect();
        process_metrics(&mut out, "maitre_worker_", &per_worker, r);
    }
    listen_metrics(&mut out, r);
    out.text
}

/// Each family once, with one sample set per (labels, numbers).
fn process_metrics(out: &mut Out, prefix: &str, sets: &[(String, &Snapshot)], r: &Report) {
    type Get = fn(&Snapshot) -> u64;
    let gauges: [(&str, &str, Get); 5] = [
        (
            "requests_waiting",
            "Requests waiting for a worker thread.",
            |s| s.waiting,
        ),
        ("requests_in_app", "Requests inside the application.", |s| {
            s.in_app
        }),
        ("threads", "Worker threads.", |s| s.threads),
        ("threads_busy", "Worker threads running a request.", |s| {
            s.in_app
        }),
        (
            "accepting_paused",
            "1 while accepting is paused at connection_limit.",
            |s| s.limit_paused,
        ),
    ];
    let counters: [(&str, &str, Get); 7] = [
        ("connections_accepted_total", "Connections accepted.", |s| {
            s.accepted
        }),
        (
            "connection_limit_pauses_total",
            "Times accepting paused at connection_limit.",
            |s| s.limit_pauses,
        ),
        (
            "accept_fd_pauses_total",
            "Times accepting paused for lack of file descriptors.",
            |s| s.fd_pauses,
        ),
        (
            "bad_requests_total",
            "Requests the server answered itself, without the app (400, 408, 413, 414, 431...).",
            |s| s.bad_requests,
        ),
        (
            "app_errors_total",
            "Requests whose application call raised.",
            |s| s.app_errors,
        ),
        ("received_bytes_total", "Bytes read from clients.", |s| {
            s.bytes_in
        }),
        ("sent_bytes_total", "Bytes written to clients.", |s| {
            s.bytes_out
        }),
    ];
    let name = |n: &str| format!("{prefix}{n}");

    out.family(
        &name("connections"),
        "gauge",
        "Open client connections by state.",
    );
    for (l, s) in sets {
        for (state, v) in [("active", s.active()), ("idle", s.idle)] {
            out.sample(
                &name("connections"),
                &labels(l, &format!("state=\"{state}\"")),
                v,
            );
        }
    }
    out.family(
        &name("connection_limit"),
        "gauge",
        "Open connections at most (connection_limit).",
    );
    for (l, _) in sets {
        out.sample(&name("connection_limit"), l, r.connection_limit);
    }
    out.family(
        &name("connections_closed_total"),
        "counter",
        "Connections closed, by why.",
    );
    for (l, s) in sets {
        let reasons = [
            ("client", s.closed_by_client),
            ("channel_timeout", s.closed_by_timeout),
            ("header_timeout", s.closed_by_header_timeout),
            ("error", s.closed_by_error),
            ("server", s.closed_by_server),
        ];
        for (reason, v) in reasons {
            let reason = format!("reason=\"{reason}\"");
            out.sample(&name("connections_closed_total"), &labels(l, &reason), v);
        }
    }
    out.family(
        &name("accept_paused_seconds_total"),
        "counter",
        "Time accepting was paused at connection_limit.",
    );
    for (l, s) in sets {
        out.sample(
            &name("accept_paused_seconds_total"),
            l,
            seconds(s.paused_micros),
        );
    }
    out.family(
        &name("requests_total"),
        "counter",
        "Responses by status class.",
    );
    for (l, s) in sets {
        for (i, v) in s.by_status.iter().enumerate() {
            let status = format!("status=\"{}xx\"", i + 1);
            out.sample(&name("requests_total"), &labels(l, &status), v);
        }
    }
    out.family(
        &name("queue_oldest_wait_seconds"),
        "gauge",
        "Age of the oldest request waiting for a thread.",
    );
    for (l, s) in sets {
        out.sample(
            &name("queue_oldest_wait_seconds"),
            l,
            seconds(s.oldest_wait_micros),
        );
    }
    for (kind, list) in [("gauge", &gauges[..]), ("counter", &counters[..])] {
        for (n, help, get) in list {
            out.family(&name(n), kind, help);
            for (l, s) in sets {
                out.sample(&name(n), l, get(s));
            }
        }
    }
    type Hist = fn(&Snapshot) -> &HistSnapshot;
    let histograms: [(&str, &str, Hist); 2] = [
        (
            "request_duration_seconds",
            "From a complete request head to the end of the app's response.",
            |s| &s.duration,
        ),
        (
            "queue_wait_seconds",
            "From a complete request head to a worker thread taking it.",
            |s| &s.queue_wait,
        ),
    ];
    for (n, help, get) in histograms {
        out.family(&name(n), "histogram", help);
        for (l, s) in sets {
            histogram(out, &name(n), l, get(s));
        }
    }
}

fn histogram(out: &mut Out, name: &str, l: &str, h: &HistSnapshot) {
    let mut cumulative = 0;
    let bucket = format!("{name}_bucket");
    for (i, count) in h.counts.iter().enumerate() {
        cumulative += count;
        let le = BOUNDS_MICROS
            .get(i)
            .map_or_else(|| "+Inf".to_owned(), |&b| seconds(b).to_string());
        out.sample(&bucket, &labels(l, &format!("le=\"{le}\"")), cumulative);
    }
    out.sample(&format!("{name}_sum"), l, seconds(h.sum_micros));
    out.sample(&format!("{name}_count"), l, cumulative);
}

fn listen_metrics(out: &mut Out, r: &Report) {
    // With reuse_port each worker has its own socket on an address: labelled.
    let listener = |l: &ListenerInfo| match l.worker {
        Some(w) => format!("listener=\"{}\",worker=\"{w}\"", label_value(&l.address)),
        None => format!("listener=\"{}\"", label_value(&l.address)),
    };
    out.family(
        "maitre_listen_backlog",
        "gauge",
        "Listen backlog in force (after the kernel's somaxconn cap).",
    );
    for l in &r.listeners {
        if let Some(b) = l.backlog_effective {
            out.sample("maitre_listen_backlog", &listener(l), b);
        }
    }
    out.family(
        "maitre_listen_backlog_requested",
        "gauge",
        "Listen backlog asked for (backlog).",
    );
    for l in &r.listeners {
        out.sample(
            "maitre_listen_backlog_requested",
            &listener(l),
            l.backlog_requested,
        );
    }
    out.family(
        "maitre_listen_queue_length",
        "gauge",
        "Connections waiting in the accept queue.",
    );
    for l in &r.listeners {
        if let Some(q) = l.queue_length {
            out.sample("maitre_listen_queue_length", &listener(l), q);
        }
    }
    out.family(
        "maitre_listen_drops_total",
        "counter",
        "Connections the kernel dropped on this listener because its accept queue was full.",
    );
    for l in &r.listeners {
        if let Some(d) = l.drops {
            out.sample("maitre_listen_drops_total", &listener(l), d);
        }
    }
    if let Some(drops) = r.host_overflows {
        out.family(
            "maitre_host_listen_overflows_total",
            "counter",
            "Connections the whole host dropped from full accept queues (ListenOverflows, every socket).",
        );
        out.sample("maitre_host_listen_overflows_total", "", drops);
    }
    out.family(
        "maitre_draining",
        "gauge",
        "1 once this process is stopping.",
    );
    out.sample("maitre_draining", "", u8::from(r.draining));
}

/// A label value in the text format: backslash, quote and newline escaped
/// (a unix socket's path may hold any of them).
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
