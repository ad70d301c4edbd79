//! A sorted, duplicate-free set of backends.

use std::ops::Deref;
use std::sync::Arc;

use crate::Backend;

/// The backends of one upstream, sorted, with at most one backend per address.
///
/// The order is total and independent of how the set was built, so every process builds
/// identical selection structures from the same servers. Runtime state (health, load) is
/// per address, so when several entries share an address the first in canonical order
/// (lowest name, then weight) is kept. Cloning is cheap (shared slice).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendSet {
    backends: Arc<[Backend]>,
}

impl BackendSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The backends in their canonical order.
    pub fn as_slice(&self) -> &[Backend] {
        &self.backends
    }

    /// The sum of all weights, for weighted algorithms.
    pub fn total_weight(&self) -> u64 {
        self.backends
            .iter()
            .map(|b| u64::from(b.weight().get()))
            .sum()
    }
}

impl Deref for BackendSet {
    type Target = [Backend];

    fn deref(&self) -> &[Backend] {
        &self.backends
    }
}

impl FromIterator<Backend> for BackendSet {
    fn from_iter<I: IntoIterator<Item = Backend>>(iter: I) -> Self {
        let mut backends: Vec<Backend> = iter.into_iter().collect();
        backends.sort();
        backends.dedup_by(|b, a| a.addr() == b.addr());
        Self {
            backends: backends.into(),
        }
    }
}

impl<'a> IntoIterator for &'a BackendSet {
    type Item = &'a Backend;
    type IntoIter = std::slice::Iter<'a, Backend>;

    fn into_iter(self) -> Self::IntoIter {
        self.backends.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_independent_of_input_order() {
        let names = [
            "10.0.0.3:80",
            "10.0.0.1:80",
            "[::1]:80",
            "10.0.0.2:80",
            "10.0.0.1:80",
        ];
        let a: BackendSet = names.iter().map(|n| Backend::parse(n).unwrap()).collect();
        let b: BackendSet = names
            .iter()
            .rev()
            .map(|n| Backend::parse(n).unwrap())
            .collect();
        assert_eq!(a, b);
        assert_eq!(a.len(), 4, "duplicates removed");
        assert_eq!(a.total_weight(), 4);
    }

    #[test]
    fn one_backend_per_address() {
        let plain = Backend::parse("10.0.0.1:80").unwrap();
        let heavy = plain.with_weight(std::num::NonZeroU32::new(3).unwrap());
        let set: BackendSet = [heavy, plain.with_name("alias:80"), plain.clone()]
            .into_iter()
            .collect();
        assert_eq!(set.len(), 1);
        assert_eq!(set[0], plain, "lowest name, then lowest weight, wins");
    }
}
