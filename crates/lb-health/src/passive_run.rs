//! The background side of [`PassiveHealth`]: returning backends when their ejection is
//! over, following the backend set, and the snapshot for status pages.
//!
//! Un-ejection needs a timer because an ejected backend receives no traffic, so no
//! report would ever notice that its time is over. [`PassiveHealth::run`] sleeps until the
//! earliest return (one timer for the whole upstream), and wakes early when a new
//! ejection or a set change may have moved it.

use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use lb_core::{BackendAddr, BackendSet};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::PassiveHealth;

/// The passive state of one backend; see [`PassiveHealth::snapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PassiveStatus {
    /// Where the backend listens.
    pub addr: BackendAddr,
    /// Its configured name.
    pub name: String,
    /// Whether it is ejected now.
    pub ejected: bool,
    /// When the current ejection ends.
    pub ejected_until: Option<Instant>,
    /// The current ejection multiplier (recent ejections, decaying while not ejected).
    pub ejections: u32,
    /// Ejections since the backend joined.
    pub total_ejections: u64,
    /// Consecutive 5xx (Envoy sense) right now.
    pub consecutive_5xx: u32,
    /// Consecutive gateway failures right now.
    pub consecutive_gateway_failures: u32,
    /// Failed attempts in the current nginx window.
    pub window_failures: u32,
}

impl PassiveHealth {
    /// When the earliest ejection ends, if any backend is ejected.
    pub fn next_return(&self) -> Option<Instant> {
        let control = self.control.lock();
        control
            .ejected
            .keys()
            .filter_map(|a| control.history.get(a).and_then(|h| h.ejected_until))
            .min()
    }

    /// Keeps the backend list in line with `backends` and returns ejected backends when
    /// their time is over, until `shutdown` resolves (at once when it does).
    pub async fn run(
        &self,
        mut backends: watch::Receiver<BackendSet>,
        shutdown: impl Future<Output = ()>,
    ) {
        let initial = backends.borrow_and_update().clone();
        self.set_backends(&initial);
        let mut watching = true;
        tokio::pin!(shutdown);
        loop {
            let next = self.next_return();
            let sleep = tokio::time::sleep_until(
                next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
            );
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                changed = backends.changed(), if watching => match changed {
                    Ok(()) => {
                        let set = backends.borrow_and_update().clone();
                        self.set_backends(&set);
                    }
                    Err(_) => watching = false,
                },
                // An ejection or a set change: the earliest return may have moved.
                () = self.changed.notified() => {}
                () = sleep, if next.is_some() => {
                    self.tick(Instant::now());
                }
            }
        }
    }

    /// The passive state of every backend in the set, sorted by address.
    pub fn snapshot(&self) -> Vec<PassiveStatus> {
        let map = self.backends.load();
        let control = self.control.lock();
        let mut out: Vec<PassiveStatus> = map
            .iter()
            .map(|(addr, (backend, c))| {
                let h = control.history.get(addr);
                PassiveStatus {
                    addr: addr.clone(),
                    name: backend.name().to_owned(),
                    ejected: control.ejected.contains_key(addr),
                    ejected_until: h.and_then(|h| h.ejected_until),
                    ejections: h.map_or(0, |h| h.multiplier),
                    total_ejections: h.map_or(0, |h| h.total),
                    consecutive_5xx: c.consecutive_5xx.load(Relaxed),
                    consecutive_gateway_failures: c.consecutive_gateway.load(Relaxed),
                    window_failures: c.window_fails.load(Relaxed),
                }
            })
            .collect();
        out.sort_by(|a, b| a.addr.cmp(&b.addr));
        out
    }
}
