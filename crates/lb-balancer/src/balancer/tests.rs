//! Unit tests of the balancer: selection, state across updates, discovery errors, shutdown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lb_core::{Backend, BackendSet, Health};
use lb_discovery::{Discovered, DiscoveryError, ServiceDiscovery, Static};
use lb_health::{CheckFailure, HealthCheck};
use lb_selection::RoundRobin;

use super::*;

/// `LoadBalancer::run` in a task, stopped on demand.
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn spawn<S: lb_selection::BackendSelection>(lb: &Arc<LoadBalancer<S>>) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let lb = lb.clone();
        let task = tokio::spawn(async move {
            lb.run(async {
                let _ = stopped.await;
            })
            .await
        });
        Self { stop, task }
    }

    /// Signals shutdown and waits for `run` to return.
    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap();
    }
}

fn set(names: &[&str]) -> BackendSet {
    names.iter().map(|n| Backend::parse(n).unwrap()).collect()
}

#[test]
fn select_rotates_and_skips_unusable_backends() {
    let lb =
        LoadBalancer::<RoundRobin>::try_from_iter(["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"])
            .unwrap();
    let pick = || lb.select(b"", 8).unwrap().name().to_owned();
    assert_eq!(
        [pick(), pick(), pick()],
        ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]
    );

    lb.backends()[1].state().set_health(Health::Unhealthy);
    lb.backends()[2].state().set_enabled(false);
    for _ in 0..10 {
        assert_eq!(pick(), "10.0.0.1:80");
    }
    lb.backends()[0].state().set_health(Health::Unhealthy);
    assert!(lb.select(b"", 8).is_none());
}

#[test]
fn max_iterations_bounds_the_walk() {
    let lb = LoadBalancer::<RoundRobin>::try_from_iter(["10.0.0.1:80", "10.0.0.2:80"]).unwrap();
    lb.backends()[0].state().set_health(Health::Unhealthy);
    lb.backends()[1].state().set_health(Health::Unhealthy);
    assert!(
        lb.select(b"", usize::MAX).is_none(),
        "terminates without a cap"
    ); // tick 0
    lb.backends()[0].state().set_health(Health::Healthy);
    // Tick 1 starts at 10.0.0.2 (unhealthy): one iteration is not enough.
    assert!(lb.select(b"", 1).is_none());
    // Tick 2 starts at 10.0.0.1.
    assert_eq!(lb.select(b"", 1).unwrap().name(), "10.0.0.1:80");
    // Tick 3 starts at 10.0.0.2 again; two iterations reach 10.0.0.1.
    assert_eq!(lb.select(b"", 2).unwrap().name(), "10.0.0.1:80");
}

#[test]
fn select_with_excludes_tried_backends() {
    let lb = LoadBalancer::<RoundRobin>::try_from_iter(["10.0.0.1:80", "10.0.0.2:80"]).unwrap();
    let first = lb.select(b"", 8).unwrap();
    let second = lb.select_with(b"", 8, |b| b != first.backend()).unwrap();
    assert_ne!(first.name(), second.name());
}

#[tokio::test]
async fn updates_keep_the_state_of_backends_that_remain() {
    let discovery = Arc::new(Static::new(set(&["10.0.0.1:80", "10.0.0.2:80"])));
    let mut lb = LoadBalancer::<RoundRobin>::from_discovery(discovery.clone());
    lb.set_initial_health(Health::Unhealthy);
    let change = lb.update().await.unwrap();
    assert_eq!(change.added.len(), 2);

    let kept = lb.backends()[0].clone();
    kept.state().set_health(Health::Healthy);
    let in_flight = lb.select(b"", 8).unwrap();
    assert_eq!(in_flight.name(), "10.0.0.1:80");

    // 10.0.0.2 leaves, 10.0.0.3 arrives, 10.0.0.1 changes weight.
    discovery.set(
        [
            kept.with_weight(std::num::NonZeroU32::new(4).unwrap()),
            Backend::parse("10.0.0.3:80").unwrap(),
        ]
        .into_iter()
        .collect(),
    );
    let change = lb.update().await.unwrap();
    assert_eq!(change.added.len(), 1);
    assert_eq!(change.removed.len(), 1);
    assert_eq!(change.changed.len(), 1);

    let now = lb.backends();
    assert_eq!(now.len(), 2);
    assert_eq!(now[0].weight().get(), 4);
    assert_eq!(now[0].state().health(), Health::Healthy, "health kept");
    assert_eq!(now[0].state().in_flight(), 1, "in-flight count kept");
    assert_eq!(
        now[1].state().health(),
        Health::Unhealthy,
        "new backend starts as configured"
    );
    drop(in_flight);
    assert_eq!(
        now[0].state().in_flight(),
        0,
        "guard from the old selector gives back"
    );
    assert!(
        lb.update().await.unwrap().is_empty(),
        "no change, no rebuild"
    );
}

