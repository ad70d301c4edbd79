//! `GET /status`: every upstream and backend, as a serialisable snapshot (JSON, and the
//! model the HTML page renders).

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::SystemTime;

use lb_core::{Backend, Health};
use lb_health::{BackendHealth, PassiveStatus};
use serde::Serialize;

use super::AdminState;
use crate::config_proxy::ConfigProxy;
use crate::stats::BackendStats;
use crate::timestamp as time;
use crate::upstream::Upstream;

/// The whole proxy.
#[derive(Debug, Serialize)]
pub(crate) struct Status {
    /// The proxy's version.
    pub(crate) version: &'static str,
    /// When this snapshot was taken (RFC 3339, UTC).
    pub(crate) time: String,
    /// Client connections open now.
    pub(crate) open_connections: usize,
    /// Every upstream, in configuration order.
    pub(crate) upstreams: Vec<UpstreamStatus>,
}

/// One upstream.
#[derive(Debug, Serialize)]
pub(crate) struct UpstreamStatus {
    /// Its name.
    pub(crate) name: String,
    /// Requests answered to clients.
    pub(crate) requests: u64,
    /// Of which 5xx.
    pub(crate) errors: u64,
    /// `errors / requests` (0 without requests).
    pub(crate) error_rate: f64,
    /// Retries on another backend.
    pub(crate) retries: u64,
    /// Requests waiting for a backend with room.
    pub(crate) queued: usize,
    /// Backends selection may pick now.
    pub(crate) usable: usize,
    /// Its backends.
    pub(crate) backends: Vec<BackendStatus>,
}

