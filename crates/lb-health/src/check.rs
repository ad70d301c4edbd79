//! The `HealthCheck` trait (the probe) and its failure type.
//!
//! Every probe (TCP, TLS, HTTP, or a user's own) implements [`HealthCheck`]: it checks one
//! backend, says its thresholds ([`CheckParams`]) and releases what it kept for a backend
//! that left. Verdicts and transitions are the monitor's ([`HealthMonitor`](crate::HealthMonitor),
//! which tells its [`HealthObserver`](crate::HealthObserver)s). A failure is a
//! typed [`CheckFailure`] rather than a string, so observers, logs and the status page can tell
//! a refused connection from an expired certificate or a 500 without parsing text. The
//! variants follow what nginx's check module, HAProxy and Envoy report for a failed check
//! (connect error, timeout, TLS handshake error, unexpected status, body mismatch).

use std::error::Error as StdError;
use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;
use lb_core::{Backend, BackendAddr};

use crate::{StatusSet, TlsFailureKind};

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
    /// The TLS handshake failed (or the server rejected the session right after it).
    #[error("TLS {kind}: {source}")]
    Tls {
        /// What went wrong, for hooks and metrics.
        kind: TlsFailureKind,
        /// The error as the TLS stack reported it.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP response status is not in the expected set.
    #[error("unexpected status {status} (expected {expected})")]
    Status {
        /// The status the backend answered with.
        status: u16,
        /// The statuses that would have passed.
        expected: StatusSet,
    },
    /// The response body did not match.
    #[error("body does not {expected} (read {read} bytes)")]
    Body {
        /// The match that failed, e.g. `contain "ok"` or `match /^up$/`.
        expected: String,
        /// How many bytes of the body were read and searched.
        read: usize,
    },
    /// The HTTP exchange failed: bad response, connection closed, protocol error.
    #[error("HTTP error: {0}")]
    Http(#[source] Box<dyn StdError + Send + Sync>),
    /// The user's validator refused the response.
    #[error("validator refused the response: {0}")]
    Validator(String),
}

impl CheckFailure {
    /// Wraps any error of a custom check.
    pub fn other(err: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::Other(err.into())
    }

    /// True when the check could not run because this process ran out of file
    /// descriptors, socket buffers or memory ([`is_local_resource_exhaustion`](crate::is_local_resource_exhaustion)):
    /// it says nothing about the backend, and the monitor does not count it.
    pub fn is_local_resource(&self) -> bool {
        crate::is_local_resource_exhaustion(self)
    }

    /// True for [`CheckFailure::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }

    /// True for [`CheckFailure::Connect`].
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect(_))
    }

    /// True for [`CheckFailure::Tls`].
    pub fn is_tls(&self) -> bool {
        matches!(self, Self::Tls { .. })
    }

    /// The kind of TLS failure, for [`CheckFailure::Tls`].
    pub fn tls_kind(&self) -> Option<TlsFailureKind> {
        match self {
            Self::Tls { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// True when the certificate is not valid for the name checked (SNI or IP).
    pub fn is_wrong_name(&self) -> bool {
        self.tls_kind() == Some(TlsFailureKind::WrongName)
    }

    /// True when the certificate chain does not lead to a trusted root.
    pub fn is_untrusted(&self) -> bool {
        self.tls_kind() == Some(TlsFailureKind::UntrustedIssuer)
    }

    /// True when the certificate has expired.
    pub fn is_expired(&self) -> bool {
        self.tls_kind() == Some(TlsFailureKind::Expired)
    }

    /// The unexpected HTTP status, for [`CheckFailure::Status`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True for [`CheckFailure::Status`].
    pub fn is_status(&self) -> bool {
        matches!(self, Self::Status { .. })
    }

    /// True for [`CheckFailure::Body`].
    pub fn is_body(&self) -> bool {
        matches!(self, Self::Body { .. })
    }

    /// True for [`CheckFailure::Http`].
    pub fn is_http(&self) -> bool {
        matches!(self, Self::Http(_))
    }

    /// True for [`CheckFailure::Validator`].
    pub fn is_validator(&self) -> bool {
        matches!(self, Self::Validator(_))
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

/// An active health check of one backend: only the probe. What its results make of the
/// backend (rise/fall, transitions, who hears of them) is the monitor's.
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

    /// Called when a backend leaves the monitored set, so a check that keeps per-backend
    /// resources (such as `HttpHealthCheck`'s kept-alive connections) can release them.
    /// The default does nothing.
    fn forget(&self, _addr: &BackendAddr) {}
}

#[async_trait]
impl<C: HealthCheck + ?Sized> HealthCheck for std::sync::Arc<C> {
    async fn check(&self, backend: &Backend) -> Result<(), CheckFailure> {
        (**self).check(backend).await
    }

    fn params(&self) -> CheckParams {
        (**self).params()
    }

    fn forget(&self, addr: &BackendAddr) {
        (**self).forget(addr);
    }
}
