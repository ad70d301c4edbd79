//! `select` and dropping its guard perform no heap allocation, on the common path, on the
//! weighted path, and when it walks past unusable candidates.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::num::NonZeroU32;
use std::sync::Arc;

use lb_balancer::LoadBalancer;
use lb_core::{Backend, Health};
use lb_discovery::{Discovered, Static};
use lb_selection::RoundRobin;

fn balancer(weights: &[u32]) -> LoadBalancer<RoundRobin> {
    let set = weights
        .iter()
        .enumerate()
        .map(|(i, w)| {
            Backend::parse(&format!("10.0.{}.{}:80", i / 250, i % 250 + 1))
                .unwrap()
                .with_weight(NonZeroU32::new(*w).unwrap())
        })
        .collect();
    let lb = LoadBalancer::<RoundRobin>::from_discovery(Arc::new(Static::default()));
    lb.set_discovered(Discovered::new(set));
    lb
}

fn assert_no_alloc(lb: &LoadBalancer<RoundRobin>, rounds: usize) {
    // The instrument works: one box is one allocation.
    let control = allocation_counter::measure(|| drop(std::hint::black_box(Box::new(7u64))));
    assert_eq!(control.count_total, 1);
    // Warm up thread-locals (arc-swap's debt list) outside the measurement.
    drop(lb.select(b"key", 8));
    let info = allocation_counter::measure(|| {
        for _ in 0..rounds {
            let picked = lb.select(b"key", 256);
            assert!(picked.is_some());
            drop(picked);
            let other = lb.select_with(b"key", 256, |b| b.weight().get() > 0);
            drop(other);
        }
    });
    assert_eq!(info.count_total, 0, "select allocated: {info:?}");
}

#[test]
fn equal_weights() {
    assert_no_alloc(&balancer(&[1; 100]), 10_000);
}

#[test]
fn smooth_weighted() {
    assert_no_alloc(&balancer(&[5, 1, 1, 3, 7]), 10_000);
}

#[test]
fn walking_past_unhealthy_candidates() {
    let lb = balancer(&[1; 50]);
    for b in lb.backends().iter().skip(1) {
        b.state().set_health(Health::Unhealthy);
    }
    assert_no_alloc(&lb, 2_000);
}
