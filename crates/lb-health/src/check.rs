//! The `HealthCheck` trait, its failure type and the status-change hook.

use std::error::Error as StdError;
use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;
use lb_core::{Backend, Health};

/// Why a health check failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckFailure {
    /// The connection could not be opened (refused, unreachable, reset).
    #[error("connect failed: {0}")]
    Connect(#[source] std::io::Error),
    /// The check did not finish within its timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// A user-written check failed for its own reason.
    #[error("{0}")]
    Other(#[source] Box<dyn StdError + Send + Sync>),
}

impl CheckFailure {
    /// Wraps any error of a custom check.
    pub fn other(err: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::Other(err.into())
    }

    /// True for [`CheckFailure::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }

    /// True for [`CheckFailure::Connect`].
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect(_))
    }
}

/// Thresholds and timeout of a health check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckParams {
    /// Consecutive passes that make an unhealthy backend healthy.
    pub rise: NonZeroU32,
    /// Consecutive failures that make a healthy backend unhealthy.
    pub fall: NonZeroU32,
    /// How long one check may take; a slower check is a failure and is cancelled.
    pub timeout: Duration,
}

impl Default for CheckParams {
    /// `rise = 2`, `fall = 3`, `timeout = 1s`.
    fn default() -> Self {
        Self {
            rise: NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN),
            fall: NonZeroU32::new(3).unwrap_or(NonZeroU32::MIN),
            timeout: Duration::from_secs(1),
        }
    }
}

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
}

/// An active health check of one backend.
///
/// The monitor bounds every call of [`check`](HealthCheck::check) by
/// [`CheckParams::timeout`] and cancels it past that, so an implementation need not enforce
/// the timeout itself, and a hung probe can never hold up the checks of other backends.
#[async_trait]
pub trait HealthCheck: Send + Sync + 'static {
    /// Probes `backend`; `Ok` when it is fit for traffic.
    async fn check(&self, backend: &Backend) -> Result<(), CheckFailure>;

    /// Thresholds and timeout.
    fn params(&self) -> CheckParams {
        CheckParams::default()
    }

    /// Called once per transition, after the new state is visible to selection. Keep it
    /// short and non-blocking: spawn a task for anything slow.
    fn status_changed(&self, _change: &StatusChange<'_>) {}
}

/// Adds a status-change hook to any check.
pub trait HealthCheckExt: HealthCheck + Sized {
    /// This check, with `hook` called on every transition (after the check's own hook).
    fn on_status_change<F>(self, hook: F) -> WithHook<Self, F>
    where
        F: Fn(&StatusChange<'_>) + Send + Sync + 'static,
    {
        WithHook { check: self, hook }
    }
}

impl<C: HealthCheck> HealthCheckExt for C {}

/// A check with an extra status-change hook; see [`HealthCheckExt::on_status_change`].
pub struct WithHook<C, F> {
    check: C,
    hook: F,
}

impl<C: fmt::Debug, F> fmt::Debug for WithHook<C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithHook")
            .field("check", &self.check)
            .finish()
    }
}

#[async_trait]
impl<C, F> HealthCheck for WithHook<C, F>
where
    C: HealthCheck,
    F: Fn(&StatusChange<'_>) + Send + Sync + 'static,
{
    async fn check(&self, backend: &Backend) -> Result<(), CheckFailure> {
        self.check.check(backend).await
    }

    fn params(&self) -> CheckParams {
        self.check.params()
    }

    fn status_changed(&self, change: &StatusChange<'_>) {
        self.check.status_changed(change);
        (self.hook)(change);
    }
}

#[async_trait]
impl<C: HealthCheck + ?Sized> HealthCheck for std::sync::Arc<C> {
    async fn check(&self, backend: &Backend) -> Result<(), CheckFailure> {
        (**self).check(backend).await
    }

    fn params(&self) -> CheckParams {
        (**self).params()
    }

    fn status_changed(&self, change: &StatusChange<'_>) {
        (**self).status_changed(change);
    }
}
