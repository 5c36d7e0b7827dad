//! The hand-off between the event loop and the Python worker threads: jobs go
//! out over one crossbeam channel, completions come back over another, and a
//! coalesced `mio::Waker` tells the loop there is something to collect.

pub mod pool;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::Sender;
use mio::Waker;

use crate::conn::{ConnId, ConnShared};
use crate::http::body::BodyReader;
use crate::http::parse::RequestHead;

/// A complete request on its way to a worker.
pub struct Job {
    pub conn: ConnId,
    pub shared: Arc<ConnShared>,
    pub head: RequestHead,
    pub body: JobBody,
    pub peer: SocketAddr,
    pub server_port: u16,
    /// The connection may carry another request after this one.
    pub keep_alive: bool,
}

pub enum JobBody {
    /// The whole body, already received (possibly spooled to disk).
    Ready(BodyReader),
    /// `Expect: 100-continue` with a Content-Length: the loop sends `100
    /// Continue` and reads the body only when the app first reads `wsgi.input`
    /// (see `Kind::Continue`).
    Deferred,
}

/// What a worker tells the loop about one connection.
pub enum Kind {
    /// More response bytes follow.
    More,
    /// The app wants the deferred body: send `100 Continue` and read it.
    Continue,
    /// The response is complete; `keep_alive` says whether the connection may go on.
    End { keep_alive: bool },
    /// The response broke off (app error after the head went out): close after `data`.
    Abort,
}

pub struct Completion {
    pub conn: ConnId,
    pub data: Vec<u8>,
    pub kind: Kind,
}

/// Wakes the loop at most once per drain: workers set `pending` and only the
/// one that flips it from false pays for the `Waker::wake` syscall; the loop
/// clears it before draining, so no completion is ever left unseen.
pub struct LoopWaker {
    waker: Waker,
    pending: AtomicBool,
}

impl LoopWaker {
    pub fn new(waker: Waker) -> Self {
        LoopWaker {
            waker,
            pending: AtomicBool::new(false),
        }
    }

    pub fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            if let Err(e) = self.waker.wake() {
                log::error!(target: "maitre", "could not wake the event loop: {e}");
            }
        }
    }

    /// Called by the loop before it drains completions.
    pub fn clear(&self) {
        self.pending.store(false, Ordering::Release);
    }
}

/// A worker's way back to the loop.
#[derive(Clone)]
pub struct LoopHandle {
    pub completions: Sender<Completion>,
    pub waker: Arc<LoopWaker>,
}

impl LoopHandle {
    /// Queues a completion; returns false when the loop has already gone.
    pub fn send(&self, c: Completion) -> bool {
        let sent = self.completions.send(c).is_ok();
        self.waker.wake();
        sent
    }
}
