//! Weighted random selection.
//!
//! Each request picks a backend with probability proportional to its weight (uniformly
//! when weights are equal), using Vose's alias table: two table reads per pick whatever the
//! number of backends. The random numbers come from a fast thread-local generator
//! (`fastrand`, wyrand): no locks, no allocation. Fallback walks the remaining backends in
//! set order from a random start.
//!
//! Random selection needs no shared counter, so unlike round robin it causes no cache-line
//! traffic between threads; its shares converge to the weights only on average.

use lb_core::{Backend, BackendSet};

use crate::candidates::{Candidates, Picks};
use crate::weighted::{self, AliasTable};
use crate::BackendSelection;

/// Weighted random selection; see the [module docs](self).
#[derive(Debug)]
pub struct Random {
    backends: BackendSet,
    sampler: Sampler,
}

/// Draws weighted-random backend indices; shared by [`Random`] and [`P2c`](crate::P2c).
#[derive(Debug)]
pub(crate) struct Sampler {
    alias: Option<AliasTable>,
}

impl Sampler {
    pub(crate) fn new(backends: &[Backend]) -> Self {
        let alias = (!weighted::all_equal(backends)).then(|| AliasTable::new(backends));
        Self { alias }
    }

    /// A weighted index into a non-empty set of `n` backends from one random number.
    #[inline]
    pub(crate) fn sample(&self, n: usize, random: u64) -> usize {
        match &self.alias {
            Some(table) => table.sample(random),
            None => (((random >> 32) * n as u64) >> 32) as usize,
        }
    }
}

impl BackendSelection for Random {
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
        let r = fastrand::u64(..);
        let first = self.sampler.sample(n, r);
        // The low half of the same number picks where the fallback walk starts.
        let rest = first + 1 + (r as u32 as usize) % n.saturating_sub(1).max(1);
        Candidates::new(&self.backends, Picks::one(first), 1, rest)
    }
}
