//! Runs a check against backends, turns results into transitions, and keeps what the
//! status page shows.
//!
//! The monitor owns one record per backend address: the rise/fall [`HealthTracker`] and
//! the observability fields (last check time, latency, failure reason). A check's result
//! is recorded under a short lock that is never held across `.await`; the verdict is then
//! published to the backend's shared [`BackendState`](lb_core::BackendState), where
//! selection reads it with one atomic load, and the hook runs once per transition.
//! Checks can be driven one round at a time ([`HealthMonitor::check_all`]) or by the
//! per-backend scheduler ([`HealthMonitor::run`], in the `schedule` module).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::stream::{FuturesUnordered, StreamExt};
use lb_core::{Backend, BackendAddr, Health};
use parking_lot::Mutex;

use crate::schedule::ScheduleStats;
use crate::{CheckFailure, HealthCheck, HealthTracker, PassiveHealth, StatusChange};

/// What the monitor knows about one backend.
struct Record {
    backend: Backend,
    tracker: HealthTracker,
    last_check: Option<SystemTime>,
    last_latency: Option<Duration>,
    last_failure: Option<String>,
}

/// The health of one backend as the monitor last saw it; see [`HealthMonitor::snapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendHealth {
    /// Where the backend listens.
    pub addr: BackendAddr,
    /// Its configured name.
    pub name: String,
    /// The active checks' verdict.
    pub health: Health,
    /// Consecutive passes up to now (0 after a failure).
    pub consecutive_passes: u32,
    /// Consecutive failures up to now (0 after a pass).
    pub consecutive_failures: u32,
    /// When the last check finished (wall clock).
    pub last_check: Option<SystemTime>,
    /// How long the last check took (the timeout, for a check that timed out).
    pub last_latency: Option<Duration>,
    /// Why the last failed check failed (kept after later passes).
    pub last_failure: Option<String>,
    /// Checks passed since the backend was first checked.
    pub total_passes: u64,
    /// Checks failed since the backend was first checked.
    pub total_failures: u64,
}

/// Checks backends, tracks rise/fall per backend and publishes verdicts.
///
/// Trackers are keyed by backend address and kept across calls, so a backend that stays in
/// the set keeps its streak and verdict when the set changes; [`HealthMonitor::retain`]
/// (or the scheduler, on a set change) forgets the ones that left. A new backend's tracker
/// starts from the health its [`BackendState`](lb_core::BackendState) has at its first
/// check: that is how the *initial state* is configured (`Unknown` by default: usable,
/// settled by the first result; `Healthy`: needs `fall` failures; `Unhealthy`: needs
/// `rise` passes before traffic), via `Backend::with_initial_health` or the balancer.
pub struct HealthMonitor {
    pub(crate) check: Arc<dyn HealthCheck>,
    records: Mutex<HashMap<BackendAddr, Record>>,
    passive: Option<Arc<PassiveHealth>>,
    pub(crate) stats: Mutex<ScheduleStats>,
}

impl std::fmt::Debug for HealthMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthMonitor")
            .field("params", &self.check.params())
            .field("backends", &self.records.lock().len())
            .field("passive", &self.passive.is_some())
            .finish()
    }
}

impl HealthMonitor {
    /// A monitor running `check`.
    pub fn new(check: Arc<dyn HealthCheck>) -> Self {
        Self {
            check,
            records: Mutex::new(HashMap::new()),
            passive: None,
            stats: Mutex::new(ScheduleStats::default()),
        }
    }

    /// Tells `passive` about every passing check, so that with
    /// [`PassiveConfig::return_on_active_pass`](crate::PassiveConfig::return_on_active_pass)
    /// an ejected backend returns as soon as an active check passes.
    #[must_use]
    pub fn with_passive(mut self, passive: Arc<PassiveHealth>) -> Self {
        self.passive = Some(passive);
        self
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
        self.check_and_record(backend).await.0
    }

