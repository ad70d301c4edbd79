//! Every selection algorithm of lb-selection (RoundRobin, Random, P2c, LeastConn, FnvHash,
//! Consistent, NginxHash, IpHash, Maglev), built from a fuzzed backend set (any weights,
//! repeated names, repeated addresses, unparsable entries, empty) with fuzzed options (balance
//! factors, Maglev table sizes) and state (health, flags, in-flight requests), then iterated
//! with fuzzed keys.
//!
//! Checks the [`BackendIter`](lb_selection::BackendIter) contract on every iterator: it
//! yields only backends of the set, each at most once, and ends within the set size (every
//! built-in algorithm walks through `Candidates`, which yields each backend exactly once, so
//! that is checked too). Every algorithm but `random` and `p2c` must also be deterministic:
//! a second selector built from the same backends listed in reverse order yields the same
//! sequences. The first candidate of each key is then kept in flight, so load-aware
//! algorithms and bounded loads see the load move.

#![no_main]

use arbitrary::Arbitrary;
use lb_core::{Backend, BackendSet};
use lb_fuzz::backends::{self, FuzzBackend, StateOp};
use lb_selection::{
    BackendSelection, BalanceFactor, Consistent, ConsistentConfig, FnvHash, IpHash, LeastConn,
    Maglev, MaglevConfig, NginxHash, P2c, Random, RoundRobin, DEFAULT_TABLE_SIZE,
};
use libfuzzer_sys::fuzz_target;

/// The algorithm, its options, the backends, their state and the keys.
#[derive(Debug, Arbitrary)]
struct Input {
    algorithm: Algorithm,
    balance: Balance,
    table: TableSize,
    backends: Vec<FuzzBackend>,
    state: Vec<StateOp>,
    keys: Vec<Vec<u8>>,
}

/// Which algorithm.
#[derive(Debug, Arbitrary)]
enum Algorithm {
    RoundRobin,
    Random,
    P2c,
    LeastConn,
    Fnv,
    Consistent,
    NginxHash,
    IpHash,
    Maglev,
}

/// The bounded-loads factor of `consistent` and `maglev`.
#[derive(Debug, Arbitrary)]
enum Balance {
    None,
    /// 1 + (n + 1) / 100.
    Percent(u16),
    /// Any float (mostly refused by `BalanceFactor::new`).
    Raw(f64),
}

/// Maglev's lookup table size.
///
/// At most 2^18 entries: a table near `MAX_TABLE_SIZE` takes seconds to fill under the
/// fuzzer's instrumentation and exercises nothing a smaller one does not; the clamp to
/// `MAX_TABLE_SIZE` (once a 17 GB allocation, found here) has its unit test in maglev.rs.
#[derive(Debug, Arbitrary)]
enum TableSize {
    Default,
    Small(u16),
    /// The top 18 bits.
    Large(u32),
}

fuzz_target!(|input: Input| {
    let factor = match input.balance {
        Balance::None => None,
        Balance::Percent(p) => BalanceFactor::new(1.0 + (f64::from(p) + 1.0) / 100.0).ok(),
        Balance::Raw(f) => BalanceFactor::new(f).ok(),
    };
    let table_size = match input.table {
        TableSize::Default => DEFAULT_TABLE_SIZE,
        TableSize::Small(n) => u32::from(n),
        TableSize::Large(n) => n >> 14,
    };
    let consistent = ConsistentConfig {
        balance_factor: factor,
    };
    let maglev = MaglevConfig {
        table_size,
        balance_factor: factor,
    };
    let any = u32::MAX;
    match input.algorithm {
        Algorithm::RoundRobin => run::<RoundRobin>(&(), &input, any, true),
        Algorithm::Random => run::<Random>(&(), &input, any, false),
        Algorithm::P2c => run::<P2c>(&(), &input, any, false),
        Algorithm::LeastConn => run::<LeastConn>(&(), &input, any, true),
        Algorithm::Fnv => run::<FnvHash>(&(), &input, any, true),
        // A total weight above 2^24 / 160 fills the ring to its 2^24-point cap: seconds per
        // build under instrumentation. The scaling to the cap has its unit test in ketama.rs.
        Algorithm::Consistent => run::<Consistent>(&consistent, &input, 255, true),
        Algorithm::NginxHash => run::<NginxHash>(&(), &input, any, true),
        Algorithm::IpHash => run::<IpHash>(&(), &input, any, true),
        Algorithm::Maglev => run::<Maglev>(&maglev, &input, any, true),
    }
});

/// Builds `S` twice and checks the candidates of every key.
fn run<S: BackendSelection>(
    config: &S::Config,
    input: &Input,
    max_weight: u32,
    deterministic: bool,
) {
    let list = backends::backends(&input.backends, max_weight);
    let set: BackendSet = list.iter().cloned().collect();
    let reversed: BackendSet = list.iter().rev().cloned().collect();
    assert_eq!(set, reversed, "the set depends on the input order");
    let _state = backends::apply(&input.state, &set);

    // The second selector gets the same backend objects (so the same runtime state; equal
    // entries from the input may carry distinct states) handed over in reverse.
    let a = S::build(&set, config);
    let b = S::build(&set.iter().rev().cloned().collect(), config);
    let mut load = Vec::new();
    for key in &input.keys {
        let first = contract(&set, a.iter(key));
        if deterministic {
            let second = contract(&set, b.iter(key));
            assert_eq!(first, second, "two builds disagree for key {key:?}");
        }
        if let Some(&i) = first.first() {
            load.push(set[i].begin_request());
        }
    }
}

/// Checks one candidate sequence; returns it as set indices.
fn contract<'a>(set: &BackendSet, iter: impl Iterator<Item = &'a Backend>) -> Vec<usize> {
    let n = set.len();
    let mut seen = vec![false; n];
    let mut order = Vec::with_capacity(n);
    for b in iter {
        assert!(
            order.len() < n,
            "more than {n} candidates from a set of {n}"
        );
        let Ok(i) = set.binary_search(b) else {
            panic!("{} is not in the set", b.name());
        };
        assert!(!seen[i], "{} yielded twice", b.name());
        seen[i] = true;
        order.push(i);
    }
    assert_eq!(order.len(), n, "not every backend was yielded");
    order
}
