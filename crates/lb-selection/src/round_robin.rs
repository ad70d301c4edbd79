//! Round robin, and nginx's smooth weighted round robin when weights differ.
//!
//! With equal weights, request *n* goes to backend *n mod N*. With unequal weights, the
//! order is the one nginx's smooth weighted round robin produces (`ngx_http_upstream_round_robin.c`,
//! since nginx 1.3.1): every step, each backend's current weight grows by its configured
//! weight, the largest current weight wins and is lowered by the total. For weights 5, 1, 1
//! that is `a a b a c a a`: heavy backends are interleaved with light ones instead of
//! receiving their share in bursts.
//!
//! nginx runs that loop per request under a lock. Here the whole cycle (the sum of the
//! weights divided by their greatest common divisor) is computed once at build time and a
//! request takes one atomic increment, so selection is lock-free and allocation-free. Cycles
//! longer than 2^20 entries are scaled down proportionally first, which keeps the shares
//! within a fraction of a percent.
//!
//! Fallback: after the first pick, the other backends follow in set order starting 1..N-1
//! places after it, a distance that changes from one round of the ring to the next, so the
//! requests of a backend that is down are spread over all the others rather than landing
//! on its neighbour.
//!
//! Cost: one relaxed `fetch_add` on a shared counter and one table read per request; the
//! fallback walk is O(1) per candidate.

use std::sync::atomic::{AtomicUsize, Ordering};

use lb_core::BackendSet;

use crate::candidates::{Candidates, Picks};
use crate::{weighted, BackendSelection};

/// Round robin over a backend set; smooth weighted when the weights differ.
#[derive(Debug)]
pub struct RoundRobin {
    backends: BackendSet,
    /// The smooth weighted cycle as indices into `backends`; empty when weights are equal.
    cycle: Box<[u32]>,
    counter: AtomicUsize,
}

impl RoundRobin {
    /// The next tick and the index it selects; `None` for an empty set.
    #[inline]
    pub(crate) fn next_pick(&self) -> Option<(usize, usize)> {
        let n = self.backends.len();
        if n == 0 {
            return None;
        }
        let tick = self.counter.fetch_add(1, Ordering::Relaxed);
        let first = if self.cycle.is_empty() {
            tick % n
        } else {
            self.cycle[tick % self.cycle.len()] as usize
        };
        Some((tick, first))
    }

    /// Where the fallback walk of request `tick` starts, relative to its first pick.
    #[inline]
    pub(crate) fn fallback_start(tick: usize, first: usize, n: usize) -> usize {
        let offset = if n > 1 { 1 + (tick / n) % (n - 1) } else { 1 };
        first + offset
    }
}

impl RoundRobin {
    /// The round-robin candidates of one request as `(preference, step limit, rest start)`,
    /// for algorithms that fall back to round robin; `None` for an empty set.
    #[inline]
    pub(crate) fn picks(&self) -> Option<(Picks, usize, usize)> {
        let (tick, first) = self.next_pick()?;
        let n = self.backends.len();
        Some((Picks::one(first), 1, Self::fallback_start(tick, first, n)))
    }
}

impl BackendSelection for RoundRobin {
    type Config = ();
    type Iter<'a> = Candidates<'a, Picks>;

    fn build(backends: &BackendSet, _config: &()) -> Self {
        Self {
            backends: backends.clone(),
            cycle: weighted::smooth_cycle(backends),
            counter: AtomicUsize::new(0),
        }
    }

    #[inline]
    fn iter<'a>(&'a self, _key: &[u8]) -> Self::Iter<'a> {
        let Some((tick, first)) = self.next_pick() else {
            return Candidates::empty(Picks::one(0));
        };
        let n = self.backends.len();
        Candidates::new(
            &self.backends,
            Picks::one(first),
            1,
            Self::fallback_start(tick, first, n),
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::num::NonZeroU32;

    use lb_core::Backend;

    use super::*;

    pub(crate) fn set(weights: &[u32]) -> BackendSet {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                Backend::parse(&format!("10.0.{}.{}:80", i / 250, i % 250 + 1))
                    .unwrap()
                    .with_weight(NonZeroU32::new(*w).unwrap())
            })
            .collect()
    }

    fn letter(set: &BackendSet, b: &Backend) -> char {
        (b'a' + set.iter().position(|x| x == b).unwrap() as u8) as char
    }

    fn firsts(rr: &RoundRobin, n: usize) -> String {
        (0..n)
            .map(|_| letter(&rr.backends, rr.iter(b"").next().unwrap()))
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
        assert!(rr.cycle.len() as u64 <= weighted::MAX_TABLE + 3);
        assert_eq!(rr.iter(b"").count(), 3);
    }
}
