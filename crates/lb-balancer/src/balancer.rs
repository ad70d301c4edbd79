//! The `LoadBalancer` type.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use lb_core::{monotonic_ms, Backend, BackendAddr, BackendSet, BackendState, Health, InFlight};
use lb_discovery::{Discovered, DiscoveryError, ServiceDiscovery, Static};
use lb_health::{HealthCheck, HealthMonitor, Outcome, PassiveConfig, PassiveHealth, Schedule};
use lb_selection::BackendSelection;
use parking_lot::Mutex;
use tokio::time::MissedTickBehavior;

use crate::SlowStart;

/// The current backends and the selector built from them; replaced whole, never mutated.
struct Snapshot<S> {
    backends: BackendSet,
    selector: S,
}

/// What one discovery update changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetChange {
    /// Backends that were not there before.
    pub added: Vec<Backend>,
    /// Backends that are gone.
    pub removed: Vec<Backend>,
    /// Backends whose name or weight changed (their state is kept).
    pub changed: Vec<Backend>,
    /// Backends whose enabled flag flipped.
    pub toggled: Vec<Backend>,
}

impl SetChange {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && self.toggled.is_empty()
    }
}

/// Discovery, health checking and selection for one upstream.
///
/// See the [crate documentation](crate) for the data flow and an example.
pub struct LoadBalancer<S: BackendSelection> {
    current: ArcSwap<Snapshot<S>>,
    config: S::Config,
    discovery: Arc<dyn ServiceDiscovery>,
    health: Option<HealthMonitor>,
    schedule: Option<Schedule>,
    passive: Option<Arc<PassiveHealth>>,
    initial_health: Health,
    slow_start: Option<SlowStart>,
    /// Serialises updates so two concurrent refreshes cannot interleave their merges; holds
    /// the states handed over by [`inherit_states`](Self::inherit_states) until the first
    /// set is installed.
    update_lock: Mutex<HashMap<BackendAddr, Arc<BackendState>>>,
    /// Publishes every installed backend set (health scheduling, passive health, tests).
    published: tokio::sync::watch::Sender<BackendSet>,
    /// How often [`run`](Self::run) checks health; `None` runs no checks.
    pub health_check_frequency: Option<Duration>,
    /// How often [`run`](Self::run) refreshes discovery; `None` keeps the first set.
    pub update_frequency: Option<Duration>,
}

impl<S: BackendSelection> std::fmt::Debug for LoadBalancer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadBalancer")
            .field("backends", &self.current.load().backends)
            .field("health", &self.health)
            .field("health_check_frequency", &self.health_check_frequency)
            .field("update_frequency", &self.update_frequency)
            .finish_non_exhaustive()
    }
}

impl<S: BackendSelection> LoadBalancer<S> {
    /// A balancer over a fixed list of `host:port`, `[ipv6]:port` or `unix:/path` texts,
    /// usable at once. Names are resolved here with the system resolver.
    pub fn try_from_iter<I, A>(addrs: I) -> Result<Self, lb_core::Error>
    where
        I: IntoIterator<Item = A>,
        A: AsRef<str>,
    {
        let discovery = Static::try_from_iter(addrs)?;
        let initial = discovery.get();
        let lb = Self::from_discovery(Arc::new(discovery));
        lb.set_discovered(Discovered::new(initial));
        Ok(lb)
    }

    /// A balancer fed by `discovery`, empty until the first [`update`](Self::update).
    pub fn from_discovery(discovery: Arc<dyn ServiceDiscovery>) -> Self {
        Self::with_config(discovery, S::Config::default())
    }

    /// Like [`from_discovery`](Self::from_discovery), with options for the selector.
    pub fn with_config(discovery: Arc<dyn ServiceDiscovery>, config: S::Config) -> Self {
        let selector = S::build(&BackendSet::new(), &config);
        Self {
            current: ArcSwap::from_pointee(Snapshot {
                backends: BackendSet::new(),
                selector,
            }),
            config,
            discovery,
            health: None,
            schedule: None,
            passive: None,
            initial_health: Health::Unknown,
            slow_start: None,
            update_lock: Mutex::new(HashMap::new()),
            published: tokio::sync::watch::Sender::new(BackendSet::new()),
            health_check_frequency: None,
            update_frequency: None,
        }
    }

