//! `GET /metrics`: the OpenMetrics text exposition, built at scrape time (the classic
//! Prometheus format is converted from it, [`super::classic`]).
//!
//! One `prometheus-client` [`Collector`] reads the request counters ([`crate::stats`]),
//! the backends' shared state (health, in flight, maintenance), the health monitors'
//! snapshots, passive health, retry counts and the open connections, and encodes them
//! ([`super::families`]). Per-backend rows carry `upstream`, `backend` (the configured
//! name) and `addr` (where it listens: one host name may resolve to several backends).
//! Scrapes allocate; requests never do.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use lb_core::Health;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::{Registry, Unit};

use super::families::{counters, gauges, histograms, labels, Labels};
use super::AdminState;
use crate::stats::CLASS_NAMES;

/// The collector over the whole proxy.
#[derive(Debug)]
struct ProxyCollector(Arc<AdminState>);

/// The registry `/metrics` encodes.
pub(crate) fn registry(state: Arc<AdminState>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ProxyCollector(state)));
    registry
}

/// The OpenMetrics text exposition of `registry`, ending with `# EOF`.
pub(crate) fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::with_capacity(16 * 1024);
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

impl Collector for ProxyCollector {
    #[allow(clippy::too_many_lines)] // One list of metric families, read top to bottom.
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let state = &self.0;
        let proxy = state.proxy();
        let stats = &proxy.stats;

        // Downstream requests, per route.
        let mut requests = Vec::new();
        let mut durations = Vec::new();
        let route_rows = proxy.router.routes().iter().map(|r| {
            let upstream = proxy.upstreams[r.upstream()].name();
            (r.index().to_string(), upstream, &stats.routes[r.index()])
        });
        let unrouted = std::iter::once(("none".to_owned(), "none", &stats.unrouted));
        for (route, upstream, rs) in route_rows.chain(unrouted) {
            for (class, n) in CLASS_NAMES.iter().zip(rs.requests.get()) {
                requests.push((
                    labels([("route", &route), ("upstream", upstream), ("class", class)]),
                    n,
                ));
            }
            durations.push((
                labels([("route", &route), ("upstream", upstream)]),
                rs.duration.snapshot(),
            ));
        }
        counters(
            &mut enc,
            "lb_requests",
            "Requests answered to clients, by route, upstream and status class.",
            &requests,
        )?;
        histograms(
            &mut enc,
            "lb_request_duration",
            "Time from a request's arrival to its response head, by route.",
            &durations,
        )?;

