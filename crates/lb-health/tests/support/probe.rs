//! A scripted check for scheduler tests: logs the start time of every check by backend
//! name, counts concurrency, cancellations and `forget` calls.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lb_core::{Backend, BackendAddr};
use lb_health::{CheckFailure, CheckParams, HealthCheck};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How a backend's check behaves, by configured name.
#[derive(Clone, Copy)]
pub enum Behave {
    Pass,
    Fail,
    Take(Duration),
    Hang,
}

/// A scripted check: logs the start time of every check, counts concurrency, cancellations
/// and `forget` calls.
pub struct Probe {
    pub t0: Instant,
    pub params: CheckParams,
    pub script: Mutex<BTreeMap<String, Behave>>,
    pub starts: Mutex<Vec<(String, Duration)>>,
    pub running: AtomicUsize,
    pub max_running: AtomicUsize,
    pub cancelled: AtomicUsize,
    pub forgotten: Mutex<Vec<BackendAddr>>,
    pub event: Notify,
}

impl Probe {
    pub fn new(params: CheckParams) -> Arc<Self> {
        Arc::new(Self {
            t0: Instant::now(),
            params,
            script: Mutex::default(),
            starts: Mutex::default(),
            running: AtomicUsize::new(0),
            max_running: AtomicUsize::new(0),
            cancelled: AtomicUsize::new(0),
            forgotten: Mutex::default(),
            event: Notify::new(),
        })
    }

    pub fn set(&self, name: &str, behave: Behave) {
        self.script.lock().insert(name.to_owned(), behave);
    }

    /// Start times (since the probe was made) of the checks of `name`.
    pub fn times(&self, name: &str) -> Vec<Duration> {
        self.starts
            .lock()
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, t)| *t)
            .collect()
    }
}

/// Counts a check as running while it lives, and as cancelled if dropped unfinished.
struct Running<'a>(&'a Probe, bool);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, SeqCst);
        if !self.1 {
            self.0.cancelled.fetch_add(1, SeqCst);
        }
    }
}

#[async_trait]
impl HealthCheck for Probe {
    async fn check(&self, backend: &Backend) -> Result<(), CheckFailure> {
        let name = backend.name().to_owned();
        let behave = self
            .script
            .lock()
            .get(&name)
            .copied()
            .unwrap_or(Behave::Pass);
        self.starts.lock().push((name, self.t0.elapsed()));
        let now = self.running.fetch_add(1, SeqCst) + 1;
        self.max_running.fetch_max(now, SeqCst);
        let mut guard = Running(self, false);
        self.event.notify_waiters();
        let result = match behave {
            Behave::Pass => Ok(()),
            Behave::Fail => Err(CheckFailure::other("scripted failure")),
            Behave::Take(d) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            Behave::Hang => std::future::pending().await,
        };
        guard.1 = true;
        result
    }

    fn params(&self) -> CheckParams {
        self.params
    }

    fn forget(&self, addr: &BackendAddr) {
        self.forgotten.lock().push(addr.clone());
        self.event.notify_waiters();
    }
}
