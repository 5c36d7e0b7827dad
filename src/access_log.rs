//! The access log (`access_log=True`): one line per request in gunicorn's
//! format language, formatted here on the worker and emitted through pyo3-log
//! as one record on the Python logger `maitre.access`.
//!
//! Requests the event loop answers itself (a bad head, a body too large, a
//! head that timed out) get a line too, without the loop taking the GIL for
//! them: it queues a `Refused` record on `RefusedLog`, and a worker thread
//! formats and logs it between jobs, as a chore (see `handoff::queue`).
//!
//! pyo3-log rather than calling `logging.getLogger("maitre.access").info`: it
//! checks the level from its cache without calling Python (a disabled logger
//! costs only the formatting we skip) and builds the record with `makeRecord`,
//! skipping `Logger.findCaller`'s walk of the stack; the record then goes
//! through Python's handlers, filters and formatters like any other.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::http::date::civil_from_days;
use crate::http::parse::{trim, RequestHead};
use crate::net::Peer;

/// Apache's combined format, the default.
pub const COMBINED: &str = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    /// `h`: the client's address (a trusted proxy's forwarded one).
    Host,
    /// `l`, `u`: identd and user name, never known here.
    Dash,
    /// `t`: `[02/Dec/2026:04:30:00 +0000]`, local time.
    Time,
    /// `r`: `GET /path?q HTTP/1.1`.
    RequestLine,
    /// `m`, `U`, `q`, `H`.
    Method,
    Path,
    Query,
    Protocol,
    /// `s`.
    Status,
    /// `B`: body bytes sent; `b`: the same, `-` for none (CLF).
    Bytes,
    BytesOrDash,
    /// `f`, `a`: Referer and User-Agent.
    Referer,
    Agent,
    /// `T` s, `M` ms, `D` µs, `L` decimal seconds: from a complete head to the end of the response.
    Seconds,
    Millis,
    Micros,
    DecimalSeconds,
    /// `p`: `<pid>`, as gunicorn writes it.
    Pid,
    /// `W`: µs waiting for a thread; `A`: µs in the app (maitre's own atoms).
    QueueWait,
    AppTime,
    /// `{name}i`, `{name}o`: a request or response header (name lower-cased).
    RequestHeader(String),
    ResponseHeader(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Atom(Atom),
}

/// A parsed `access_log_format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessFormat {
    parts: Vec<Part>,
}

/// What the log can show of a request.
#[derive(Clone, Copy)]
pub enum Request<'a> {
    Head(&'a RequestHead),
    /// A head refused before it was whole and valid: its first line, as far
    /// as it came (maybe empty).
    Unparsed(&'a [u8]),
}

impl<'a> Request<'a> {
    /// (method, target, protocol) where they are known: an unparsed line
    /// only when it splits into exactly three words.
    fn line(self) -> Option<(&'a [u8], &'a [u8], &'a [u8])> {
        match self {
            Request::Head(h) => Some((h.method(), h.target(), h.version.as_str().as_bytes())),
            Request::Unparsed(line) => {
                let mut words = line.split(|&b| b == b' ');
                match (words.next(), words.next(), words.next(), words.next()) {
                    (Some(m), Some(t), Some(v), None)
                        if !m.is_empty() && !t.is_empty() && !v.is_empty() =>
                    {
                        Some((m, t, v))
                    }
                    _ => None,
                }
            }
        }
    }
}

/// What one request leaves for its log line.
pub struct Entry<'a> {
    pub remote: &'a str,
    pub request: Request<'a>,
    pub status: u16,
    pub body_bytes: u64,
    pub queue_wait: Duration,
    pub app_time: Duration,
    pub total: Duration,
    /// The response headers the app gave, when the format asks for one.
    pub response_headers: &'a [(String, String)],
}

