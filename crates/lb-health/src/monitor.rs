//! Runs a check against backends, turns results into transitions, and keeps what the
//! status page shows.
//!
//! The monitor owns one record per backend address: the rise/fall [`HealthTracker`] and
//! the observability fields (last check time, latency, failure reason). A check's result
//! is recorded under a short lock that is never held across `.await`; the verdict is then
//! published to the backend's shared [`BackendState`](lb_core::BackendState), where
//! selection reads it with one atomic load, and every subscribed
//! [`HealthObserver`] is told once per transition.
//! Checks can be driven one round at a time ([`HealthMonitor::check_all`]) or by the
//! per-backend scheduler ([`HealthMonitor::run`], in the `schedule` module).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::stream::{FuturesUnordered, StreamExt};
use lb_core::{Backend, BackendAddr, Health};
use parking_lot::Mutex;

use crate::schedule::ScheduleStats;
use crate::{
    CheckFailure, HealthCheck, HealthObserver, HealthTracker, PassiveHealth, StatusChange,
};

/// What the monitor knows about one backend.
struct Record {
    backend: Backend,
    tracker: HealthTracker,
    last_check: Option<SystemTime>,
    last_latency: Option<Duration>,
    last_failure: Option<String>,
}

impl Record {
    /// Its row of the status page.
    fn health(&self, addr: &BackendAddr) -> BackendHealth {
        let streak = self.tracker.streak();
        let (total_passes, total_failures) = self.tracker.totals();
        BackendHealth {
            addr: addr.clone(),
            name: self.backend.name().to_owned(),
            health: self.tracker.health(),
            consecutive_passes: u32::try_from(streak.max(0)).unwrap_or(u32::MAX),
            consecutive_failures: u32::try_from((-streak).max(0)).unwrap_or(u32::MAX),
            last_check: self.last_check,
            last_latency: self.last_latency,
            last_failure: self.last_failure.clone(),
            total_passes,
            total_failures,
            since: self.backend.state().health_since(),
        }
    }
}

/// The health of one backend as the monitor last saw it; see [`HealthMonitor::snapshot`]
/// and [`HealthMonitor::backend_health`].
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
    /// When its verdict last changed (wall clock), by this monitor or one whose backends
    /// it took over; `None` when it never did.
    pub since: Option<SystemTime>,
}

/// Checks backends, tracks rise/fall per backend and publishes verdicts.
///
/// Trackers are keyed by backend address and kept across calls, so a backend that stays in
/// the set keeps its streak and verdict when the set changes; [`HealthMonitor::retain`]
/// (or the scheduler, on a set change) forgets the ones that left. A new backend's tracker
/// starts from the *initial state* given to [`with_initial_health`](Self::with_initial_health)
/// (`Unknown` by default: usable, settled by the first result; `Healthy`: needs `fall`
/// failures; `Unhealthy`: needs `rise` passes before traffic), or, for a backend handed
/// over by a monitor this one replaces ([`carry_over`](Self::carry_over)), from the verdict
/// that monitor reached. Start the backends' shared state in the same initial health
/// (`Backend::with_initial_health`; the balancer does it), so selection agrees before the
/// first check.
///
/// Transitions go to the observers given to [`subscribe`](Self::subscribe).
pub struct HealthMonitor {
    pub(crate) check: Arc<dyn HealthCheck>,
    initial: Health,
    records: Mutex<HashMap<BackendAddr, Record>>,
    /// Backends not checked yet whose verdict was reached by a previous monitor.
    carried: Mutex<HashSet<BackendAddr>>,
    /// Told about every transition; replaced whole by `subscribe`, so a transition takes a
    /// reference-count increment, not a copy.
    observers: Mutex<Arc<Vec<Arc<dyn HealthObserver>>>>,
    passive: Option<Arc<PassiveHealth>>,
    pub(crate) stats: Mutex<ScheduleStats>,
}

impl std::fmt::Debug for HealthMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthMonitor")
            .field("params", &self.check.params())
            .field("initial", &self.initial)
            .field("backends", &self.records.lock().len())
            .field("observers", &self.observers.lock().len())
            .field("passive", &self.passive.is_some())
            .finish()
    }
}