        // Upstreams and their backends.
        let mut up_requests = Vec::new();
        let mut retries = Vec::new();
        let mut over_budget = Vec::new();
        let mut queued = Vec::new();
        let mut responses = Vec::new();
        let mut failures = Vec::new();
        let mut ttfb = Vec::new();
        let mut in_flight = Vec::new();
        let mut usable = Vec::new();
        let mut health = Vec::new();
        let mut maintenance = Vec::new();
        let mut checks = Vec::new();
        let mut check_latency = Vec::new();
        let mut checks_started = Vec::new();
        let mut check_lateness = Vec::new();
        let mut ejected = Vec::new();
        let mut ejections = Vec::new();
        for (u, us) in proxy.upstreams.iter().zip(stats.upstreams.iter()) {
            let name = u.name();
            for (class, n) in CLASS_NAMES.iter().zip(us.requests.get()) {
                up_requests.push((labels([("upstream", name), ("class", class)]), n));
            }
            let rc = u.retry().counts();
            for (reason, n) in [
                ("error", rc.error),
                ("timeout", rc.timeout),
                ("invalid_header", rc.invalid_header),
                ("status", rc.status),
            ] {
                retries.push((labels([("upstream", name), ("reason", reason)]), n));
            }
            over_budget.push((labels([("upstream", name)]), rc.over_budget));
            queued.push((labels([("upstream", name)]), u.queued() as u64));

            let counters_by_addr = us.backends();
            for b in u.balancer().backends().iter() {
                let backend = b.name();
                // `addr` too: backends discovered from one host name share their name.
                let addr = b.addr().to_string();
                let l = || labels([("upstream", name), ("backend", backend), ("addr", &addr)]);
                if let Some(bs) = counters_by_addr.get(b.addr()) {
                    for (class, n) in CLASS_NAMES.iter().zip(bs.responses.get()) {
                        responses.push((
                            labels([
                                ("upstream", name),
                                ("backend", backend),
                                ("addr", &addr),
                                ("class", class),
                            ]),
                            n,
                        ));
                    }
                    for (kind, c) in [
                        ("connect", &bs.connect_errors),
                        ("timeout", &bs.timeouts),
                        ("other", &bs.errors),
                    ] {
                        failures.push((
                            labels([
                                ("upstream", name),
                                ("backend", backend),
                                ("addr", &addr),
                                ("kind", kind),
                            ]),
                            c.load(Relaxed),
                        ));
                    }
                    ttfb.push((l(), bs.ttfb.snapshot()));
                }
                let s = b.state();
                in_flight.push((l(), s.in_flight() as u64));
                usable.push((l(), u64::from(s.is_usable())));
                maintenance.push((l(), u64::from(s.in_maintenance())));
                for h in [Health::Healthy, Health::Unhealthy, Health::Unknown] {
                    health.push((
                        labels([
                            ("upstream", name),
                            ("backend", backend),
                            ("addr", &addr),
                            ("state", h.as_str()),
                        ]),
                        u64::from(s.health() == h),
                    ));
                }
            }
            if let Some(monitor) = u.balancer().health_monitor() {
                for h in monitor.snapshot() {
                    let addr = h.addr.to_string();
                    for (result, n) in [("pass", h.total_passes), ("fail", h.total_failures)] {
                        checks.push((
                            labels([
                                ("upstream", name),
                                ("backend", &h.name),
                                ("addr", &addr),
                                ("result", result),
                            ]),
                            n,
                        ));
                    }
                    if let Some(latency) = h.last_latency {
                        check_latency.push((
                            labels([("upstream", name), ("backend", &h.name), ("addr", &addr)]),
                            latency.as_secs_f64(),
                        ));
                    }
                }
                let s = monitor.schedule_stats();
                checks_started.push((labels([("upstream", name)]), s.started));
                check_lateness.push((labels([("upstream", name)]), s.max_lateness.as_secs_f64()));
            }
            if let Some(passive) = u.balancer().passive_health() {
                for p in passive.snapshot() {
                    let addr = p.addr.to_string();
                    let l = labels([("upstream", name), ("backend", &p.name), ("addr", &addr)]);
                    ejected.push((l.clone(), u64::from(p.ejected)));
                    ejections.push((l, p.total_ejections));
                }
            }
        }
        counters(
            &mut enc,
            "lb_upstream_requests",
            "Requests answered to clients, by upstream and status class.",
            &up_requests,
        )?;
        counters(
            &mut enc,
            "lb_upstream_retries",
            "Attempts retried on another backend, by upstream and reason.",
            &retries,
        )?;
        counters(
            &mut enc,
            "lb_upstream_retries_over_budget",
            "Retries the retry budget refused.",
            &over_budget,
        )?;
        gauges(
            &mut enc,
            "lb_upstream_queued_requests",
            None,
            "Requests waiting for a backend with room (upstream limits).",
            &queued,
        )?;
        counters(
            &mut enc,
            "lb_backend_responses",
            "Responses received from each backend (one per attempt), by status class.",
            &responses,
        )?;
        counters(
            &mut enc,
            "lb_backend_failures",
            "Attempts that got no response: connect errors, timeouts and other errors.",
            &failures,
        )?;
        histograms(
            &mut enc,
            "lb_backend_response_time",
            "Time from sending a request to a backend to its response head.",
            &ttfb,
        )?;
        gauges(
            &mut enc,
            "lb_backend_in_flight",
            None,
            "Requests in flight on each backend.",
            &in_flight,
        )?;
        gauges(
            &mut enc,
            "lb_backend_up",
            None,
            "1 when selection may pick the backend (healthy or unknown, enabled, not ejected, not in maintenance).",
            &usable,
        )?;
        gauges(
            &mut enc,
            "lb_backend_health",
            None,
            "The active checks' verdict: 1 for the current state.",
            &health,
        )?;
        gauges(
            &mut enc,
            "lb_backend_maintenance",
            None,
            "1 when an operator disabled or drained the backend through the admin API.",
            &maintenance,
        )?;
        counters(
            &mut enc,
            "lb_health_checks",
            "Active health checks, by result.",
            &checks,
        )?;
        gauges(
            &mut enc,
            "lb_health_check_duration",
            Some(Unit::Seconds),
            "How long the last active check of each backend took.",
            &check_latency,
        )?;
        counters(
            &mut enc,
            "lb_health_checks_started",
            "Active checks started by the scheduler.",
            &checks_started,
        )?;
        gauges(
            &mut enc,
            "lb_health_check_max_lateness",
            Some(Unit::Seconds),
            "The latest a scheduled check started after its due time.",
            &check_lateness,
        )?;
        gauges(
            &mut enc,
            "lb_backend_ejected",
            None,
            "1 while passive health ejects the backend.",
            &ejected,
        )?;
        counters(
            &mut enc,
            "lb_passive_ejections",
            "Passive-health ejections of each backend.",
            &ejections,
        )?;

        // The process.
        let open = state.connections.upgrade().map_or(0, |g| g.count() as u64);
        gauges(
            &mut enc,
            "lb_open_connections",
            None,
            "Client connections open on the proxy's listeners.",
            &[(Labels::new(), open)],
        )?;
        // The workers (one row when the proxy runs on its embedder's runtime).
        let workers = state.reloader.workers().stats();
        let by_worker = |value: fn(&crate::worker::WorkerStats) -> u64| -> Vec<(Labels, u64)> {
            workers
                .iter()
                .enumerate()
                .map(|(i, w)| (labels([("worker", &i.to_string())]), value(w)))
                .collect()
        };
        gauges(
            &mut enc,
            "lb_worker_open_connections",
            None,
            "Client connections open on each worker.",
            &by_worker(|w| w.open_connections as u64),
        )?;
        gauges(
            &mut enc,
            "lb_worker_parked_connections",
            None,
            "Open client connections idle with their HTTP state released, on each worker.",
            &by_worker(|w| w.parked_connections as u64),
        )?;
        counters(
            &mut enc,
            "lb_worker_connections",
            "Client connections each worker has served.",
            &by_worker(|w| w.connections),
        )?;
        let mut reloads = vec![
            (
                labels([("result", "success")]),
                stats.process.reloads_ok.load(Relaxed),
            ),
            (
                labels([("result", "failure")]),
                stats.process.reloads_failed.load(Relaxed),
            ),
        ];
        reloads.extend(
            stats
                .process
                .not_applied()
                .into_iter()
                .map(|(setting, n)| (labels([("result", "not_applied"), ("setting", setting)]), n)),
        );
        counters(
            &mut enc,
            "lb_config_reloads",
            "Configuration reloads, by result; not_applied counts, per setting, the applied \
             reloads that changed it without applying it (it needs a restart or an upgrade).",
            &reloads,
        )?;
        counters(
            &mut enc,
            "lb_access_log_dropped",
            "Access log lines dropped because the writer fell behind.",
            &[(
                Labels::new(),
                stats.process.access_log_dropped.load(Relaxed),
            )],
        )?;
        Ok(())
    }
}