    /// Checks one backend; returns the transition (if any) and the verdict after the check.
    pub(crate) async fn check_and_record(&self, backend: &Backend) -> (Option<Health>, Health) {
        let params = self.check.params();
        let started = tokio::time::Instant::now();
        let result = match tokio::time::timeout(params.timeout, self.check.check(backend)).await {
            Ok(result) => result,
            Err(_) => Err(CheckFailure::Timeout(params.timeout)),
        };
        let latency = started.elapsed();
        // Out of descriptors (or buffers, or memory) here: nothing was learnt about the
        // backend, so the result is not counted (see `local.rs`).
        if let Err(e) = &result {
            if e.is_local_resource() {
                return (None, self.skip_local_failure(backend, e));
            }
        }
        let (transition, streak, verdict) = {
            let mut records = self.records.lock();
            let record = records
                .entry(backend.addr().clone())
                .or_insert_with(|| Record {
                    backend: backend.clone(),
                    tracker: HealthTracker::new(backend.state().health(), params.rise, params.fall),
                    last_check: None,
                    last_latency: None,
                    last_failure: None,
                });
            let transition = record.tracker.record(result.is_ok());
            record.backend = backend.clone();
            record.last_check = Some(SystemTime::now());
            record.last_latency = Some(latency);
            if let Err(e) = &result {
                record.last_failure = Some(e.to_string());
            }
            let t = &record.tracker;
            (transition, t.streak().unsigned_abs(), t.health())
        };
        match &result {
            Ok(()) => {
                tracing::trace!(backend = %backend, ?latency, "health check passed");
                if let Some(passive) = &self.passive {
                    passive.active_passed(backend);
                }
            }
            Err(e) => {
                tracing::debug!(backend = %backend, ?latency, error = %e, "health check failed")
            }
        }
        let Some((old, new)) = transition else {
            return (None, verdict);
        };
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
        (Some(new), verdict)
    }

    /// Notes a check that could not run for want of a local resource, without counting it;
    /// returns the backend's unchanged verdict.
    fn skip_local_failure(&self, backend: &Backend, e: &CheckFailure) -> Health {
        tracing::debug!(backend = %backend, error = %e, "health check not counted: this process is out of resources");
        let mut records = self.records.lock();
        match records.get_mut(backend.addr()) {
            Some(record) => {
                record.last_check = Some(SystemTime::now());
                record.last_failure = Some(format!("not counted: {e}"));
                record.tracker.health()
            }
            None => backend.state().health(),
        }
    }

    /// Forgets the trackers of backends not in `backends` (and lets the check release
    /// what it kept for them, see [`HealthCheck::forget`]).
    pub fn retain(&self, backends: &[Backend]) {
        let keep: HashSet<&BackendAddr> = backends.iter().map(Backend::addr).collect();
        let mut gone = Vec::new();
        self.records.lock().retain(|addr, _| {
            let stays = keep.contains(addr);
            if !stays {
                gone.push(addr.clone());
            }
            stays
        });
        for addr in &gone {
            self.check.forget(addr);
        }
    }

    /// Forgets one backend (used by the scheduler when it leaves the set).
    pub(crate) fn forget(&self, addr: &BackendAddr) {
        self.records.lock().remove(addr);
        self.check.forget(addr);
    }

    /// The tracker of one backend (a copy), if it has been checked.
    pub fn tracker(&self, addr: &BackendAddr) -> Option<HealthTracker> {
        self.records.lock().get(addr).map(|r| r.tracker.clone())
    }

    /// What the monitor knows about every backend it has checked, sorted by address.
    ///
    /// Takes the monitor's lock once, for a copy of every record: meant for status pages
    /// and metrics scrapes, not for the request path.
    pub fn snapshot(&self) -> Vec<BackendHealth> {
        let mut out: Vec<BackendHealth> = self
            .records
            .lock()
            .iter()
            .map(|(addr, r)| {
                let streak = r.tracker.streak();
                let (total_passes, total_failures) = r.tracker.totals();
                BackendHealth {
                    addr: addr.clone(),
                    name: r.backend.name().to_owned(),
                    health: r.tracker.health(),
                    consecutive_passes: u32::try_from(streak.max(0)).unwrap_or(u32::MAX),
                    consecutive_failures: u32::try_from((-streak).max(0)).unwrap_or(u32::MAX),
                    last_check: r.last_check,
                    last_latency: r.last_latency,
                    last_failure: r.last_failure.clone(),
                    total_passes,
                    total_failures,
                }
            })
            .collect();
        out.sort_by(|a, b| a.addr.cmp(&b.addr));
        out
    }

    /// How punctually [`run`](Self::run) has started checks so far.
    pub fn schedule_stats(&self) -> ScheduleStats {
        *self.stats.lock()
    }
}
