//! The shared fallback walk: preferred candidates first, then every other backend once.
//!
//! Each algorithm has its own idea of the best candidates (a ring walk, a rehash sequence,
//! the two choices of p2c...). [`Candidates`] takes up to [`PREFERRED_MAX`] distinct
//! preferred indices from it, remembering them in a fixed array on the stack, then yields
//! the remaining backends in ring order from a start the algorithm chooses (derived from
//! the key, so hashing stays deterministic, or from a counter, so load spreads). Every
//! backend comes out exactly once and nothing is allocated.

use lb_core::Backend;

/// How many preferred candidates one request remembers before walking the rest in order.
pub const PREFERRED_MAX: usize = 32;

/// A source of preferred backend indices (positions in the [`BackendSet`](lb_core::BackendSet)),
/// in order. It may repeat itself and may be endless: [`Candidates`] skips repeats and stops
/// asking after [`PREFERRED_MAX`] distinct picks or its step limit. Implement it to write an
/// algorithm with the same fallback guarantees as the built-in ones.
pub trait Preference {
    /// The next preferred index, or `None` when the algorithm has no more preferences.
    fn next_index(&mut self) -> Option<usize>;
}

/// A fixed list of up to two preferences (a single pick, or p2c's winner and loser).
#[derive(Debug)]
pub struct Picks {
    picks: [usize; 2],
    len: u8,
    pos: u8,
}

impl Picks {
    /// One preferred index.
    pub fn one(i: usize) -> Self {
        Self {
            picks: [i, 0],
            len: 1,
            pos: 0,
        }
    }

    /// Two preferred indices, in order.
    pub fn two(a: usize, b: usize) -> Self {
        Self {
            picks: [a, b],
            len: 2,
            pos: 0,
        }
    }
}

impl Preference for Picks {
    fn next_index(&mut self) -> Option<usize> {
        let i = *self
            .picks
            .get(usize::from(self.pos))
            .filter(|_| self.pos < self.len)?;
        self.pos += 1;
        Some(i)
    }
}

/// Either a walk or fixed picks: for algorithms with two modes, such as nginx's hash
/// balancers, which fall back to round robin when the key is empty.
#[derive(Debug)]
pub enum WalkOrPicks<W> {
    /// The algorithm's own walk.
    Walk(W),
    /// Fixed picks (a round-robin choice).
    Picks(Picks),
}

impl<W: Preference> Preference for WalkOrPicks<W> {
    #[inline]
    fn next_index(&mut self) -> Option<usize> {
        match self {
            Self::Walk(w) => w.next_index(),
            Self::Picks(p) => p.next_index(),
        }
    }
}

/// The candidates of one request: see the [module docs](self).
#[derive(Debug)]
pub struct Candidates<'a, P> {
    backends: &'a [Backend],
    preference: Option<P>,
    steps_left: usize,
    seen: [u32; PREFERRED_MAX],
    seen_len: usize,
    rest_start: usize,
    rest_pos: usize,
}

impl<'a, P: Preference> Candidates<'a, P> {
    /// Preferred indices from `preference` (at most `step_limit` of its answers are read),
    /// then the rest from `rest_start` (taken modulo the number of backends).
    pub fn new(
        backends: &'a [Backend],
        preference: P,
        step_limit: usize,
        rest_start: usize,
    ) -> Self {
        let n = backends.len().max(1);
        Self {
            backends,
            preference: Some(preference),
            steps_left: step_limit,
            seen: [0; PREFERRED_MAX],
            seen_len: 0,
            rest_start: rest_start % n,
            rest_pos: 0,
        }
    }

    /// An iterator over nothing (for an empty set).
    pub fn empty(preference: P) -> Self {
        Self::new(&[], preference, 0, 0)
    }

    #[inline]
    fn seen(&self, i: usize) -> bool {
        self.seen[..self.seen_len].iter().any(|&s| s as usize == i)
    }

    #[inline]
    fn preferred(&mut self) -> Option<usize> {
        let n = self.backends.len();
        let pref = self.preference.as_mut()?;
        while self.steps_left > 0 && self.seen_len < PREFERRED_MAX.min(n) {
            self.steps_left -= 1;
            let Some(i) = pref.next_index() else { break };
            if i < n && !self.seen[..self.seen_len].iter().any(|&s| s as usize == i) {
                self.seen[self.seen_len] = i as u32;
                self.seen_len += 1;
                return Some(i);
            }
        }
        self.preference = None;
        None
    }
}

impl<'a, P: Preference> Iterator for Candidates<'a, P> {
    type Item = &'a Backend;

    #[inline]
    fn next(&mut self) -> Option<&'a Backend> {
        if let Some(i) = self.preferred() {
            return self.backends.get(i);
        }
        let n = self.backends.len();
        while self.rest_pos < n {
            let i = (self.rest_start + self.rest_pos) % n;
            self.rest_pos += 1;
            if !self.seen(i) {
                return self.backends.get(i);
            }
        }
        None
    }
}

impl<'a, P: Preference> crate::BackendIter<'a> for Candidates<'a, P> {}

#[cfg(test)]
mod tests {
    use super::*;

    struct Endless(usize);
    impl Preference for Endless {
        fn next_index(&mut self) -> Option<usize> {
            self.0 = (self.0 * 7 + 3) % 1000;
            Some(self.0)
        }
    }

    fn set(n: usize) -> Vec<Backend> {
        (0..n)
            .map(|i| Backend::parse(&format!("10.{}.{}.1:80", i / 256, i % 256)).unwrap())
            .collect()
    }

    #[test]
    fn every_backend_exactly_once_whatever_the_preference() {
        for n in [0, 1, 2, 5, 40, 300] {
            let backends = set(n);
            for start in [0, 1, 17, 999] {
                let all: Vec<_> =
                    Candidates::new(&backends, Endless(start), 10_000, start).collect();
                assert_eq!(all.len(), n);
                let mut names: Vec<_> = all.iter().map(|b| b.name()).collect();
                names.sort_unstable();
                names.dedup();
                assert_eq!(names.len(), n);
            }
        }
    }

    #[test]
    fn preferred_first_then_the_ring_from_start() {
        let backends = set(5);
        let order: Vec<_> = Candidates::new(&backends, Picks::two(3, 3), 8, 2)
            .map(|b| backends.iter().position(|x| x == b).unwrap())
            .collect();
        assert_eq!(order, [3, 2, 4, 0, 1]);
    }

    /// Counts how often it is asked; always answers the same in-range index.
    struct Counting<'c>(&'c std::cell::Cell<usize>);
    impl Preference for Counting<'_> {
        fn next_index(&mut self) -> Option<usize> {
            self.0.set(self.0.get() + 1);
            Some(7)
        }
    }

    #[test]
    fn step_limit_bounds_the_preferred_phase() {
        let asked = std::cell::Cell::new(0);
        let backends = set(50);
        let all: Vec<_> = Candidates::new(&backends, Counting(&asked), 3, 0).collect();
        assert_eq!(
            asked.get(),
            3,
            "repeats cost steps too, and the limit holds"
        );
        assert_eq!(all.len(), 50);
        assert_eq!(all[0], &backends[7]);
        assert_eq!(
            all[1], &backends[0],
            "then the rest from the start, skipping 7"
        );
    }
}
