//! `LoadBalancer::select` for every algorithm: `cargo bench -p lb-balancer` (or
//! `cargo xtask bench`).
//!
//! Where `cargo bench -p lb-selection` times the selector alone (`iter(key).next()`), this
//! times what a proxy calls per request: `select(key, 256)` loads the snapshot, walks the
//! candidates, checks each one's usability and returns an `InFlight` guard, which is dropped
//! inside the timed loop (the guard's increment and decrement are both counted).
//!
//! - `lb_select/<algorithm>/<backends>`: one thread.
//! - `lb_select_2t/<algorithm>/<backends>`: two threads selecting from the same balancer at
//!   once; per selection as one thread sees it (mean of the two threads' own elapsed times).
//!
//! Same inputs as the lb-selection bench: backends `10.x.y.z:8080` (3, 100, 10,000; weights
//! `1 + i % 5` for the `*_weighted` variants), 1,024 precomputed 23-byte keys (IPv4 octets
//! for `ip_hash`), all backends healthy. Not part of `cargo xtask ci` (CI only compiles it).
// `criterion_group!` generates an undocumented `pub fn`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use lb_balancer::LoadBalancer;
use lb_core::{Backend, BackendSet};
use lb_discovery::{Discovered, Static};
use lb_selection::{
    BackendSelection, Consistent, FnvHash, IpHash, LeastConn, Maglev, NginxHash, P2c, Random,
    RoundRobin,
};

/// Backend counts measured.
const SIZES: [usize; 3] = [3, 100, 10_000];
/// Distinct keys cycled through by the timed loops (a power of two: the index is masked).
const KEYS: usize = 1024;
/// The `max_iterations` passed to `select`, as in lb-proxy.
const MAX_ITERATIONS: usize = 256;

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

/// 1,024 distinct request keys, or client IPv4 addresses in distinct /24s for `ip_hash`.
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

/// A balancer over a fixed set, usable at once (every backend in `Unknown` health).
fn balancer<S: BackendSelection>(set: &BackendSet) -> LoadBalancer<S> {
    let lb = LoadBalancer::<S>::from_discovery(Arc::new(Static::new(set.clone())));
    lb.set_discovered(Discovered::new(set.clone()));
    lb
}

fn case<S: BackendSelection>(c: &mut Criterion, name: &str, weighted: bool, ip_keys: bool) {
    let keys = keys(ip_keys);
    for n in SIZES {
        let lb = balancer::<S>(&backends(n, weighted));
        assert!(lb.select(&keys[0], MAX_ITERATIONS).is_some());

        let mut group = c.benchmark_group("lb_select");
        let mut i = 0usize;
        group.bench_function(BenchmarkId::new(name, n), |b| {
            b.iter(|| {
                let key = &keys[i & (KEYS - 1)];
                i = i.wrapping_add(1);
                black_box(lb.select(black_box(key), MAX_ITERATIONS))
            });
        });
        group.finish();

        let mut group = c.benchmark_group("lb_select_2t");
        group.bench_function(BenchmarkId::new(name, n), |b| {
            b.iter_custom(|iters| two_threads(iters, &keys, &lb));
        });
        group.finish();
    }
}

/// Two threads each doing `iters` selections on `lb` at the same time; returns the mean of
/// their own elapsed times (thread start-up is outside the timing).
fn two_threads<S: BackendSelection>(
    iters: u64,
    keys: &[Vec<u8>],
    lb: &LoadBalancer<S>,
) -> Duration {
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
                        black_box(lb.select(black_box(key), MAX_ITERATIONS));
                    }
                    start.elapsed()
                })
            })
            .collect();
        threads.into_iter().map(|h| h.join().unwrap()).sum()
    });
    total / 2
}

fn select(c: &mut Criterion) {
    case::<RoundRobin>(c, "round_robin", false, false);
    case::<RoundRobin>(c, "round_robin_weighted", true, false);
    case::<Random>(c, "random", false, false);
    case::<P2c>(c, "p2c", false, false);
    case::<LeastConn>(c, "least_conn", false, false);
    case::<FnvHash>(c, "fnv", false, false);
    case::<Consistent>(c, "consistent", false, false);
    case::<Consistent>(c, "consistent_weighted", true, false);
    case::<NginxHash>(c, "nginx_hash", false, false);
    case::<IpHash>(c, "ip_hash", false, true);
    case::<Maglev>(c, "maglev", false, false);
}

criterion_group! {
    name = benches;
    // Short by default: the whole run takes about two minutes on two cores.
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(800));
    targets = select
}
criterion_main!(benches);
