//! The mio event loop: one thread owning every socket. It accepts (up to
//! `connection_limit`), reads and parses, hands complete requests to the
//! workers, writes their responses, and times out idle connections.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::{Events, Interest, Poll, Token};

use crate::access_log::RefusedLog;
use crate::config::Config;
use crate::conn::{Conn, Ctx, Next};
use crate::handoff::queue::JobSender;
use crate::handoff::{Completion, ConnId, Control, Garbage, Job, WorkerLink};
use crate::net::listener::Listener;
use crate::net::stream::Stream;
use crate::net::{Peer, ServerPort};
use crate::os::splice::Pipe;
use crate::os::tempfile;
use crate::stats::endpoint::Endpoint;
use crate::stats::listen::ListenViews;
use crate::stats::watch::Watch;
use crate::stats::{decr, incr, Closed, LoopStats, StatsHandle};

pub const WAKER: Token = Token(usize::MAX);
/// Bytes asked for per read of a request body (one buffer for the whole loop).
const BODY_READ: usize = 256 * 1024;
/// The loop's pipe for spooled bodies (`os::splice`): the most an unprivileged
/// process gets by default (`/proc/sys/fs/pipe-max-size`). Against 256 KiB it
/// cut the 20 MiB upload bench's server CPU per request by about 4%: a quarter
/// of the splice calls.
const PIPE_SIZE: usize = 1 << 20;
const LISTENER_BASE: usize = usize::MAX - 1 - 1024;
/// On a socket shared with other worker processes, a loop holding more than
/// this many connections above the least-loaded sibling leaves the rest of a
/// burst to it (see `EventLoop::accept`)...
const SHARE_SLACK: u64 = 1;
/// ...and looks again this much later (see `Deferral`).
const SHARE_DEFER: Duration = Duration::from_millis(5);

/// Connections on a shared socket left to the sibling worker processes. When
/// it is due, the loop goes on sharing if they accepted any meanwhile; if not,
/// they get one more turn (the least-loaded may be waiting out a deferral of
/// its own), then this loop takes all that is queued: a sibling that is
/// stopped or stuck must not hold connections back.
#[derive(Clone, Copy)]
struct Deferral {
    at: Instant,
    /// What the siblings had accepted in all when it began.
    accepted: u64,
    again: bool,
}

/// At a stop, how long a fresh connection (or a head still arriving) may
/// take to send its one last request: its client connected before the stop
/// and may be writing it right now (a proxy writes just after the handshake).
const STOP_GRACE: Duration = Duration::from_secs(1);

