//! Round robin, and nginx's smooth weighted round robin when weights differ.
//!
//! With equal weights, request *n* goes to backend *n mod N*. With unequal weights, the
//! order is the one nginx's smooth weighted round robin produces (`ngx_http_upstream_round_robin.c`,
//! introduced in nginx 1.3.1): every step, each backend's current weight grows by its
//! configured weight, the largest current weight wins and is lowered by the total. For
//! weights 5, 1, 1 that is `a a b a c a a`: heavy backends are interleaved with light ones
//! instead of receiving their share in bursts.
//!
//! nginx runs that loop per request under a lock. Here the whole cycle (the sum of the
//! weights divided by their greatest common divisor) is computed once at build time and a
//! request takes one atomic increment, so selection is lock-free and allocation-free. Cycles
//! longer than 2^20 entries are scaled down proportionally first, which keeps the
//! shares within a fraction of a percent.
//!
//! Fallback: after the first pick, the other backends follow in set order starting at a
//! position that rotates with every request, so the traffic a down backend would have had
//! spreads evenly over the others instead of landing on one neighbour.

use std::sync::atomic::{AtomicUsize, Ordering};

use lb_core::{Backend, BackendSet};

use crate::{BackendIter, BackendSelection};

/// The longest precomputed weighted cycle, in entries (4 bytes each).
pub(crate) const MAX_CYCLE: usize = 1 << 20;

/// Round robin over a backend set; smooth weighted when the weights differ.
#[derive(Debug)]
pub struct RoundRobin {
    backends: BackendSet,
    /// The smooth weighted cycle as indices into `backends`; empty when weights are equal.
    cycle: Box<[u32]>,
    counter: AtomicUsize,
}

impl RoundRobin {
    /// The first pick of request number `tick`.
    fn first(&self, tick: usize, n: usize) -> usize {
        if self.cycle.is_empty() {
            tick % n
        } else {
            self.cycle[tick % self.cycle.len()] as usize
        }
    }
}

impl BackendSelection for RoundRobin {
    type Config = ();
    type Iter<'a> = RoundRobinIter<'a>;

    fn build(backends: &BackendSet, _config: &()) -> Self {
        Self {
            backends: backends.clone(),
            cycle: smooth_cycle(backends),
            counter: AtomicUsize::new(0),
        }
    }

    #[inline]
    fn iter<'a>(&'a self, _key: &[u8]) -> RoundRobinIter<'a> {
        let n = self.backends.len();
        if n == 0 {
            return RoundRobinIter {
                backends: &self.backends,
                first: 0,
                next: 0,
                yielded: 0,
            };
        }
        let tick = self.counter.fetch_add(1, Ordering::Relaxed);
        let first = self.first(tick, n);
        // The fallback walk starts 1..n-1 places after the first pick, a distance that
        // changes from one round of the ring to the next, so the requests of a backend that
        // is down are spread over all the others rather than landing on its neighbour.
        let offset = if n > 1 { 1 + (tick / n) % (n - 1) } else { 1 };
        RoundRobinIter {
            backends: &self.backends,
            first,
            next: first + offset,
            yielded: 0,
        }
    }
}

/// Candidates of one round-robin request.
#[derive(Debug)]
pub struct RoundRobinIter<'a> {
    backends: &'a [Backend],
    first: usize,
    next: usize,
    yielded: usize,
}

impl<'a> Iterator for RoundRobinIter<'a> {
    type Item = &'a Backend;

    #[inline]
    fn next(&mut self) -> Option<&'a Backend> {
        let n = self.backends.len();
        if self.yielded >= n {
            return None;
        }
        self.yielded += 1;
        if self.yielded == 1 {
            return self.backends.get(self.first);
        }
        // Walk the ring from `next`, skipping the first pick.
        let mut i = self.next % n;
        if i == self.first {
            i = (i + 1) % n;
        }
        self.next = i + 1;
        self.backends.get(i)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.backends.len() - self.yielded;
        (left, Some(left))
    }
}

