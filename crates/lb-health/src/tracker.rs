//! The rise/fall state machine of one backend.
//!
//! The semantics are those of nginx's check module (`rise`, `fall`) and HAProxy (`rise`,
//! `fall` on `server ... check`): a verdict changes only after a run of equal results, so
//! one lost packet does not pull a backend and one lucky answer does not restore it.
//! The initial state is not the tracker's choice: the monitor gives it (configured per
//! upstream; `Unknown` by default).

use std::num::NonZeroU32;

use lb_core::Health;

/// Turns a stream of check results into health transitions.
///
/// - The initial state is the one given to [`HealthTracker::new`]; the monitor passes its
///   initial health ([`HealthMonitor::with_initial_health`](crate::HealthMonitor::with_initial_health),
///   which the balancer's initial-health setting configures), or the verdict carried over
///   from a monitor it replaces.
/// - From [`Health::Unknown`], the first result decides at once.
/// - A healthy backend becomes unhealthy after `fall` consecutive failures.
/// - An unhealthy backend becomes healthy after `rise` consecutive passes.
/// - Any result that breaks a streak starts the count again (nginx check module, HAProxy).
///
/// ```
/// use std::num::NonZeroU32;
/// use lb_core::Health;
/// use lb_health::HealthTracker;
///
/// let n = |v| NonZeroU32::new(v).unwrap();
/// let mut t = HealthTracker::new(Health::Healthy, n(2), n(3));
/// assert_eq!(t.record(false), None);
/// assert_eq!(t.record(false), None);
/// assert_eq!(t.record(false), Some((Health::Healthy, Health::Unhealthy)));
/// assert_eq!(t.record(true), None);
/// assert_eq!(t.record(true), Some((Health::Unhealthy, Health::Healthy)));
/// ```
#[derive(Clone, Debug)]
pub struct HealthTracker {
    health: Health,
    rise: NonZeroU32,
    fall: NonZeroU32,
    passes: u32,
    failures: u32,
    total_passes: u64,
    total_failures: u64,
}

impl HealthTracker {
    /// A tracker starting in `initial`.
    pub fn new(initial: Health, rise: NonZeroU32, fall: NonZeroU32) -> Self {
        Self {
            health: initial,
            rise,
            fall,
            passes: 0,
            failures: 0,
            total_passes: 0,
            total_failures: 0,
        }
    }

    /// Records one result; returns `(old, new)` when it causes a transition.
    pub fn record(&mut self, passed: bool) -> Option<(Health, Health)> {
        if passed {
            self.passes = self.passes.saturating_add(1);
            self.failures = 0;
            self.total_passes += 1;
        } else {
            self.failures = self.failures.saturating_add(1);
            self.passes = 0;
            self.total_failures += 1;
        }
        let next = match self.health {
            Health::Unknown if passed => Health::Healthy,
            Health::Unknown => Health::Unhealthy,
            Health::Healthy if self.failures >= self.fall.get() => Health::Unhealthy,
            Health::Unhealthy if self.passes >= self.rise.get() => Health::Healthy,
            same => same,
        };
        let old = std::mem::replace(&mut self.health, next);
        (old != next).then_some((old, next))
    }

    /// The current verdict.
    pub fn health(&self) -> Health {
        self.health
    }

    /// The current streak: consecutive passes (positive) or failures (negative).
    pub fn streak(&self) -> i64 {
        if self.passes > 0 {
            i64::from(self.passes)
        } else {
            -i64::from(self.failures)
        }
    }

    /// Passes and failures recorded since the tracker was created.
    pub fn totals(&self) -> (u64, u64) {
        (self.total_passes, self.total_failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: u32) -> NonZeroU32 {
        NonZeroU32::new(v).unwrap()
    }

    #[test]
    fn unknown_is_settled_by_the_first_result() {
        let mut up = HealthTracker::new(Health::Unknown, n(5), n(5));
        assert_eq!(up.record(true), Some((Health::Unknown, Health::Healthy)));
        let mut down = HealthTracker::new(Health::Unknown, n(5), n(5));
        assert_eq!(
            down.record(false),
            Some((Health::Unknown, Health::Unhealthy))
        );
    }

    #[test]
    fn a_broken_streak_restarts_the_count() {
        let mut t = HealthTracker::new(Health::Healthy, n(2), n(3));
        for passed in [false, false, true, false, false] {
            assert_eq!(t.record(passed), None);
        }
        assert_eq!(t.record(false), Some((Health::Healthy, Health::Unhealthy)));
        assert_eq!(t.streak(), -3);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), Some((Health::Unhealthy, Health::Healthy)));
        assert_eq!(t.totals(), (4, 6));
    }

    #[test]
    fn transitions_fire_once() {
        let mut t = HealthTracker::new(Health::Unhealthy, n(1), n(1));
        assert!(t.record(true).is_some());
        for _ in 0..10 {
            assert_eq!(t.record(true), None);
        }
    }
}
