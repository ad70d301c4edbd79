//! Health checking for the `lb` toolkit: active TCP, TLS and HTTP checks with rise/fall
//! thresholds, a scheduler that watches thousands of backends from one task, and passive
//! health (outlier detection) fed by real traffic.
//!
//! **Checks** (each a [`HealthCheck`]; implement the trait for your own probes):
//!
//! - [`TcpHealthCheck`]: a TCP (or Unix socket) connection opens within the timeout.
//! - [`TlsHealthCheck`] (feature `tls`): TCP plus a full, verified TLS handshake
//!   ([`TlsConfig`]: system roots or a CA bundle or verification explicitly off, SNI, mTLS,
//!   ALPN). A failure says why: [`TlsFailureKind`] (wrong name, untrusted issuer,
//!   expired, rejected...).
//! - [`HttpHealthCheck`] (feature `http`): one HTTP/1.1 request over TCP, or over TLS with
//!   `tls` too, judged by a [`StatusSet`] (default `2xx,3xx`), an optional body substring
//!   or regex, and an optional validator; optional keep-alive reuse and port override.
//! - A command check, as HAProxy's `external-check`, is the crate's example
//!   `examples/command_check.rs`: a complete custom check in 60 lines.
//!
//! **Verdicts.** [`HealthTracker`] is the rise/fall state machine of nginx's check module
//! and HAProxy: `rise` consecutive passes make a backend healthy, `fall` consecutive
//! failures make it unhealthy, a broken streak starts the count again. The *initial
//! state* is a parameter of the monitor ([`HealthMonitor::with_initial_health`]:
//! `Unknown` by default, usable at once and settled by the first result; `Healthy`: needs
//! `fall` failures to go down; `Unhealthy`: no traffic until `rise` passes). Every failure
//! is a typed [`CheckFailure`]. A [`HealthCheck`] is only the probe; the monitor decides
//! transitions and tells every [`HealthObserver`] given to [`HealthMonitor::subscribe`]
//! exactly once per transition ([`StatusChange`], with its time), including the first one
//! after start-up, after the verdict is visible to selection.
//!
//! **Running checks.** [`HealthMonitor`] checks backends ([`check_one`](HealthMonitor::check_one),
//! [`check_all`](HealthMonitor::check_all)), each bounded by its timeout, keeps one tracker
//! per backend address, and publishes verdicts. [`HealthMonitor::run`] is the scheduler:
//! every backend on its own timeline ([`Schedule`]: interval, jitter, HAProxy-style
//! `downinter`, bounded concurrency, staggered first checks), following a
//! `watch::Receiver<BackendSet>` as the set changes, returning at once on shutdown.
//! [`HealthMonitor::snapshot`] gives the status page its rows ([`BackendHealth`]),
//! [`HealthMonitor::backend_health`] one of them.
//!
//! **Passive health.** [`PassiveHealth`] ejects backends on the outcomes the proxy reports
//! ([`Outcome`]), with nginx's `max_fails`/`fail_timeout` or Envoy's consecutive 5xx /
//! gateway failures, growing ejection times and `max_ejection_percent` ([`PassiveConfig`]).
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::num::NonZeroU32;
//! use std::time::Duration;
//! use lb_core::{Backend, BackendSet};
//! use lb_health::{CheckParams, HealthMonitor, Schedule, StatusChange, TcpHealthCheck};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let params = CheckParams {
//!     rise: NonZeroU32::new(2).unwrap(),
//!     fall: NonZeroU32::new(3).unwrap(),
//!     timeout: Duration::from_millis(500),
//! };
//! // Any check: an HttpHealthCheck (feature `http`) plugs in the same way.
//! let check = TcpHealthCheck::new(params);
//! let monitor = HealthMonitor::new(Arc::new(check));
//! monitor.subscribe(Arc::new(|change: &StatusChange<'_>| {
//!     eprintln!("{} is now {} ({:?})", change.backend, change.new, change.reason);
//! }));
//! let set: BackendSet = [Backend::parse("127.0.0.1:9001")?].into_iter().collect();
//!
//! // One round now...
//! monitor.check_all(&set).await;
//! // ...or every backend on its own timeline until shutdown.
//! let (_sender, backends) = tokio::sync::watch::channel(set);
//! let mut schedule = Schedule::new(Duration::from_secs(1));
//! schedule.unhealthy_interval = Some(Duration::from_secs(5));
//! monitor.run(backends, schedule, std::future::pending()).await;
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! Both are on by default; with `default-features = false` the crate keeps TCP and custom
//! checks, rise/fall, the scheduler and passive health, and needs no HTTP or TLS stack.
//! [`CheckFailure`], [`StatusSet`] and [`TlsFailureKind`] are plain data and keep their
//! shape in every combination, so code matching on failures compiles either way.
//!
//! | Feature | Gives | Pulls in |
//! |---|---|---|
//! | `tls` | [`TlsHealthCheck`], [`TlsConfig`] and its builder, `TlsConfigError`, `AcceptAnyCertificate`, `TlsFailureKind::classify` | lb-core `tls` (ring, the system roots), tokio-rustls, rustls-pki-types |
//! | `http` | [`HttpHealthCheck`] and its builder, `HttpCheckError`, `Validator`, `DEFAULT_MAX_BODY`; HTTPS checks when `tls` is on too | hyper, hyper-util, http, http-body-util, bytes, regex |
//!
// The links above name items that a feature may compile out: without it they point to
// this section instead of breaking rustdoc.
#![cfg_attr(feature = "tls", doc = "[`TlsHealthCheck`]: crate::TlsHealthCheck")]
#![cfg_attr(feature = "tls", doc = "[`TlsConfig`]: crate::TlsConfig")]
#![cfg_attr(feature = "http", doc = "[`HttpHealthCheck`]: crate::HttpHealthCheck")]
#![cfg_attr(not(feature = "tls"), doc = "[`TlsHealthCheck`]: #features")]
#![cfg_attr(not(feature = "tls"), doc = "[`TlsConfig`]: #features")]
#![cfg_attr(not(feature = "http"), doc = "[`HttpHealthCheck`]: #features")]

mod check;
#[cfg(any(feature = "http", feature = "tls"))]
mod conn;
#[cfg(feature = "http")]
mod http;
mod local;
mod monitor;
mod observer;
mod passive;
mod passive_config;
mod passive_run;
mod schedule;
mod status;
mod tcp;
#[cfg(feature = "tls")]
mod tls;
mod tls_failure;
mod tracker;

pub use check::{CheckFailure, CheckParams, HealthCheck};
#[cfg(feature = "http")]
pub use http::{
    HttpCheckError, HttpHealthCheck, HttpHealthCheckBuilder, Validator, DEFAULT_MAX_BODY,
};
pub use local::is_local_resource_exhaustion;
pub use monitor::{BackendHealth, HealthMonitor};
pub use observer::{HealthObserver, StatusChange};
pub use passive::PassiveHealth;
pub use passive_config::{Outcome, PassiveConfig};
pub use passive_run::PassiveStatus;
pub use schedule::{FirstCheck, Schedule, ScheduleStats};
pub use status::{StatusSet, StatusSetError};
pub use tcp::TcpHealthCheck;
#[cfg(feature = "tls")]
pub use tls::{AcceptAnyCertificate, TlsConfig, TlsConfigBuilder, TlsConfigError, TlsHealthCheck};
pub use tls_failure::TlsFailureKind;
pub use tracker::HealthTracker;