    /// Checks backends with `check` (every [`health_check_frequency`](Self::health_check_frequency),
    /// or on the [`set_health_schedule`](Self::set_health_schedule) schedule, when
    /// [`run`](Self::run) drives it). The monitor starts new backends in the
    /// [initial health](Self::set_initial_health); backends already installed keep the
    /// verdict they have. Its transitions go to the observers given to
    /// [`HealthMonitor::subscribe`] (through [`health_monitor`](Self::health_monitor)).
    pub fn set_health_check(&mut self, check: impl HealthCheck) {
        let monitor = HealthMonitor::new(Arc::new(check)).with_initial_health(self.initial_health);
        for b in self.current.load().backends.iter() {
            monitor.carry_over(b);
        }
        self.health = Some(match &self.passive {
            Some(p) => monitor.with_passive(p.clone()),
            None => monitor,
        });
    }

    /// Schedules health checks per backend: interval, jitter, interval while unhealthy,
    /// concurrency bound (see [`Schedule`]). Without it, checks run every
    /// [`health_check_frequency`](Self::health_check_frequency) with the default jitter.
    pub fn set_health_schedule(&mut self, schedule: Schedule) {
        self.schedule = Some(schedule);
    }

    /// Ejects backends on the outcomes of real requests reported with
    /// [`report`](Self::report) (nginx `max_fails`/`fail_timeout`, Envoy outlier detection);
    /// see [`PassiveConfig`].
    pub fn set_passive_health(&mut self, config: PassiveConfig) {
        let passive = Arc::new(PassiveHealth::new(config));
        passive.set_backends(&self.backends());
        self.health = self.health.take().map(|m| m.with_passive(passive.clone()));
        self.passive = Some(passive);
    }

    /// Records the outcome of one request to `backend` for passive health; a few relaxed
    /// atomic operations, nothing when passive health is off.
    #[inline]
    pub fn report(&self, backend: &Backend, outcome: Outcome) {
        if let Some(p) = &self.passive {
            p.report(backend, outcome);
        }
    }

    /// Passive health, when configured (ejection state, for status pages).
    pub fn passive_health(&self) -> Option<&Arc<PassiveHealth>> {
        self.passive.as_ref()
    }

    /// The health backends start in when discovery first reports them. The default,
    /// [`Health::Unknown`], takes traffic at once and lets the first check decide.
    /// Backends already known keep their state.
    pub fn set_initial_health(&mut self, initial: Health) {
        self.initial_health = initial;
        self.health = self.health.take().map(|m| m.with_initial_health(initial));
    }

    /// Ramps up the share of backends that recover or are added, over `slow_start`'s window;
    /// see [`SlowStart`].
    pub fn set_slow_start(&mut self, slow_start: SlowStart) {
        self.slow_start = Some(slow_start);
    }

    /// Hands over the runtime state of `previous` (the backends of the balancer this one
    /// replaces, for instance on a configuration reload): a backend of the first set this
    /// balancer installs that has the address of one in `previous` shares its state, so its
    /// health verdict, in-flight count, operator holds, slow-start ramp and passive
    /// ejection carry over instead of starting from the initial health.
    pub fn inherit_states(&mut self, previous: &BackendSet) {
        let map = self.update_lock.get_mut();
        map.clear();
        map.extend(
            previous
                .iter()
                .map(|b| (b.addr().clone(), b.shared_state().clone())),
        );
    }

    /// Picks a usable backend for a request with hash key `key`, trying at most
    /// `max_iterations` candidates. `None` when none of them is usable.
    #[inline]
    pub fn select(&self, key: &[u8], max_iterations: usize) -> Option<InFlight> {
        self.select_with(key, max_iterations, |_| true)
    }

