//! Fixed-bucket histograms of durations: an observation is two relaxed adds.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the buckets in microseconds (a last one, +Inf, follows):
/// from a fast plaintext response to a long poll.
pub const BOUNDS_MICROS: [u64; 16] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

const BUCKETS: usize = BOUNDS_MICROS.len() + 1;

#[repr(C)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS],
    sum_micros: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: [const { AtomicU64::new(0) }; BUCKETS],
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_MICROS.partition_point(|&b| b < us);
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(us, Relaxed);
    }

    pub fn snapshot(&self) -> HistSnapshot {
        HistSnapshot {
            counts: std::array::from_fn(|i| self.counts[i].load(Relaxed)),
            sum_micros: self.sum_micros.load(Relaxed),
        }
    }
}

/// Counts per bucket (not cumulative), the last one past every bound.
#[derive(Clone, Debug, Default)]
pub struct HistSnapshot {
    pub counts: [u64; BUCKETS],
    pub sum_micros: u64,
}

impl HistSnapshot {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn add(&mut self, o: &HistSnapshot) {
        for (mine, theirs) in self.counts.iter_mut().zip(o.counts) {
            *mine += theirs;
        }
        self.sum_micros += o.sum_micros;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500)); // le 0.0005
        h.observe(Duration::from_micros(501)); // le 0.001
        h.observe(Duration::from_secs(3600)); // +Inf
        let s = h.snapshot();
        assert_eq!((s.counts[0], s.counts[1], s.counts[BUCKETS - 1]), (1, 1, 1));
        assert_eq!(s.count(), 3);
        assert_eq!(s.sum_micros, 500 + 501 + 3_600_000_000);
    }
}
