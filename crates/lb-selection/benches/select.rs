//! Selection cost of every algorithm: `cargo bench -p lb-selection` (or `cargo xtask bench`).
//!
//! - `select/<algorithm>/<backends>`: one selection, `selector.iter(key).next()`, one thread.
//! - `select_2t/<algorithm>/<backends>`: the same with two threads selecting from the same
//!   selector at once; the time is per selection as one thread sees it (each thread's own
//!   elapsed time for `iters` selections, averaged over the two threads).
//! - `build_10k/<algorithm>`: building the selector from 10,000 backends.
//!
//! Backends are `10.x.y.z:8080`, 3, 100 or 10,000 of them, with equal weights; the
//! `*_weighted` variants give backend *i* weight `1 + i % 5`. Keys come from a precomputed
//! list of 1,024 distinct 23-byte keys (4-byte IPv4 addresses for `ip_hash`), so the timed
//! loop allocates nothing. What `LoadBalancer::select` adds on top (usability check, in-flight
//! guard) is measured by `cargo bench -p lb-balancer`; the side-by-side comparison with
//! Pingora is `cargo xtask bench-peers`. Not part of `cargo xtask ci` (CI only compiles it).
// `criterion_group!` generates an undocumented `pub fn`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use lb_core::{Backend, BackendSet};
use lb_selection::{
    BackendSelection, Consistent, FnvHash, IpHash, LeastConn, Maglev, NginxHash, P2c, Random,
    RoundRobin,
};

/// Backend counts measured.
const SIZES: [usize; 3] = [3, 100, 10_000];
/// Distinct keys cycled through by the timed loops (a power of two: the index is masked).
const KEYS: usize = 1024;

/// `n` backends `10.x.y.z:8080`; weights `1 + i % 5` when `weighted`, else all 1.
fn backends(n: usize, weighted: bool) -> BackendSet {
    (0..n)
        .map(|i| {
            let b = Backend::parse(&format!(
                "10.{}.{}.{}:8080",
                i >> 16,
                (i >> 8) & 0xff,
                i & 0xff
            ))
            .unwrap();
            if weighted {
                b.with_weight(NonZeroU32::new(1 + (i % 5) as u32).unwrap())
            } else {
                b
            }
        })
        .collect()
}

/// 1,024 distinct request keys (`/users/` and 16 hex digits), or client IPv4 addresses
/// in distinct /24s for `ip_hash`.
fn keys(ip: bool) -> Vec<Vec<u8>> {
    (0..KEYS as u64)
        .map(|i| {
            if ip {
                vec![198, (i >> 8) as u8 + 18, i as u8, 7]
            } else {
                format!("/users/{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).into_bytes()
            }
        })
        .collect()
}

/// One algorithm to measure: its name, whether its backends are weighted, its config.
struct Case<S: BackendSelection> {
    name: &'static str,
    weighted: bool,
    ip_keys: bool,
    config: S::Config,
}

impl<S: BackendSelection> Case<S> {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            weighted: false,
            ip_keys: false,
            config: S::Config::default(),
        }
    }

    fn weighted(mut self) -> Self {
        self.weighted = true;
        self
    }

    fn ip_keys(mut self) -> Self {
        self.ip_keys = true;
        self
    }

    fn run(&self, c: &mut Criterion) {
        let keys = keys(self.ip_keys);
        for n in SIZES {
            let set = backends(n, self.weighted);
            let selector = S::build(&set, &self.config);
            assert!(selector.iter(&keys[0]).next().is_some());

            let mut group = c.benchmark_group("select");
            let mut i = 0usize;
            group.bench_function(BenchmarkId::new(self.name, n), |b| {
                b.iter(|| {
                    let key = &keys[i & (KEYS - 1)];
                    i = i.wrapping_add(1);
                    black_box(selector.iter(black_box(key)).next())
                });
            });
            group.finish();

            let mut group = c.benchmark_group("select_2t");
            group.bench_function(BenchmarkId::new(self.name, n), |b| {
                b.iter_custom(|iters| two_threads(iters, &keys, &selector));
            });
            group.finish();
        }
    }

    fn build(&self, c: &mut Criterion) {
        let set = backends(10_000, self.weighted);
        let mut group = c.benchmark_group("build_10k");
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(2));
        group.bench_function(self.name, |b| {
            b.iter(|| S::build(black_box(&set), &self.config));
        });
        group.finish();
    }
}

/// Two threads each doing `iters` selections on `selector` at the same time; returns the
/// mean of their own elapsed times (thread start-up is outside the timing).
fn two_threads<S: BackendSelection>(iters: u64, keys: &[Vec<u8>], selector: &S) -> Duration {
    let barrier = Barrier::new(2);
    let total: Duration = std::thread::scope(|s| {
        let threads: Vec<_> = (0..2usize)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    let mut i = t * (KEYS / 2);
                    for _ in 0..iters {
                        let key = &keys[i & (KEYS - 1)];
                        i = i.wrapping_add(1);
                        black_box(selector.iter(black_box(key)).next());
                    }
                    start.elapsed()
                })
            })
            .collect();
        threads.into_iter().map(|h| h.join().unwrap()).sum()
    });
    total / 2
}

/// Every algorithm, in the order of the tables in `docs/benchmarks.md`.
fn for_each_case(c: &mut Criterion, f: fn(&dyn Bench, &mut Criterion)) {
    f(&Case::<RoundRobin>::new("round_robin"), c);
    f(
        &Case::<RoundRobin>::new("round_robin_weighted").weighted(),
        c,
    );
    f(&Case::<Random>::new("random"), c);
    f(&Case::<P2c>::new("p2c"), c);
    f(&Case::<LeastConn>::new("least_conn"), c);
    f(&Case::<FnvHash>::new("fnv"), c);
    f(&Case::<Consistent>::new("consistent"), c);
    f(
        &Case::<Consistent>::new("consistent_weighted").weighted(),
        c,
    );
    f(&Case::<NginxHash>::new("nginx_hash"), c);
    f(&Case::<IpHash>::new("ip_hash").ip_keys(), c);
    f(&Case::<Maglev>::new("maglev"), c);
}

/// Object-safe view of a [`Case`], so the list above can mix algorithms.
trait Bench {
    fn select(&self, c: &mut Criterion);
    fn build(&self, c: &mut Criterion);
}

impl<S: BackendSelection> Bench for Case<S> {
    fn select(&self, c: &mut Criterion) {
        self.run(c);
    }
    fn build(&self, c: &mut Criterion) {
        Case::build(self, c);
    }
}

fn select(c: &mut Criterion) {
    for_each_case(c, |case, c| case.select(c));
}

fn build(c: &mut Criterion) {
    for_each_case(c, |case, c| case.build(c));
}

criterion_group! {
    name = benches;
    // Short by default: the whole run takes about two minutes on two cores.
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(800));
    targets = select, build
}
criterion_main!(benches);
