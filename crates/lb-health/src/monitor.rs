//! Runs a check against many backends and turns results into transitions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures_util::stream::{FuturesUnordered, StreamExt};
use lb_core::{Backend, BackendAddr, Health};
use parking_lot::Mutex;

use crate::{CheckFailure, HealthCheck, HealthTracker, StatusChange};

/// Checks backends, tracks rise/fall per backend and publishes verdicts.
///
/// Trackers are keyed by backend address and kept across calls, so a backend that stays in
/// the set keeps its streak and verdict when the set changes; [`HealthMonitor::retain`]
/// forgets the ones that left. The verdict is written to the backend's shared
/// [`BackendState`](lb_core::BackendState), where selection reads it with one atomic load.
pub struct HealthMonitor {
    check: Arc<dyn HealthCheck>,
    trackers: Mutex<HashMap<BackendAddr, HealthTracker>>,
}

impl std::fmt::Debug for HealthMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthMonitor")
            .field("params", &self.check.params())
            .field("backends", &self.trackers.lock().len())
            .finish()
    }
}

impl HealthMonitor {
    /// A monitor running `check`.
    pub fn new(check: Arc<dyn HealthCheck>) -> Self {
        Self {
            check,
            trackers: Mutex::new(HashMap::new()),
        }
    }

    /// The check this monitor runs.
    pub fn check(&self) -> &Arc<dyn HealthCheck> {
        &self.check
    }

    /// Checks every backend once, concurrently; returns when all have answered or timed out.
    pub async fn check_all(&self, backends: &[Backend]) {
        let mut pending: FuturesUnordered<_> = backends.iter().map(|b| self.check_one(b)).collect();
        while pending.next().await.is_some() {}
    }

    /// Checks one backend, records the result and publishes a transition if there is one.
    /// Returns the new health when the result caused a transition.
    pub async fn check_one(&self, backend: &Backend) -> Option<Health> {
        let params = self.check.params();
        let started = Instant::now();
        let result = match tokio::time::timeout(params.timeout, self.check.check(backend)).await {
            Ok(result) => result,
            Err(_) => Err(CheckFailure::Timeout(params.timeout)),
        };
        let latency = started.elapsed();
        let (transition, streak) = {
            let mut trackers = self.trackers.lock();
            let tracker = trackers.entry(backend.addr().clone()).or_insert_with(|| {
                HealthTracker::new(backend.state().health(), params.rise, params.fall)
            });
            let transition = tracker.record(result.is_ok());
            (transition, tracker.streak().unsigned_abs())
        };
        match &result {
            Ok(()) => tracing::trace!(backend = %backend, ?latency, "health check passed"),
            Err(e) => {
                tracing::debug!(backend = %backend, ?latency, error = %e, "health check failed")
            }
        }
        let (old, new) = transition?;
        backend.state().set_health(new);
        let reason = result.as_ref().err();
        match reason {
            Some(reason) => tracing::warn!(
                backend = %backend, from = %old, to = %new, streak, %reason,
                "backend is unhealthy"
            ),
            None => {
                tracing::info!(backend = %backend, from = %old, to = %new, streak, "backend is healthy")
            }
        }
        self.check.status_changed(&StatusChange {
            backend,
            old,
            new,
            reason,
            streak: u32::try_from(streak).unwrap_or(u32::MAX),
        });
        Some(new)
    }

    /// Forgets the trackers of backends not in `backends`.
    pub fn retain(&self, backends: &[Backend]) {
        let keep: std::collections::HashSet<&BackendAddr> =
            backends.iter().map(Backend::addr).collect();
        self.trackers.lock().retain(|addr, _| keep.contains(addr));
    }

    /// The tracker of one backend (a copy), if it has been checked.
    pub fn tracker(&self, addr: &BackendAddr) -> Option<HealthTracker> {
        self.trackers.lock().get(addr).cloned()
    }
}