    /// Like [`select`](Self::select), also skipping candidates that `accept` refuses (for
    /// instance the backends a retry already tried).
    #[inline]
    pub fn select_with(
        &self,
        key: &[u8],
        max_iterations: usize,
        mut accept: impl FnMut(&Backend) -> bool,
    ) -> Option<InFlight> {
        let snapshot = self.current.load();
        // A warming primary thinned away by slow start, taken if no other primary is usable,
        // and the first usable backup, taken only if no primary is.
        let mut thinned: Option<&Backend> = None;
        let mut backup: Option<&Backend> = None;
        for b in snapshot.selector.iter(key).take(max_iterations) {
            let state = b.state();
            if !state.is_usable() || !accept(b) {
                continue;
            }
            if state.is_backup() {
                backup.get_or_insert(b);
                continue;
            }
            if let (Some(slow), Some(since)) = (&self.slow_start, state.warming_since()) {
                let elapsed = Duration::from_millis(monotonic_ms().saturating_sub(since));
                let factor = slow.factor(elapsed);
                if factor >= 1.0 {
                    state.stop_warming();
                } else if fastrand::f64() >= factor {
                    thinned.get_or_insert(b);
                    continue;
                }
            }
            return Some(b.begin_request());
        }
        thinned.or(backup).map(Backend::begin_request)
    }

    /// The current backend set.
    pub fn backends(&self) -> BackendSet {
        self.current.load().backends.clone()
    }

    /// Follows the backend set: the receiver sees every set installed from now on (and the
    /// current one at once), so other tasks can track membership without polling.
    pub fn watch_backends(&self) -> tokio::sync::watch::Receiver<BackendSet> {
        self.published.subscribe()
    }

    /// The health monitor, when a check is set (trackers, for status pages and tests).
    pub fn health_monitor(&self) -> Option<&HealthMonitor> {
        self.health.as_ref()
    }

    /// Asks discovery for the current backends and swaps in a new selector if they changed.
    /// On error nothing changes: the last good set stays in service.
    pub async fn update(&self) -> Result<SetChange, DiscoveryError> {
        let found = self.discovery.discover().await?;
        Ok(self.set_discovered(found))
    }

    /// Installs `found` as the backend set now, keeping the state of backends that remain;
    /// for sources that push changes, and for sets known up front.
    pub fn set_discovered(&self, found: Discovered) -> SetChange {
        let mut inherited = self.update_lock.lock();
        let current = self.current.load();
        let old: HashMap<&BackendAddr, &Backend> =
            current.backends.iter().map(|b| (b.addr(), b)).collect();
        let mut change = SetChange::default();
        let next: BackendSet = found
            .backends
            .iter()
            .map(|b| match old.get(b.addr()) {
                Some(prev) if *prev == b => (*prev).clone(),
                Some(prev) => {
                    let kept = b.with_state(prev.shared_state().clone());
                    change.changed.push(kept.clone());
                    kept
                }
                None => {
                    if let Some(state) = inherited.get(b.addr()) {
                        // The same server in the balancer this one replaces (reload):
                        // health, in-flight count and operator holds carry over.
                        let kept = b.with_state(state.clone());
                        if self.passive.is_none() {
                            kept.state().set_ejected(false);
                        }
                        if let Some(monitor) = &self.health {
                            // Its checks go on from the verdict the previous monitor reached.
                            monitor.carry_over(&kept);
                        }
                        change.added.push(kept.clone());
                        return kept;
                    }
                    let fresh = b.with_initial_health(self.initial_health);
                    if self.slow_start.is_some() && !current.backends.is_empty() {
                        // Added to a running upstream: ramp it up like a recovered one.
                        fresh.state().start_warming(monotonic_ms());
                    }
                    change.added.push(fresh.clone());
                    fresh
                }
            })
            .collect();
        for b in next.iter() {
            let enabled = !found.disabled.contains(b.addr());
            let backup = found.backups.contains(b.addr());
            let was_enabled = b.state().set_enabled(enabled);
            let was_backup = b.state().set_backup(backup);
            if (was_enabled != enabled || was_backup != backup) && !change.added.contains(b) {
                change.toggled.push(b.clone());
            }
        }
        let remaining: HashMap<&BackendAddr, ()> = next.iter().map(|b| (b.addr(), ())).collect();
        change.removed = current
            .backends
            .iter()
            .filter(|b| !remaining.contains_key(b.addr()))
            .cloned()
            .collect();
        inherited.clear();
        if change.added.is_empty() && change.removed.is_empty() && change.changed.is_empty() {
            return change;
        }
        let selector = S::build(&next, &self.config);
        if let Some(monitor) = &self.health {
            monitor.retain(&next);
        }
        if let Some(passive) = &self.passive {
            // Membership first, so reports about new backends count from the first request.
            passive.set_backends(&next);
        }
        self.current.store(Arc::new(Snapshot {
            backends: next.clone(),
            selector,
        }));
        self.published.send_replace(next);
        change
    }