impl AccessFormat {
    /// Parses gunicorn's `%(atom)s` language; `%%` is a literal `%`. An atom
    /// it does not know is an error at start, not a `-` in every line.
    pub fn parse(format: &str) -> Result<AccessFormat, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = format;
        while let Some(at) = rest.find('%') {
            text.push_str(&rest[..at]);
            rest = &rest[at + 1..];
            if let Some(after) = rest.strip_prefix('%') {
                text.push('%');
                rest = after;
                continue;
            }
            let inner = rest
                .strip_prefix('(')
                .and_then(|r| r.find(")s").map(|end| (&r[..end], &r[end + 2..])));
            let Some((name, after)) = inner else {
                return Err(format!(
                    "access_log_format: a % not followed by (name)s at {:?}",
                    format.len() - rest.len() - 1
                ));
            };
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(Part::Atom(atom(name)?));
            rest = after;
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(AccessFormat { parts })
    }

    /// The format shows a response header: the worker keeps the app's headers for it.
    pub fn wants_response_headers(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Atom(Atom::ResponseHeader(_))))
    }

    pub fn line(&self, e: &Entry<'_>) -> String {
        let mut out = String::with_capacity(192);
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Atom(a) => push_atom(&mut out, a, e),
            }
        }
        out
    }
}

/// A request the event loop answered itself (400, 408, 413, 414, 431, 500,
/// 501): what its access line shows.
pub struct Refused {
    pub peer: Peer,
    pub request: Seen,
    pub status: u16,
    pub body_bytes: u64,
}

/// What the loop had of a refused request.
pub enum Seen {
    Head(RequestHead),
    /// See `Request::Unparsed`.
    Line(Vec<u8>),
}

impl Refused {
    fn heap_size(&self) -> usize {
        match &self.request {
            Seen::Head(head) => head.heap_size(),
            Seen::Line(line) => line.capacity(),
        }
    }
}

impl Seen {
    /// The first line of `input` (empty lines before it skipped, as a
    /// request's are), at most `max` bytes of it: what shows of a head that
    /// could not be parsed.
    pub fn first_line(input: &[u8], max: usize) -> Seen {
        let start = input.iter().position(|&b| b != b'\r' && b != b'\n');
        let rest = &input[start.unwrap_or(input.len())..];
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let line = &rest[..end.min(max)];
        Seen::Line(line.strip_suffix(b"\r").unwrap_or(line).to_vec())
    }
}

/// Records (and bytes of them) the loop queues before workers fall so far
/// behind that more are dropped (and counted) rather than held: a flood of
/// bad requests while every thread is busy must not grow memory without
/// bound (a head may hold up to `max_request_header_size`).
const REFUSED_QUEUED: usize = 1024;
const REFUSED_BYTES: usize = 8 << 20;

/// How often, at most, the loss of lines is logged.
const LOSS_QUIET: Duration = Duration::from_secs(60);

/// `Refused` records on their way from the loop to a worker thread, which
/// formats and logs them with the GIL it holds anyway: the loop never waits
/// for the GIL, however many bad requests come in.
#[derive(Clone)]
pub struct RefusedLog {
    tx: Sender<Refused>,
    rx: Receiver<Refused>,
    /// Heap bytes the queued records hold.
    bytes: Arc<AtomicUsize>,
    /// Records dropped because the queue was full, not yet reported.
    lost: Arc<AtomicU64>,
    lost_logged: Arc<Mutex<Option<Instant>>>,
}

impl Default for RefusedLog {
    fn default() -> Self {
        let (tx, rx) = crossbeam_channel::bounded(REFUSED_QUEUED);
        RefusedLog {
            tx,
            rx,
            bytes: Arc::default(),
            lost: Arc::default(),
            lost_logged: Arc::default(),
        }
    }
}

impl RefusedLog {
    /// The loop's side: never blocks.
    pub fn push(&self, r: Refused) {
        let size = r.heap_size();
        let queued = self.bytes.fetch_add(size, Relaxed);
        if queued + size > REFUSED_BYTES || self.tx.try_send(r).is_err() {
            self.bytes.fetch_sub(size, Relaxed);
            self.lost.fetch_add(1, Relaxed);
        }
    }

