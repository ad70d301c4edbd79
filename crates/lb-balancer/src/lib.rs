//! `LoadBalancer`: discovery, health checks and selection composed.
//!
//! A [`LoadBalancer<S>`] owns an immutable snapshot (the current [`BackendSet`] and the
//! selector `S` built from it) behind an [`ArcSwap`](arc_swap::ArcSwap):
//!
//! - [`select`](LoadBalancer::select) loads the snapshot (no lock, no reference-count
//!   traffic in the common case), walks the selector's candidates and returns the first
//!   usable one as an [`InFlight`] guard: allocation-free and lock-free.
//! - [`update`](LoadBalancer::update) asks discovery for the current set, builds a new
//!   selector off the hot path and swaps it in. Backends that remain keep their shared state
//!   (health verdict, in-flight count); new ones start in the configured initial health;
//!   removed ones leave selection at once. A discovery error keeps the last good set.
//! - [`run_health_check`](LoadBalancer::run_health_check) checks every backend concurrently,
//!   each bounded by the check's timeout. Health changes never rebuild the selector: they
//!   flip one atomic that `select` reads.
//! - [`run`](LoadBalancer::run) does both on their intervals until a shutdown future
//!   resolves, and stops promptly (in-progress checks are cancelled).
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use lb_balancer::LoadBalancer;
//! use lb_health::TcpHealthCheck;
//! use lb_selection::RoundRobin;
//!
//! # async fn demo() -> Result<(), lb_core::Error> {
//! let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(["127.0.0.1:9001", "127.0.0.1:9002"])?;
//! lb.set_health_check(TcpHealthCheck::default());
//! lb.health_check_frequency = Some(Duration::from_secs(1));
//! let lb = Arc::new(lb);
//!
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let background = tokio::spawn({
//!     let lb = lb.clone();
//!     async move { lb.run(async { let _ = stopped.await; }).await }
//! });
//!
//! if let Some(backend) = lb.select(b"", 256) {
//!     println!("send it to {}", backend.addr());
//! } // the guard is dropped here: the request no longer counts as in flight
//!
//! let _ = stop.send(());
//! let _ = background.await;
//! # Ok(()) }
//! ```
//!
//! **Choosing the algorithm at run time.** [`AnyLoadBalancer`] is a `LoadBalancer` over
//! any of the nine algorithms, named by an [`Algorithm`] (as a configuration file would):
//! the same methods, each one `match` away from the typed balancer, so `select` stays
//! allocation-free and statically dispatched.
//!
//! # Features
//!
//! The balancer itself needs none: each turns on the feature of the same name in the crate
//! that has it, so a user of this crate alone picks what gets built. All are on by default.
//!
//! | Feature | Turns on | Gives |
//! |---|---|---|
//! | `dns`, `etcd`, `file` | `lb-discovery`'s | the DNS, etcd and file discovery sources |
//! | `http`, `tls` | `lb-health`'s | HTTP checks, TLS checks; HTTPS checks with both |
//!
//! With `default-features = false`: every selection algorithm, TCP and custom health
//! checks, the scheduler, passive health and the static backend list, without an HTTP or
//! TLS stack, a regex engine, a DNS resolver, an etcd client or a file watcher.

mod any;
mod balancer;
mod slow_start;

pub use any::{Algorithm, AnyLoadBalancer};
pub use balancer::{LoadBalancer, SetChange};
pub use lb_core::{Backend, BackendSet, Health, InFlight};
pub use lb_health::{Outcome, PassiveConfig, Schedule};
pub use slow_start::{InvalidSlowStart, SlowStart};