    /// Runs one discovery update and logs its outcome; errors keep the last good set.
    pub async fn refresh(&self) {
        match self.update().await {
            Ok(change) => log_change(&change),
            Err(error) => tracing::warn!(
                error = &error as &dyn std::error::Error,
                "discovery failed; keeping the last good backend set"
            ),
        }
    }

    /// Follows discovery: the source's push stream when it has one (each change installed
    /// as it arrives), otherwise polling every [`update_frequency`](Self::update_frequency).
    /// Never returns while the source can be followed.
    async fn follow_discovery(&self) {
        if let Some(mut changes) = self.discovery.watch() {
            while let Some(item) = changes.next().await {
                match item {
                    Ok(found) => log_change(&self.set_discovered(found)),
                    // The source logs its own errors; the last good set stays in service.
                    Err(error) => tracing::debug!(
                        error = &error as &dyn std::error::Error,
                        "discovery stream error; keeping the last good backend set"
                    ),
                }
            }
            tracing::debug!("discovery stream ended; polling instead");
        }
        every(self.update_frequency, || self.refresh()).await;
    }

    /// Checks every current backend once, concurrently. Does nothing without a check.
    pub async fn run_health_check(&self) {
        if let Some(monitor) = &self.health {
            let backends = self.backends();
            monitor.check_all(&backends).await;
        }
    }

    /// Follows discovery (its push stream, or polling every
    /// [`update_frequency`](Self::update_frequency)) and checks health every
    /// [`health_check_frequency`](Self::health_check_frequency), the first time at once,
    /// until `shutdown` resolves. Returns promptly on shutdown, cancelling any
    /// check in progress.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        let discovery = self.follow_discovery();
        let health = async {
            let schedule = self.schedule.or_else(|| {
                self.health_check_frequency
                    .filter(|f| !f.is_zero())
                    .map(Schedule::new)
            });
            if let (Some(monitor), Some(schedule)) = (&self.health, schedule) {
                monitor
                    .run(self.published.subscribe(), schedule, std::future::pending())
                    .await;
            }
            std::future::pending::<()>().await;
        };
        let passive = async {
            if let Some(p) = &self.passive {
                p.run(self.published.subscribe(), std::future::pending())
                    .await;
            }
            std::future::pending::<()>().await;
        };
        tokio::select! {
            () = shutdown => {}
            _ = futures_util::future::join3(discovery, health, passive) => {}
        }
    }
}

fn log_change(change: &SetChange) {
    if change.is_empty() {
        return;
    }
    let names = |v: &[Backend]| v.iter().map(|b| b.name().to_owned()).collect::<Vec<_>>();
    tracing::info!(
        added = ?names(&change.added),
        removed = ?names(&change.removed),
        changed = ?names(&change.changed),
        toggled = ?names(&change.toggled),
        "backend set updated"
    );
}

/// Runs `job` every `period` (at once the first time; a slow run delays the next, it never
/// overlaps); never returns. With no period, waits forever.
async fn every<F, Fut>(period: Option<Duration>, mut job: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(period) = period.filter(|p| !p.is_zero()) else {
        return std::future::pending().await;
    };
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        job().await;
    }
}

#[cfg(test)]
mod tests;
