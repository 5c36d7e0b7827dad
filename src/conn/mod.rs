//! One client connection's state machine, driven by the event loop:
//! `Head` (waiting for a request head) → `Body` (receiving its body) →
//! `InFlight` (the app has it; its response arrives as completions) → back to
//! `Head` for keep-alive, or `Closing` (flush what is queued, then close).

mod outbuf;

use std::io::{self, Read};
use std::net::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::access_log::{Refused, RefusedLog, Seen};
use crate::config::Config;
use crate::handoff::queue::JobSender;
use crate::handoff::{
    Completion, ConnId, ConnShared, Job, JobBody, Kind, OutputLimits, Piece, RequestId,
};
use crate::http::body::{BodyDecoder, BodyReader, Spool};
use crate::http::parse::{parse_head, BodyFraming, RequestHead};
use crate::http::proxy_protocol::{self, Header};
use crate::http::response::{simple_response, CONTINUE};
use crate::http::{RequestError, Version};
use crate::net::stream::Stream;
use crate::net::{socket_error, Peer, ServerPort};
use crate::os::splice::Pipe;
use crate::os::tempfile;
use crate::stats::{add, incr, Closed, Stats};
use outbuf::OutBuffer;

/// How long a closing connection keeps reading (and dropping) what the client
/// still sends, so our last response is not destroyed by a TCP reset.
const LINGER: Duration = Duration::from_secs(2);

const BODY_NOT_BUFFERED: RequestError =
    RequestError::Internal("the request body could not be buffered");

/// A body being received, bounded by `max_request_body_size`.
struct BodyState {
    decoder: BodyDecoder,
    spool: Spool,
    limit: u64,
    /// A write to the spool failed during a direct read: the next `feed` says so.
    failed: Option<RequestError>,
}

impl BodyState {
    fn new(framing: BodyFraming, cfg: &Config) -> Self {
        let spool = match framing {
            BodyFraming::Length(n) => Spool::with_length(cfg.inbuf_overflow, n),
            _ => Spool::new(cfg.inbuf_overflow),
        };
        BodyState {
            decoder: BodyDecoder::new(framing),
            spool,
            limit: cfg.max_request_body_size,
            failed: None,
        }
    }

    /// Reads from `socket` straight into the body, skipping the input buffer
    /// and the decoder, for a declared-length body (its length was checked
    /// against the limit before the spool was sized): into the spool's memory
    /// when the rest fits there, else into its file, spliced through `pipe`
    /// once the file exists, or through `bulk`. `None` when the bytes must
    /// go through the decoder. Returns (bytes read, bytes asked for).
    fn read_direct(
        &mut self,
        socket: &mut Stream,
        bulk: &mut [u8],
        pipe: Option<&mut Pipe>,
    ) -> Option<io::Result<(usize, usize)>> {
        let BodyDecoder::Length { remaining } = &mut self.decoder else {
            return None;
        };
        if *remaining == 0 {
            return None;
        }
        if let (Some(pipe), Some(file)) = (pipe, self.spool.file()) {
            let want = (*remaining).min(pipe.capacity() as u64) as usize;
            return Some(pipe.splice(socket, file, want).map(|spliced| {
                let n = spliced.read;
                *remaining -= n as u64;
                self.spool.appended(n);
                if let Err(e) = spliced.written {
                    tempfile::write_failed(&e);
                    self.failed = Some(BODY_NOT_BUFFERED);
                }
                // A short splice may stop at the pipe's slots, not at an
                // empty socket: only `WouldBlock` says the socket is drained.
                (n, n.max(1))
            }));
        }
        let room = self.spool.spare();
        if *remaining > room.len() as u64 {
            let want = (*remaining).min(bulk.len() as u64) as usize;
            let buf = &mut bulk[..want];
            return Some(socket.read(buf).map(|n| {
                *remaining -= n as u64;
                if let Err(e) = self.spool.write(&buf[..n]) {
                    log::debug!(target: "maitre", "spooling a request body failed: {e}");
                    self.failed = Some(BODY_NOT_BUFFERED);
                }
                (n, want)
            }));
        }
        let room = &mut room[..*remaining as usize];
        let asked = room.len();
        Some(socket.sock_ref().recv(room).map(|n| {
            *remaining -= n as u64;
            // SAFETY: socket2's `recv` passes `room` to recv(2), which
            // initialised the first `n` bytes it returns; `n <= room.len()`.
            unsafe { self.spool.assume_filled(n) };
            (n, asked)
        }))
    }

    fn feed(&mut self, input: &[u8]) -> Result<usize, RequestError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let (spool, limit) = (&mut self.spool, self.limit);
        self.decoder.feed(input, &mut |data| {
            if spool.received() + data.len() as u64 > limit {
                return Err(RequestError::BodyTooLarge);
            }
            spool.write(data).map_err(|_| BODY_NOT_BUFFERED)
        })
    }

    fn finish(self) -> Result<BodyReader, RequestError> {
        self.spool.into_reader().map_err(|_| BODY_NOT_BUFFERED)
    }
}

