//! The hand-off between the event loop and the Python worker threads: jobs go
//! out over one crossbeam channel, completions come back over another, and a
//! coalesced `mio::Waker` tells the loop there is something to collect. What
//! both sides hold of a connection is in `conn_shared`. The loop (`conn`,
//! `event_loop`) and the workers (`workers`, `wsgi`) each build on this; it
//! knows neither.

mod conn_shared;
pub mod queue;

pub use conn_shared::{ConnId, ConnShared, OutputLimits, RequestId};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use mio::Waker;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use smallvec::SmallVec;

use crate::access_log::RefusedLog;
use crate::config::Config;
use crate::http::body::BodyReader;
use crate::http::parse::RequestHead;
use crate::net::{Peer, ServerPort};
use crate::os::sendfile::FilePiece;
use crate::stats::StatsHandle;

/// A complete request on its way to a worker.
pub struct Job {
    pub req: RequestId,
    pub shared: Arc<ConnShared>,
    pub head: RequestHead,
    pub body: JobBody,
    pub peer: Peer,
    pub server_port: ServerPort,
    /// The connection may carry another request after this one.
    pub keep_alive: bool,
    /// When its head was complete (for the queue wait and the request time).
    pub queued_at: Instant,
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
    /// Which request of which connection: anything for a request that has
    /// ended is dropped, so it can never land between two responses.
    pub req: RequestId,
    /// Response bytes, in order.
    pub data: Pieces,
    pub kind: Kind,
}

impl Completion {
    /// Whether `next` goes on with the same response: this one is `More`.
    pub fn is_continued_by(&self, next: &Completion) -> bool {
        next.req == self.req && matches!(self.kind, Kind::More)
    }

    /// Appends `next`, which `is_continued_by` said goes on with this
    /// response: handled as one, their pieces go out in one write (handing
    /// both in turn to `Conn::on_completion` does the same, in more writes).
    pub fn absorb(&mut self, next: Completion) {
        self.data.extend(next.data);
        self.kind = next.kind;
    }
}

/// A completion's bytes: usually one piece (a whole small response), so inline.
pub type Pieces = SmallVec<[Piece; 2]>;

/// A run of response bytes: built by the worker, a large `bytes` object the
/// app returned (written from Python's own buffer without a copy), or a range
/// of a regular file the loop sends itself.
pub enum Piece {
    Owned(Vec<u8>),
    Python(PyBytesSlice),
    File(FilePiece),
}

impl Piece {
    /// The bytes of a piece held in memory; `None` for a file.
    pub fn memory(&self) -> Option<&[u8]> {
        match self {
            Piece::Owned(v) => Some(v),
            Piece::Python(p) => Some(p.as_slice()),
            Piece::File(_) => None,
        }
    }