    /// Records wait: the loop wakes an idle worker for them.
    pub fn pending(&self) -> bool {
        !self.rx.is_empty()
    }

    /// A worker's side, with the GIL held: logs every queued record.
    pub fn emit(&self, format: &AccessFormat) {
        self.report_loss(false);
        if self.rx.is_empty() {
            return;
        }
        let logged = log::log_enabled!(target: "maitre::access", log::Level::Info);
        while let Ok(r) = self.rx.try_recv() {
            self.bytes.fetch_sub(r.heap_size(), Relaxed);
            if !logged {
                continue;
            }
            let request = match &r.request {
                Seen::Head(head) => Request::Head(head),
                Seen::Line(line) => Request::Unparsed(line),
            };
            // No thread, no app: the request's time is not measured.
            let line = format.line(&Entry {
                remote: &r.peer.remote_addr(),
                request,
                status: r.status,
                body_bytes: r.body_bytes,
                queue_wait: Duration::ZERO,
                app_time: Duration::ZERO,
                total: Duration::ZERO,
                response_headers: &[],
            });
            log::info!(target: "maitre::access", "{line}");
        }
    }

    /// Logs how many records were dropped, at most once per `LOSS_QUIET`
    /// unless `now_or_never` (the workers are leaving).
    pub fn report_loss(&self, now_or_never: bool) {
        if self.lost.load(Relaxed) == 0 {
            return;
        }
        let mut last = self.lost_logged.lock();
        let now = Instant::now();
        if !now_or_never && last.is_some_and(|t| now.duration_since(t) < LOSS_QUIET) {
            return;
        }
        *last = Some(now);
        log::warn!(
            target: "maitre",
            "{} access log line(s) for requests the server refused itself were not written: \
             they came faster than the worker threads could write them (busy in the app, \
             or the log's handlers too slow)",
            self.lost.swap(0, Relaxed)
        );
    }
}

fn atom(name: &str) -> Result<Atom, String> {
    let header = |suffix: char| {
        name.strip_prefix('{')
            .and_then(|n| n.strip_suffix(suffix))
            .and_then(|n| n.strip_suffix('}'))
            .filter(|n| !n.is_empty())
            .map(str::to_ascii_lowercase)
    };
    Ok(match name {
        "h" => Atom::Host,
        "l" | "u" => Atom::Dash,
        "t" => Atom::Time,
        "r" => Atom::RequestLine,
        "m" => Atom::Method,
        "U" => Atom::Path,
        "q" => Atom::Query,
        "H" => Atom::Protocol,
        "s" => Atom::Status,
        "B" => Atom::Bytes,
        "b" => Atom::BytesOrDash,
        "f" => Atom::Referer,
        "a" => Atom::Agent,
        "T" => Atom::Seconds,
        "M" => Atom::Millis,
        "D" => Atom::Micros,
        "L" => Atom::DecimalSeconds,
        "p" => Atom::Pid,
        "W" => Atom::QueueWait,
        "A" => Atom::AppTime,
        _ => {
            if let Some(h) = header('i') {
                Atom::RequestHeader(h)
            } else if let Some(h) = header('o') {
                Atom::ResponseHeader(h)
            } else {
                return Err(format!(
                    "access_log_format: unknown atom %({name})s (known: h l u t r m U q H s B b \
                     f a T M D L p W A {{header}}i {{header}}o)"
                ));
            }
        }
    })
}

