//! The shared, lock-free runtime state of one backend.
//!
//! Selection reads one atomic byte per candidate ([`BackendState::is_usable`]); the
//! control plane (health checks, discovery, admin) writes it, with the time of the last
//! health transition beside it for status pages. The in-flight counter sits
//! on its own cache line so that request accounting does not slow down those reads.

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::Backend;

const HEALTH_MASK: u8 = 0b0000_0011;
const HEALTH_UNKNOWN: u8 = 0;
const HEALTH_HEALTHY: u8 = 1;
const HEALTH_UNHEALTHY: u8 = 2;
const DISABLED: u8 = 0b0000_0100;
const EJECTED: u8 = 0b0000_1000;
const WARMING: u8 = 0b0001_0000;
const BACKUP: u8 = 0b0010_0000;
const MAINTENANCE: u8 = 0b0100_0000;
/// Flags that, when set, keep a backend out of selection whatever its health.
const OUT_OF_SERVICE: u8 = DISABLED | EJECTED | MAINTENANCE;

/// What the active health checks last concluded about a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Health {
    /// No conclusion yet. The backend is usable: traffic flows at once and the first check
    /// result settles the state (and fires the status-change hook).
    Unknown,
    /// Passed `rise` consecutive checks (or was configured to start healthy).
    Healthy,
    /// Failed `fall` consecutive checks (or was configured to start unhealthy).
    Unhealthy,
}

impl Health {
    fn from_bits(bits: u8) -> Self {
        match bits & HEALTH_MASK {
            HEALTH_HEALTHY => Self::Healthy,
            HEALTH_UNHEALTHY => Self::Unhealthy,
            _ => Self::Unknown,
        }
    }

    fn bits(self) -> u8 {
        match self {
            Self::Unknown => HEALTH_UNKNOWN,
            Self::Healthy => HEALTH_HEALTHY,
            Self::Unhealthy => HEALTH_UNHEALTHY,
        }
    }

    /// The lowercase word used in logs, configuration and the status page.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Keeps a value on its own cache line (two lines on CPUs that prefetch in pairs).
#[derive(Debug, Default)]
#[repr(align(128))]
struct CachePadded<T>(T);

/// Runtime state of one backend, shared between the selector, health checks and the proxy.
///
/// It is created once per backend and kept, behind an `Arc`, for as long as discovery keeps
/// reporting that backend, so a selector rebuild never resets health or load.
#[derive(Debug)]
pub struct BackendState {
    flags: AtomicU8,
    /// When warming started, in milliseconds of [`monotonic_ms`].
    warming_since: AtomicU64,
    /// When the health verdict last changed, in milliseconds since the Unix epoch (0: never).
    health_since: AtomicU64,
    in_flight: CachePadded<AtomicUsize>,
}

/// Milliseconds on a process-wide monotonic clock, the time base of
/// [`BackendState::warming_since`]. Only differences are meaningful: the clock starts at
/// 2^32 ms (about 49 days) when first used, so a start time can be placed in the past.
pub fn monotonic_ms() -> u64 {
    static ANCHOR: OnceLock<Instant> = OnceLock::new();
    let anchor = *ANCHOR.get_or_init(Instant::now);
    let elapsed = u64::try_from(anchor.elapsed().as_millis()).unwrap_or(u64::MAX >> 1);
    (1u64 << 32).saturating_add(elapsed)
}

impl Default for BackendState {
    fn default() -> Self {
        Self::new(Health::Unknown)
    }
}

impl BackendState {
    /// A state that starts with the given health, enabled, with nothing in flight.
    pub fn new(initial: Health) -> Self {
        Self {
            flags: AtomicU8::new(initial.bits()),
            warming_since: AtomicU64::new(0),
            health_since: AtomicU64::new(0),
            in_flight: CachePadded(AtomicUsize::new(0)),
        }
    }

    /// True when selection may pick this backend: enabled, not ejected and not unhealthy.
    #[inline]
    pub fn is_usable(&self) -> bool {
        let flags = self.flags.load(Ordering::Relaxed);
        flags & OUT_OF_SERVICE == 0 && flags & HEALTH_MASK != HEALTH_UNHEALTHY
    }

