//! Maglev consistent hashing.
//!
//! Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load Balancer" (NSDI
//! 2016), §3.4; Envoy's `MAGLEV` load balancer. Every backend fills a lookup table of prime
//! size `M` (65537 by default) following its own permutation (`offset = h1(name) mod M`,
//! `skip = h2(name) mod (M-1) + 1`), in turns, until the table is full; a key goes to
//! `table[h(key) mod M]`. Lookups are one hash and one read. Weights give heavier backends
//! proportionally more turns (Envoy's weighted Maglev). Shares follow the weights within
//! about 1/M, and removing a backend moves little more than its own share of keys.
//!
//! The hashes are xxHash64 of the backend's configured name with seeds 0 and 1 (as Envoy),
//! and of the key with seed 2: deterministic across processes and independent of the set
//! order. Fallback walks the table onwards to the next distinct backends. With a
//! [`BalanceFactor`], backends over their bounded load are passed over on that walk.

use lb_core::BackendSet;

use crate::bounded::{BalanceFactor, Bound};
use crate::candidates::Candidates;
use crate::hashing::xxh64;
use crate::walk::CyclicWalk;
use crate::BackendSelection;

/// The default table size, a prime (Envoy's default too).
pub const DEFAULT_TABLE_SIZE: u32 = 65_537;

/// The largest table: the first prime above 2^24 (64 MiB of entries).
pub const MAX_TABLE_SIZE: u32 = 16_777_259;

/// How many table entries one request walks at most looking for distinct backends.
const WALK_LIMIT: usize = 1024;

/// Options of [`Maglev`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MaglevConfig {
    /// Lookup table size; rounded up to a prime no smaller than the number of backends, and
    /// at most [`MAX_TABLE_SIZE`].
    /// Larger tables give more even shares and less disruption (the paper suggests at
    /// least 100 times the number of backends) at 4 bytes per entry.
    pub table_size: u32,
    /// Bounded loads: no backend takes more than this factor times the average in-flight load.
    pub balance_factor: Option<BalanceFactor>,
}

impl Default for MaglevConfig {
    fn default() -> Self {
        Self {
            table_size: DEFAULT_TABLE_SIZE,
            balance_factor: None,
        }
    }
}

/// Maglev consistent hashing; see the [module docs](self).
#[derive(Debug)]
pub struct Maglev {
    backends: BackendSet,
    table: Box<[u32]>,
    config: MaglevConfig,
    total_weight: u64,
}

/// True when `n` is prime (trial division; table sizes are small).
pub fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

fn next_prime(mut n: u64) -> u64 {
    while !is_prime(n) {
        n += 1;
    }
    n
}

/// The table size for `requested` entries and `backends` backends: a prime, at least the
/// number of backends (each needs an entry) and 2, and at most [`MAX_TABLE_SIZE`] unless
/// the backends outnumber it.
///
/// Without the upper clamp, `table_size: u32::MAX` asked for a 17 GB table and the process
/// was killed (found by `fuzz/fuzz_targets/selection.rs`).
fn table_len(requested: u32, backends: usize) -> u64 {
    next_prime(
        u64::from(requested.min(MAX_TABLE_SIZE))
            .max(backends as u64)
            .max(2),
    )
}

impl Maglev {
    fn populate(backends: &BackendSet, size: u64) -> Box<[u32]> {
        let n = backends.len();
        if n == 0 {
            return Box::default();
        }
        let m = size;
        let perms: Vec<(u64, u64)> = backends
            .iter()
            .map(|b| {
                let offset = xxh64(b.name().as_bytes(), 0) % m;
                let skip = xxh64(b.name().as_bytes(), 1) % (m - 1) + 1;
                (offset, skip)
            })
            .collect();
        let max_weight = backends.iter().map(|b| b.weight().get()).max().unwrap_or(1);
        let share: Vec<f64> = backends
            .iter()
            .map(|b| f64::from(b.weight().get()) / f64::from(max_weight))
            .collect();
        let mut credit = vec![0f64; n];
        let mut next = vec![0u64; n];
        let mut table = vec![u32::MAX; m as usize];
        let mut filled = 0u64;
        while filled < m {
            for i in 0..n {
                credit[i] += share[i];
                if credit[i] < 1.0 {
                    continue;
                }
                credit[i] -= 1.0;
                let (offset, skip) = perms[i];
                loop {
                    let c = ((offset + next[i] * skip) % m) as usize;
                    next[i] += 1;
                    if table[c] == u32::MAX {
                        table[c] = i as u32;
                        filled += 1;
                        break;
                    }
                }
                if filled == m {
                    break;
                }
            }
        }
        table.into_boxed_slice()
    }
}