enum Phase {
    Head,
    Body {
        head: RequestHead,
        body: BodyState,
    },
    /// The app has the request. `body` is the not-yet-received body of an
    /// `Expect: 100-continue` request, read only once the app asks for it.
    /// `responded`: response bytes have gone out, so `100 Continue` no longer may.
    InFlight {
        body: Option<BodyState>,
        body_requested: bool,
        responded: bool,
    },
    /// Flushing the last response; then close (lingering if `linger`).
    Closing,
}

/// What the loop does with a connection after driving it.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Keep,
    Close,
    /// Output is flushed and our side shut down; drain input until EOF or the deadline.
    Linger,
}

/// What a connection needs from the loop while it is driven.
pub struct Ctx<'a> {
    pub cfg: &'a Config,
    pub jobs: &'a JobSender<Job>,
    /// Where requests refused here go for the access log.
    pub refused: &'a RefusedLog,
    pub stats: &'a Stats,
    pub scratch: &'a mut [u8],
    /// For reads of request bodies: large, so a big upload costs few syscalls.
    pub bulk: &'a mut [u8],
    /// For request bodies bound for a temporary file (`os::splice`).
    pub pipe: Option<&'a mut Pipe>,
    pub stopping: bool,
    /// When the loop woke up: precise enough for timeouts, and read once per
    /// wake-up rather than once per socket call.
    pub now: Instant,
}

pub struct Conn {
    pub socket: Stream,
    pub id: ConnId,
    pub peer: Peer,
    pub server_port: ServerPort,
    pub shared: Arc<ConnShared>,
    pub last_activity: Instant,
    /// No request has started on it yet (see `on_shutdown`).
    fresh: bool,
    /// While stopping, it may still start one request: a fresh connection or
    /// one whose head is arriving, whose client has a request on the way.
    pub one_more: bool,
    /// By when the client must have sent a whole request head (from accept,
    /// or from the first byte of a later request), or the first byte of a
    /// body the app asked for: `header_timeout` after those points, so
    /// neither a slow client nor a thread waiting on one is held longer.
    pub deadline: Option<Instant>,
    /// The request now (or last) in flight; see `RequestId`.
    seq: u32,
    inbuf: Vec<u8>,
    phase: Phase,
    out: OutBuffer,
    read_closed: bool,
    /// The socket may hold unread bytes: set by a readable event, cleared by a
    /// read that drained it. Saves the read that would only say EAGAIN.
    may_read: bool,
    /// The peer's FIN may be pending: a short read does not consume it, so
    /// reads go on until EOF or EAGAIN (set by read-closed events).
    eof_pending: bool,
    /// Input may still be arriving that we will never read: linger on close.
    discard_input: bool,
    pub linger_until: Option<Instant>,
    /// A socket error broke the connection (for `close_reason`).
    errored: bool,
    /// Closed for missing `deadline` (see `on_deadline`).
    missed_deadline: bool,
    /// Counted in `connections_idle` (kept by the loop, see `is_idle`).
    pub counted_idle: bool,
    /// `proxy_protocol`: the PROXY header has yet to come, before any request.
    proxy_header_due: bool,
    /// Since when the app has had the request now in flight (until its
    /// response ends), and that request's line, for the logs: the loop warns
    /// of an app running past `channel_timeout`, once per request.
    in_app: Option<Instant>,
    request_line: String,
    slow_app_logged: bool,
}

/// A request target as logged: a hostile client's megabyte-long one is cut short.
fn head_target(head: &RequestHead) -> &[u8] {
    let target = head.target();
    &target[..target.len().min(200)]
}

impl Conn {
    pub fn new(
        socket: Stream,
        id: ConnId,
        peer: Peer,
        server_port: ServerPort,
        cfg: &Config,
    ) -> Self {
        Conn {
            socket,
            id,
            peer,
            server_port,
            shared: Arc::new(ConnShared::default()),
            last_activity: Instant::now(),
            fresh: true,
            one_more: false,
            deadline: Some(Instant::now() + cfg.header_timeout),
            seq: 0,
            inbuf: Vec::new(),
            phase: Phase::Head,
            out: OutBuffer::new(cfg.outbuf_overflow).copying_files(peer.is_loopback()),
            read_closed: false,
            // Data, even a FIN, can arrive before the socket is registered.
            may_read: true,
            eof_pending: true,
            discard_input: false,
            linger_until: None,
            errored: false,
            missed_deadline: false,
            counted_idle: false,
            proxy_header_due: cfg.proxy_protocol,
            in_app: None,
            request_line: String::new(),
            slow_app_logged: false,
        }
    }

