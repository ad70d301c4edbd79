//! Settings of passive health ([`PassiveHealth`](crate::PassiveHealth)) and the request
//! outcomes it is fed.
//!
//! Two detectors, usable alone or together, with the semantics of the servers they come
//! from:
//!
//! - **nginx** (`server ... max_fails=N fail_timeout=T`): `max_fails` failed attempts
//!   within `fail_timeout` mark the server unavailable for `fail_timeout`. What counts as
//!   failed is, as in nginx's default `proxy_next_upstream error timeout`, an error or a
//!   timeout, plus the statuses of [`PassiveConfig::fail_statuses`] (by default 502, 503
//!   and 504, as with `proxy_next_upstream ... http_502 http_503 http_504`; empty it to get
//!   nginx's default exactly).
//! - **Envoy** (outlier detection): `consecutive_5xx` consecutive 5xx answers (errors and
//!   timeouts count as 5xx, as Envoy's router would answer 503/504 for them), or
//!   `consecutive_gateway_failure` consecutive gateway failures (502, 503, 504, errors,
//!   timeouts) eject the host for `base_ejection_time × times ejected`, capped by
//!   `max_ejection_time`. Envoy's `max_ejection_percent` caps how much of the upstream can
//!   be out at once (at least one backend may always be ejected, as in Envoy).

use std::num::NonZeroU32;
use std::time::Duration;

use crate::StatusSet;

/// What happened to one request sent to a backend, as the proxy reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The exchange succeeded and has no HTTP status to judge (e.g. a TCP stream).
    Success,
    /// The backend answered with this HTTP status.
    Status(u16),
    /// No connection could be opened (refused, unreachable, connect timeout).
    ConnectFailure,
    /// Connected, but no response came in time.
    Timeout,
    /// The connection broke before a response (reset, closed early, protocol error).
    Error,
}

impl Outcome {
    /// A 5xx in Envoy's sense: a 5xx status or a failure the proxy would answer with one.
    pub fn is_5xx(self) -> bool {
        match self {
            Self::Status(s) => (500..600).contains(&s),
            Self::Success => false,
            Self::ConnectFailure | Self::Timeout | Self::Error => true,
        }
    }

    /// A gateway failure in Envoy's sense: 502, 503, 504, or a connect, timeout or
    /// connection error.
    pub fn is_gateway_failure(self) -> bool {
        match self {
            Self::Status(s) => (502..=504).contains(&s),
            Self::Success => false,
            Self::ConnectFailure | Self::Timeout | Self::Error => true,
        }
    }

    /// A failed attempt in nginx's sense: an error or timeout, or a status in `statuses`.
    pub fn is_failed_attempt(self, statuses: &StatusSet) -> bool {
        match self {
            Self::Status(s) => statuses.contains(s),
            Self::Success => false,
            Self::ConnectFailure | Self::Timeout | Self::Error => true,
        }
    }
}

/// Settings of [`PassiveHealth`](crate::PassiveHealth). Every detector is off by default;
/// [`PassiveConfig::nginx`] and [`PassiveConfig::envoy`] turn one on.
///
/// ```
/// use std::num::NonZeroU32;
/// use std::time::Duration;
/// use lb_health::PassiveConfig;
///
/// // nginx: `server ... max_fails=3 fail_timeout=30s;`
/// let nginx = PassiveConfig::nginx(NonZeroU32::new(3).unwrap(), Duration::from_secs(30));
/// // Envoy: consecutive_5xx = 5, base_ejection_time = 30s, max_ejection_percent = 10.
/// let mut envoy = PassiveConfig::envoy(NonZeroU32::new(5).unwrap());
/// envoy.max_ejection_percent = 20;
/// # drop((nginx, envoy));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PassiveConfig {
    /// nginx `max_fails`: failed attempts within `fail_timeout` that eject; `None` is off
    /// (nginx's `max_fails=0`).
    pub max_fails: Option<NonZeroU32>,
    /// nginx `fail_timeout`: the window for `max_fails`, and how long that ejection lasts.
    /// Default 10s (nginx's default).
    pub fail_timeout: Duration,
    /// Statuses that count as a failed attempt for `max_fails` (errors and timeouts always
    /// do). Default `502-504`.
    pub fail_statuses: StatusSet,
    /// Envoy `consecutive_5xx`; `None` is off.
    pub consecutive_5xx: Option<NonZeroU32>,
    /// Envoy `consecutive_gateway_failure`; `None` is off.
    pub consecutive_gateway_failure: Option<NonZeroU32>,
    /// Envoy `base_ejection_time`: the first ejection's length, multiplied by the number of
    /// recent ejections for later ones. Default 30s (Envoy's default).
    pub base_ejection_time: Duration,
    /// Envoy `max_ejection_time`: the cap of a growing ejection. Default 300s.
    pub max_ejection_time: Duration,
    /// Envoy `max_ejection_percent`: at most this share of the upstream's backends is
    /// ejected at once, but always at least one; 0 turns ejection off. Default 10.
    pub max_ejection_percent: u8,
    /// When `true`, an ejected backend returns as soon as an active check passes
    /// (the monitor must be linked with [`HealthMonitor::with_passive`](crate::HealthMonitor::with_passive));
    /// otherwise only when its ejection time is over. Default `false`.
    pub return_on_active_pass: bool,
}

