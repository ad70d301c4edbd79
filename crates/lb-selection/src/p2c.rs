//! Power of two choices: two weighted-random candidates, the less loaded one wins.
//!
//! Mitzenmacher showed that choosing the lesser-loaded of two random servers brings the
//! maximum load down exponentially compared with one random choice ("The Power of Two
//! Choices in Randomized Load Balancing", IEEE TPDS 12(10), 2001), while needing no global
//! view and no shared counter. Envoy's `LEAST_REQUEST` (with `choice_count = 2`) and tower's
//! `balance::p2c` work this way.
//!
//! Load is the backend's in-flight request count (live [`InFlight`](lb_core::InFlight)
//! guards) relative to its weight: `a` beats `b` when `in_flight(a) / weight(a) <
//! in_flight(b) / weight(b)`, compared by cross-multiplication. Ties go to the first draw,
//! so with no load the shares follow the weights. The loser is the first fallback; the rest
//! follow from a random start.

use lb_core::{Backend, BackendSet};

use crate::candidates::{Candidates, Picks};
use crate::random::Sampler;
use crate::BackendSelection;

/// Power of two choices; see the [module docs](self).
#[derive(Debug)]
pub struct P2c {
    backends: BackendSet,
    sampler: Sampler,
}

/// True when `a` carries less load per unit of weight than `b`.
#[inline]
pub(crate) fn less_loaded(a: &Backend, b: &Backend) -> bool {
    let (la, lb) = (a.state().in_flight() as u128, b.state().in_flight() as u128);
    la * u128::from(b.weight().get()) < lb * u128::from(a.weight().get())
}

impl BackendSelection for P2c {
    type Config = ();
    type Iter<'a> = Candidates<'a, Picks>;

    fn build(backends: &BackendSet, _config: &()) -> Self {
        Self {
            backends: backends.clone(),
            sampler: Sampler::new(backends),
        }
    }

    #[inline]
    fn iter<'a>(&'a self, _key: &[u8]) -> Self::Iter<'a> {
        let n = self.backends.len();
        if n == 0 {
            return Candidates::empty(Picks::one(0));
        }
        let (r1, r2) = (fastrand::u64(..), fastrand::u64(..));
        let a = self.sampler.sample(n, r1);
        let mut b = self.sampler.sample(n, r2);
        if b == a && n > 1 {
            // Two distinct choices: step to another backend, uniformly.
            b = (a + 1 + (r2 as u32 as usize) % (n - 1)) % n;
        }
        let (winner, loser) = if n > 1 && less_loaded(&self.backends[b], &self.backends[a]) {
            (b, a)
        } else {
            (a, b)
        };
        let rest = (r1 as u32 as usize) % n;
        Candidates::new(&self.backends, Picks::two(winner, loser), 2, rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::round_robin::tests::set;

    #[test]
    fn the_less_loaded_of_two_wins() {
        let s = set(&[1, 1]);
        let p2c = P2c::build(&s, &());
        let _busy: Vec<_> = (0..5).map(|_| s[0].begin_request()).collect();
        for _ in 0..100 {
            assert_eq!(
                p2c.iter(b"").next().unwrap(),
                &s[1],
                "with two backends both are drawn"
            );
        }
    }

    #[test]
    fn load_is_relative_to_weight() {
        let s = set(&[4, 1]);
        let _a: Vec<_> = (0..3).map(|_| s[0].begin_request()).collect(); // 3/4 per weight
        let _b = s[1].begin_request(); // 1/1 per weight
        let p2c = P2c::build(&s, &());
        for _ in 0..100 {
            assert_eq!(p2c.iter(b"").next().unwrap(), &s[0]);
        }
    }
}