    /// The current health verdict.
    pub fn health(&self) -> Health {
        Health::from_bits(self.flags.load(Ordering::Relaxed))
    }

    /// Records a new health verdict and returns the previous one. A recovery (unhealthy to
    /// healthy) starts warming, for balancers with slow start.
    pub fn set_health(&self, health: Health) -> Health {
        let prev = Health::from_bits(self.update(|f| (f & !HEALTH_MASK) | health.bits()));
        if prev == Health::Unhealthy && health == Health::Healthy {
            self.start_warming(monotonic_ms());
        }
        prev
    }

    /// Like [`set_health`](Self::set_health), for a verdict reached at `at` (wall clock),
    /// which [`health_since`](Self::health_since) reports from now on. The health
    /// monitor publishes its transitions this way.
    pub fn set_health_at(&self, health: Health, at: SystemTime) -> Health {
        let ms = at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.health_since.store(ms.max(1), Ordering::Relaxed);
        self.set_health(health)
    }

    /// When the verdict last changed through [`set_health_at`](Self::set_health_at)
    /// (to the millisecond), for status pages; `None` if it never did.
    pub fn health_since(&self) -> Option<SystemTime> {
        match self.health_since.load(Ordering::Relaxed) {
            0 => None,
            ms => UNIX_EPOCH.checked_add(Duration::from_millis(ms)),
        }
    }

    /// Marks the backend as warming up since `since_ms` (on the [`monotonic_ms`] clock):
    /// balancers with slow start ramp its share of new requests up over their window.
    pub fn start_warming(&self, since_ms: u64) {
        self.warming_since.store(since_ms, Ordering::Relaxed);
        self.update(|f| f | WARMING);
    }

    /// Ends warming (the slow-start window is over).
    pub fn stop_warming(&self) {
        self.update(|f| f & !WARMING);
    }

    /// When warming started, if the backend is warming.
    #[inline]
    pub fn warming_since(&self) -> Option<u64> {
        (self.flags.load(Ordering::Relaxed) & WARMING != 0)
            .then(|| self.warming_since.load(Ordering::Relaxed))
    }

    /// How long the backend has been warming, if it is.
    pub fn warming_for(&self) -> Option<Duration> {
        self.warming_since()
            .map(|since| Duration::from_millis(monotonic_ms().saturating_sub(since)))
    }

    /// False when discovery or an operator has disabled the backend.
    pub fn is_enabled(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & DISABLED == 0
    }

    /// Enables or disables the backend for selection; returns the previous setting.
    pub fn set_enabled(&self, enabled: bool) -> bool {
        let prev = self.update(|f| if enabled { f & !DISABLED } else { f | DISABLED });
        prev & DISABLED == 0
    }

    /// True while an operator keeps the backend out of selection (HAProxy's `MAINT`: the
    /// admin API's disable and drain). Separate from [`is_enabled`](Self::is_enabled),
    /// which discovery owns and rewrites on every update.
    pub fn in_maintenance(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & MAINTENANCE != 0
    }

    /// Puts the backend in maintenance (no new requests; in-flight ones go on) or takes it
    /// out; returns the previous setting.
    pub fn set_maintenance(&self, on: bool) -> bool {
        let prev = self.update(|f| {
            if on {
                f | MAINTENANCE
            } else {
                f & !MAINTENANCE
            }
        });
        prev & MAINTENANCE != 0
    }

    /// True while passive health (outlier detection) keeps the backend out of selection.
    pub fn is_ejected(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & EJECTED != 0
    }

    /// Ejects the backend from selection (passive health) or lets it back; returns the
    /// previous setting. Independent of the active-check verdict and of the enabled flag.
    pub fn set_ejected(&self, ejected: bool) -> bool {
        let prev = self.update(|f| if ejected { f | EJECTED } else { f & !EJECTED });
        prev & EJECTED != 0
    }

    /// True for a backup backend: selected only when no primary backend is usable (nginx
    /// `backup`, DNS SRV records of a higher priority number).
    #[inline]
    pub fn is_backup(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & BACKUP != 0
    }