    /// Bytes still to go on the wire.
    pub fn len(&self) -> usize {
        match self {
            Piece::File(f) => usize::try_from(f.len()).unwrap_or(usize::MAX),
            _ => self.in_memory(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes it holds in memory.
    pub fn in_memory(&self) -> usize {
        self.memory().map_or(0, <[u8]>::len)
    }
}

/// The contents of a Python `bytes` object, readable without the GIL.
pub struct PyBytesSlice {
    /// Keeps the object, hence its buffer, alive; `None` once handed back.
    owner: Option<Py<PyBytes>>,
    ptr: *const u8,
    len: usize,
    /// Where the object goes when done: a worker drops it with the GIL held.
    garbage: Sender<Py<PyBytes>>,
}

// SAFETY: `ptr` points into the buffer of an immutable `bytes` object that
// `owner` keeps alive until this value is dropped; reading it needs no GIL,
// and `Py` itself is Send. Shared references only ever read that immutable
// buffer, so Sync holds too.
unsafe impl Send for PyBytesSlice {}
unsafe impl Sync for PyBytesSlice {}

impl PyBytesSlice {
    pub fn new(bytes: &Bound<'_, PyBytes>, garbage: Sender<Py<PyBytes>>) -> Self {
        let data = bytes.as_bytes();
        PyBytesSlice {
            ptr: data.as_ptr(),
            len: data.len(),
            owner: Some(bytes.clone().unbind()),
            garbage,
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: see `unsafe impl Send` above: the buffer outlives `self`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for PyBytesSlice {
    /// The loop thread is not attached to Python: rather than leave the
    /// decref to pyo3's deferred pool (drained only when a worker next
    /// releases the GIL), send the object back to the workers.
    fn drop(&mut self) {
        if let Some(owner) = self.owner.take() {
            let _ = self.garbage.send(owner);
        }
    }
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

/// Shared between the loop and `Engine::close`.
pub struct Control {
    pub waker: Arc<LoopWaker>,
    /// Set by `Engine::close`; workers read it too, so responses that start
    /// during the drain carry `Connection: close`.
    pub stop: AtomicBool,
}

/// The loop's ends of the channels to and from the workers.
pub struct WorkerLink {
    pub jobs: queue::JobSender<Job>,
    pub completions: Receiver<Completion>,
    /// The loop only looks whether any wait, to wake an idle worker for them.
    pub garbage: Garbage,
    /// Access log records of requests the loop answers itself.
    pub refused: RefusedLog,
}

/// What every worker thread holds: the app, and the workers' ends of the channels.
pub struct WorkerShared {
    pub app: Py<PyAny>,
    pub cfg: Arc<Config>,
    pub stats: StatsHandle,
    pub jobs: queue::JobReceiver<Job>,
    pub handle: LoopHandle,
    /// Access log records of requests the loop answered itself.
    pub refused: RefusedLog,
}

/// Response `bytes` objects the loop has written (or dropped), on their way
/// back to be released where the GIL is held. Workers release them before
/// each job, before sleeping, and with each streamed chunk: an object freed
/// only at a worker's next job stays alive as long as every worker is busy
/// (16 threads streaming 100 MiB each held 1.5 GB of written chunks).
#[derive(Clone)]
pub struct Garbage {
    tx: Sender<Py<PyBytes>>,
    rx: Receiver<Py<PyBytes>>,
}

impl Default for Garbage {
    fn default() -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Garbage { tx, rx }
    }
}

impl Garbage {
    pub fn sender(&self) -> Sender<Py<PyBytes>> {
        self.tx.clone()
    }

    /// Releases every object waiting.
    pub fn release(&self, _gil: Python<'_>) {
        while self.rx.try_recv().is_ok() {}
    }

    pub fn pending(&self) -> bool {
        !self.rx.is_empty()
    }
}

/// A worker's way back to the loop.
#[derive(Clone)]
pub struct LoopHandle {
    pub completions: Sender<Completion>,
    pub control: Arc<Control>,
    pub garbage: Garbage,
}

impl LoopHandle {
    /// Queues a completion; returns false when the loop has already gone.
    pub fn send(&self, c: Completion) -> bool {
        let sent = self.completions.send(c).is_ok();
        self.control.waker.wake();
        sent
    }

    /// The server is draining: no connection is kept alive after its response.
    pub fn stopping(&self) -> bool {
        self.control.stop.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completion(conn: u32, seq: u32, bytes: &[u8], kind: Kind) -> Completion {
        Completion {
            req: RequestId {
                conn: ConnId {
                    index: conn,
                    generation: 0,
                },
                seq,
            },
            data: smallvec::smallvec![Piece::Owned(bytes.to_vec())],
            kind,
        }
    }

    fn bytes(c: &Completion) -> Vec<u8> {
        c.data
            .iter()
            .flat_map(|p| p.memory().unwrap_or_default().to_vec())
            .collect()
    }

    /// `absorb` where `is_continued_by` allows it, as the loop does.
    fn merge(c: &mut Completion, next: Completion) -> bool {
        let continued = c.is_continued_by(&next);
        if continued {
            c.absorb(next);
        }
        continued
    }

    #[test]
    fn a_response_queued_in_pieces_is_absorbed_into_one_completion() {
        let mut c = completion(1, 1, b"head|", Kind::More);
        assert!(merge(&mut c, completion(1, 1, b"a|", Kind::More)));
        assert!(merge(
            &mut c,
            completion(1, 1, b"end", Kind::End { keep_alive: true })
        ));
        assert_eq!(bytes(&c), b"head|a|end");
        assert_eq!(c.data.len(), 3, "pieces are kept, not copied");
        assert!(matches!(c.kind, Kind::End { keep_alive: true }));
        // Nothing follows an end, not even the next response of the connection.
        assert!(!merge(&mut c, completion(1, 2, b"next", Kind::More)));
        assert_eq!(bytes(&c), b"head|a|end");
    }

    #[test]
    fn other_requests_and_connections_are_not_absorbed() {
        let mut c = completion(1, 1, b"a", Kind::More);
        for other in [
            completion(2, 1, b"x", Kind::More),
            completion(1, 2, b"y", Kind::More),
        ] {
            assert!(!merge(&mut c, other));
        }
        let mut continued = completion(1, 1, b"", Kind::Continue);
        assert!(!merge(&mut continued, completion(1, 1, b"z", Kind::More)));
        assert_eq!(bytes(&c), b"a");
    }
}