impl Default for PassiveConfig {
    fn default() -> Self {
        Self {
            max_fails: None,
            fail_timeout: Duration::from_secs(10),
            fail_statuses: StatusSet::gateway_errors(),
            consecutive_5xx: None,
            consecutive_gateway_failure: None,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
            return_on_active_pass: false,
        }
    }
}

impl PassiveConfig {
    /// nginx's `max_fails` within `fail_timeout`, everything else default.
    pub fn nginx(max_fails: NonZeroU32, fail_timeout: Duration) -> Self {
        Self {
            max_fails: Some(max_fails),
            fail_timeout,
            ..Self::default()
        }
    }

    /// Envoy's `consecutive_5xx`, everything else default.
    pub fn envoy(consecutive_5xx: NonZeroU32) -> Self {
        Self {
            consecutive_5xx: Some(consecutive_5xx),
            ..Self::default()
        }
    }

    /// How long a backend that arrives already ejected (carried over by a reload) stays
    /// out: the base ejection time with Envoy's detectors, `fail_timeout` with nginx's.
    pub fn adopted_ejection_time(&self) -> Duration {
        if self.consecutive_5xx.is_some() || self.consecutive_gateway_failure.is_some() {
            self.base_ejection_time
        } else {
            self.fail_timeout
        }
    }

    /// How many of `total` backends may be ejected at once.
    pub fn max_ejected(&self, total: usize) -> usize {
        if self.max_ejection_percent == 0 || total == 0 {
            return 0;
        }
        let pct = usize::from(self.max_ejection_percent.min(100));
        (total.saturating_mul(pct) / 100).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_classes_follow_envoy_and_nginx() {
        let gw = StatusSet::gateway_errors();
        for (o, five, gate, nginx) in [
            (Outcome::Success, false, false, false),
            (Outcome::Status(200), false, false, false),
            (Outcome::Status(404), false, false, false),
            (Outcome::Status(500), true, false, false),
            (Outcome::Status(502), true, true, true),
            (Outcome::Status(504), true, true, true),
            (Outcome::ConnectFailure, true, true, true),
            (Outcome::Timeout, true, true, true),
            (Outcome::Error, true, true, true),
        ] {
            assert_eq!(o.is_5xx(), five, "{o:?}");
            assert_eq!(o.is_gateway_failure(), gate, "{o:?}");
            assert_eq!(o.is_failed_attempt(&gw), nginx, "{o:?}");
        }
    }

    #[test]
    fn the_cap_allows_at_least_one() {
        let mut c = PassiveConfig::default();
        assert_eq!(
            c.max_ejected(3),
            1,
            "10% of 3 rounds down, but one is allowed"
        );
        assert_eq!(c.max_ejected(20), 2);
        c.max_ejection_percent = 100;
        assert_eq!(c.max_ejected(20), 20);
        c.max_ejection_percent = 0;
        assert_eq!(c.max_ejected(20), 0);
    }
}