fn push_atom(out: &mut String, atom: &Atom, e: &Entry<'_>) {
    let line = e.request.line();
    let head = match e.request {
        Request::Head(head) => Some(head),
        Request::Unparsed(_) => None,
    };
    // `write!` into a String cannot fail.
    match atom {
        Atom::Host => push_escaped(out, e.remote.as_bytes()),
        Atom::Dash => out.push('-'),
        Atom::Time => push_time(out),
        Atom::RequestLine => match (line, e.request) {
            (Some((method, target, protocol)), _) => {
                push_escaped(out, method);
                out.push(' ');
                push_escaped(out, target);
                out.push(' ');
                push_escaped(out, protocol);
            }
            (None, Request::Unparsed(raw)) if !raw.is_empty() => push_escaped(out, raw),
            (None, _) => out.push('-'),
        },
        Atom::Method => push_or_dash(out, line.map(|(m, _, _)| m)),
        Atom::Path => push_or_dash(out, line.map(|(_, t, _)| split_query(t).0)),
        Atom::Query => push_escaped(out, line.map_or(b"", |(_, t, _)| split_query(t).1)),
        Atom::Protocol => push_or_dash(out, line.map(|(_, _, p)| p)),
        Atom::Status => _ = write!(out, "{}", e.status),
        Atom::Bytes => _ = write!(out, "{}", e.body_bytes),
        Atom::BytesOrDash if e.body_bytes == 0 => out.push('-'),
        Atom::BytesOrDash => _ = write!(out, "{}", e.body_bytes),
        Atom::Referer => push_header(out, head, "referer"),
        Atom::Agent => push_header(out, head, "user-agent"),
        Atom::Seconds => _ = write!(out, "{}", e.total.as_secs()),
        Atom::Millis => _ = write!(out, "{}", e.total.as_millis()),
        Atom::Micros => _ = write!(out, "{}", e.total.as_micros()),
        Atom::DecimalSeconds => _ = write!(out, "{:.6}", e.total.as_secs_f64()),
        Atom::Pid => _ = write!(out, "<{}>", std::process::id()),
        Atom::QueueWait => _ = write!(out, "{}", e.queue_wait.as_micros()),
        Atom::AppTime => _ = write!(out, "{}", e.app_time.as_micros()),
        Atom::RequestHeader(name) => push_header(out, head, name),
        Atom::ResponseHeader(name) => {
            let found = e
                .response_headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name));
            match found {
                Some((_, v)) => push_escaped(out, v.as_bytes()),
                None => out.push('-'),
            }
        }
    }
}

fn push_or_dash(out: &mut String, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => push_escaped(out, b),
        None => out.push('-'),
    }
}

fn split_query(target: &[u8]) -> (&[u8], &[u8]) {
    match target.iter().position(|&b| b == b'?') {
        Some(at) => (&target[..at], &target[at + 1..]),
        None => (target, b""),
    }
}

/// A request header's value (repeated ones joined by `, `), or `-`.
fn push_header(out: &mut String, head: Option<&RequestHead>, name: &str) {
    let mut found = false;
    for (n, v) in head.iter().flat_map(|h| h.header_pairs()) {
        if n.eq_ignore_ascii_case(name.as_bytes()) {
            if found {
                out.push_str(", ");
            }
            push_escaped(out, trim(v));
            found = true;
        }
    }
    if !found {
        out.push('-');
    }
}

/// Client-controlled bytes, escaped as Apache does (`\"`, `\\`, `\xhh` for
/// anything but printable ASCII) so a line cannot be forged or broken.
fn push_escaped(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b' '..=b'~' => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `[02/Dec/2026:04:30:00 +0100]`: local time with its offset, as Apache and gunicorn write it.
fn push_time(out: &mut String) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let now = i64::try_from(now).unwrap_or(0);
    let offset = utc_offset(now);
    let local = now + offset;
    let (y, m, d) = civil_from_days(local.div_euclid(86_400));
    let secs = local.rem_euclid(86_400);
    let sign = if offset < 0 { '-' } else { '+' };
    let _ = write!(
        out,
        "[{d:02}/{}/{y}:{:02}:{:02}:{:02} {sign}{:02}{:02}]",
        MONTHS[(m as usize).saturating_sub(1) % 12],
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        offset.abs() / 3600,
        offset.abs() / 60 % 60,
    );
}

