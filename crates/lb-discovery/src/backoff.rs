//! Capped exponential backoff with jitter, for sources that retry a server (DNS, etcd).
//!
//! Doubling with a cap is the usual gRPC/etcd client reconnection policy; the jitter
//! (up to a quarter of the delay, taken from the clock) keeps a fleet of proxies that lost
//! the same etcd or DNS server from retrying in lock step.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Delays `initial`, `2 × initial`, ... up to `max`, each plus up to 25% jitter (never above
/// `max`); [`reset`](Self::reset) after a success starts over.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff from `initial` to `max` (`max` is raised to `initial` if lower).
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        let max = max.max(initial);
        Self {
            initial,
            max,
            next: initial,
        }
    }

    /// The delay to wait now; the one after it is twice as long, up to the cap.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        (base + jitter(base / 4)).min(self.max)
    }

    /// Starts over from the initial delay (after a success).
    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// A pseudo-random duration in `[0, up_to]`, from the clock's nanoseconds (good enough to
/// spread retries; no randomness crate needed).
fn jitter(up_to: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let span = up_to.as_nanos().max(1);
    let pick = u128::from(nanos.wrapping_mul(2_654_435_761)) % span;
    Duration::from_nanos(u64::try_from(pick).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(350));
        let d1 = b.next_delay();
        let d2 = b.next_delay();
        let d3 = b.next_delay();
        let d4 = b.next_delay();
        assert!(d1 >= ms(100) && d1 <= ms(125), "{d1:?}");
        assert!(d2 >= ms(200) && d2 <= ms(250), "{d2:?}");
        assert!(d3 <= ms(350) && d4 <= ms(350), "{d3:?} {d4:?}");
        assert!(d4 >= ms(350), "capped: {d4:?}");
        b.reset();
        assert!(b.next_delay() <= ms(125));
    }
}