impl BackendSelection for Maglev {
    type Config = MaglevConfig;
    type Iter<'a> = Candidates<'a, TableWalk<'a>>;

    fn build(backends: &BackendSet, config: &MaglevConfig) -> Self {
        let size = table_len(config.table_size, backends.len());
        Self {
            table: Self::populate(backends, size),
            backends: backends.clone(),
            config: *config,
            total_weight: backends.total_weight(),
        }
    }

    #[inline]
    fn iter<'a>(&'a self, key: &'a [u8]) -> Self::Iter<'a> {
        if self.table.is_empty() {
            return Candidates::empty(CyclicWalk::empty(&self.table));
        }
        let pos = (xxh64(key, 2) % self.table.len() as u64) as usize;
        let bound = self
            .config
            .balance_factor
            .map(|f| Bound::new(&self.backends, f, self.total_weight));
        let rest = self.table[pos] as usize;
        let walk = CyclicWalk::new(&self.table, pos, WALK_LIMIT, bound, rest);
        Candidates::new(&self.backends, walk, usize::MAX, rest)
    }
}

/// The walk along the lookup table from a key's entry.
pub type TableWalk<'a> = CyclicWalk<'a, u32>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::round_robin::tests::set;

    #[test]
    fn primes() {
        assert!(is_prime(65_537) && is_prime(2) && !is_prime(65_536) && !is_prime(1));
        assert_eq!(next_prime(100), 101);
        assert!(is_prime(u64::from(MAX_TABLE_SIZE)));
        assert_eq!(next_prime(1 << 24), u64::from(MAX_TABLE_SIZE));
    }

    #[test]
    fn table_size_is_clamped_to_the_maximum() {
        // Regression (fuzz/corpus/selection/oom-maglev-table-size): u32::MAX entries were
        // allocated as asked.
        assert_eq!(table_len(u32::MAX, 1), u64::from(MAX_TABLE_SIZE));
        assert_eq!(table_len(4_278_190_093, 1), u64::from(MAX_TABLE_SIZE));
        assert_eq!(table_len(MAX_TABLE_SIZE + 1, 3), u64::from(MAX_TABLE_SIZE));
        assert_eq!(table_len(MAX_TABLE_SIZE, 3), u64::from(MAX_TABLE_SIZE));
        assert_eq!(table_len(0, 0), 2);
        assert_eq!(table_len(4, 10), 11, "at least one entry per backend");
    }

    #[test]
    fn table_shares_follow_weights() {
        let s = set(&[1, 2, 1, 4]);
        let m = Maglev::build(&s, &MaglevConfig::default());
        assert_eq!(m.table.len(), 65_537);
        let mut counts = [0usize; 4];
        for &i in m.table.iter() {
            counts[i as usize] += 1;
        }
        for (c, w) in counts.iter().zip([1.0, 2.0, 1.0, 4.0]) {
            let share = *c as f64 / 65_537.0;
            assert!((share - w / 8.0).abs() < 0.01, "{counts:?}");
        }
    }

    #[test]
    fn small_tables_round_up_to_a_prime_above_the_set() {
        let s = set(&[1; 10]);
        let m = Maglev::build(
            &s,
            &MaglevConfig {
                table_size: 4,
                balance_factor: None,
            },
        );
        assert_eq!(m.table.len(), 11);
        assert_eq!(m.iter(b"k").count(), 10);
    }
}