impl HealthMonitor {
    /// A monitor running `check`; new backends start in [`Health::Unknown`].
    pub fn new(check: Arc<dyn HealthCheck>) -> Self {
        Self {
            check,
            initial: Health::Unknown,
            records: Mutex::new(HashMap::new()),
            carried: Mutex::new(HashSet::new()),
            observers: Mutex::new(Arc::new(Vec::new())),
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

    /// Starts the trackers of backends it has not checked yet in `initial` (the *initial
    /// state*; see the type's documentation). Give the backends the same initial health.
    #[must_use]
    pub fn with_initial_health(mut self, initial: Health) -> Self {
        self.initial = initial;
        self
    }

    /// The health the trackers of new backends start in.
    pub fn initial_health(&self) -> Health {
        self.initial
    }

    /// Says that `backend`'s verdict was reached by a monitor this one replaces (its shared
    /// state was handed over, as on a configuration reload): its tracker starts from the
    /// verdict the state has at its first check here, not from the initial health.
    pub fn carry_over(&self, backend: &Backend) {
        if !self.records.lock().contains_key(backend.addr()) {
            self.carried.lock().insert(backend.addr().clone());
        }
    }

    /// Calls `observer` once per transition of every backend from now on, after the new
    /// verdict is visible to selection (after the observers subscribed before it).
    pub fn subscribe(&self, observer: Arc<dyn HealthObserver>) {
        let mut observers = self.observers.lock();
        let mut next = Vec::clone(&observers);
        next.push(observer);
        *observers = Arc::new(next);
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
                    tracker: HealthTracker::new(self.start(backend), params.rise, params.fall),
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
        let at = SystemTime::now();
        backend.state().set_health_at(new, at);
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
        let change = StatusChange {
            backend,
            old,
            new,
            reason,
            streak: u32::try_from(streak).unwrap_or(u32::MAX),
            at,
        };
        let observers = self.observers.lock().clone();
        for observer in observers.iter() {
            observer.status_changed(&change);
        }
        (Some(new), verdict)
    }

    /// The health a new tracker for `backend` starts in.
    fn start(&self, backend: &Backend) -> Health {
        if self.carried.lock().remove(backend.addr()) {
            backend.state().health()
        } else {
            self.initial
        }
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
        self.carried.lock().retain(|addr| keep.contains(addr));
        for addr in &gone {
            self.check.forget(addr);
        }
    }

    /// Forgets one backend (used by the scheduler when it leaves the set).
    pub(crate) fn forget(&self, addr: &BackendAddr) {
        self.records.lock().remove(addr);
        self.carried.lock().remove(addr);
        self.check.forget(addr);
    }

    /// The tracker of one backend (a copy), if it has been checked.
    pub fn tracker(&self, addr: &BackendAddr) -> Option<HealthTracker> {
        self.records.lock().get(addr).map(|r| r.tracker.clone())
    }

    /// What the monitor knows about every backend it has checked, sorted by address.
    ///
    /// Takes the monitor's lock once, for a copy of every record: meant for status pages
    /// and metrics scrapes, not for the request path. For one backend,
    /// [`backend_health`](Self::backend_health) copies only its record.
    pub fn snapshot(&self) -> Vec<BackendHealth> {
        let mut out: Vec<BackendHealth> = self
            .records
            .lock()
            .iter()
            .map(|(addr, r)| r.health(addr))
            .collect();
        out.sort_by(|a, b| a.addr.cmp(&b.addr));
        out
    }

    /// What the monitor knows about the backend at `addr`, if it has checked it: one
    /// lookup under the monitor's lock and a copy of that record only.
    pub fn backend_health(&self, addr: &BackendAddr) -> Option<BackendHealth> {
        self.records.lock().get(addr).map(|r| r.health(addr))
    }

    /// How punctually [`run`](Self::run) has started checks so far.
    pub fn schedule_stats(&self) -> ScheduleStats {
        *self.stats.lock()
    }
}
