//! Per-request counters: what the request path records for `/metrics` and `/status`.
//!
//! Everything a request touches is created ahead of it: one [`RouteStats`] per route (and
//! one for requests no route matched), one [`UpstreamStats`] per upstream, and one
//! [`BackendStats`] per backend in a map that is rebuilt off the request path whenever
//! discovery changes the backend set ([`UpstreamStats::follow`]) and swapped in with `ArcSwap`.
//! Recording is a few relaxed atomic additions: no lock, no allocation (measured in the
//! tests below).

pub mod addr_hash;
pub mod histogram;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use lb_core::{BackendAddr, BackendSet};
use tokio::sync::watch;

use crate::client::UpstreamError;
use addr_hash::AddrHash;
use histogram::Histogram;

/// Counts by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
#[derive(Debug, Default)]
pub struct Classes([AtomicU64; 5]);

/// The labels of [`Classes`], in order.
pub const CLASS_NAMES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The requests of one route (or of no route).
#[derive(Debug, Default)]
pub struct RouteStats {
    /// Responses sent to clients, by class.
    pub requests: Classes,
    /// Time from the request's arrival to its response head.
    pub duration: Histogram,
}

/// The requests of one upstream, and its backends.
#[derive(Debug)]
pub struct UpstreamStats {
    /// Responses sent to clients for requests routed here, by class.
    pub requests: Classes,
    /// Per backend, keyed by address; replaced whole when the backend set changes.
    backends: ArcSwap<BackendCounters>,
}

/// The counters of each backend of an upstream, by address (hashed with [`AddrHash`]: the
/// request path looks one up per attempt).
pub type BackendCounters = HashMap<BackendAddr, Arc<BackendStats>, AddrHash>;

/// The attempts sent to one backend.
#[derive(Debug, Default)]
pub struct BackendStats {
    /// Responses received, by class.
    pub responses: Classes,
    /// Attempts that could not connect.
    pub connect_errors: AtomicU64,
    /// Attempts that timed out after connecting.
    pub timeouts: AtomicU64,
    /// Attempts that failed otherwise (reset, invalid response).
    pub errors: AtomicU64,
    /// Time from sending the request to the response head.
    pub ttfb: Histogram,
}

/// Every counter of one configuration generation; shared by the request path and the
/// admin listener. The parts are `Arc`s so that a reload hands the counters of routes and
/// upstreams that stay to the next generation: Prometheus sees them go on counting.
#[derive(Debug)]
pub struct Stats {
    /// Indexed like the router's routes.
    pub routes: Box<[Arc<RouteStats>]>,
    /// Requests no route matched.
    pub unrouted: Arc<RouteStats>,
    /// Indexed like the proxy's upstreams.
    pub upstreams: Box<[Arc<UpstreamStats>]>,
    /// Counters of the process, whatever the generation.
    pub process: Arc<ProcessCounters>,
}

/// Counters that outlive every configuration generation.
#[derive(Debug, Default)]
pub struct ProcessCounters {
    /// Configuration reloads that were applied.
    pub reloads_ok: AtomicU64,
    /// Configuration reloads that were refused (invalid configuration).
    pub reloads_failed: AtomicU64,
    /// Per process setting: applied reloads that changed it but could not apply it.
    /// Control plane only (a reload, a scrape), never the request path.
    pub not_applied: parking_lot::Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// Access log lines dropped because the writer fell behind.
    pub access_log_dropped: AtomicU64,
}

impl Classes {
    /// Counts one response with `status`.
    #[inline]
    pub fn record(&self, status: u16) {
        let i = usize::from(status / 100).clamp(1, 5) - 1;
        self.0[i].fetch_add(1, Relaxed);
    }

    /// The counts, in [`CLASS_NAMES`] order.
    pub fn get(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.0[i].load(Relaxed))
    }

    /// All responses.
    pub fn total(&self) -> u64 {
        self.get().iter().sum()
    }

    /// 5xx responses.
    pub fn errors(&self) -> u64 {
        self.0[4].load(Relaxed)
    }
}

impl UpstreamStats {
    /// Counters for an upstream whose backends are `backends`.
    pub fn new(backends: &BackendSet) -> Self {
        let s = Self {
            requests: Classes::default(),
            backends: ArcSwap::default(),
        };
        s.set_backends(backends);
        s
    }

    /// The counters of the backend at `addr`, while it is in the set.
    #[inline]
    pub fn with_backend(&self, addr: &BackendAddr, f: impl FnOnce(&BackendStats)) {
        if let Some(b) = self.backends.load().get(addr) {
            f(b);
        }
    }

    /// The counters of every backend (for a scrape).
    pub fn backends(&self) -> Arc<BackendCounters> {
        self.backends.load_full()
    }

    /// Follows a new backend set: backends that stay keep their counters, new ones start
    /// at zero, removed ones are forgotten.
    pub fn set_backends(&self, set: &BackendSet) {
        let old = self.backends.load();
        let next: BackendCounters = set
            .iter()
            .map(|b| {
                let stats = old.get(b.addr()).cloned().unwrap_or_default();
                (b.addr().clone(), stats)
            })
            .collect();
        self.backends.store(Arc::new(next));
    }

