//! `select` and dropping its guard perform no heap allocation, for every algorithm (issue 3
//! acceptance), on the common path and on the paths that do more work: smooth weighted
//! cycles, walking past unusable candidates (nginx `hash`'s rehash tries, then the rest),
//! bounded loads passing over full backends (consistent and maglev with a balance factor),
//! least connections and p2c reading live loads, `ip_hash` over IPv4 (4-byte) and IPv6
//! (16-byte) keys, the round robin that nginx's hash balancers use for an empty key, and
//! slow start thinning warming backends.
//!
//! The counter (`allocation-counter`) is per thread, so tests running in parallel do not
//! disturb each other; each measurement first proves the instrument counts.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use lb_balancer::{LoadBalancer, SlowStart};
use lb_core::{monotonic_ms, Backend, BackendSet, Health, InFlight};
use lb_discovery::{Discovered, Static};
use lb_selection::{
    BackendSelection, BalanceFactor, Consistent, ConsistentConfig, FnvHash, IpHash, LeastConn,
    Maglev, MaglevConfig, NginxHash, P2c, Random, RoundRobin,
};

/// Keys of every shape: empty, text, an IPv4 address, an IPv6 address.
const KEYS: [&[u8]; 4] = [
    b"",
    b"/users/42?session=abc",
    &[192, 0, 2, 7],
    &[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
];

fn backends(weights: &[u32]) -> BackendSet {
    weights
        .iter()
        .enumerate()
        .map(|(i, w)| {
            Backend::parse(&format!("10.0.{}.{}:80", i / 250, i % 250 + 1))
                .unwrap()
                .with_weight(NonZeroU32::new(*w).unwrap())
        })
        .collect()
}

fn balancer<S: BackendSelection>(weights: &[u32], config: S::Config) -> LoadBalancer<S> {
    let lb = LoadBalancer::<S>::with_config(Arc::new(Static::default()), config);
    lb.set_discovered(Discovered::new(backends(weights)));
    lb
}

/// Runs `rounds` rounds of `select` and `select_with` for each key, dropping the guards, and
/// asserts that not one allocation happened.
fn assert_no_alloc<S: BackendSelection>(lb: &LoadBalancer<S>, keys: &[&[u8]], rounds: usize) {
    // The instrument works: one box is one allocation.
    let control = allocation_counter::measure(|| drop(std::hint::black_box(Box::new(7u64))));
    assert_eq!(control.count_total, 1);
    // Warm up thread-locals (arc-swap's debt list, the random generator) outside the
    // measurement.
    for key in keys {
        drop(lb.select(key, 8));
    }
    let info = allocation_counter::measure(|| {
        for _ in 0..rounds {
            for key in keys {
                let picked = lb.select(key, 256);
                assert!(picked.is_some());
                drop(picked);
                let other = lb.select_with(key, usize::MAX, |b| b.weight().get() > 0);
                assert!(other.is_some());
                drop(other);
            }
        }
    });
    assert_eq!(info.count_total, 0, "select allocated: {info:?}");
}

/// Marks every backend but the one at `keep` unhealthy, so `select` walks past them.
fn all_unhealthy_but<S: BackendSelection>(lb: &LoadBalancer<S>, keep: usize) -> Backend {
    let set = lb.backends();
    for (i, b) in set.iter().enumerate() {
        if i != keep {
            b.state().set_health(Health::Unhealthy);
        }
    }
    set[keep].clone()
}

/// Holds `per_backend` requests on every backend at an even index (load for the
/// load-aware algorithms to read).
fn load_every_other<S: BackendSelection>(
    lb: &LoadBalancer<S>,
    per_backend: usize,
) -> Vec<InFlight> {
    lb.backends()
        .iter()
        .step_by(2)
        .flat_map(|b| (0..per_backend).map(|_| b.begin_request()))
        .collect()
}

/// Selects `hot` `count` times, keeping the guards: with a balance factor the key's own
/// backend fills up and later requests walk on. Returns the guards and the backend the key
/// went to first.
fn load_hot_key<S: BackendSelection>(
    lb: &LoadBalancer<S>,
    hot: &[u8],
    count: usize,
) -> (Vec<InFlight>, Backend) {
    let guards: Vec<InFlight> = (0..count).map(|_| lb.select(hot, 256).unwrap()).collect();
    let owner = guards[0].backend().clone();
    (guards, owner)
}

fn factor(f: f64) -> Option<BalanceFactor> {
    Some(BalanceFactor::new(f).unwrap())
}

// --- round robin -------------------------------------------------------------------------

#[test]
fn round_robin_equal_weights() {
    assert_no_alloc(&balancer::<RoundRobin>(&[1; 100], ()), &KEYS, 2_500);
}

#[test]
fn round_robin_smooth_weighted() {
    assert_no_alloc(&balancer::<RoundRobin>(&[5, 1, 1, 3, 7], ()), &KEYS, 2_500);
}

#[test]
fn round_robin_walking_past_unhealthy_candidates() {
    let lb = balancer::<RoundRobin>(&[1; 50], ());
    all_unhealthy_but(&lb, 0);
    assert_no_alloc(&lb, &KEYS, 500);
}

// --- random, p2c, least connections ------------------------------------------------------

#[test]
fn random_equal_and_weighted() {
    assert_no_alloc(&balancer::<Random>(&[1; 20], ()), &KEYS, 2_500);
    assert_no_alloc(&balancer::<Random>(&[5, 1, 1, 3, 7], ()), &KEYS, 2_500);
}

#[test]
fn random_walking_past_unhealthy_candidates() {
    let lb = balancer::<Random>(&[1; 50], ());
    all_unhealthy_but(&lb, 17);
    assert_no_alloc(&lb, &KEYS, 500);
}

#[test]
fn p2c_with_load() {
    let lb = balancer::<P2c>(&[2, 1, 1, 3, 1, 1, 4, 1], ());
    let _load = load_every_other(&lb, 3);
    assert_no_alloc(&lb, &KEYS, 2_500);
}

#[test]
fn least_conn_with_load() {
    let lb = balancer::<LeastConn>(&[2, 1, 1, 3, 1, 1, 4, 1], ());
    let _load = load_every_other(&lb, 3);
    assert_no_alloc(&lb, &KEYS, 2_500);
    let lb = balancer::<LeastConn>(&[1; 100], ());
    let _load = load_every_other(&lb, 1);
    all_unhealthy_but(&lb, 42);
    assert_no_alloc(&lb, &KEYS, 250);
}

// --- hashing -----------------------------------------------------------------------------

#[test]
fn fnv_hash() {
    assert_no_alloc(&balancer::<FnvHash>(&[5, 1, 1, 3, 7], ()), &KEYS, 2_500);
    let lb = balancer::<FnvHash>(&[1; 50], ());
    all_unhealthy_but(&lb, 3);
    assert_no_alloc(&lb, &KEYS, 500);
}

#[test]
fn consistent() {
    let lb = balancer::<Consistent>(&[5, 1, 1, 3, 7], ConsistentConfig::default());
    assert_no_alloc(&lb, &KEYS, 2_500);
    let lb = balancer::<Consistent>(&[1; 50], ConsistentConfig::default());
    all_unhealthy_but(&lb, 3);
    assert_no_alloc(&lb, &KEYS, 500);
}

#[test]
fn consistent_with_a_balance_factor_under_load() {
    let config = ConsistentConfig {
        balance_factor: factor(1.25),
    };
    let lb = balancer::<Consistent>(&[1, 2, 1, 1, 3, 1, 1, 1], config);
    let (_load, owner) = load_hot_key(&lb, b"hot", 40);
    // The hot key's own backend is full: the bounded walk passes over it.
    assert!(!lb.select(b"hot", 256).unwrap().ptr_eq(&owner));
    let keys: Vec<&[u8]> = KEYS.iter().copied().chain([&b"hot"[..]]).collect();
    assert_no_alloc(&lb, &keys, 2_500);
}

#[test]
fn nginx_hash() {
    assert_no_alloc(&balancer::<NginxHash>(&[5, 1, 1, 3, 7], ()), &KEYS, 2_500);
}

#[test]
fn nginx_hash_rehash_walk_past_unhealthy_backends() {
    // 49 of 50 backends down: each request runs nginx's 21 rehash tries, then the rest.
    let lb = balancer::<NginxHash>(&[1; 50], ());
    let up = all_unhealthy_but(&lb, 29);
    assert!(lb
        .select(b"/users/42?session=abc", 256)
        .unwrap()
        .ptr_eq(&up));
    assert_no_alloc(&lb, &KEYS, 500);
}

#[test]
fn ip_hash_ipv4_and_ipv6_keys() {
    let ipv4: &[&[u8]] = &[&[192, 0, 2, 7], &[198, 51, 100, 200], &[10, 0, 0, 1]];
    let ipv6: &[&[u8]] = &[
        &[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        &[0xfd; 16],
    ];
    let lb = balancer::<IpHash>(&[5, 1, 1, 3, 7], ());
    assert_no_alloc(&lb, ipv4, 2_500);
    assert_no_alloc(&lb, ipv6, 2_500);
    assert_no_alloc(&lb, &KEYS, 2_500);
    // And with the rehash tries walking past unhealthy backends.
    let lb = balancer::<IpHash>(&[1; 50], ());
    all_unhealthy_but(&lb, 11);
    assert_no_alloc(&lb, ipv4, 500);
    assert_no_alloc(&lb, ipv6, 500);
}

#[test]
fn maglev() {
    let lb = balancer::<Maglev>(&[5, 1, 1, 3, 7], MaglevConfig::default());
    assert_no_alloc(&lb, &KEYS, 2_500);
    let small = MaglevConfig {
        table_size: 7,
        balance_factor: None,
    };
    let lb = balancer::<Maglev>(&[1; 50], small);
    all_unhealthy_but(&lb, 3);
    assert_no_alloc(&lb, &KEYS, 500);
}

#[test]
fn maglev_with_a_balance_factor_under_load() {
    let config = MaglevConfig {
        balance_factor: factor(1.25),
        ..MaglevConfig::default()
    };
    let lb = balancer::<Maglev>(&[1, 2, 1, 1, 3, 1, 1, 1], config);
    let (_load, owner) = load_hot_key(&lb, b"hot", 40);
    // The hot key's own backend is full: the bounded walk passes over it.
    assert!(!lb.select(b"hot", 256).unwrap().ptr_eq(&owner));
    let keys: Vec<&[u8]> = KEYS.iter().copied().chain([&b"hot"[..]]).collect();
    assert_no_alloc(&lb, &keys, 2_500);
}

// --- slow start --------------------------------------------------------------------------

/// A balancer with an hour-long slow start whose backends at indices divisible by `every`
/// are warming (thinned away with probability 0.9 at first).
fn warming<S: BackendSelection>(weights: &[u32], every: usize) -> LoadBalancer<S> {
    let mut lb = LoadBalancer::<S>::with_config(Arc::new(Static::default()), S::Config::default());
    lb.set_slow_start(SlowStart::new(Duration::from_secs(3600), 10).unwrap());
    lb.set_discovered(Discovered::new(backends(weights)));
    let now = monotonic_ms();
    for b in lb.backends().iter().step_by(every) {
        b.state().start_warming(now);
    }
    assert!(lb.backends()[0].state().warming_since().is_some());
    lb
}

fn assert_no_alloc_while_warming<S: BackendSelection>() {
    // Every other backend warming: thinned candidates are passed over.
    assert_no_alloc(&warming::<S>(&[2, 1, 1, 3, 1, 1, 4, 1], 2), &KEYS, 1_000);
    // All warming: often every candidate is thinned and the first of them is taken.
    assert_no_alloc(&warming::<S>(&[1; 8], 1), &KEYS, 1_000);
}

#[test]
fn slow_start_thinning() {
    assert_no_alloc_while_warming::<RoundRobin>();
    assert_no_alloc_while_warming::<Random>();
    assert_no_alloc_while_warming::<P2c>();
    assert_no_alloc_while_warming::<LeastConn>();
}
