//! FNV hashing: the key's 64-bit FNV-1a hash modulo weighted slots.
//!
//! Each backend owns as many slots as its (reduced) weight; a key goes to the slot its hash
//! selects, as Pingora's `FnvHash` (`Weighted<FnvHasher>`) does. It is fast and
//! deterministic across processes, but not consistent: adding or removing a backend remaps
//! most keys. Use [`Consistent`](crate::Consistent) or [`Maglev`](crate::Maglev) when
//! remapping matters. Fallback walks the other backends from a position also derived from
//! the hash, so it is deterministic too.

use lb_core::BackendSet;

use crate::candidates::{Candidates, Picks};
use crate::hashing::fnv1a64;
use crate::{weighted, BackendSelection};

/// Key hash modulo weighted slots; see the [module docs](self).
#[derive(Debug)]
pub struct FnvHash {
    backends: BackendSet,
    slots: Box<[u32]>,
}

impl BackendSelection for FnvHash {
    type Config = ();
    type Iter<'a> = Candidates<'a, Picks>;

    fn build(backends: &BackendSet, _config: &()) -> Self {
        Self {
            backends: backends.clone(),
            slots: weighted::slots(backends),
        }
    }

    #[inline]
    fn iter<'a>(&'a self, key: &[u8]) -> Self::Iter<'a> {
        if self.slots.is_empty() {
            return Candidates::empty(Picks::one(0));
        }
        let h = fnv1a64(key);
        let first = self.slots[(h % self.slots.len() as u64) as usize] as usize;
        let rest = first + 1 + (h >> 32) as usize;
        Candidates::new(&self.backends, Picks::one(first), 1, rest)
    }
}