#[tokio::test]
async fn disabled_backends_stay_in_the_set_but_get_no_traffic() {
    struct Disabling(BackendSet);
    #[async_trait]
    impl ServiceDiscovery for Disabling {
        async fn discover(&self) -> Result<Discovered, DiscoveryError> {
            let mut d = Discovered::new(self.0.clone());
            d.disabled.insert(self.0[0].addr().clone());
            Ok(d)
        }
    }
    let lb = LoadBalancer::<RoundRobin>::from_discovery(Arc::new(Disabling(set(&[
        "10.0.0.1:80",
        "10.0.0.2:80",
    ]))));
    lb.update().await.unwrap();
    assert_eq!(lb.backends().len(), 2);
    for _ in 0..4 {
        assert_eq!(lb.select(b"", 8).unwrap().name(), "10.0.0.2:80");
    }
}

struct Flaky {
    fail: AtomicBool,
    inner: Static,
}

#[async_trait]
impl ServiceDiscovery for Flaky {
    async fn discover(&self) -> Result<Discovered, DiscoveryError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(DiscoveryError::new("test", "registry unreachable"));
        }
        self.inner.discover().await
    }
}

#[tokio::test]
async fn a_discovery_error_keeps_the_last_good_set() {
    let flaky = Arc::new(Flaky {
        fail: AtomicBool::new(false),
        inner: Static::new(set(&["10.0.0.1:80"])),
    });
    let lb = LoadBalancer::<RoundRobin>::from_discovery(flaky.clone());
    lb.update().await.unwrap();
    flaky.fail.store(true, Ordering::SeqCst);
    let err = lb.update().await.unwrap_err();
    assert_eq!(err.source_name(), "test");
    lb.refresh().await;
    assert_eq!(lb.backends().len(), 1);
    assert!(lb.select(b"", 8).is_some());
}

/// Counts checks; never finishes when `hang` is set.
#[derive(Default)]
struct Counting {
    calls: std::sync::atomic::AtomicUsize,
    hang: AtomicBool,
}

