//! Slow start: a backend that just became healthy (or was just added) ramps up its share.
//!
//! As HAProxy's `slowstart` and Envoy's `slow_start_config`: a backend coming back from a
//! failure often has cold caches, connection pools and JIT, and a full share of traffic at
//! once can knock it over again. During the window its effective weight grows linearly from
//! a floor (Envoy's `min_weight_percent`) to its full weight.
//!
//! It is applied by [`LoadBalancer::select`](crate::LoadBalancer::select) for every
//! algorithm alike, by thinning: a warming candidate is taken with probability equal to
//! its current weight fraction, otherwise the walk moves on to the next candidate. If every
//! usable candidate is thinned away, the first of them is taken anyway, so slow start never
//! causes a 503. Backends that are not warming cost nothing: the warming mark is a bit in
//! the flags word `select` already reads. Hashing algorithms would lose key affinity during
//! the window, so `lb-proxy` allows slow start only with non-hashing ones.

use std::time::Duration;

/// Slow-start settings: a window and the weight fraction a backend starts from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SlowStart {
    window: Duration,
    floor: f64,
}

/// Slow-start settings out of range.
#[derive(Debug, thiserror::Error)]
#[error("slow start needs a window above zero and a minimum weight of 1 to 100 percent (got {window:?}, {min_weight_percent}%)")]
pub struct InvalidSlowStart {
    window: Duration,
    min_weight_percent: u8,
}

impl SlowStart {
    /// Ramp over `window`, starting at `min_weight_percent` of the full weight.
    pub fn new(window: Duration, min_weight_percent: u8) -> Result<Self, InvalidSlowStart> {
        if window.is_zero() || !(1..=100).contains(&min_weight_percent) {
            return Err(InvalidSlowStart {
                window,
                min_weight_percent,
            });
        }
        Ok(Self {
            window,
            floor: f64::from(min_weight_percent) / 100.0,
        })
    }

    /// The window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The fraction of its weight a backend warming for `elapsed` gets (1.0 once done).
    pub fn factor(&self, elapsed: Duration) -> f64 {
        if elapsed >= self.window {
            return 1.0;
        }
        self.floor + (1.0 - self.floor) * elapsed.as_secs_f64() / self.window.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_ramp_from_the_floor() {
        let s = SlowStart::new(Duration::from_secs(10), 10).unwrap();
        assert_eq!(s.factor(Duration::ZERO), 0.1);
        assert!((s.factor(Duration::from_secs(5)) - 0.55).abs() < 1e-9);
        assert_eq!(s.factor(Duration::from_secs(10)), 1.0);
        assert!(SlowStart::new(Duration::ZERO, 10).is_err());
        assert!(SlowStart::new(Duration::from_secs(1), 0).is_err());
        assert!(SlowStart::new(Duration::from_secs(1), 101).is_err());
    }
}
