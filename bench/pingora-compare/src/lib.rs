//! Identical inputs for both sides of the Pingora comparison, and the shared bench plumbing.
//!
//! The same backends (addresses `10.x.y.z:8080` and weights) and the same 1,024 keys are
//! given to `lb-selection` / `lb-balancer` and to `pingora-load-balancing`. The benchmark
//! itself is `benches/compare.rs`; `src/bin/report.rs` turns criterion's results into the
//! ratio table. Run both with `cargo xtask bench-peers` from the workspace root.

use std::collections::BTreeSet;
use std::future::Future;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::pin::pin;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use lb_core::BackendSet;
use pingora_load_balancing::selection::{BackendIter as _, BackendSelection as PingoraSelection};

/// Backend counts measured.
pub const SIZES: [usize; 3] = [3, 100, 10_000];
/// Distinct keys cycled through by the timed loops (a power of two: the index is masked).
pub const KEYS: usize = 1024;
/// The `max_iterations` both `LoadBalancer::select`s are given.
pub const MAX_ITERATIONS: usize = 256;

/// The label of our side in benchmark ids and tables.
pub const OURS: &str = "lb";
/// The label of Pingora's side in benchmark ids and tables.
pub const PINGORA: &str = "pingora";

/// One backend: its address text and weight, given identically to both libraries.
#[derive(Clone, Debug)]
pub struct Spec {
    /// `10.x.y.z:8080`.
    pub addr: String,
    /// At least 1.
    pub weight: u32,
}

/// `n` backends `10.x.y.z:8080`; weights `1 + i % 5` when `weighted`, else all 1.
pub fn specs(n: usize, weighted: bool) -> Vec<Spec> {
    (0..n)
        .map(|i| Spec {
            addr: format!("10.{}.{}.{}:8080", i >> 16, (i >> 8) & 0xff, i & 0xff),
            weight: if weighted { 1 + (i % 5) as u32 } else { 1 },
        })
        .collect()
}

/// 1,024 distinct 23-byte request keys (`/users/` and 16 hex digits).
pub fn keys() -> Vec<Vec<u8>> {
    (0..KEYS as u64)
        .map(|i| format!("/users/{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).into_bytes())
        .collect()
}

/// Our backend set for `specs`.
///
/// # Panics
/// If an address does not parse or a weight is 0 (the specs above never do that).
pub fn our_set(specs: &[Spec]) -> BackendSet {
    specs
        .iter()
        .map(|s| {
            let weight = NonZeroU32::new(s.weight).expect("weights are at least 1");
            lb_core::Backend::parse(&s.addr)
                .expect("literal address")
                .with_weight(weight)
        })
        .collect()
}

/// Pingora's backend set for `specs`.
///
/// # Panics
/// If an address does not parse (the specs above never do that).
pub fn pingora_set(specs: &[Spec]) -> BTreeSet<pingora_load_balancing::Backend> {
    specs
        .iter()
        .map(|s| {
            pingora_load_balancing::Backend::new_with_weight(&s.addr, s.weight as usize)
                .expect("literal address")
        })
        .collect()
}

/// Our `LoadBalancer` over `set`, usable at once (every backend in `Unknown` health).
pub fn our_balancer<S: lb_selection::BackendSelection>(
    set: &BackendSet,
) -> lb_balancer::LoadBalancer<S> {
    let discovery = Arc::new(lb_discovery::Static::new(set.clone()));
    let lb = lb_balancer::LoadBalancer::<S>::from_discovery(discovery);
    lb.set_discovered(lb_discovery::Discovered::new(set.clone()));
    lb
}

/// Pingora's `LoadBalancer` over `set` (static discovery, no health check: all ready).
///
/// # Panics
/// If Pingora's static discovery fails or blocks, which it never does.
pub fn pingora_balancer<S>(
    set: &BTreeSet<pingora_load_balancing::Backend>,
) -> pingora_load_balancing::LoadBalancer<S>
where
    S: PingoraSelection + 'static,
    S::Iter: pingora_load_balancing::selection::BackendIter,
{
    let discovery = pingora_load_balancing::discovery::Static::new(set.clone());
    let backends = pingora_load_balancing::Backends::new(discovery);
    let lb = pingora_load_balancing::LoadBalancer::<S>::from_backends(backends);
    now_or_never(lb.update())
        .expect("static discovery does not block")
        .expect("static discovery does not fail");
    lb
}

/// Polls `future` once; its output if it was ready. Enough for static discovery.
fn now_or_never<F: Future>(future: F) -> Option<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }
}

/// One selection at the selector level, on either side.
pub trait SelectOnce: Sync {
    /// `iter(key).next()`, with the result passed through `black_box`.
    fn select_once(&self, key: &[u8]);
}

/// Our selector.
pub struct Ours<S>(pub S);

impl<S: lb_selection::BackendSelection> SelectOnce for Ours<S> {
    #[inline]
    fn select_once(&self, key: &[u8]) {
        black_box(self.0.iter(key).next());
    }
}

/// Pingora's selector (its `iter` takes `self: &Arc<Self>`).
pub struct Pingora<S>(pub Arc<S>);

impl<S> SelectOnce for Pingora<S>
where
    S: PingoraSelection + Send + Sync,
    S::Iter: pingora_load_balancing::selection::BackendIter,
{
    #[inline]
    fn select_once(&self, key: &[u8]) {
        let mut iter = self.0.iter(key);
        black_box(iter.next());
    }
}

/// Our balancer's `select`.
pub struct OurLb<S: lb_selection::BackendSelection>(pub lb_balancer::LoadBalancer<S>);

impl<S: lb_selection::BackendSelection> SelectOnce for OurLb<S> {
    #[inline]
    fn select_once(&self, key: &[u8]) {
        black_box(self.0.select(key, MAX_ITERATIONS));
    }
}

/// Pingora's balancer's `select`.
pub struct PingoraLb<S: PingoraSelection>(pub pingora_load_balancing::LoadBalancer<S>);

impl<S> SelectOnce for PingoraLb<S>
where
    S: PingoraSelection + Send + Sync + 'static,
    S::Iter: pingora_load_balancing::selection::BackendIter,
{
    #[inline]
    fn select_once(&self, key: &[u8]) {
        black_box(self.0.select(key, MAX_ITERATIONS));
    }
}

/// `iters` selections on one thread, cycling through `keys`; the elapsed time.
pub fn one_thread(iters: u64, keys: &[Vec<u8>], sel: &impl SelectOnce) -> Duration {
    let start = Instant::now();
    run(iters, keys, 0, sel);
    start.elapsed()
}

/// Two threads each doing `iters` selections on `sel` at the same time; the mean of their
/// own elapsed times (thread start-up is outside the timing).
///
/// # Panics
/// If a benchmark thread panics.
pub fn two_threads(iters: u64, keys: &[Vec<u8>], sel: &impl SelectOnce) -> Duration {
    let barrier = Barrier::new(2);
    let total: Duration = std::thread::scope(|s| {
        let threads: Vec<_> = (0..2usize)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    run(iters, keys, t * (KEYS / 2), sel);
                    start.elapsed()
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|h| h.join().expect("benchmark thread panicked"))
            .sum()
    });
    total / 2
}

#[inline]
fn run(iters: u64, keys: &[Vec<u8>], start: usize, sel: &impl SelectOnce) {
    let mut i = start;
    for _ in 0..iters {
        let key = &keys[i & (KEYS - 1)];
        i = i.wrapping_add(1);
        sel.select_once(black_box(key));
    }
}
