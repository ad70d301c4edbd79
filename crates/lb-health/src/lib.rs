//! Active health checks with rise/fall thresholds and status-change hooks.
//!
//! - [`HealthCheck`]: checks one backend and says why it failed ([`CheckFailure`]); also
//!   carries the thresholds ([`CheckParams`]: `rise`, `fall`, `timeout`) and a status-change
//!   hook. Implement it for your own probes.
//! - [`TcpHealthCheck`]: a backend is up when a TCP (or Unix socket) connection opens within
//!   the timeout.
//! - [`HealthTracker`]: the rise/fall state machine of one backend, as nginx's check module
//!   and HAProxy define it: `rise` consecutive passes make a backend healthy, `fall`
//!   consecutive failures make it unhealthy, and a broken streak starts the count again.
//! - [`HealthMonitor`]: runs a check against many backends concurrently, each bounded by the
//!   timeout, feeds the trackers, publishes verdicts to the backends' shared state, and calls
//!   the hook exactly once per transition, including the first one after start-up.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::num::NonZeroU32;
//! use std::time::Duration;
//! use lb_core::Backend;
//! use lb_health::{CheckParams, HealthCheckExt, HealthMonitor, TcpHealthCheck};
//!
//! # async fn run() -> Result<(), lb_core::Error> {
//! let check = TcpHealthCheck::new(CheckParams {
//!     rise: NonZeroU32::new(2).unwrap(),
//!     fall: NonZeroU32::new(3).unwrap(),
//!     timeout: Duration::from_millis(500),
//! })
//! .on_status_change(|change| {
//!     eprintln!("{} is now {} ({:?})", change.backend, change.new, change.reason);
//! });
//! let monitor = HealthMonitor::new(Arc::new(check));
//! let backends = [Backend::parse("127.0.0.1:9001")?];
//! monitor.check_all(&backends).await;
//! # Ok(()) }
//! ```

mod check;
mod monitor;
mod tcp;
mod tracker;

pub use check::{CheckFailure, CheckParams, HealthCheck, HealthCheckExt, StatusChange, WithHook};
pub use monitor::HealthMonitor;
pub use tcp::TcpHealthCheck;
pub use tracker::HealthTracker;