/// One backend.
#[derive(Debug, Serialize)]
pub(crate) struct BackendStatus {
    /// Its configured name (`host:port`).
    pub(crate) name: String,
    /// The resolved address.
    pub(crate) addr: String,
    /// `up`, `down`, `unknown` (no verdict yet), `ejected` (passive health), `disabled`
    /// (an operator, or discovery) or `draining`.
    pub(crate) state: &'static str,
    /// The active checks' verdict: `healthy`, `unhealthy` or `unknown`.
    pub(crate) health: &'static str,
    /// When `state` began (RFC 3339, UTC; the proxy's start if it never changed).
    pub(crate) since: String,
    /// Seconds since `since`.
    pub(crate) since_seconds: u64,
    /// Whether selection may pick it now.
    pub(crate) usable: bool,
    /// A backup backend (used when no primary is usable).
    pub(crate) backup: bool,
    /// Its weight.
    pub(crate) weight: u32,
    /// Consecutive passed checks.
    pub(crate) consecutive_passes: u32,
    /// Consecutive failed checks.
    pub(crate) consecutive_failures: u32,
    /// How long the last check took, in milliseconds.
    pub(crate) last_check_ms: Option<f64>,
    /// Why the last failed check failed.
    pub(crate) last_failure: Option<String>,
    /// Requests in flight now.
    pub(crate) in_flight: usize,
    /// For a draining backend: true once nothing is in flight.
    pub(crate) drained: Option<bool>,
    /// Attempts sent to it (responses and failures).
    pub(crate) requests: u64,
    /// Attempts that failed or got a 5xx.
    pub(crate) errors: u64,
    /// `errors / requests` (0 without requests).
    pub(crate) error_rate: f64,
    /// Passive-health ejections so far.
    pub(crate) ejections: u64,
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn stamp(t: SystemTime) -> (String, u64) {
    let mut s = String::with_capacity(24);
    time::rfc3339(t, &mut s);
    let age = SystemTime::now()
        .duration_since(t)
        .map_or(0, |d| d.as_secs());
    (s, age)
}

/// The status of the whole proxy now.
pub(crate) fn collect(state: &AdminState) -> Status {
    let proxy = state.proxy();
    let upstreams = proxy
        .upstreams
        .iter()
        .enumerate()
        .map(|(i, u)| upstream(state, &proxy, i, u))
        .collect();
    let mut now = String::new();
    time::rfc3339(SystemTime::now(), &mut now);
    Status {
        version: env!("CARGO_PKG_VERSION"),
        time: now,
        open_connections: state.connections.upgrade().map_or(0, |g| g.count()),
        upstreams,
    }
}

fn upstream(state: &AdminState, proxy: &ConfigProxy, index: usize, u: &Upstream) -> UpstreamStatus {
    let stats = &proxy.stats.upstreams[index];
    let checks: HashMap<_, BackendHealth> = u
        .balancer()
        .health_monitor()
        .map(|m| {
            m.snapshot()
                .into_iter()
                .map(|h| (h.addr.clone(), h))
                .collect()
        })
        .unwrap_or_default();
    let passive: HashMap<_, PassiveStatus> = u
        .balancer()
        .passive_health()
        .map(|p| {
            p.snapshot()
                .into_iter()
                .map(|s| (s.addr.clone(), s))
                .collect()
        })
        .unwrap_or_default();
    let counters = stats.backends();
    let backends: Vec<BackendStatus> = u
        .balancer()
        .backends()
        .iter()
        .map(|b| {
            backend_with(
                state,
                u,
                b,
                checks.get(b.addr()),
                passive.get(b.addr()),
                counters.get(b.addr()).map(|s| &**s),
            )
        })
        .collect();
    let requests = stats.requests.total();
    let errors = stats.requests.errors();
    let rc = u.retry().counts();
    UpstreamStatus {
        name: u.name().to_owned(),
        requests,
        errors,
        error_rate: ratio(errors, requests),
        retries: rc.error + rc.timeout + rc.invalid_header + rc.status,
        queued: u.queued(),
        usable: backends.iter().filter(|b| b.usable).count(),
        backends,
    }
}

/// The status of one backend of `u` (after a runtime API action).
pub(crate) fn backend(state: &AdminState, u: &Upstream, b: &Backend) -> BackendStatus {
    let check = u
        .balancer()
        .health_monitor()
        .and_then(|m| m.backend_health(b.addr()));
    let passive = u
        .balancer()
        .passive_health()
        .and_then(|p| p.snapshot().into_iter().find(|s| s.addr == *b.addr()));
    let proxy = state.proxy();
    let index = proxy
        .upstreams
        .iter()
        .position(|x| std::ptr::eq(Arc::as_ptr(x), u));
    let counters = index.and_then(|i| proxy.stats.upstreams.get(i).map(|s| s.backends()));
    let stats = counters
        .as_ref()
        .and_then(|c| c.get(b.addr()))
        .map(|s| &**s);
    backend_with(state, u, b, check.as_ref(), passive.as_ref(), stats)
}

fn backend_with(
    state: &AdminState,
    u: &Upstream,
    b: &Backend,
    check: Option<&BackendHealth>,
    passive: Option<&PassiveStatus>,
    stats: Option<&BackendStats>,
) -> BackendStatus {
    let s = b.state();
    let health = s.health();
    let mode = state.control.mode(u.name(), b);
    let (label, since) = if let Some((mode, since)) = mode {
        (mode.as_str(), since)
    } else {
        let since = state.control.health_since(b);
        let label = if !s.is_enabled() {
            "disabled"
        } else if s.is_ejected() {
            "ejected"
        } else {
            match health {
                Health::Healthy => "up",
                Health::Unhealthy => "down",
                Health::Unknown => "unknown",
            }
        };
        (label, since)
    };
    let (since, since_seconds) = stamp(since);
    let (requests, errors) = stats.map_or((0, 0), |st| {
        let failed =
            st.connect_errors.load(Relaxed) + st.timeouts.load(Relaxed) + st.errors.load(Relaxed);
        (
            st.responses.total() + failed,
            st.responses.errors() + failed,
        )
    });
    let in_flight = s.in_flight();
    BackendStatus {
        name: b.name().to_owned(),
        addr: b.addr().to_string(),
        state: label,
        health: health.as_str(),
        since,
        since_seconds,
        usable: s.is_usable(),
        backup: s.is_backup(),
        weight: b.weight().get(),
        consecutive_passes: check.map_or(0, |c| c.consecutive_passes),
        consecutive_failures: check.map_or(0, |c| c.consecutive_failures),
        last_check_ms: check
            .and_then(|c| c.last_latency)
            .map(|d| d.as_secs_f64() * 1000.0),
        last_failure: check.and_then(|c| c.last_failure.clone()),
        in_flight,
        drained: (label == "draining").then_some(in_flight == 0),
        requests,
        errors,
        error_rate: ratio(errors, requests),
        ejections: passive.map_or(0, |p| p.total_ejections),
    }
}