impl<'a> BackendIter<'a> for RoundRobinIter<'a> {}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The smooth weighted round-robin cycle, or an empty one when all weights are equal.
fn smooth_cycle(backends: &BackendSet) -> Box<[u32]> {
    let weights: Vec<u64> = backends
        .iter()
        .map(|b| u64::from(b.weight().get()))
        .collect();
    if weights.windows(2).all(|w| w[0] == w[1]) {
        return Box::default();
    }
    let g = weights.iter().copied().fold(0, gcd);
    let mut weights: Vec<u64> = weights.iter().map(|w| w / g.max(1)).collect();
    let total: u64 = weights.iter().sum();
    if total > MAX_CYCLE as u64 {
        // Scale down, keeping every backend at least once per cycle.
        weights = weights
            .iter()
            .map(|w| (w * MAX_CYCLE as u64 / total).max(1))
            .collect();
    }
    let total: i64 = weights.iter().map(|&w| w as i64).sum();
    let mut current = vec![0i64; weights.len()];
    let mut cycle = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            current[i] += *w as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        cycle.push(best as u32);
    }
    cycle.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn set(weights: &[u32]) -> BackendSet {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                Backend::parse(&format!("10.0.0.{}:80", i + 1))
                    .unwrap()
                    .with_weight(NonZeroU32::new(*w).unwrap())
            })
            .collect()
    }

    fn firsts(rr: &RoundRobin, n: usize) -> String {
        (0..n)
            .map(|_| {
                let b = rr.iter(b"").next().unwrap();
                (b'a' + b.addr().as_inet().unwrap().ip().to_string().as_bytes()[7] - b'1') as char
            })
            .collect()
    }

    #[test]
    fn equal_weights_rotate() {
        let rr = RoundRobin::build(&set(&[1, 1, 1]), &());
        assert_eq!(firsts(&rr, 7), "abcabca");
    }

    #[test]
    fn smooth_weighted_matches_nginx_sequence() {
        // nginx's own example in ngx_http_upstream_round_robin.c.
        let rr = RoundRobin::build(&set(&[5, 1, 1]), &());
        assert_eq!(firsts(&rr, 14), "aabacaaaabacaa");
    }

    #[test]
    fn every_iterator_yields_each_backend_once() {
        for weights in [&[1u32][..], &[1, 1, 1], &[5, 1, 1], &[3, 2, 7, 1]] {
            let s = set(weights);
            let rr = RoundRobin::build(&s, &());
            for _ in 0..50 {
                let mut seen: Vec<_> = rr.iter(b"").map(|b| b.name().to_owned()).collect();
                assert_eq!(seen.len(), s.len());
                seen.sort();
                seen.dedup();
                assert_eq!(seen.len(), s.len(), "duplicate candidate for {weights:?}");
            }
        }
    }

    /// Where the requests whose first pick is backend 0 fall back to, as counts per backend.
    fn fallbacks_of_first(weights: &[u32], rounds: usize) -> Vec<usize> {
        let rr = RoundRobin::build(&set(weights), &());
        let mut second = vec![0usize; weights.len()];
        for _ in 0..rounds {
            let mut it = rr.iter(b"");
            let first = it.next().unwrap().clone();
            let next = it.next().unwrap();
            assert_ne!(&first, next);
            if first == rr.backends[0] {
                second[rr.backends.iter().position(|b| b == next).unwrap()] += 1;
            }
        }
        second
    }

    #[test]
    fn a_down_backends_share_spreads_over_all_the_others() {
        assert_eq!(
            fallbacks_of_first(&[1, 1, 1, 1], 3 * 4 * 100),
            [0, 100, 100, 100]
        );
        assert_eq!(fallbacks_of_first(&[1, 1, 1], 2 * 3 * 50), [0, 50, 50]);
        let weighted = fallbacks_of_first(&[4, 1, 1, 1], 7 * 300);
        assert_eq!(weighted[0], 0);
        assert!(weighted[1..].iter().all(|&c| c >= 300), "{weighted:?}");
    }

    #[test]
    fn empty_set_yields_nothing() {
        let rr = RoundRobin::build(&BackendSet::new(), &());
        assert!(rr.iter(b"k").next().is_none());
    }

    #[test]
    fn huge_weights_are_scaled_not_exploded() {
        let rr = RoundRobin::build(&set(&[u32::MAX, 1, 7]), &());
        assert!(rr.cycle.len() <= MAX_CYCLE + 3);
        assert_eq!(rr.iter(b"").count(), 3);
    }
}