    /// Marks the backend as a backup or a primary; returns the previous setting.
    pub fn set_backup(&self, backup: bool) -> bool {
        let prev = self.update(|f| if backup { f | BACKUP } else { f & !BACKUP });
        prev & BACKUP != 0
    }

    /// Requests currently counted against this backend by live [`InFlight`] guards.
    #[inline]
    pub fn in_flight(&self) -> usize {
        self.in_flight.0.load(Ordering::Relaxed)
    }

    fn update(&self, f: impl Fn(u8) -> u8) -> u8 {
        // `fetch_update` with a closure that always returns `Some` cannot fail.
        match self
            .flags
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| Some(f(v)))
        {
            Ok(prev) | Err(prev) => prev,
        }
    }
}

/// Counts one request against a backend for as long as it lives.
///
/// Obtained from [`Backend::begin_request`] (or from a load balancer's `select`). Dropping it,
/// on success, error or cancellation alike, gives the count back, so least-connections
/// and power-of-two-choices always see true loads. It dereferences to the [`Backend`].
#[derive(Debug)]
#[must_use = "the request is counted only while the guard lives"]
pub struct InFlight {
    backend: Backend,
}

impl InFlight {
    pub(crate) fn new(backend: Backend) -> Self {
        backend.state().in_flight.0.fetch_add(1, Ordering::Relaxed);
        Self { backend }
    }

    /// The backend the request is counted against.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }
}

impl Deref for InFlight {
    type Target = Backend;

    fn deref(&self) -> &Backend {
        &self.backend
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.backend
            .state()
            .in_flight
            .0
            .fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_follows_health_and_enabled() {
        let s = BackendState::new(Health::Unknown);
        assert!(s.is_usable(), "unknown is usable until the first verdict");
        assert_eq!(s.set_health(Health::Unhealthy), Health::Unknown);
        assert!(!s.is_usable());
        s.set_health(Health::Healthy);
        assert!(s.is_usable());
        assert!(s.set_enabled(false));
        assert!(!s.is_usable());
        assert_eq!(
            s.health(),
            Health::Healthy,
            "disabling keeps the health verdict"
        );
        assert!(!s.set_enabled(true));
        assert!(s.is_usable());
        assert!(!s.set_ejected(true));
        assert!(!s.is_usable() && s.is_ejected() && s.is_enabled());
        assert_eq!(
            s.health(),
            Health::Healthy,
            "ejection keeps the health verdict"
        );
        assert!(s.set_ejected(false));
        assert!(s.is_usable());
    }

    #[test]
    fn health_since_is_the_time_of_the_last_published_transition() {
        let s = BackendState::new(Health::Unknown);
        assert_eq!(s.health_since(), None);
        s.set_health(Health::Healthy);
        assert_eq!(s.health_since(), None, "only set_health_at stamps it");
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(s.set_health_at(Health::Unhealthy, at), Health::Healthy);
        assert_eq!(s.health(), Health::Unhealthy);
        assert_eq!(s.health_since(), Some(at));
    }

    #[test]
    fn maintenance_is_independent_of_the_enabled_flag() {
        let s = BackendState::new(Health::Healthy);
        assert!(!s.set_maintenance(true));
        assert!(!s.is_usable() && s.in_maintenance());
        // Discovery rewriting the enabled flag does not end an operator's maintenance.
        s.set_enabled(true);
        assert!(!s.is_usable());
        assert!(s.set_maintenance(false));
        assert!(s.is_usable());
    }

    #[test]
    fn backup_is_a_role_not_a_verdict() {
        let s = BackendState::new(Health::Healthy);
        assert!(!s.set_backup(true));
        assert!(s.is_backup() && s.is_usable());
        assert!(s.set_backup(false));
        assert!(!s.is_backup());
    }

    #[test]
    fn recovery_starts_warming() {
        let s = BackendState::new(Health::Unknown);
        s.set_health(Health::Healthy);
        assert_eq!(s.warming_since(), None, "a first verdict is not a recovery");
        s.set_health(Health::Unhealthy);
        s.set_health(Health::Healthy);
        assert!(s.warming_since().is_some());
        assert!(s.is_usable(), "warming backends are usable");
        s.stop_warming();
        assert_eq!(s.warming_since(), None);
    }
}