/// Seconds east of UTC of the local time zone at `t`.
#[cfg(unix)]
fn utc_offset(t: i64) -> i64 {
    // time_t is 64 bits wide wherever a date past 2038 matters.
    let t = t as libc::time_t;
    // SAFETY: localtime_r only writes the `tm` it is given; all-zero is a valid `tm`.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return 0;
        }
        // A c_long: 32 bits on some targets, so the conversion is not useless there.
        #[allow(clippy::useless_conversion)]
        i64::from(tm.tm_gmtoff)
    }
}

#[cfg(not(unix))]
fn utc_offset(_: i64) -> i64 {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_combined_and_literals() {
        let f = AccessFormat::parse("%(h)s 100%% %(W)s").unwrap();
        assert_eq!(
            f.parts,
            vec![
                Part::Atom(Atom::Host),
                Part::Text(" 100% ".into()),
                Part::Atom(Atom::QueueWait)
            ]
        );
        assert!(AccessFormat::parse(COMBINED).is_ok());
        let headers = AccessFormat::parse("%({X-Id}i)s %({Content-Type}o)s").unwrap();
        assert!(headers.wants_response_headers());
        assert!(!AccessFormat::parse(COMBINED)
            .unwrap()
            .wants_response_headers());
    }

    #[test]
    fn rejects_unknown_atoms_and_stray_percent() {
        assert!(AccessFormat::parse("%(Z)s").is_err());
        assert!(AccessFormat::parse("%(h)d").is_err());
        assert!(AccessFormat::parse("50%").is_err());
        assert!(AccessFormat::parse("%({}i)s").is_err());
    }

    #[test]
    fn escapes_what_could_forge_a_line() {
        let mut s = String::new();
        push_escaped(&mut s, b"a\"b\\c\nd\xff");
        assert_eq!(s, r#"a\"b\\c\x0ad\xff"#);
    }

    fn refused_line(format: &str, sent: &[u8]) -> String {
        let Seen::Line(line) = Seen::first_line(sent, 20) else {
            unreachable!("first_line makes a Line")
        };
        AccessFormat::parse(format).unwrap().line(&Entry {
            remote: "10.0.0.1",
            request: Request::Unparsed(&line),
            status: 400,
            body_bytes: 0,
            queue_wait: Duration::ZERO,
            app_time: Duration::ZERO,
            total: Duration::ZERO,
            response_headers: &[],
        })
    }

    #[test]
    fn a_refused_head_shows_what_could_be_read_and_dashes() {
        let all = r#"%(h)s "%(r)s" %(m)s %(U)s [%(q)s] %(H)s %(s)s %(b)s "%(a)s" %(D)s"#;
        assert_eq!(
            refused_line(all, b"\r\nGET /p?q=1 HTTP/1.1\r\nHost"),
            r#"10.0.0.1 "GET /p?q=1 HTTP/1.1" GET /p [q=1] HTTP/1.1 400 - "-" 0"#
        );
        assert_eq!(
            refused_line(all, b"\x16\x03\x01 \"x"),
            r#"10.0.0.1 "\x16\x03\x01 \"x" - - [] - 400 - "-" 0"#
        );
        assert_eq!(refused_line("%(r)s|%(m)s", b""), "-|-");
        // Cut at max (20 bytes here): a line too long for three words.
        assert_eq!(
            refused_line("%(r)s|%(m)s", b"GET /aaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n"),
            "GET /aaaaaaaaaaaaaaa|-"
        );
    }

    #[test]
    fn time_has_apache_shape() {
        let mut s = String::new();
        push_time(&mut s);
        assert_eq!(s.len(), "[02/Dec/2026:04:30:00 +0000]".len(), "{s}");
        assert!(s.starts_with('[') && s.ends_with(']'));
    }
}