/// How often deadlines are looked at: often enough for header_timeout to hold
/// within a quarter of itself, at most once per 100 ms.
fn deadline_sweep(cfg: &Config) -> Duration {
    (cfg.header_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// Connections by token; a slot's generation changes on every reuse.
#[derive(Default)]
struct Slab {
    entries: Vec<Option<Conn>>,
    generations: Vec<u32>,
    free: Vec<usize>,
    len: usize,
}

impl Slab {
    fn next_id(&mut self) -> ConnId {
        let index = self.free.pop().unwrap_or_else(|| {
            self.entries.push(None);
            self.generations.push(0);
            self.entries.len() - 1
        });
        self.generations[index] = self.generations[index].wrapping_add(1);
        ConnId {
            index: index as u32,
            generation: self.generations[index],
        }
    }

    fn insert(&mut self, conn: Conn) {
        let i = conn.id.index as usize;
        self.entries[i] = Some(conn);
        self.len += 1;
    }

    fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.entries
            .get_mut(id.index as usize)?
            .as_mut()
            .filter(|c| c.id == id)
    }

    fn by_token(&mut self, index: usize) -> Option<&mut Conn> {
        self.entries.get_mut(index)?.as_mut()
    }

    fn remove(&mut self, index: usize) -> Option<Conn> {
        let conn = self.entries.get_mut(index)?.take()?;
        self.free.push(index);
        self.len -= 1;
        Some(conn)
    }

    fn ids(&self) -> Vec<ConnId> {
        self.entries.iter().flatten().map(|c| c.id).collect()
    }
}

pub struct EventLoop {
    pub poll: Poll,
    listeners: Vec<Listener>,
    conns: Slab,
    cfg: Arc<Config>,
    stats: StatsHandle,
    views: Arc<ListenViews>,
    endpoint: Option<Endpoint>,
    watch: Watch,
    jobs: Option<JobSender<Job>>,
    completions: Receiver<Completion>,
    /// Written `bytes` objects on their way back to the workers: only looked at.
    garbage: Garbage,
    /// Access log records of requests answered here, for the workers.
    refused: RefusedLog,
    control: Arc<Control>,
    scratch: Vec<u8>,
    bulk: Vec<u8>,
    /// Moves bodies past `inbuf_overflow` from socket to file (none off Linux).
    pipe: Option<Pipe>,
    /// Accepting is paused at `connection_limit` (or after EMFILE) until this clears.
    paused: bool,
    accept_retry_at: Option<Instant>,
    /// A burst on a shared socket left to the other workers (see `accept`).
    deferred: Option<Deferral>,
    lingering: Vec<ConnId>,
    stopping_since: Option<Instant>,
    next_cleanup: Instant,
    /// When connections' `deadline`s are next looked at (see `deadline_sweep`).
    next_deadline_sweep: Instant,
    /// Read once per wake-up (see `Ctx::now`).
    now: Instant,
}

impl EventLoop {
    pub fn new(
        poll: Poll,
        listeners: Vec<Listener>,
        cfg: Arc<Config>,
        stats: LoopStats,
        link: WorkerLink,
        control: Arc<Control>,
    ) -> io::Result<Self> {
        let WorkerLink {
            jobs,
            completions,
            garbage,
            refused,
        } = link;
        let mut listeners = listeners;
        for (i, l) in listeners.iter_mut().enumerate() {
            poll.registry().register(
                &mut l.socket,
                Token(LISTENER_BASE + i),
                Interest::READABLE,
            )?;
        }
        let next_cleanup = Instant::now() + cfg.cleanup_interval;
        let next_deadline_sweep = Instant::now() + deadline_sweep(&cfg);
        let LoopStats {
            stats,
            views,
            metrics,
        } = stats;
        let endpoint = match metrics {
            Some((listener, reporter)) => Some(Endpoint::new(
                listener,
                reporter,
                poll.registry(),
                LISTENER_BASE,
            )?),
            None => None,
        };
        let watch = Watch::new(Instant::now(), &views);
        Ok(EventLoop {
            poll,
            listeners,
            conns: Slab::default(),
            scratch: vec![0; cfg.recv_bytes.max(4096)],
            bulk: vec![0; BODY_READ.max(cfg.recv_bytes)],
            pipe: Pipe::new(PIPE_SIZE),
            cfg,
            stats,
            views,
            endpoint,
            watch,
            jobs: Some(jobs),
            completions,
            garbage,
            refused,
            control,
            paused: false,
            accept_retry_at: None,
            deferred: None,
            lingering: Vec::new(),
            stopping_since: None,
            next_cleanup,
            next_deadline_sweep,
            now: Instant::now(),
        })
    }

    pub fn run(mut self) {
        crate::os::sched::batch_this_thread();
        let mut events = Events::with_capacity(1024);
        loop {
            // One wake-up for all the jobs the last round queued (see `queue`),
            // or for written response objects waiting to be released, or
            // access log records waiting to be written.
            if let Some(jobs) = &self.jobs {
                jobs.announce(
                    self.garbage.pending()
                        || self.refused.pending()
                        || tempfile::POOL.has_retired(),
                );
            }
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!(target: "maitre", "event loop poll failed, stopping: {e}");
                break;
            }
            self.now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    WAKER => self.control.waker.clear(),
                    Token(t) if t >= LISTENER_BASE => self.accept(t - LISTENER_BASE, true),
                    token if self.endpoint.as_ref().is_some_and(|e| e.owns(token)) => {
                        if let Some(endpoint) = &mut self.endpoint {
                            endpoint.on_event(self.poll.registry(), token);
                        }
                    }
                    Token(t) => {
                        if let Some(conn) = self.conns.by_token(t) {
                            let id = conn.id;
                            let readable = event.is_readable() || event.is_error();
                            let closed = event.is_read_closed();
                            self.with_conn(id, |conn, ctx| conn.on_event(ctx, readable, closed));
                        }
                    }
                }
            }
            self.drain_completions();
            if self.control.stop.load(Ordering::Acquire) && self.stopping_since.is_none() {
                self.begin_shutdown();
            }
            self.maintenance();
            if let Some(since) = self.stopping_since {
                if self.conns.len == 0 {
                    break;
                }
                if since.elapsed() > self.cfg.graceful_timeout {
                    log::warn!(
                        target: "maitre",
                        "stopping with {} connection(s) still busy after {:?}",
                        self.conns.len,
                        self.cfg.graceful_timeout
                    );
                    break;
                }
            }
        }
        for id in self.conns.ids() {
            self.close_as(id, Some(Closed::Server));
        }
        // Dropping the job sender lets idle workers leave their wait.
        self.jobs = None;
    }

    fn poll_timeout(&self) -> Duration {
        let now = Instant::now();
        let mut timeout = self
            .next_cleanup
            .min(self.next_deadline_sweep)
            .saturating_duration_since(now);
        if !self.lingering.is_empty() || self.stopping_since.is_some() {
            timeout = timeout.min(Duration::from_millis(100));
        }
        let deferred = self.deferred.map(|d| d.at);
        for at in [self.accept_retry_at, deferred].into_iter().flatten() {
            timeout = timeout.min(at.saturating_duration_since(now));
        }
        timeout.min(self.watch.next().saturating_duration_since(now))
    }

    /// Runs `f` on a live connection with a context, then acts on its answer.
    fn with_conn(&mut self, id: ConnId, f: impl FnOnce(&mut Conn, &mut Ctx) -> Next) {
        let Some(jobs) = self.jobs.as_ref() else {
            return;
        };
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let mut ctx = Ctx {
            cfg: &self.cfg,
            jobs,
            refused: &self.refused,
            stats: &self.stats,
            scratch: &mut self.scratch,
            bulk: &mut self.bulk,
            pipe: self.pipe.as_mut(),
            stopping: self.stopping_since.is_some(),
            now: self.now,
        };
        let next = f(conn, &mut ctx);
        // Idle keep-alive connections are counted as they come and go.
        if next == Next::Keep && conn.is_idle() != conn.counted_idle {
            conn.counted_idle = !conn.counted_idle;
            if conn.counted_idle {
                incr(&self.stats.lp.connections_idle);
            } else {
                decr(&self.stats.lp.connections_idle);
            }
        }
        match next {
            Next::Keep => {}
            Next::Close => self.close(id),
            Next::Linger => self.lingering.push(id),
        }
    }

    /// Handles the completions queued now, not those that arrive meanwhile:
    /// workers streaming as fast as the loop writes would otherwise keep it
    /// here, and no other socket would be polled (a connection whose socket
    /// filled would wait, and its worker with it).
    ///
    /// Consecutive pieces of one response are merged into one completion
    /// first, so they go out in one write: a worker that ran ahead of the
    /// loop (on a shared core it runs a whole response first) queued one per
    /// chunk, and each was its own `send` (11 per response of 10 chunks).
    fn drain_completions(&mut self) {
        let mut held: Option<Completion> = None;
        for _ in 0..self.completions.len() {
            let Ok(c) = self.completions.try_recv() else {
                break;
            };
            held = match held {
                Some(mut earlier) if earlier.is_continued_by(&c) => {
                    earlier.absorb(c);
                    Some(earlier)
                }
                Some(earlier) => {
                    self.complete(earlier);
                    Some(c)
                }
                None => Some(c),
            };
        }
        if let Some(c) = held {
            self.complete(c);
        }
    }

    fn complete(&mut self, c: Completion) {
        let id = c.req.conn;
        self.with_conn(id, |conn, ctx| conn.on_completion(ctx, c));
    }

    /// Accepts what is queued on listener `index`. With `fair`, on a socket
    /// whose one accept queue every worker process takes from, it stops once
    /// this process holds more than `SHARE_SLACK` connections above the
    /// least-loaded sibling: all of them are woken for a burst of new
    /// connections, and the first to run would otherwise take the whole burst
    /// (with wrk's 50 connections and workers=2, one worker took all 50). What
    /// it leaves is looked at again after `SHARE_DEFER`.
    fn accept(&mut self, index: usize, fair: bool) {
        if self.stopping_since.is_some() || self.paused {
            return;
        }
        let shared = fair
            && self.cfg.workers > 1
            && self
                .listeners
                .get(index)
                .is_some_and(|l| l.worker.is_none());
        let mut share = shared.then(|| self.share().0).flatten();
        loop {
            if self.conns.len >= self.cfg.connection_limit {
                // Logged once per episode by `Watch`.
                self.paused = true;
                self.stats.limit_paused(true, self.now);
                return;
            }
            if share.is_some_and(|most| self.conns.len as u64 > most) {
                // Read again before leaving the rest: siblings accept meanwhile,
                // and two loops each leaving it to the other would leave it to no one.
                let accepted;
                (share, accepted) = self.share();
                if share.is_some_and(|most| self.conns.len as u64 > most) {
                    self.deferred.get_or_insert(Deferral {
                        at: self.now + SHARE_DEFER,
                        accepted,
                        again: false,
                    });
                    return;
                }
            }
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    let server_port = listener.server_port.clone();
                    self.admit(stream, peer, server_port, false);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if is_fd_exhaustion(&e) => {
                    // Logged once per episode by `Watch`; retried every 100 ms.
                    log::debug!(target: "maitre", "cannot accept: {e}");
                    if self.stats.lp.fd_paused.swap(1, Ordering::Relaxed) == 0 {
                        incr(&self.stats.lp.fd_pauses);
                    }
                    self.paused = true;
                    self.accept_retry_at = Some(Instant::now() + Duration::from_millis(100));
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // waitress warns of these with log_socket_errors.
                Err(e) if self.cfg.log_socket_errors => {
                    log::warn!(target: "maitre", "accept failed: {e}");
                }
                Err(e) => log::debug!(target: "maitre", "accept failed: {e}"),
            }
        }
    }

    /// The most connections this loop should hold while siblings accept (the
    /// least-loaded one's plus `SHARE_SLACK`; `None` with no sibling
    /// accepting), and how many the siblings have accepted in all.
    fn share(&self) -> (Option<u64>, u64) {
        let (fewest, accepted) = self.stats.siblings();
        (fewest.map(|n| n + SHARE_SLACK), accepted)
    }

    fn resume_accepting(&mut self) {
        self.paused = false;
        self.accept_retry_at = None;
        self.stats.limit_paused(false, self.now);
        self.stats.lp.fd_paused.store(0, Ordering::Relaxed);
        for i in 0..self.listeners.len() {
            self.accept(i, true);
        }
    }

    fn close(&mut self, id: ConnId) {
        self.close_as(id, None);
    }

    /// Closes a connection, counted as closed for `why` (by default what
    /// the connection says).
    fn close_as(&mut self, id: ConnId, why: Option<Closed>) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        conn.closed();
        let why = why.unwrap_or_else(|| conn.close_reason());
        if conn.counted_idle {
            decr(&self.stats.lp.connections_idle);
        }
        let index = id.index as usize;
        if let Some(conn) = self.conns.remove(index) {
            self.release(conn);
        }
        self.stats.closed(why);
        if self.paused && self.accept_retry_at.is_none() && self.stopping_since.is_none() {
            self.resume_accepting();
        }
    }

    /// Drops a connection's socket. On Unix closing the descriptor takes it out
    /// of epoll/kqueue, so the explicit deregistration (a syscall per
    /// connection) is left out; a stale event for its token already fetched
    /// is harmless, readiness being only a hint.
    #[cfg(unix)]
    fn release(&mut self, conn: Conn) {
        drop(conn);
    }

    #[cfg(not(unix))]
    fn release(&mut self, mut conn: Conn) {
        let _ = self.poll.registry().deregister(&mut conn.socket);
    }

    fn begin_shutdown(&mut self) {
        self.stopping_since = Some(Instant::now());
        self.stats.lp.draining.store(1, Ordering::Relaxed);
        let grace = self.now + STOP_GRACE;
        for id in self.conns.ids() {
            self.with_conn(id, |conn, _| conn.on_shutdown(grace));
        }
        // The connections the kernel has queued are clients that connected
        // before the stop, most with their request sent: served (one request,
        // Connection: close) rather than reset when the socket closes, past
        // connection_limit if need be (the backlog bounds them); one whose
        // request has not arrived has STOP_GRACE to send it. What connects from
        // now on is refused, or reset where another process holds the socket.
        for index in 0..self.listeners.len() {
            self.accept_queued(index);
        }
        self.views.forget();
        for mut l in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut l.socket);
        }
    }

    /// Registers an accepted connection, counts it and reads what it sent.
    fn admit(&mut self, mut stream: Stream, peer: Peer, server_port: ServerPort, at_stop: bool) {
        let id = self.conns.next_id();
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(id.index as usize),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!(target: "maitre", "could not register a connection: {e}");
            self.conns.free.push(id.index as usize);
            return;
        }
        let mut conn = Conn::new(stream, id, peer, server_port, &self.cfg);
        if at_stop {
            let _ = conn.on_shutdown(self.now + STOP_GRACE);
        }
        self.conns.insert(conn);
        incr(&self.stats.lp.connections_accepted);
        incr(&self.stats.lp.connections_open);
        // Edge-triggered: data may have arrived before registration.
        self.with_conn(id, |conn, ctx| conn.on_event(ctx, true, true));
    }

    fn accept_queued(&mut self, index: usize) {
        loop {
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    let server_port = listener.server_port.clone();
                    self.admit(stream, peer, server_port, true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    fn maintenance(&mut self) {
        let now = self.now;
        if let Some(at) = self.accept_retry_at {
            if now >= at {
                self.resume_accepting();
            }
        }
        if let Some(due) = self.deferred.filter(|d| now >= d.at) {
            self.deferred = None;
            let progressed = self.share().1 > due.accepted;
            let fair = progressed || !due.again;
            for i in 0..self.listeners.len() {
                self.accept(i, fair);
            }
            if let Some(next) = self.deferred.as_mut().filter(|_| !progressed) {
                next.accepted = due.accepted;
                next.again = true;
            }
        }
        if !self.lingering.is_empty() {
            let done: Vec<ConnId> = self
                .lingering
                .iter()
                .copied()
                .filter(|&id| {
                    self.conns
                        .get_mut(id)
                        .and_then(|c| c.linger_until)
                        .is_none_or(|until| now >= until)
                })
                .collect();
            self.lingering.retain(|id| !done.contains(id));
            for id in done {
                self.close_as(id, Some(Closed::Server));
            }
        }
        if now >= self.next_deadline_sweep {
            self.next_deadline_sweep = now + deadline_sweep(&self.cfg);
            let missed: Vec<ConnId> = self
                .conns
                .entries
                .iter()
                .flatten()
                .filter(|c| c.deadline.is_some_and(|d| now >= d))
                .map(|c| c.id)
                .collect();
            for id in missed {
                log::debug!(target: "maitre", "a client missed header_timeout ({:?})", self.cfg.header_timeout);
                self.with_conn(id, |conn, ctx| conn.on_deadline(ctx));
            }
        }
        self.watch.tick(now, &self.stats, &self.cfg, &self.views);
        if now < self.next_cleanup {
            return;
        }
        self.next_cleanup = now + self.cfg.cleanup_interval;
        tempfile::POOL.age();
        if let Some(endpoint) = &mut self.endpoint {
            endpoint.expire(now);
        }
        let timeout = self.cfg.channel_timeout;
        // An app that has not answered within channel_timeout is not stopped
        // (Python threads cannot be), but said once, so a wedged thread shows.
        for conn in self.conns.entries.iter_mut().flatten() {
            let peer = conn.peer;
            if let Some((request, ran)) = conn.app_overdue(now, timeout) {
                log::warn!(
                    target: "maitre",
                    "The app has run {:.1}s (over channel_timeout, {timeout:?}) on {request} from {}",
                    ran.as_secs_f64(),
                    peer
                );
            }
        }
        let expired: Vec<ConnId> = self
            .conns
            .entries
            .iter()
            .flatten()
            .filter(|c| c.may_time_out() && now.duration_since(c.last_activity) > timeout)
            .map(|c| c.id)
            .collect();
        for id in expired {
            log::debug!(target: "maitre", "closing a connection idle for over {timeout:?}");
            self.close_as(id, Some(Closed::Timeout));
        }
    }
}

/// EMFILE / ENFILE: out of file descriptors, per process or system-wide.
#[cfg(unix)]
fn is_fd_exhaustion(e: &io::Error) -> bool {
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    matches!(e.raw_os_error(), Some(ENFILE | EMFILE))
}

#[cfg(not(unix))]
fn is_fd_exhaustion(_e: &io::Error) -> bool {
    false
}