#[async_trait]
impl HealthCheck for Counting {
    async fn check(&self, _: &Backend) -> Result<(), CheckFailure> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn run_checks_on_its_interval_and_stops_promptly() {
    let counting = Arc::new(Counting::default());
    let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(["10.0.0.1:80", "10.0.0.2:80"]).unwrap();
    lb.set_health_check(counting.clone());
    lb.health_check_frequency = Some(Duration::from_secs(1));
    lb.update_frequency = Some(Duration::from_secs(1));
    let lb = Arc::new(lb);

    let running = Running::spawn(&lb);
    // Rounds at t = 0, 1, 2 (the first at once).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(counting.calls.load(Ordering::SeqCst), 6);
    assert_eq!(lb.backends()[0].state().health(), Health::Healthy);

    // A check in progress does not delay shutdown.
    counting.hang.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = tokio::time::Instant::now();
    running.stop().await;
    assert_eq!(before.elapsed(), Duration::ZERO, "shutdown is immediate");
}

#[test]
fn slow_start_thins_a_warming_backend_then_lets_it_go() {
    let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(["10.0.0.1:80", "10.0.0.2:80"]).unwrap();
    lb.set_slow_start(crate::SlowStart::new(Duration::from_secs(10), 10).unwrap());
    let warming = lb.backends()[0].clone();
    // Halfway through the window: weight fraction 0.1 + 0.9 * 0.5 = 0.55. Round robin makes
    // it the first pick of half the requests, and keeps 55% of those.
    warming
        .state()
        .start_warming(lb_core::monotonic_ms() - 5_000);
    let n = 20_000;
    let hits = (0..n)
        .filter(|_| lb.select(b"", 8).unwrap().backend() == &warming)
        .count();
    let share = hits as f64 / f64::from(n);
    assert!((0.25..0.30).contains(&share), "share {share}");

    // Past the window: a full share, and the mark is cleared.
    warming
        .state()
        .start_warming(lb_core::monotonic_ms() - 11_000);
    let hits = (0..1000)
        .filter(|_| lb.select(b"", 8).unwrap().backend() == &warming)
        .count();
    assert_eq!(hits, 500);
    assert_eq!(warming.state().warming_since(), None);
}

#[test]
fn slow_start_never_turns_a_selection_into_none() {
    let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(["10.0.0.1:80"]).unwrap();
    lb.set_slow_start(crate::SlowStart::new(Duration::from_secs(3600), 1).unwrap());
    lb.backends()[0]
        .state()
        .start_warming(lb_core::monotonic_ms());
    for _ in 0..1000 {
        assert!(lb.select(b"", 8).is_some());
    }
}

#[tokio::test]
async fn backups_serve_only_when_no_primary_is_usable() {
    let all = set(&["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]);
    let lb = LoadBalancer::<RoundRobin>::from_discovery(Arc::new(Static::default()));
    let mut found = Discovered::new(all.clone());
    found.backups.insert(all[2].addr().clone());
    let change = lb.set_discovered(found);
    assert_eq!(change.added.len(), 3);
    for _ in 0..9 {
        assert_ne!(lb.select(b"", 8).unwrap().name(), "10.0.0.3:80");
    }
    lb.backends()[0].state().set_health(Health::Unhealthy);
    lb.backends()[1].state().set_enabled(false);
    for _ in 0..3 {
        assert_eq!(lb.select(b"", 8).unwrap().name(), "10.0.0.3:80");
    }
    // Promoted by discovery: a role change, reported as toggled, no rebuild needed.
    let change = lb.set_discovered(Discovered::new(all));
    assert_eq!(
        change.toggled.len(),
        2,
        "backup flag and enabled flag flipped: {change:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn pushed_discovery_changes_are_installed_as_they_arrive() {
    let discovery = Arc::new(Static::new(set(&["10.0.0.1:80"])));
    let lb = Arc::new(LoadBalancer::<RoundRobin>::from_discovery(
        discovery.clone(),
    ));
    lb.update().await.unwrap();
    let running = Running::spawn(&lb);
    discovery.add(Backend::parse("10.0.0.2:80").unwrap());
    // No polling interval is set: only the push can deliver the change.
    for _ in 0..100 {
        if lb.backends().len() == 2 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(lb.backends().len(), 2);
    running.stop().await;
}

#[tokio::test]
async fn passive_health_ejects_on_reported_failures() {
    // Passive health configured before the set is known, as lb-proxy does.
    let discovery = Arc::new(Static::new(set(&[
        "10.0.0.1:80",
        "10.0.0.2:80",
        "10.0.0.3:80",
    ])));
    let mut lb = LoadBalancer::<RoundRobin>::from_discovery(discovery);
    let mut cfg = crate::PassiveConfig::default();
    cfg.consecutive_5xx = std::num::NonZeroU32::new(3);
    cfg.max_ejection_percent = 50;
    lb.set_passive_health(cfg);
    lb.update().await.unwrap();
    let bad = lb.backends()[1].clone();
    for _ in 0..3 {
        lb.report(&bad, crate::Outcome::Status(502));
    }
    assert!(bad.state().is_ejected(), "ejected after three 5xx");
    for _ in 0..6 {
        assert_ne!(lb.select(b"", 8).unwrap().backend(), &bad);
    }
}

#[tokio::test(start_paused = true)]
async fn ejected_backends_return_when_their_time_is_over() {
    let discovery = Arc::new(Static::new(set(&[
        "10.0.0.1:80",
        "10.0.0.2:80",
        "10.0.0.3:80",
    ])));
    let mut lb = LoadBalancer::<RoundRobin>::from_discovery(discovery);
    let mut cfg = crate::PassiveConfig::default();
    cfg.consecutive_5xx = std::num::NonZeroU32::new(1);
    cfg.base_ejection_time = Duration::from_millis(300);
    cfg.max_ejection_percent = 50;
    lb.set_passive_health(cfg);
    lb.update().await.unwrap();
    let lb = Arc::new(lb);
    let running = Running::spawn(&lb);
    tokio::task::yield_now().await;
    let bad = lb.backends()[0].clone();
    lb.report(&bad, crate::Outcome::Status(500));
    assert!(bad.state().is_ejected());
    tokio::time::sleep(Duration::from_millis(299)).await;
    assert!(bad.state().is_ejected(), "still out before its time");
    tokio::time::sleep(Duration::from_millis(2)).await;
    assert!(!bad.state().is_ejected(), "back when its time is over");
    running.stop().await;
}

#[test]
fn a_replacing_balancer_inherits_the_state_of_backends_at_the_same_address() {
    let old = LoadBalancer::<RoundRobin>::try_from_iter(["10.0.0.1:80", "10.0.0.2:80"]).unwrap();
    old.backends()[0].state().set_health(Health::Unhealthy);
    let held = old.backends()[1].begin_request();

    let mut new = LoadBalancer::<RoundRobin>::from_discovery(Arc::new(Static::default()));
    new.set_initial_health(Health::Healthy);
    new.inherit_states(&old.backends());
    new.set_discovered(Discovered::new(set(&[
        "10.0.0.1:80",
        "10.0.0.2:80",
        "10.0.0.3:80",
    ])));
    let b = new.backends();
    assert_eq!(
        b[0].state().health(),
        Health::Unhealthy,
        "carried, not `initial`"
    );
    assert_eq!(b[1].state().in_flight(), 1, "in-flight requests carried");
    assert_eq!(
        b[2].state().health(),
        Health::Healthy,
        "a new address starts as configured"
    );
    drop(held);
    assert_eq!(b[1].state().in_flight(), 0);

    // Only the first set inherits: a backend that leaves and comes back starts afresh.
    new.set_discovered(Discovered::new(set(&["10.0.0.2:80"])));
    new.set_discovered(Discovered::new(set(&["10.0.0.1:80", "10.0.0.2:80"])));
    assert_eq!(new.backends()[0].state().health(), Health::Healthy);
}
