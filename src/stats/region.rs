//! Where the `Stats` of every process live: one slot per worker process. With
//! several workers the slots are in an anonymous shared mapping made before
//! fork, so each worker writes its own slot and any process reads them all;
//! one process needs no sharing and keeps its slot on the heap.

use std::ops::Deref;
use std::sync::Arc;

use super::Stats;

pub struct Region {
    memory: Memory,
}

enum Memory {
    Heap(Box<[Stats]>),
    #[cfg(unix)]
    Shared {
        ptr: *mut Stats,
        slots: usize,
    },
}

// SAFETY: the shared mapping is only ever accessed through `&Stats`, whose
// fields are all atomics; the pointer is never written through otherwise.
unsafe impl Send for Region {}
unsafe impl Sync for Region {}

impl Region {
    pub fn new(slots: usize) -> std::io::Result<Region> {
        let slots = slots.max(1);
        #[cfg(unix)]
        if slots > 1 {
            return Region::shared(slots);
        }
        Ok(Region {
            memory: Memory::Heap((0..slots).map(|_| Stats::default()).collect()),
        })
    }

    #[cfg(unix)]
    fn shared(slots: usize) -> std::io::Result<Region> {
        let len = slots * std::mem::size_of::<Stats>();
        // SAFETY: a fresh anonymous mapping with no address hint aliases
        // nothing; the result is checked against MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Region {
            memory: Memory::Shared {
                ptr: ptr.cast(),
                slots,
            },
        })
    }

    pub fn slots(&self) -> &[Stats] {
        match &self.memory {
            Memory::Heap(slots) => slots,
            // SAFETY: the mapping holds `slots` Stats: it is page-aligned
            // (Stats needs 64), zero-filled by the kernel, and all-zero is a
            // valid Stats (nothing but atomics, repr(C)); it stays mapped
            // until `self` drops, which outlives the returned borrow. Other
            // processes write it only through atomics as well.
            #[cfg(unix)]
            Memory::Shared { ptr, slots } => unsafe { std::slice::from_raw_parts(*ptr, *slots) },
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Memory::Shared { ptr, slots } = self.memory {
            // SAFETY: the mapping made in `shared`, with its length; no borrow
            // of it outlives `self`.
            unsafe { libc::munmap(ptr.cast(), slots * std::mem::size_of::<Stats>()) };
        }
    }
}

/// One process's slot; what the loop and the workers count into.
#[derive(Clone)]
pub struct StatsHandle {
    region: Arc<Region>,
    slot: usize,
}

impl StatsHandle {
    /// Slot `slot` of `region`, or `None` if there is no such slot.
    pub fn new(region: Arc<Region>, slot: usize) -> Option<StatsHandle> {
        (slot < region.slots().len()).then_some(StatsHandle { region, slot })
    }

    pub fn region(&self) -> &Arc<Region> {
        &self.region
    }

    pub fn slot(&self) -> usize {
        self.slot
    }

    /// The other worker processes that accept now (started, not stopping,
    /// not paused at their limit or for file descriptors): the fewest
    /// connections open in one of them (`None` if there is none), and how
    /// many they have accepted in all.
    pub fn siblings(&self) -> (Option<u64>, u64) {
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        let accepting = self.region.slots().iter().enumerate().filter(|&(i, s)| {
            i != self.slot
                && load(&s.pid) != 0
                && load(&s.lp.draining) == 0
                && load(&s.lp.paused_since) == 0
                && load(&s.lp.fd_paused) == 0
        });
        accepting.fold((None, 0), |(fewest, accepted), (_, s)| {
            let open = load(&s.lp.connections_open);
            (
                Some(fewest.map_or(open, |f: u64| f.min(open))),
                accepted + load(&s.lp.connections_accepted),
            )
        })
    }
}

impl Deref for StatsHandle {
    type Target = Stats;

    fn deref(&self) -> &Stats {
        &self.region.slots()[self.slot]
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn a_forked_child_writes_where_the_parent_reads() {
        let region = Region::new(2).unwrap();
        // SAFETY: the child only does an atomic add and `_exit`s.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            region.slots()[1]
                .lp
                .connections_accepted
                .fetch_add(7, Relaxed);
            // SAFETY: ends the child at once, without running the test harness.
            unsafe { libc::_exit(0) };
        }
        assert!(pid > 0);
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(region.slots()[1].lp.connections_accepted.load(Relaxed), 7);
        assert_eq!(region.slots()[0].lp.connections_accepted.load(Relaxed), 0);
    }
}
