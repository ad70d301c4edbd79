//! The shared half of every [`DiscoveryStream`](crate::DiscoveryStream): which answers to
//! yield, and the error count.
//!
//! A stream yields its first answer, then only answers that differ from the last one
//! yielded, then, after an error, the next answer whatever it is (the consumer learns the
//! source recovered). Errors are counted and logged here, once, with the source's name.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::{Discovered, DiscoveryError};

/// A shared error counter: one per source, cloned into each of its streams.
#[derive(Clone, Debug, Default)]
pub(crate) struct ErrorCount(Arc<AtomicU64>);

impl ErrorCount {
    /// Counts one error.
    pub(crate) fn bump(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Errors so far.
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Counts `result`'s error, if any, and passes it through (for `discover`).
    pub(crate) fn track<T>(&self, result: Result<T, DiscoveryError>) -> Result<T, DiscoveryError> {
        if result.is_err() {
            self.bump();
        }
        result
    }
}

/// Decides what a stream yields.
#[derive(Debug)]
pub(crate) struct Emitter {
    last: Option<Discovered>,
    failed: bool,
    errors: ErrorCount,
}

impl Emitter {
    /// An emitter that counts errors in `errors`.
    pub(crate) fn new(errors: ErrorCount) -> Self {
        Self {
            last: None,
            failed: false,
            errors,
        }
    }

    /// `Some(found)` when it must be yielded: the first answer, a changed one, or the first
    /// one after an error.
    pub(crate) fn ok(&mut self, found: Discovered) -> Option<Discovered> {
        if !self.failed && self.last.as_ref() == Some(&found) {
            return None;
        }
        self.failed = false;
        self.last = Some(found.clone());
        Some(found)
    }

    /// Counts and logs `error`, and hands it back to be yielded.
    pub(crate) fn err(&mut self, error: DiscoveryError) -> DiscoveryError {
        self.failed = true;
        self.errors.bump();
        tracing::warn!(
            source = error.source_name(),
            error = %error.chain(),
            "discovery failed; the last good backend set stays in service"
        );
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_core::Backend;

    #[test]
    fn yields_first_changes_and_recovery() {
        let errors = ErrorCount::default();
        let mut e = Emitter::new(errors.clone());
        let one = Discovered::new(
            [Backend::parse("10.0.0.1:80").unwrap()]
                .into_iter()
                .collect(),
        );
        let two = Discovered::default();
        assert!(e.ok(one.clone()).is_some(), "first");
        assert!(e.ok(one.clone()).is_none(), "same again");
        assert!(e.ok(two.clone()).is_some(), "changed");
        let _ = e.err(DiscoveryError::new("t", "down"));
        assert!(e.ok(two.clone()).is_some(), "recovery, even unchanged");
        assert!(e.ok(two).is_none());
        assert_eq!(errors.get(), 1);
    }
}
