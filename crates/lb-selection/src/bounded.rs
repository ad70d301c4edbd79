//! Bounded loads for consistent hashing.
//!
//! Mirrokni, Thorup and Zadimoghaddam, "Consistent Hashing with Bounded Loads" (SODA 2018):
//! with a balance factor `c > 1`, no backend takes more than `c` times the average load; a
//! key whose backend is full walks on to the next one on the ring. HAProxy calls the factor
//! `hash-balance-factor` (in percent), Envoy `hash_balance_factor`.
//!
//! Load is the in-flight count of live guards. The capacity of backend `i` for the request
//! being placed is `ceil(c * (total_in_flight + 1) * weight_i / total_weight)`. Computing the
//! total costs one pass over the set per request, paid only when a factor is configured.

use std::fmt;

use lb_core::Backend;

/// A balance factor above 1.0 (1.25 lets a backend take 25% more than the average).
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct BalanceFactor(f64);

/// A balance factor that is not a finite number above 1.0.
#[derive(Debug, thiserror::Error)]
#[error("balance factor must be a finite number above 1.0, got {0}")]
pub struct InvalidBalanceFactor(pub f64);

impl BalanceFactor {
    /// `factor`, if it is finite and above 1.0.
    pub fn new(factor: f64) -> Result<Self, InvalidBalanceFactor> {
        if factor.is_finite() && factor > 1.0 {
            Ok(Self(factor))
        } else {
            Err(InvalidBalanceFactor(factor))
        }
    }

    /// The factor.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl fmt::Display for BalanceFactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The capacity check of one request.
#[derive(Debug)]
pub(crate) struct Bound<'a> {
    backends: &'a [Backend],
    /// `c * (total + 1) / total_weight`, multiplied by a backend's weight gives its capacity.
    per_weight: f64,
}

impl<'a> Bound<'a> {
    pub(crate) fn new(backends: &'a [Backend], factor: BalanceFactor, total_weight: u64) -> Self {
        let total: usize = backends.iter().map(|b| b.state().in_flight()).sum();
        Self {
            backends,
            per_weight: factor.0 * (total as f64 + 1.0) / total_weight.max(1) as f64,
        }
    }

    /// The number of backends.
    pub(crate) fn len(&self) -> usize {
        self.backends.len()
    }

    /// True when backend `i` can take one more request.
    #[inline]
    pub(crate) fn accepts(&self, i: usize) -> bool {
        let b = &self.backends[i];
        let capacity = (self.per_weight * f64::from(b.weight().get())).ceil();
        (b.state().in_flight() as f64) < capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::round_robin::tests::set;

    #[test]
    fn factors_must_exceed_one() {
        assert!(BalanceFactor::new(1.0).is_err());
        assert!(BalanceFactor::new(f64::NAN).is_err());
        assert_eq!(BalanceFactor::new(1.25).unwrap().get(), 1.25);
    }

    #[test]
    fn capacity_follows_the_average() {
        let s = set(&[1, 1, 1, 1]);
        let _load: Vec<_> = (0..3).map(|_| s[0].begin_request()).collect();
        // total 3, placing the 4th: capacity ceil(1.5 * 4 / 4) = 2 per backend.
        let b = Bound::new(&s, BalanceFactor::new(1.5).unwrap(), 4);
        assert!(!b.accepts(0));
        assert!(b.accepts(1));
    }
}
