//! The walk along a cyclic table of backend indices: a ketama ring or a Maglev lookup table.
//!
//! From a key's position, the walk reads the table onwards, at most a given number of
//! entries, and yields each entry's backend. With a [`BalanceFactor`](crate::BalanceFactor),
//! backends without room are passed over, and when the walk runs out the whole set is
//! scanned for room, so a hot key never lands on a full backend while another has room
//! (Mirrokni et al.'s guarantee). [`Candidates`](crate::Candidates) turns the answers into
//! distinct candidates.

use crate::bounded::Bound;
use crate::candidates::Preference;

/// An entry of a cyclic table: which backend (position in the set) it belongs to.
pub trait Entry {
    /// The backend's position in the set.
    fn backend(&self) -> usize;
}

/// A Maglev table entry is the backend's position.
impl Entry for u32 {
    #[inline]
    fn backend(&self) -> usize {
        *self as usize
    }
}

/// A ring point is `(hash, backend position)`.
impl Entry for (u32, u32) {
    #[inline]
    fn backend(&self) -> usize {
        self.1 as usize
    }
}

/// The walk of one request; see the [module docs](self).
#[derive(Debug)]
pub struct CyclicWalk<'a, T> {
    entries: &'a [T],
    pos: usize,
    left: usize,
    bound: Option<Bound<'a>>,
    scan_start: usize,
    scanned: usize,
}

impl<'a, T: Entry> CyclicWalk<'a, T> {
    /// A walk that yields nothing.
    pub(crate) fn empty(entries: &'a [T]) -> Self {
        Self {
            entries,
            pos: 0,
            left: 0,
            bound: None,
            scan_start: 0,
            scanned: usize::MAX,
        }
    }

    /// A walk of at most `limit` entries from `pos`; with `bound`, full backends are passed
    /// over and the set is then scanned for room from `scan_start`.
    pub(crate) fn new(
        entries: &'a [T],
        pos: usize,
        limit: usize,
        bound: Option<Bound<'a>>,
        scan_start: usize,
    ) -> Self {
        Self {
            entries,
            pos,
            left: limit.min(entries.len()),
            bound,
            scan_start,
            scanned: 0,
        }
    }
}

impl<T: Entry> Preference for CyclicWalk<'_, T> {
    #[inline]
    fn next_index(&mut self) -> Option<usize> {
        while self.left > 0 {
            self.left -= 1;
            let i = self.entries[self.pos].backend();
            self.pos = (self.pos + 1) % self.entries.len();
            if self.bound.as_ref().is_none_or(|b| b.accepts(i)) {
                return Some(i);
            }
        }
        let bound = self.bound.as_ref()?;
        let n = bound.len();
        while self.scanned < n {
            let i = (self.scan_start + self.scanned) % n;
            self.scanned += 1;
            if bound.accepts(i) {
                return Some(i);
            }
        }
        None
    }
}