    /// No request in progress and nothing to write: an idle keep-alive
    /// connection (or one that has not sent its first request yet).
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Head) && self.inbuf.is_empty() && self.out.is_empty()
    }

    /// Why the connection is closing, when the loop closes it after driving it.
    pub fn close_reason(&self) -> Closed {
        if self.errored {
            Closed::Error
        } else if self.missed_deadline {
            Closed::HeaderTimeout
        } else if self.read_closed {
            Closed::Client
        } else {
            Closed::Server
        }
    }

    /// The request the app is serving, if any: its line, for the logs.
    fn serving(&self) -> Option<&str> {
        self.in_app.map(|_| self.request_line.as_str())
    }

    /// The app has had this connection's request for longer than `limit`
    /// (and this was not yet said): its request line and how long it has run.
    pub fn app_overdue(&mut self, now: Instant, limit: Duration) -> Option<(&str, Duration)> {
        let ran = now.saturating_duration_since(self.in_app?);
        if self.slow_app_logged || ran <= limit {
            return None;
        }
        self.slow_app_logged = true;
        Some((self.request_line.as_str(), ran))
    }

    /// An inactive connection may be timed out unless the app is working for
    /// it. While the app waits on the client (for a body it asked for, or for
    /// output to drain) the client's silence counts, so no client holds a
    /// worker past `channel_timeout`: closing wakes the worker.
    pub fn may_time_out(&self) -> bool {
        match &self.phase {
            Phase::InFlight {
                body: Some(_),
                body_requested: true,
                ..
            } => true,
            Phase::InFlight { .. } => !self.out.is_empty(),
            _ => true,
        }
    }

    /// The server is stopping: an idle keep-alive connection closes (its
    /// client may retry on another: RFC 9112 9.3.1); a fresh connection or a
    /// head still arriving may finish its one request until `grace` (its
    /// client cannot tell that the close came before its request was read);
    /// a body not yet handed to the app is dropped, and a deferred body the
    /// app has not asked for is no longer invited.
    pub fn on_shutdown(&mut self, grace: Instant) -> Next {
        match &mut self.phase {
            Phase::Head if self.out.is_empty() && (self.fresh || !self.inbuf.is_empty()) => {
                self.one_more = true;
                self.deadline = self.deadline.map(|d| d.min(grace));
                Next::Keep
            }
            Phase::Head | Phase::Body { .. } if self.out.is_empty() => Next::Close,
            Phase::InFlight {
                body: body @ Some(_),
                body_requested: false,
                ..
            } => {
                *body = None;
                self.discard_input = true;
                self.shared.deliver_body(Err(RequestError::Stopping));
                Next::Keep
            }
            _ => Next::Keep,
        }
    }

    pub fn on_event(&mut self, ctx: &mut Ctx, readable: bool, read_closed: bool) -> Next {
        self.may_read |= readable || read_closed;
        self.eof_pending |= read_closed;
        self.drive(ctx)
    }

    pub fn on_completion(&mut self, ctx: &mut Ctx, c: Completion) -> Next {
        let responded = match &mut self.phase {
            Phase::InFlight { responded, .. } if c.req.seq == self.seq => responded,
            _ => return self.drop_late(ctx, c),
        };
        if c.data.iter().any(|p| !p.is_empty()) {
            *responded = true;
            // The app's output restarts the clock the client's reading runs on.
            self.last_activity = ctx.now;
        }
        let taken = c.data.iter().map(Piece::len).sum();
        let pushed = self.out.push_through(c.data, &mut self.socket);
        let written = *pushed.as_ref().unwrap_or(&0);
        self.report_progress(ctx, written, taken);
        match pushed {
            Ok(0) => {}
            Ok(n) => {
                add(&ctx.stats.lp.bytes_out, n as u64);
                self.last_activity = ctx.now;
            }
            Err(e) => return self.broken(ctx, "writing to", &e),
        }
        match c.kind {
            Kind::More => {}
            Kind::Continue => {
                if let Phase::InFlight {
                    body: Some(_),
                    body_requested: requested @ false,
                    responded,
                } = &mut self.phase
                {
                    *requested = true;
                    self.deadline = Some(ctx.now + ctx.cfg.header_timeout);
                    // After a final response has begun, a 100 would land
                    // inside its body: just read what the client sends.
                    if !*responded {
                        self.queue(CONTINUE.to_vec());
                    }
                }
            }
            Kind::End { keep_alive } => {
                self.shared.end_request(self.seq);
                self.in_app = None;
                let unread_body = matches!(self.phase, Phase::InFlight { body: Some(_), .. });
                if !keep_alive || unread_body || ctx.stopping || self.read_closed {
                    self.discard_input = unread_body || !self.inbuf.is_empty();
                    self.phase = Phase::Closing;
                } else {
                    self.phase = Phase::Head;
                }
            }
            Kind::Abort => {
                self.shared.end_request(self.seq);
                self.in_app = None;
                self.discard_input = true;
                self.phase = Phase::Closing;
            }
        }
        self.drive(ctx)
    }

    /// A message for a request that has ended (a `write()` after the end, an
    /// error after a complete response): its bytes must never reach the wire,
    /// where they would land inside or after the next response.
    fn drop_late(&mut self, ctx: &Ctx, c: Completion) -> Next {
        let n = c.data.iter().map(Piece::len).sum();
        self.report_progress(ctx, n, n);
        log::debug!(target: "maitre", "dropped output for a request to {} that had ended", self.peer);
        Next::Keep
    }

    /// The client missed `deadline`: a partial head gets 408, a connection
    /// that sent nothing is closed, and a worker waiting for a body that has
    /// not started is told so (its app answers, then the connection closes).
    pub fn on_deadline(&mut self, ctx: &mut Ctx) -> Next {
        self.deadline = None;
        match &mut self.phase {
            Phase::Head if self.inbuf.is_empty() && self.out.is_empty() => {
                self.missed_deadline = true;
                return Next::Close;
            }
            Phase::Head => {
                self.missed_deadline = true;
                self.reject(ctx, RequestError::HeadTimeout, None);
            }
            Phase::InFlight {
                body: body @ Some(_),
                body_requested: true,
                ..
            } => {
                self.missed_deadline = true;
                *body = None;
                self.discard_input = true;
                self.shared.deliver_body(Err(RequestError::BadRequest(
                    "the request body did not start within header_timeout",
                )));
            }
            _ => return Next::Keep,
        }
        self.drive(ctx)
    }

    /// The socket failed while `doing` something: logged as waitress would
    /// (see `socket_error`), and the connection closes.
    fn broken(&mut self, ctx: &Ctx, doing: &str, e: &io::Error) -> Next {
        socket_error(
            ctx.cfg.log_socket_errors,
            doing,
            self.peer,
            e,
            self.serving(),
        );
        self.errored = true;
        Next::Close
    }

    /// Output the loop generates itself (not the app's) is counted like the
    /// app's, so `progress` can subtract uniformly.
    fn queue(&mut self, data: Vec<u8>) {
        self.shared.add_unsent(data.len());
        self.out.push(Piece::Owned(data));
    }

    /// Reads what it wants, advances the state machine, writes what is queued.
    fn drive(&mut self, ctx: &mut Ctx) -> Next {
        loop {
            let held_back = self.held_back(ctx.cfg);
            if let Err(e) = self.read_and_advance(ctx) {
                return self.broken(ctx, "reading from", &e);
            }
            if let Err(e) = self.flush(ctx) {
                return self.broken(ctx, "writing to", &e);
            }
            // Output drained below the watermark: requests held back go on.
            if !held_back || self.held_back(ctx.cfg) {
                break;
            }
        }
        if self.read_closed {
            if let Phase::InFlight {
                body: body @ Some(_),
                ..
            } = &mut self.phase
            {
                // The app is (or will be) waiting for a body that cannot come.
                *body = None;
                self.shared.deliver_body(Err(RequestError::BadRequest(
                    "the client closed the connection before sending the whole body",
                )));
            }
            match self.phase {
                // A client may half-close after sending its request: still answer it.
                Phase::InFlight { .. } => {}
                Phase::Closing if !self.out.is_empty() => {}
                _ if self.out.is_empty() => return Next::Close,
                _ => self.phase = Phase::Closing,
            }
        }
        if ctx.stopping
            && matches!(self.phase, Phase::Head)
            && self.out.is_empty()
            && !self.one_more
        {
            return Next::Close;
        }
        if matches!(self.phase, Phase::Closing) && self.out.is_empty() {
            if self.linger_until.is_some() {
                return if self.read_closed {
                    Next::Close
                } else {
                    Next::Keep
                };
            }
            if self.discard_input && !self.read_closed {
                // Closing with unread input would make the kernel send a reset,
                // which can destroy the response before the client reads it.
                let _ = self.socket.shutdown(Shutdown::Write);
                self.linger_until = Some(ctx.now + LINGER);
                return Next::Linger;
            }
            return Next::Close;
        }
        Next::Keep
    }

    /// Waiting for a request head, but the client has not read enough of the
    /// responses before it: new requests wait (as in waitress), so pipelined
    /// requests nobody reads cannot fill memory or disk.
    fn held_back(&self, cfg: &Config) -> bool {
        matches!(self.phase, Phase::Head) && self.shared.unsent() > cfg.outbuf_high_watermark
    }

    /// Reads while the phase wants input, advancing the state machine. An
    /// error means the connection is broken.
    fn read_and_advance(&mut self, ctx: &mut Ctx) -> io::Result<()> {
        loop {
            self.advance(ctx);
            if !self.may_read || !self.wants_input(ctx.cfg) {
                return Ok(());
            }
            match self.read_some(ctx) {
                Ok((0, _)) => {
                    self.read_closed = true;
                    return Ok(());
                }
                Ok((n, asked)) => {
                    add(&ctx.stats.lp.bytes_in, n as u64);
                    self.last_activity = ctx.now;
                    match self.phase {
                        Phase::Head if self.deadline.is_none() => {
                            self.deadline = Some(ctx.now + ctx.cfg.header_timeout)
                        }
                        // The body asked for has started: channel_timeout from now on.
                        Phase::InFlight { .. } => self.deadline = None,
                        _ => {}
                    }
                    // A short read emptied the socket; with edge-triggered
                    // readiness, anything arriving later raises a new event.
                    self.may_read = n == asked || self.eof_pending;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.may_read = false;
                    self.eof_pending = false;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// One read: into the body itself when it can go there, else into the
    /// input buffer through `scratch` (`bulk` for a body: a body bound for
    /// the temporary file then goes there in writes of that size, not of
    /// `recv_bytes`). Returns (bytes read, bytes asked for).
    fn read_some(&mut self, ctx: &mut Ctx) -> io::Result<(usize, usize)> {
        let socket = &mut self.socket;
        let body = match &mut self.phase {
            Phase::Body { body, .. }
            | Phase::InFlight {
                body: Some(body),
                body_requested: true,
                ..
            } => Some(body),
            _ => None,
        };
        let in_body = body.is_some();
        if let Some(direct) = body
            .filter(|_| self.inbuf.is_empty())
            .and_then(|b| b.read_direct(socket, ctx.bulk, ctx.pipe.as_deref_mut()))
        {
            return direct;
        }
        let scratch = if in_body {
            &mut *ctx.bulk
        } else {
            &mut *ctx.scratch
        };
        let n = self.socket.read(scratch)?;
        if !matches!(self.phase, Phase::Closing) {
            self.inbuf.extend_from_slice(&scratch[..n]);
        }
        Ok((n, scratch.len()))
    }

    fn wants_input(&self, cfg: &Config) -> bool {
        if self.read_closed {
            return false;
        }
        match &self.phase {
            Phase::Head => !self.held_back(cfg),
            Phase::Body { .. } => true,
            Phase::InFlight {
                body: Some(_),
                body_requested: true,
                ..
            } => true,
            Phase::InFlight { .. } => false,
            Phase::Closing => self.linger_until.is_some(),
        }
    }

    /// Consumes buffered input as far as the current phase allows.
    fn advance(&mut self, ctx: &mut Ctx) {
        loop {
            match &mut self.phase {
                Phase::Head => {
                    // While stopping, no new request starts but the one
                    // `on_shutdown` let finish.
                    let may_start = !ctx.stopping || self.one_more;
                    if self.inbuf.is_empty() || self.held_back(ctx.cfg) || !may_start {
                        return;
                    }
                    if self.proxy_header_due {
                        if self.read_proxy_header(ctx.cfg) {
                            continue;
                        }
                        return;
                    }
                    match parse_head(&self.inbuf, &ctx.cfg.head_limits()) {
                        Ok(Some((head, n))) => {
                            self.inbuf.drain(..n);
                            self.deadline = None;
                            let limit = ctx.cfg.max_request_body_size;
                            if matches!(head.framing, BodyFraming::Length(n) if n > limit) {
                                return self.reject(ctx, RequestError::BodyTooLarge, Some(head));
                            }
                            self.start_request(ctx, head);
                        }
                        Ok(None) => return,
                        Err(e) => return self.reject(ctx, e, None),
                    }
                }
                Phase::Body { body, .. } => {
                    match body.feed(&self.inbuf) {
                        Ok(n) => {
                            self.inbuf.drain(..n);
                        }
                        Err(e) => return self.reject(ctx, e, None),
                    }
                    if !body.decoder.is_done() {
                        return;
                    }
                    let Phase::Body { head, body } =
                        std::mem::replace(&mut self.phase, Phase::Head)
                    else {
                        unreachable!("matched above")
                    };
                    match body.finish() {
                        Ok(reader) => self.dispatch(ctx, head, JobBody::Ready(reader)),
                        Err(e) => return self.reject(ctx, e, Some(head)),
                    }
                }
                Phase::InFlight {
                    body: body_slot @ Some(_),
                    body_requested: true,
                    ..
                } => {
                    let Some(body) = body_slot else { return };
                    let fed = body.feed(&self.inbuf);
                    let result = match fed {
                        Ok(n) => {
                            self.inbuf.drain(..n);
                            if !body.decoder.is_done() {
                                return;
                            }
                            body_slot.take().map(BodyState::finish)
                        }
                        Err(e) => {
                            // The app owns the response: it sees the error as a
                            // failed read, and the connection closes afterwards.
                            self.inbuf.clear();
                            self.read_closed = true;
                            Some(Err(e))
                        }
                    };
                    if let Some(result) = result {
                        self.shared.deliver_body(result);
                    }
                    return;
                }
                Phase::InFlight { .. } | Phase::Closing => return,
            }
        }
    }

    /// Takes the PROXY protocol header off the input: its addresses replace
    /// the connection's own. Refused (closed without a response, as there is
    /// no client to answer) when it is missing or malformed, or when the peer
    /// is not a trusted proxy. False while it is incomplete or was refused.
    fn read_proxy_header(&mut self, cfg: &Config) -> bool {
        let peer = self.peer.remote_addr();
        let outcome = if cfg.proxy.trusts(peer.as_bytes()) {
            proxy_protocol::parse(&self.inbuf)
        } else {
            Err(proxy_protocol::Malformed("not from a trusted_proxy"))
        };
        match outcome {
            Ok(None) => false,
            Ok(Some((header, n))) => {
                self.inbuf.drain(..n);
                self.proxy_header_due = false;
                if let Header::Proxied {
                    source,
                    destination,
                } = header
                {
                    self.peer = Peer::Ip(source);
                    self.server_port = ServerPort::Tcp(destination.port());
                }
                true
            }
            Err(proxy_protocol::Malformed(why)) => {
                log::debug!(target: "maitre", "closing a connection from {peer}: PROXY protocol header: {why}");
                self.inbuf = Vec::new();
                self.phase = Phase::Closing;
                false
            }
        }
    }

    fn start_request(&mut self, ctx: &mut Ctx, head: RequestHead) {
        match head.framing {
            BodyFraming::None => self.dispatch(ctx, head, JobBody::Ready(BodyReader::empty())),
            // The app decides whether it wants the body. Only for a declared
            // length: frameworks such as Django read CONTENT_LENGTH alone, so a
            // chunked body must be complete (and its length known) before the
            // app runs, and its 100 Continue goes out at once, as in waitress.
            framing @ BodyFraming::Length(_) if head.expect_continue => {
                self.dispatch(ctx, head, JobBody::Deferred);
                if let Phase::InFlight { body, .. } = &mut self.phase {
                    *body = Some(BodyState::new(framing, ctx.cfg));
                }
            }
            framing => {
                if head.expect_continue {
                    self.queue(CONTINUE.to_vec());
                }
                self.phase = Phase::Body {
                    head,
                    body: BodyState::new(framing, ctx.cfg),
                }
            }
        }
    }

    fn dispatch(&mut self, ctx: &mut Ctx, head: RequestHead, body: JobBody) {
        let keep_alive = head.keep_alive && !ctx.stopping;
        self.seq = self.seq.wrapping_add(1);
        (self.fresh, self.one_more) = (false, false);
        // Reused per connection: no allocation per request once it has grown.
        self.request_line.clear();
        for part in [head.method(), b" ", head_target(&head)] {
            self.request_line
                .extend(part.iter().map(|&b| char::from(b)));
        }
        let job = Job {
            req: RequestId {
                conn: self.id,
                seq: self.seq,
            },
            shared: Arc::clone(&self.shared),
            head,
            body,
            peer: self.peer,
            server_port: self.server_port.clone(),
            keep_alive,
            queued_at: ctx.now,
        };
        ctx.stats.enqueue(ctx.now);
        self.in_app = Some(ctx.now);
        self.slow_app_logged = false;
        self.phase = Phase::InFlight {
            body: None,
            body_requested: false,
            responded: false,
        };
        if !ctx.jobs.send(job) {
            // Workers are gone (shutting down): nobody will answer.
            self.phase = Phase::Closing;
        }
    }

    /// Answers a request the app will never see, then closes. `head` is the
    /// request's, if it was parsed and is not in the `Body` phase.
    fn reject(&mut self, ctx: &mut Ctx, e: RequestError, head: Option<RequestHead>) {
        let (code, reason) = e.status();
        incr(&ctx.stats.lp.bad_requests);
        ctx.stats.count_status(code);
        log::debug!(target: "maitre", "{} from {}: {}", code, self.peer, e.detail());
        let (response, body_bytes) = simple_response(
            Version::Http11,
            code,
            reason,
            e.detail(),
            ctx.cfg.ident.as_deref(),
        );
        self.queue(response);
        let phase = std::mem::replace(&mut self.phase, Phase::Closing);
        if ctx.cfg.access_log.is_some() {
            let request = match (head, phase) {
                (Some(head), _) | (None, Phase::Body { head, .. }) => Seen::Head(head),
                _ => Seen::first_line(&self.inbuf, ctx.cfg.max_request_line),
            };
            ctx.refused.push(Refused {
                peer: self.peer,
                request,
                status: code,
                body_bytes,
            });
        }
        self.inbuf = Vec::new();
        self.discard_input = true;
        self.deadline = None;
    }

    /// Writes queued output until done or the socket is full.
    fn flush(&mut self, ctx: &Ctx) -> io::Result<()> {
        let n = self.out.write_to(&mut self.socket)?;
        if n > 0 {
            add(&ctx.stats.lp.bytes_out, n as u64);
            self.report_progress(ctx, n, 0);
            self.last_activity = ctx.now;
        }
        Ok(())
    }

    /// Tells the workers `written` bytes went out and `taken` bytes were taken
    /// from them, with what the output buffer now holds.
    fn report_progress(&self, ctx: &Ctx, written: usize, taken: usize) {
        self.shared.progress(
            written,
            taken,
            self.out.in_memory(),
            !self.out.is_empty(),
            OutputLimits::new(ctx.cfg),
        );
    }

    /// Called when the connection leaves the loop: wakes any worker waiting on it.
    pub fn closed(&self) {
        self.shared.close();
    }
}

#[cfg(test)]
mod tests {
    //! The state machine over a real loopback socket pair, driven by hand.
    use super::*;
    use crate::handoff::queue::JobReceiver;
    use crate::http::body::BodyReader;
    use smallvec::smallvec;
    use std::io::Write as _;
    use std::net::{TcpListener, TcpStream as StdStream};

    fn config() -> Config {
        Config {
            listen: vec![],
            unix_socket_perms: 0o600,
            threads: 1,
            backlog: 16,
            connection_limit: 10,
            channel_timeout: Duration::from_secs(10),
            graceful_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            cleanup_interval: Duration::from_secs(1),
            recv_bytes: 8192,
            max_request_header_size: 1024,
            max_request_line: 1024,
            max_request_headers: 100,
            max_request_body_size: 100,
            inbuf_overflow: 16,
            outbuf_overflow: 1 << 20,
            outbuf_high_watermark: 1 << 20,
            ident: Some("t".into()),
            expose_tracebacks: false,
            url_scheme: "http".into(),
            url_prefix: String::new(),
            server_name: "x".into(),
            multiprocess: false,
            workers: 1,
            strict_backlog: false,
            reuse_port: false,
            metrics: None,
            access_log: None,
            proxy: Default::default(),
            proxy_protocol: false,
            log_socket_errors: true,
        }
    }

    struct Rig {
        conn: Conn,
        client: StdStream,
        jobs_tx: JobSender<Job>,
        refused: RefusedLog,
        jobs: JobReceiver<Job>,
        cfg: Config,
        stats: Stats,
        scratch: Vec<u8>,
        bulk: Vec<u8>,
        stopping: bool,
    }

    impl Rig {
        fn new() -> Rig {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let client = StdStream::connect(listener.local_addr().unwrap()).unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let (server, peer) = listener.accept().unwrap();
            server.set_nonblocking(true).unwrap();
            let id = ConnId {
                index: 0,
                generation: 1,
            };
            let (jobs_tx, jobs) = crate::handoff::queue::channel();
            Rig {
                conn: Conn::new(
                    Stream::Tcp(mio::net::TcpStream::from_std(server)),
                    id,
                    Peer::Ip(peer),
                    ServerPort::Tcp(80),
                    &config(),
                ),
                client,
                jobs_tx,
                refused: RefusedLog::default(),
                jobs,
                cfg: config(),
                stats: Stats::default(),
                scratch: vec![0; 8192],
                bulk: vec![0; 1 << 16],
                stopping: false,
            }
        }

        fn ctx(&mut self) -> (&mut Conn, Ctx<'_>) {
            (
                &mut self.conn,
                Ctx {
                    cfg: &self.cfg,
                    jobs: &self.jobs_tx,
                    refused: &self.refused,
                    stats: &self.stats,
                    scratch: &mut self.scratch,
                    bulk: &mut self.bulk,
                    pipe: None,
                    stopping: self.stopping,
                    now: Instant::now(),
                },
            )
        }

        /// Sends bytes from the client and lets the connection read them.
        fn send(&mut self, bytes: &[u8]) -> Next {
            self.client.write_all(bytes).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            let (conn, mut ctx) = self.ctx();
            conn.on_event(&mut ctx, true, false)
        }

        fn complete(&mut self, data: &[u8], kind: Kind) -> Next {
            // What a worker does before handing output over.
            self.conn.shared.hand_over(data.len());
            let c = Completion {
                req: RequestId {
                    conn: self.conn.id,
                    seq: self.conn.seq,
                },
                data: smallvec![Piece::Owned(data.to_vec())],
                kind,
            };
            let (conn, mut ctx) = self.ctx();
            conn.on_completion(&mut ctx, c)
        }

        fn read_client(&mut self) -> Vec<u8> {
            let mut buf = vec![0; 4096];
            let n = self.client.read(&mut buf).unwrap_or(0);
            buf.truncate(n);
            buf
        }

        fn job(&self) -> Job {
            self.jobs.try_recv().expect("a job was dispatched")
        }
    }

    fn body_of(job: Job) -> Vec<u8> {
        match job.body {
            JobBody::Ready(mut r) => r.read(None).unwrap().into_owned(),
            JobBody::Deferred => panic!("deferred"),
        }
    }

    const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";

    #[test]
    fn keep_alive_and_pipelining_in_order() {
        let mut rig = Rig::new();
        let two = [GET, b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"].concat();
        assert_eq!(rig.send(&two), Next::Keep);
        assert_eq!(rig.job().head.target(), b"/a");
        assert!(
            rig.jobs.try_recv().is_err(),
            "one request in flight at a time"
        );
        assert_eq!(
            rig.complete(b"R1", Kind::End { keep_alive: true }),
            Next::Keep
        );
        assert_eq!(rig.job().head.target(), b"/b");
        assert_eq!(
            rig.complete(b"R2", Kind::End { keep_alive: true }),
            Next::Keep
        );
        assert_eq!(rig.read_client(), b"R1R2");
        assert!(rig.conn.is_idle());
    }

    #[test]
    fn content_length_and_chunked_bodies_are_collected() {
        let mut rig = Rig::new();
        rig.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhel");
        assert!(rig.jobs.try_recv().is_err(), "body incomplete");
        rig.send(b"lo");
        assert_eq!(body_of(rig.job()), b"hello");
        rig.complete(b"", Kind::End { keep_alive: true });
        rig.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
        assert_eq!(body_of(rig.job()), b"abc");
    }

    #[test]
    fn bad_request_gets_400_and_closes() {
        let mut rig = Rig::new();
        let next = rig.send(b"GET / HTTP/1.1\r\n\r\n");
        assert_ne!(next, Next::Keep);
        let reply = rig.read_client();
        assert!(
            reply.starts_with(b"HTTP/1.1 400 Bad Request\r\n"),
            "{reply:?}"
        );
        assert!(rig.jobs.try_recv().is_err());
    }

    #[test]
    fn oversized_body_gets_413() {
        let mut rig = Rig::new();
        rig.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n");
        assert!(rig.read_client().starts_with(b"HTTP/1.1 413 "));
        let mut rig = Rig::new();
        rig.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
        rig.send(format!("65\r\n{}\r\n", "a".repeat(101)).as_bytes());
        assert!(rig.read_client().starts_with(b"HTTP/1.1 413 "));
    }

    #[test]
    fn expect_continue_waits_for_the_app() {
        let mut rig = Rig::new();
        rig.send(
            b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
        );
        let job = rig.job();
        assert!(matches!(job.body, JobBody::Deferred));
        rig.client.set_nonblocking(true).unwrap();
        assert!(rig.read_client().is_empty(), "no 100 before the app reads");
        rig.client.set_nonblocking(false).unwrap();
        rig.complete(b"", Kind::Continue);
        assert_eq!(rig.read_client(), CONTINUE);
        rig.send(b"abc");
        let body = job.shared.wait_body().unwrap().unwrap();
        let mut body: BodyReader = body;
        assert_eq!(&*body.read(None).unwrap(), b"abc");
        assert_eq!(
            rig.complete(b"ok", Kind::End { keep_alive: true }),
            Next::Keep
        );
    }

    #[test]
    fn chunked_expect_continue_is_answered_at_once_and_buffered() {
        let mut rig = Rig::new();
        rig.send(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(rig.read_client(), CONTINUE);
        assert!(rig.jobs.try_recv().is_err(), "the body comes first");
        rig.send(b"3\r\nabc\r\n0\r\n\r\n");
        assert_eq!(body_of(rig.job()), b"abc");
    }

    #[test]
    fn unread_continue_body_closes_after_response() {
        let mut rig = Rig::new();
        rig.send(
            b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
        );
        let _job = rig.job();
        let next = rig.complete(b"done", Kind::End { keep_alive: true });
        assert_ne!(next, Next::Keep);
        assert_eq!(rig.read_client(), b"done");
    }

    #[test]
    fn half_closed_client_still_gets_its_response() {
        let mut rig = Rig::new();
        rig.client.write_all(GET).unwrap();
        rig.client.shutdown(Shutdown::Write).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let (conn, mut ctx) = rig.ctx();
        assert_eq!(conn.on_event(&mut ctx, true, true), Next::Keep);
        let _job = rig.job();
        assert_eq!(
            rig.complete(b"bye", Kind::End { keep_alive: true }),
            Next::Close
        );
        assert_eq!(rig.read_client(), b"bye");
    }

    /// Issue 13 item 14: while the client has not read enough of the responses,
    /// pipelined requests wait; and once the server is stopping they never start.
    #[test]
    fn pipelined_requests_wait_for_unread_output_and_not_at_all_while_stopping() {
        let mut rig = Rig::new();
        let two = [GET, b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"].concat();
        rig.send(&two);
        let _first = rig.job();
        let big = vec![b'r'; 8 << 20]; // far more than the socket takes, over the watermark
        assert_eq!(
            rig.complete(&big, Kind::End { keep_alive: true }),
            Next::Keep
        );
        assert!(
            rig.jobs.try_recv().is_err(),
            "held back: the client reads nothing"
        );
        rig.stopping = true;
        assert_eq!(
            rig.conn.on_shutdown(Instant::now()),
            Next::Keep,
            "output still to send"
        );
        let mut got = 0;
        let mut buf = vec![0; 1 << 16];
        let next = loop {
            got += rig.client.read(&mut buf).unwrap();
            let (conn, mut ctx) = rig.ctx();
            let next = conn.on_event(&mut ctx, false, false);
            if next != Next::Keep || got >= big.len() {
                break next;
            }
        };
        assert_eq!(next, Next::Close, "drained while stopping: close");
        assert!(
            rig.jobs.try_recv().is_err(),
            "no request starts while stopping"
        );
    }
}
