//! Weight tables shared by the algorithms: reduced weights, nginx's smooth weighted cycle,
//! slot arrays and Vose's alias table for O(1) weighted sampling.

use lb_core::{Backend, ConfigOrder};

/// The longest precomputed cycle or slot table, in entries (4 bytes each).
pub(crate) const MAX_TABLE: u64 = 1 << 20;

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The weights divided by their greatest common divisor, scaled down proportionally (keeping
/// every backend at least 1) when their sum exceeds [`MAX_TABLE`].
pub(crate) fn reduced_weights(backends: &[Backend]) -> Vec<u64> {
    let weights: Vec<u64> = backends
        .iter()
        .map(|b| u64::from(b.weight().get()))
        .collect();
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let mut reduced: Vec<u64> = weights.iter().map(|w| w / g).collect();
    let total: u64 = reduced.iter().sum();
    if total > MAX_TABLE {
        reduced = reduced
            .iter()
            .map(|w| (w * MAX_TABLE / total).max(1))
            .collect();
    }
    reduced
}

/// True when every backend has the same weight (then tables are unnecessary).
pub(crate) fn all_equal(backends: &[Backend]) -> bool {
    backends.windows(2).all(|w| w[0].weight() == w[1].weight())
}

/// Set indices in configuration order: by [`ConfigOrder`] metadata where present (backends
/// without it follow, in set order). nginx walks servers in the order they were written.
pub(crate) fn config_order(backends: &[Backend]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..backends.len() as u32).collect();
    order.sort_by_key(|&i| {
        let b = &backends[i as usize];
        (
            b.metadata().get::<ConfigOrder>().map_or(u32::MAX, |o| o.0),
            i,
        )
    });
    order
}

/// nginx's smooth weighted round-robin cycle over `backends` as set indices; empty when the
/// weights are all equal and the configuration order is the set order (plain rotation is
/// then the same sequence).
pub(crate) fn smooth_cycle(backends: &[Backend]) -> Box<[u32]> {
    // Walk in configuration order: ties go to the server written first, as in
    // ngx_http_upstream_get_peer.
    let order = config_order(backends);
    if all_equal(backends) {
        let in_set_order = order.iter().enumerate().all(|(p, &i)| p == i as usize);
        return if in_set_order {
            Box::default()
        } else {
            order.into()
        };
    }
    let reduced = reduced_weights(backends);
    let weights: Vec<i64> = order.iter().map(|&i| reduced[i as usize] as i64).collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut cycle = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (p, w) in weights.iter().enumerate() {
            current[p] += w;
            if current[p] > current[best] {
                best = p;
            }
        }
        current[best] -= total;
        cycle.push(order[best]);
    }
    cycle.into_boxed_slice()
}

/// Each backend index repeated by its reduced weight, in set order (Pingora's `Weighted`).
pub(crate) fn slots(backends: &[Backend]) -> Box<[u32]> {
    reduced_weights(backends)
        .iter()
        .enumerate()
        .flat_map(|(i, &w)| std::iter::repeat_n(i as u32, w as usize))
        .collect()
}

/// Vose's alias method: weighted sampling in O(1) with two table reads.
///
/// M. D. Vose, "A linear algorithm for generating random numbers with a given distribution",
/// IEEE TSE 17(9), 1991.
#[derive(Debug, Default)]
pub(crate) struct AliasTable {
    /// Probability (scaled to 2^32) of keeping column `i` rather than its alias.
    keep: Box<[u32]>,
    alias: Box<[u32]>,
}

impl AliasTable {
    pub(crate) fn new(backends: &[Backend]) -> Self {
        let n = backends.len();
        if n == 0 {
            return Self::default();
        }
        let total: f64 = backends.iter().map(|b| f64::from(b.weight().get())).sum();
        let mut scaled: Vec<f64> = backends
            .iter()
            .map(|b| f64::from(b.weight().get()) * n as f64 / total)
            .collect();
        let mut keep = vec![u32::MAX; n];
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| scaled[i] < 1.0);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            keep[s] = (scaled[s] * 4_294_967_296.0).min(u32::MAX as f64) as u32;
            alias[s] = l as u32;
            scaled[l] -= 1.0 - scaled[s];
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        Self {
            keep: keep.into(),
            alias: alias.into(),
        }
    }

    /// A weighted index from one 64-bit random number.
    #[inline]
    pub(crate) fn sample(&self, random: u64) -> usize {
        let n = self.keep.len() as u64;
        // Lemire's multiply-shift maps the high half uniformly onto 0..n.
        let column = (((random >> 32) * n) >> 32) as usize;
        if (random as u32) < self.keep[column] {
            column
        } else {
            self.alias[column] as usize
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn set(weights: &[u32]) -> Vec<Backend> {
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

    #[test]
    fn alias_table_reproduces_the_weights() {
        let backends = set(&[1, 2, 3, 10]);
        let table = AliasTable::new(&backends);
        let mut counts = [0u32; 4];
        // A deterministic, evenly spread sequence of 64-bit inputs.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..160_000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            counts[table.sample(x)] += 1;
        }
        for (c, w) in counts.iter().zip([1.0, 2.0, 3.0, 10.0]) {
            let share = f64::from(*c) / 160_000.0;
            assert!((share - w / 16.0).abs() < 0.005, "{counts:?}");
        }
    }

    #[test]
    fn ties_go_to_the_server_written_first() {
        use lb_core::Metadata;
        // Addresses sort a < b < c; the configuration lists c, b, a (weights 1, 1, 2).
        let s: Vec<Backend> = set(&[2, 1, 1])
            .into_iter()
            .enumerate()
            .map(|(i, b)| b.with_metadata(Metadata::new().with(ConfigOrder(2 - i as u32))))
            .collect();
        let seq: Vec<u32> = smooth_cycle(&s).to_vec();
        // nginx over (c:1, b:1, a:2): a c b a.
        assert_eq!(seq, [0, 2, 1, 0]);
    }

    #[test]
    fn slots_and_cycles_use_reduced_weights() {
        assert_eq!(&*slots(&set(&[2, 4])), &[0, 1, 1]);
        assert!(smooth_cycle(&set(&[3, 3])).is_empty());
        assert_eq!(smooth_cycle(&set(&[5, 1, 1])).len(), 7);
    }
}
