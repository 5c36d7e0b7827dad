//! A connection as the loop and the workers both see it: its id across
//! threads, the ids of its requests, how much output it may hold, and the
//! state they share (output handed over and not yet written, the deferred
//! body, whether the client is gone). The loop owns the connection itself.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::config::Config;
use crate::http::body::BodyReader;
use crate::http::RequestError;

/// Identifies a connection across threads; the generation tells a reused slot
/// from the connection a late completion was meant for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnId {
    pub index: u32,
    pub generation: u32,
}

/// One request on one connection: `seq` counts the connection's requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestId {
    pub conn: ConnId,
    pub seq: u32,
}

/// Output a worker may get ahead of a loop whose socket still takes it all:
/// see `ConnShared::memory_limit`.
const AHEAD: usize = 256 * 1024;

/// How much unsent output a connection may hold before its worker waits:
/// `outbuf_high_watermark` in all, of which `outbuf_overflow` in memory (the
/// rest spilled to the loop's file), as waitress means the two options.
#[derive(Clone, Copy, Debug)]
pub struct OutputLimits {
    pub watermark: usize,
    pub in_memory: usize,
}

impl OutputLimits {
    pub fn new(cfg: &Config) -> Self {
        OutputLimits {
            watermark: cfg.outbuf_high_watermark,
            in_memory: cfg.outbuf_overflow,
        }
    }
}

/// The part of a connection a worker thread sees.
#[derive(Default)]
pub struct ConnShared {
    /// Response bytes handed to the loop but not yet written to the socket.
    unsent: AtomicUsize,
    /// Of those, handed over by a worker but not yet taken by the loop.
    in_transit: AtomicUsize,
    /// Of those, queued in the loop's memory (not spilled to its file).
    queued_in_memory: AtomicUsize,
    /// The loop's last write stopped with output left (the socket is full).
    blocked: AtomicBool,
    /// Threads waiting in `wait_room`: the loop wakes them only if any.
    waiting: AtomicUsize,
    closed: AtomicBool,
    /// The seq of the last request whose response the loop has ended.
    ended: AtomicU32,
    state: Mutex<Option<Result<BodyReader, RequestError>>>,
    cv: Condvar,
}

impl ConnShared {
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The loop ends request `seq`'s response, completely or not.
    pub fn end_request(&self, seq: u32) {
        self.ended.store(seq, Ordering::Release);
    }

    /// The loop has ended request `seq`'s response (completely or not): an
    /// app thread still writing to it is told so.
    pub fn request_ended(&self, seq: u32) -> bool {
        // Seqs only grow (wrapping), one request at a time.
        self.ended.load(Ordering::Acquire).wrapping_sub(seq) as i32 >= 0
    }

    /// A worker hands `n` response bytes to the loop.
    pub fn hand_over(&self, n: usize) {
        self.unsent.fetch_add(n, Ordering::SeqCst);
        self.in_transit.fetch_add(n, Ordering::SeqCst);
    }

    /// The loop queues output of its own.
    pub fn add_unsent(&self, n: usize) {
        self.unsent.fetch_add(n, Ordering::SeqCst);
    }

    pub fn unsent(&self) -> usize {
        self.unsent.load(Ordering::SeqCst)
    }

    fn in_memory(&self) -> usize {
        self.in_transit.load(Ordering::SeqCst) + self.queued_in_memory.load(Ordering::SeqCst)
    }

    /// The output a worker may hold in memory before it waits. While the
    /// socket takes all the loop writes, output piling up only means the loop
    /// has not run yet (on a shared core, a worker gets many chunks ahead of
    /// it): the worker waits at `AHEAD` and lets it, so chunks go out while
    /// still in the CPU's cache, and freed buffers are reused warm (on the
    /// `stream` bench, 1 MiB ahead per connection cost 15% more CPU per
    /// response than 256 KiB). Once the socket is full, the full allowance
    /// applies, and past it output spills to the file as before.
    fn memory_limit(&self, limits: OutputLimits) -> usize {
        if self.blocked.load(Ordering::SeqCst) {
            limits.in_memory
        } else {
            limits.in_memory.min(AHEAD)
        }
    }

    /// Over a limit: the worker must wait before handing over more.
    pub fn full(&self, limits: OutputLimits) -> bool {
        self.unsent() > limits.watermark || self.in_memory() > self.memory_limit(limits)
    }

    /// Room enough for a waiting worker to go on: half the memory allowance,
    /// so it is not woken for every write.
    fn roomy(&self, limits: OutputLimits) -> bool {
        self.unsent() <= limits.watermark && self.in_memory() <= self.memory_limit(limits) / 2
    }

