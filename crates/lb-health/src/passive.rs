//! Passive health (outlier detection): ejecting backends on the outcomes of real requests.
//!
//! The proxy calls [`PassiveHealth::report`] once per request. That is the hot path, so it
//! costs a lock-free snapshot load, one hash lookup and a few relaxed atomic operations on
//! the backend's own counters; a success that follows a success writes nothing. A mutex is
//! taken only to eject or return a backend, which is rare by nature, and to enforce the
//! percentage cap exactly. The detectors and their semantics are described on
//! [`PassiveConfig`]. An ejection sets the backend's
//! [`BackendState::set_ejected`](lb_core::BackendState::set_ejected) bit, which selection
//! reads with the health verdict in one atomic load; it does not touch the active
//! checks' verdict, so the two combine: a backend serves only when both agree.
//!
//! Ejections end when their time is over ([`PassiveHealth::tick`], driven by
//! [`PassiveHealth::run`] in the `passive_run` module) or, if configured, when an active
//! check passes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use lb_core::{Backend, BackendAddr, BackendSet};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::{Outcome, PassiveConfig};

/// The hot-path counters of one backend.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) consecutive_5xx: AtomicU32,
    pub(crate) consecutive_gateway: AtomicU32,
    /// Start of the nginx window, in nanoseconds since `PassiveHealth::epoch`, plus one;
    /// 0 when no window is open.
    window_start: AtomicU64,
    pub(crate) window_fails: AtomicU32,
    pub(crate) ejected: AtomicBool,
}

impl Counters {
    fn reset(&self) {
        self.consecutive_5xx.store(0, Relaxed);
        self.consecutive_gateway.store(0, Relaxed);
        self.window_start.store(0, Relaxed);
        self.window_fails.store(0, Relaxed);
    }
}

/// The slow-path history of one backend (under the control lock).
#[derive(Default)]
pub(crate) struct History {
    pub(crate) ejected_until: Option<Instant>,
    pub(crate) multiplier: u32,
    pub(crate) total: u64,
    returned_at: Option<Instant>,
}

#[derive(Default)]
pub(crate) struct Control {
    pub(crate) history: HashMap<BackendAddr, History>,
    pub(crate) ejected: HashMap<BackendAddr, Backend>,
}

/// Why a backend is being ejected.
#[derive(Clone, Copy, Debug)]
enum Trigger {
    Nginx,
    Envoy,
}

/// Outlier detection fed by the proxy; see the module docs and [`PassiveConfig`].
///
/// ```
/// use std::num::NonZeroU32;
/// use std::time::Duration;
/// use lb_core::{Backend, BackendSet};
/// use lb_health::{Outcome, PassiveConfig, PassiveHealth};
///
/// let mut config = PassiveConfig::nginx(NonZeroU32::new(2).unwrap(), Duration::from_secs(10));
/// config.max_ejection_percent = 50;
/// let passive = PassiveHealth::new(config);
/// let set: BackendSet = ["127.0.0.1:8001", "127.0.0.1:8002"]
///     .into_iter()
///     .map(Backend::parse)
///     .collect::<Result<_, _>>()?;
/// passive.set_backends(&set);
/// let b = &set[0];
/// passive.report(b, Outcome::ConnectFailure);
/// assert!(b.state().is_usable());
/// passive.report(b, Outcome::Status(502));
/// assert!(b.state().is_ejected() && !b.state().is_usable());
/// # Ok::<(), lb_core::Error>(())
/// ```
pub struct PassiveHealth {
    config: PassiveConfig,
    epoch: Instant,
    pub(crate) backends: ArcSwap<HashMap<BackendAddr, (Backend, Arc<Counters>)>>,
    pub(crate) control: Mutex<Control>,
    pub(crate) changed: Notify,
}

impl std::fmt::Debug for PassiveHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassiveHealth")
            .field("config", &self.config)
            .field("backends", &self.backends.load().len())
            .field("ejected", &self.control.lock().ejected.len())
            .finish()
    }
}

