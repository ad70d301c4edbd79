//! lb-selection / lb-balancer against pingora-load-balancing, same inputs, same run.
//!
//! For each algorithm both libraries have (round robin, weighted round robin, random, FNV
//! hash, ketama consistent hashing) and 3, 100 and 10,000 backends, each pair measured back
//! to back with the same timing loop:
//!
//! - `selector/<algo>/<side>/<n>`: `iter(key).next()` on the bare selector.
//! - `lb_select/<algo>/<side>/<n>`: `LoadBalancer::select(key, 256)`, which on both sides
//!   loads the current selector, checks each candidate's health and returns an owned
//!   result (our `InFlight` guard, Pingora's `Backend` clone), dropped inside the loop.
//! - `lb_select_2t/<algo>/<side>/<n>`: the same from two threads at once, per selection as
//!   one thread sees it.
//! - `build_10k/<algo>/<side>`: building the selector from 10,000 backends.
//!
//! `<side>` is `lb` or `pingora`. Run with `cargo xtask bench-peers`, which prints the ratio
//! table (`cargo run --release --bin report`).
// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use pingora_compare::{
    keys, one_thread, our_balancer, our_set, pingora_balancer, pingora_set, specs, two_threads,
    OurLb, Ours, Pingora, PingoraLb, SelectOnce, OURS, PINGORA, SIZES,
};
use pingora_load_balancing::selection::{self as pingora, BackendIter, BackendSelection};

/// Measures one side at one level, on one thread or two.
fn measure<T: SelectOnce>(
    c: &mut Criterion,
    level: &str,
    id: BenchmarkId,
    keys: &[Vec<u8>],
    sel: &T,
    two: bool,
) {
    let mut group = c.benchmark_group(level);
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            if two {
                two_threads(iters, keys, sel)
            } else {
                one_thread(iters, keys, sel)
            }
        });
    });
    group.finish();
}

/// Both sides of one algorithm, at every size and level.
fn pair<O, P>(c: &mut Criterion, algo: &str, weighted: bool)
where
    O: lb_selection::BackendSelection,
    P: BackendSelection + Send + Sync + 'static,
    P::Iter: BackendIter,
    P::Config: Default,
{
    let keys = keys();
    for n in SIZES {
        let specs = specs(n, weighted);
        let (our_set, their_set) = (our_set(&specs), pingora_set(&specs));
        let id = |side: &str| BenchmarkId::new(format!("{algo}/{side}"), n);

        let ours = Ours(O::build(&our_set, &O::Config::default()));
        let theirs = Pingora(Arc::new(P::build(&their_set)));
        measure(c, "selector", id(OURS), &keys, &ours, false);
        measure(c, "selector", id(PINGORA), &keys, &theirs, false);

        let ours = OurLb(our_balancer::<O>(&our_set));
        let theirs = PingoraLb(pingora_balancer::<P>(&their_set));
        assert!(ours.0.select(&keys[0], 256).is_some());
        assert!(theirs.0.select(&keys[0], 256).is_some());
        measure(c, "lb_select", id(OURS), &keys, &ours, false);
        measure(c, "lb_select", id(PINGORA), &keys, &theirs, false);
        measure(c, "lb_select_2t", id(OURS), &keys, &ours, true);
        measure(c, "lb_select_2t", id(PINGORA), &keys, &theirs, true);
    }

    let specs = specs(10_000, weighted);
    let (our_set, their_set) = (our_set(&specs), pingora_set(&specs));
    let mut group = c.benchmark_group("build_10k");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(2));
    group.bench_function(format!("{algo}/{OURS}"), |b| {
        b.iter(|| O::build(black_box(&our_set), &O::Config::default()));
    });
    group.bench_function(format!("{algo}/{PINGORA}"), |b| {
        b.iter(|| P::build(black_box(&their_set)));
    });
    group.finish();
}

fn compare(c: &mut Criterion) {
    pair::<lb_selection::RoundRobin, pingora::RoundRobin>(c, "round_robin", false);
    pair::<lb_selection::RoundRobin, pingora::RoundRobin>(c, "round_robin_weighted", true);
    pair::<lb_selection::Random, pingora::Random>(c, "random", false);
    pair::<lb_selection::FnvHash, pingora::FNVHash>(c, "fnv", false);
    pair::<lb_selection::Consistent, pingora::Consistent>(c, "consistent", false);
}

criterion_group! {
    name = benches;
    // Short by default: about three minutes on two cores.
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(800));
    targets = compare
}
criterion_main!(benches);
