//! A lock-free latency histogram: fixed buckets of atomic counters.
//!
//! `prometheus-client`'s own histogram takes a lock on every observation; this one is a
//! handful of relaxed atomic additions, fit for the request path, and is encoded by the
//! scrape-time collector (`admin/collect.rs`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds (0.5 ms to 10 s; `+Inf` is implied).
const BOUNDS_MICROS: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// Counts of observations per bucket, and their sum.
#[derive(Debug, Default)]
pub struct Histogram {
    /// One counter per bound, then the `+Inf` bucket (not cumulative).
    counts: [AtomicU64; BOUNDS_MICROS.len() + 1],
    sum_micros: AtomicU64,
}

/// A histogram read at one moment, in the shape the Prometheus encoder wants.
#[derive(Debug)]
pub struct HistogramSnapshot {
    /// The sum of observations, in seconds.
    pub sum: f64,
    /// How many observations.
    pub count: u64,
    /// `(upper bound in seconds, count in this bucket alone)`, the last bound being
    /// [`INF_BOUND`]; the encoder makes them cumulative.
    pub buckets: Vec<(f64, u64)>,
}

/// The upper bound of the last bucket, which the exposition must write `le="+Inf"`.
///
/// `f64::MAX`, not `f64::INFINITY`: `prometheus-client` writes `+Inf` for exactly this
/// bound and formats any other number, infinity included, as a plain float (`inf`, which
/// OpenMetrics and Prometheus parsers refuse).
pub const INF_BOUND: f64 = f64::MAX;

impl Histogram {
    /// Records one duration: two relaxed atomic additions, no allocation, no lock.
    #[inline]
    pub fn observe(&self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_MICROS
            .iter()
            .position(|&b| micros <= b)
            .unwrap_or(BOUNDS_MICROS.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(micros, Relaxed);
    }

    /// How many observations so far.
    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// The buckets now (for a scrape: allocates).
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let mut buckets = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            let n = c.load(Relaxed);
            total += n;
            let bound = BOUNDS_MICROS.get(i).map_or(INF_BOUND, |&b| b as f64 / 1e6);
            buckets.push((bound, n));
        }
        HistogramSnapshot {
            sum: self.sum_micros.load(Relaxed) as f64 / 1e6,
            count: total,
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_inclusive() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(h.count(), 3);
        assert_eq!(s.buckets[0], (0.0005, 1), "a bound is inclusive");
        assert_eq!(s.buckets[3], (0.005, 1));
        assert_eq!(s.buckets[13], (10.0, 0));
        assert_eq!(s.buckets[14], (INF_BOUND, 1));
        assert!((s.sum - 60.0035).abs() < 1e-9, "{}", s.sum);
    }
}