    /// Keeps the backend counters in line with the backend set until the set's sender goes
    /// away or `stop` turns true.
    pub async fn follow(
        self: Arc<Self>,
        mut set: watch::Receiver<BackendSet>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let current = set.borrow_and_update().clone();
            self.set_backends(&current);
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return,
                changed = set.changed() => if changed.is_err() { return },
            }
        }
    }
}

impl BackendStats {
    /// Counts one attempt that failed with `error`.
    #[inline]
    pub fn record_error(&self, error: &UpstreamError) {
        let counter = if error.is_connect() {
            &self.connect_errors
        } else if error.is_timeout() {
            &self.timeouts
        } else {
            &self.errors
        };
        counter.fetch_add(1, Relaxed);
    }
}

impl Stats {
    /// Fresh counters for `routes` routes and for upstreams with these current backend sets
    /// (the proxy assembles its own in `generation`).
    #[cfg(test)]
    pub fn new(routes: usize, upstreams: impl IntoIterator<Item = BackendSet>) -> Self {
        Self {
            routes: (0..routes).map(|_| Arc::default()).collect(),
            unrouted: Arc::default(),
            upstreams: upstreams
                .into_iter()
                .map(|set| Arc::new(UpstreamStats::new(&set)))
                .collect(),
            process: Arc::default(),
        }
    }

    /// Counts one request answered with `status` after `elapsed`, on `route` (None: no
    /// route matched) of `upstream`.
    #[inline]
    pub fn record_request(
        &self,
        route: Option<usize>,
        upstream: Option<usize>,
        status: u16,
        elapsed: Duration,
    ) {
        let r = route
            .and_then(|i| self.routes.get(i))
            .unwrap_or(&self.unrouted);
        r.requests.record(status);
        r.duration.observe(elapsed);
        if let Some(u) = upstream.and_then(|i| self.upstreams.get(i)) {
            u.requests.record(status);
        }
    }
}

impl ProcessCounters {
    /// Counts a configuration reload and whether it was applied.
    pub fn record_reload(&self, applied: bool) {
        let c = if applied {
            &self.reloads_ok
        } else {
            &self.reloads_failed
        };
        c.fetch_add(1, Relaxed);
    }

    /// Counts, for each of `settings`, a reload that changed it without applying it.
    pub fn record_not_applied(&self, settings: &[&'static str]) {
        if settings.is_empty() {
            return;
        }
        let mut counts = self.not_applied.lock();
        for setting in settings {
            *counts.entry(setting).or_default() += 1;
        }
    }

    /// The counts of [`record_not_applied`](Self::record_not_applied), by setting.
    pub fn not_applied(&self) -> Vec<(&'static str, u64)> {
        self.not_applied
            .lock()
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use lb_core::Backend;

    fn set(addrs: &[&str]) -> BackendSet {
        addrs.iter().map(|a| Backend::parse(a).unwrap()).collect()
    }

    #[test]
    fn recording_allocates_nothing() {
        let stats = Stats::new(2, [set(&["127.0.0.1:1", "127.0.0.1:2"])]);
        let addr = Backend::parse("127.0.0.1:2").unwrap().addr().clone();
        let control = allocation_counter::measure(|| drop(std::hint::black_box(Box::new(7u64))));
        assert_eq!(control.count_total, 1, "the instrument counts");
        let info = allocation_counter::measure(|| {
            for status in [200, 404, 503] {
                stats.upstreams[0].with_backend(&addr, |b| {
                    b.responses.record(status);
                    b.ttfb.observe(Duration::from_millis(3));
                });
                stats.record_request(Some(1), Some(0), status, Duration::from_millis(4));
                stats.record_request(None, None, status, Duration::from_millis(1));
            }
        });
        assert_eq!(info.count_total, 0, "{info:?}");
        assert_eq!(stats.routes[1].requests.get(), [0, 1, 0, 1, 1]);
        assert_eq!(stats.unrouted.requests.total(), 3);
        assert_eq!(stats.upstreams[0].requests.errors(), 1);
        let backends = stats.upstreams[0].backends();
        assert_eq!(backends[&addr].responses.total(), 3);
        assert_eq!(backends[&addr].ttfb.count(), 3);
    }

    #[test]
    fn a_new_set_keeps_the_counters_of_backends_that_stay() {
        let stats = Stats::new(0, [set(&["127.0.0.1:1", "127.0.0.1:2"])]);
        let one = Backend::parse("127.0.0.1:1").unwrap().addr().clone();
        stats.upstreams[0].with_backend(&one, |b| b.responses.record(200));
        stats.upstreams[0].set_backends(&set(&["127.0.0.1:1", "127.0.0.1:3"]));
        let backends = stats.upstreams[0].backends();
        assert_eq!(backends.len(), 2);
        assert_eq!(backends[&one].responses.total(), 1);
        let three = Backend::parse("127.0.0.1:3").unwrap().addr().clone();
        assert_eq!(backends[&three].responses.total(), 0);
    }
}