    /// The loop wrote `written` bytes, took `taken` bytes from the workers,
    /// and now holds `in_memory` bytes unspilled, `blocked` if the socket
    /// took less than it had; wakes waiting workers when there is room.
    pub fn progress(
        &self,
        written: usize,
        taken: usize,
        in_memory: usize,
        blocked: bool,
        limits: OutputLimits,
    ) {
        // SeqCst with `wait_room`'s: either it sees these counts, or this
        // sees it waiting.
        self.unsent.fetch_sub(written, Ordering::SeqCst);
        self.in_transit.fetch_sub(taken, Ordering::SeqCst);
        self.queued_in_memory.store(in_memory, Ordering::SeqCst);
        self.blocked.store(blocked, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 && self.roomy(limits) {
            let _guard = self.state.lock();
            self.cv.notify_all();
        }
    }

    /// Blocks until there is room for more output; false if the client went away.
    pub fn wait_room(&self, limits: OutputLimits) -> bool {
        let mut guard = self.state.lock();
        self.waiting.fetch_add(1, Ordering::SeqCst);
        while !self.roomy(limits) && !self.is_closed() {
            self.cv.wait_for(&mut guard, Duration::from_millis(500));
        }
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        !self.is_closed()
    }

    pub fn deliver_body(&self, body: Result<BodyReader, RequestError>) {
        *self.state.lock() = Some(body);
        self.cv.notify_all();
    }

    /// Blocks until the loop has received the deferred body; `None` if the client went away.
    pub fn wait_body(&self) -> Option<Result<BodyReader, RequestError>> {
        let mut guard = self.state.lock();
        loop {
            if let Some(body) = guard.take() {
                return Some(body);
            }
            if self.is_closed() {
                return None;
            }
            self.cv.wait_for(&mut guard, Duration::from_millis(500));
        }
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let _guard = self.state.lock();
        self.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn closing_wakes_waiting_workers() {
        let limits = OutputLimits {
            watermark: 5,
            in_memory: 100,
        };
        let shared = Arc::new(ConnShared::default());
        shared.hand_over(10);
        assert!(shared.full(limits));
        let s = Arc::clone(&shared);
        let waiter = std::thread::spawn(move || s.wait_room(limits));
        std::thread::sleep(Duration::from_millis(20));
        shared.close();
        assert!(!waiter.join().unwrap(), "reports the client gone");
    }

    /// Issue 18: a worker waits while more than `outbuf_overflow` of its
    /// output is in memory, even under the watermark, and is woken once the
    /// loop has taken and spilled or written it down to half of that.
    #[test]
    fn memory_over_outbuf_overflow_makes_the_worker_wait() {
        let limits = OutputLimits {
            watermark: 1000,
            in_memory: 100,
        };
        let shared = Arc::new(ConnShared::default());
        shared.hand_over(150);
        assert!(shared.full(limits), "150 in transit, 100 allowed in memory");
        let s = Arc::clone(&shared);
        let waiter = std::thread::spawn(move || s.wait_room(limits));
        std::thread::sleep(Duration::from_millis(20));
        // Taken, 40 written, 110 spilled to the file: unsent 110 but none in memory.
        shared.progress(40, 150, 0, true, limits);
        assert!(waiter.join().unwrap());
        assert!(!shared.full(limits));
        assert_eq!(shared.unsent(), 110);
    }

    /// Issue 18: while the socket takes all the loop writes, a worker waits
    /// once `AHEAD` bytes are in memory (so the loop gets to run); once the
    /// socket is full, the whole `outbuf_overflow` allowance applies again.
    #[test]
    fn worker_waits_at_ahead_unless_the_socket_is_full() {
        let limits = OutputLimits {
            watermark: 16 << 20,
            in_memory: 1 << 20,
        };
        let shared = ConnShared::default();
        shared.hand_over(AHEAD + 1);
        assert!(shared.full(limits), "the loop has written all it had");
        // Taken; the socket took none of it: blocked.
        shared.progress(0, AHEAD + 1, AHEAD + 1, true, limits);
        assert!(!shared.full(limits), "the full allowance applies");
        assert!(shared.roomy(limits));
        shared.hand_over(limits.in_memory);
        assert!(shared.full(limits));
        // Everything written: back to `AHEAD`, and room at half of it.
        let all = shared.unsent();
        shared.progress(all, limits.in_memory, 0, false, limits);
        assert!(shared.roomy(limits));
        shared.hand_over(AHEAD / 2 + 1);
        assert!(!shared.roomy(limits));
    }
}
