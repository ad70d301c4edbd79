//! The connection limit, `max_connections`: [`Gate`], one semaphore permit per connection,
//! shared by every listener of a proxy and resized by a reload.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// How often, at most, the "max_connections reached" warning is logged per listener.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(10);

/// The connection limit, shared by every listener of a proxy.
#[derive(Debug)]
pub(crate) struct Gate {
    permits: Arc<Semaphore>,
    max: usize,
}

impl Gate {
    /// At most `max` connections at once.
    pub(crate) fn new(max: u32) -> Self {
        let max = usize::try_from(max)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// The same connection count with a new maximum (a reload): connections already open
    /// keep their slots, and the difference is added to or taken from the free slots (a
    /// lower maximum takes effect as open connections close).
    pub(crate) fn resized(&self, max: u32) -> Self {
        let max = usize::try_from(max)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        if max > self.max {
            self.permits.add_permits(max - self.max);
        } else {
            let mut owed = self.max - max;
            owed -= self.permits.forget_permits(owed);
            if owed > 0 {
                // Taken back as connections close.
                let permits = self.permits.clone();
                if let Ok(n) = u32::try_from(owed) {
                    tokio::spawn(async move {
                        if let Ok(p) = permits.acquire_many_owned(n).await {
                            p.forget();
                        }
                    });
                }
            }
        }
        Self {
            permits: self.permits.clone(),
            max,
        }
    }

    /// Waits for a free connection slot, unless `stop` or `drain` is set first (`None`:
    /// the accept loop ends). `last_warning` rate-limits the log line saying the limit is
    /// reached.
    pub(crate) async fn admit(
        &self,
        stop: &mut watch::Receiver<bool>,
        drain: &mut watch::Receiver<bool>,
        last_warning: &mut Option<Instant>,
    ) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Some(permit);
        }
        if last_warning.is_none_or(|t| t.elapsed() >= FULL_WARNING_EVERY) {
            *last_warning = Some(Instant::now());
            tracing::warn!(
                max_connections = self.max,
                "max_connections reached: new connections wait in the listen backlog"
            );
        }
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => None,
            // An `Err` (the sender dropped) disables this branch rather than stopping.
            Ok(_) = drain.wait_for(|d| *d) => None,
            permit = self.permits.clone().acquire_owned() => permit.ok(),
        }
    }
}