impl PassiveHealth {
    /// Passive health with `config`, watching no backend until [`set_backends`](Self::set_backends).
    pub fn new(config: PassiveConfig) -> Self {
        Self {
            config,
            epoch: Instant::now(),
            backends: ArcSwap::from_pointee(HashMap::new()),
            control: Mutex::new(Control::default()),
            changed: Notify::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &PassiveConfig {
        &self.config
    }

    /// Sets the upstream's backends: the ones reports are accepted for, and the total the
    /// ejection percentage is taken of. Backends that stay keep their counters and history;
    /// removed ones lose them and, if ejected, get their ejected bit cleared.
    pub fn set_backends(&self, set: &BackendSet) {
        let old = self.backends.load_full();
        let map: HashMap<_, _> = set
            .iter()
            .map(|b| {
                let counters = old
                    .get(b.addr())
                    .map_or_else(Arc::default, |(_, c)| c.clone());
                (b.addr().clone(), (b.clone(), counters))
            })
            .collect();
        let mut control = self.control.lock();
        control.history.retain(|addr, _| map.contains_key(addr));
        control.ejected.retain(|addr, backend| {
            let stays = map.contains_key(addr);
            if !stays {
                backend.state().set_ejected(false);
            }
            stays
        });
        // A backend that arrives already ejected (its state carried over from the balancer
        // this one replaces, on a reload) serves one base ejection time from now, so that
        // `tick` lets it back; its previous deadline is not known here.
        let now = Instant::now();
        for (addr, (backend, counters)) in &map {
            if backend.state().is_ejected() && !control.ejected.contains_key(addr) {
                let length = self.config.adopted_ejection_time();
                control
                    .history
                    .entry(addr.clone())
                    .or_default()
                    .ejected_until = Some(now + length.min(Duration::from_secs(365 * 24 * 3600)));
                counters.ejected.store(true, Relaxed);
                control.ejected.insert(addr.clone(), backend.clone());
            }
        }
        self.backends.store(Arc::new(map));
        drop(control);
        self.changed.notify_one();
    }

    /// Records the outcome of one request to `backend`; may eject it. Reports for backends
    /// not in the set, or already ejected (late answers), are ignored.
    pub fn report(&self, backend: &Backend, outcome: Outcome) {
        let map = self.backends.load();
        let Some((_, c)) = map.get(backend.addr()) else {
            return;
        };
        if c.ejected.load(Relaxed) {
            return;
        }
        let cfg = &self.config;
        let mut trigger = None;
        let five = bump(&c.consecutive_5xx, outcome.is_5xx());
        let gateway = bump(&c.consecutive_gateway, outcome.is_gateway_failure());
        if cfg.consecutive_5xx.is_some_and(|n| five >= n.get())
            || cfg
                .consecutive_gateway_failure
                .is_some_and(|n| gateway >= n.get())
        {
            trigger = Some(Trigger::Envoy);
        }
        if let Some(max) = cfg.max_fails {
            if outcome.is_failed_attempt(&cfg.fail_statuses) {
                let now = self.nanos(Instant::now());
                let start = c.window_start.load(Relaxed);
                let window = u64::try_from(cfg.fail_timeout.as_nanos()).unwrap_or(u64::MAX);
                let fails = if start == 0 || now.saturating_sub(start) >= window {
                    c.window_start.store(now, Relaxed);
                    c.window_fails.store(1, Relaxed);
                    1
                } else {
                    c.window_fails.fetch_add(1, Relaxed).saturating_add(1)
                };
                if fails >= max.get() {
                    // nginx's ejection is fixed; Envoy's grows. When both fire, the
                    // growing one decides (it is at least as long after the first time).
                    trigger = trigger.or(Some(Trigger::Nginx));
                }
            }
        }
        if let Some(trigger) = trigger {
            self.eject(backend, c, trigger);
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    fn eject(&self, backend: &Backend, c: &Counters, trigger: Trigger) {
        let total = self.backends.load().len();
        let mut control = self.control.lock();
        if c.ejected.load(Relaxed) {
            return;
        }
        // Counters start again whether or not the cap lets the ejection happen, so that a
        // capped backend does not take this lock on every failure.
        c.reset();
        let allowed = self.config.max_ejected(total);
        if control.ejected.len() >= allowed {
            tracing::debug!(backend = %backend, allowed, "ejection skipped: max_ejection_percent reached");
            return;
        }
        let now = Instant::now();
        let cfg = &self.config;
        let history = control.history.entry(backend.addr().clone()).or_default();
        let length = match trigger {
            Trigger::Nginx => cfg.fail_timeout,
            Trigger::Envoy => {
                // Envoy's multiplier decays while the host stays in: one step per base
                // ejection time spent un-ejected.
                let decay = match (history.returned_at, cfg.base_ejection_time.as_nanos()) {
                    (Some(t), base) if base > 0 => {
                        u32::try_from(now.saturating_duration_since(t).as_nanos() / base)
                            .unwrap_or(u32::MAX)
                    }
                    _ => 0,
                };
                history.multiplier = history.multiplier.saturating_sub(decay);
                cfg.base_ejection_time
                    .saturating_mul(history.multiplier.saturating_add(1))
                    .min(cfg.max_ejection_time)
            }
        };
        history.multiplier = history.multiplier.saturating_add(1);
        history.total += 1;
        // Clamped so that an absurd setting cannot overflow the clock.
        let until = now + length.min(Duration::from_secs(365 * 24 * 3600));
        history.ejected_until = Some(until);
        let times = history.multiplier;
        control
            .ejected
            .insert(backend.addr().clone(), backend.clone());
        c.ejected.store(true, Relaxed);
        backend.state().set_ejected(true);
        drop(control);
        tracing::warn!(backend = %backend, ?length, times, detector = ?trigger, "backend ejected");
        self.changed.notify_one();
    }

    /// Returns every backend whose ejection is over at `now`; returns how many came back.
    pub fn tick(&self, now: Instant) -> usize {
        let mut control = self.control.lock();
        let Control { history, ejected } = &mut *control;
        let mut back = Vec::new();
        ejected.retain(|addr, backend| {
            let over = history
                .get(addr)
                .and_then(|h| h.ejected_until)
                .is_none_or(|until| until <= now);
            if over {
                back.push(backend.clone());
            }
            !over
        });
        for backend in &back {
            self.returned(&mut control, backend, now, "ejection time over");
        }
        back.len()
    }

    /// Tells passive health that an active check of `backend` passed: with
    /// [`PassiveConfig::return_on_active_pass`] an ejected backend returns at once.
    /// [`HealthMonitor`](crate::HealthMonitor) calls it when linked with
    /// [`with_passive`](crate::HealthMonitor::with_passive).
    pub fn active_passed(&self, backend: &Backend) {
        if !self.config.return_on_active_pass {
            return;
        }
        let map = self.backends.load();
        let Some((_, c)) = map.get(backend.addr()) else {
            return;
        };
        if !c.ejected.load(Relaxed) {
            return;
        }
        let mut control = self.control.lock();
        if let Some(ejected) = control.ejected.remove(backend.addr()) {
            self.returned(
                &mut control,
                &ejected,
                Instant::now(),
                "active check passed",
            );
        }
    }

    /// Un-ejects `backend` (already removed from `control.ejected`).
    fn returned(&self, control: &mut Control, backend: &Backend, now: Instant, why: &'static str) {
        if let Some(h) = control.history.get_mut(backend.addr()) {
            h.ejected_until = None;
            h.returned_at = Some(now);
        }
        if let Some((_, c)) = self.backends.load().get(backend.addr()) {
            c.reset();
            c.ejected.store(false, Relaxed);
        }
        backend.state().set_ejected(false);
        tracing::info!(backend = %backend, why, "backend returned from ejection");
    }
}

/// Adds one to a consecutive counter on a failure, or clears it (without writing when it
/// is already clear); returns the new count.
#[inline]
fn bump(counter: &AtomicU32, failed: bool) -> u32 {
    if failed {
        counter.fetch_add(1, Relaxed).saturating_add(1)
    } else {
        if counter.load(Relaxed) != 0 {
            counter.store(0, Relaxed);
        }
        0
    }
}
