//! Who hears of health transitions: the [`HealthObserver`] trait and the [`StatusChange`]
//! it is told.
//!
//! The monitor ([`HealthMonitor`](crate::HealthMonitor)) decides transitions, so it is the
//! one that announces them: every observer given to
//! [`HealthMonitor::subscribe`](crate::HealthMonitor::subscribe) is called once per
//! transition, after the new verdict is visible to selection. An observer is a
//! control-plane plugin (a log, a notifier, a status page, an embedder's callback); the
//! probe ([`HealthCheck`](crate::HealthCheck)) knows nothing of them. Any
//! `Fn(&StatusChange<'_>)` closure is an observer.

use std::time::SystemTime;

use lb_core::{Backend, Health};

use crate::CheckFailure;

/// One health transition of one backend.
#[derive(Debug)]
pub struct StatusChange<'a> {
    /// The backend that changed.
    pub backend: &'a Backend,
    /// The state before.
    pub old: Health,
    /// The state after.
    pub new: Health,
    /// The failure that tipped a backend into [`Health::Unhealthy`]; `None` when it became healthy.
    pub reason: Option<&'a CheckFailure>,
    /// The length of the streak of equal results that caused the transition.
    pub streak: u32,
    /// When the transition happened (wall clock): the backend's
    /// [`health_since`](lb_core::BackendState::health_since) from now on.
    pub at: SystemTime,
}

/// Told about every health transition of the backends a monitor checks; see
/// [`HealthMonitor::subscribe`](crate::HealthMonitor::subscribe).
///
/// ```
/// use std::sync::Arc;
/// use lb_health::{HealthMonitor, HealthObserver, StatusChange, TcpHealthCheck};
///
/// struct Log;
///
/// impl HealthObserver for Log {
///     fn status_changed(&self, change: &StatusChange<'_>) {
///         eprintln!("{} is now {}", change.backend, change.new);
///     }
/// }
///
/// let monitor = HealthMonitor::new(Arc::new(TcpHealthCheck::default()));
/// monitor.subscribe(Arc::new(Log));
/// // A closure is an observer too.
/// monitor.subscribe(Arc::new(|change: &StatusChange<'_>| {
///     eprintln!("{} at {:?}", change.backend, change.at);
/// }));
/// ```
pub trait HealthObserver: Send + Sync + 'static {
    /// Called once per transition, after the new state is visible to selection, in the
    /// task that ran the check. Keep it short and non-blocking: spawn a task for anything
    /// slow.
    fn status_changed(&self, change: &StatusChange<'_>);
}

impl<F> HealthObserver for F
where
    F: Fn(&StatusChange<'_>) + Send + Sync + 'static,
{
    fn status_changed(&self, change: &StatusChange<'_>) {
        self(change);
    }
}
