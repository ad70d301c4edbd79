//! Transitions come from the monitor: every subscriber hears each one once, with its time;
//! the initial health is the monitor's parameter; a carried-over verdict goes on; one
//! backend's record is read without the whole snapshot.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use lb_core::{Backend, Health};
use lb_health::{CheckFailure, CheckParams, HealthCheck, HealthMonitor, StatusChange};
use parking_lot::Mutex;

/// Passes while `up` is true.
struct Switch {
    up: AtomicBool,
}

#[async_trait]
impl HealthCheck for Switch {
    async fn check(&self, _backend: &Backend) -> Result<(), CheckFailure> {
        if self.up.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(CheckFailure::other("down"))
        }
    }

    fn params(&self) -> CheckParams {
        CheckParams {
            rise: NonZeroU32::new(2).unwrap(),
            fall: NonZeroU32::new(2).unwrap(),
            timeout: Duration::from_secs(1),
        }
    }
}

type Seen = Arc<Mutex<Vec<(Health, Health, SystemTime)>>>;

fn observed(monitor: &HealthMonitor) -> Seen {
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    monitor.subscribe(Arc::new(move |c: &StatusChange<'_>| {
        sink.lock().push((c.old, c.new, c.at));
    }));
    seen
}

#[tokio::test]
async fn every_subscriber_hears_each_transition_once_with_its_time() {
    let check = Arc::new(Switch {
        up: AtomicBool::new(false),
    });
    let monitor = HealthMonitor::new(check.clone());
    let (first, second) = (observed(&monitor), observed(&monitor));
    let backend = Backend::parse("127.0.0.1:1").unwrap();
    let before = SystemTime::now();
    assert_eq!(
        monitor.check_one(&backend).await,
        Some(Health::Unhealthy),
        "unknown: the first result decides"
    );
    assert_eq!(monitor.check_one(&backend).await, None);
    for seen in [&first, &second] {
        let seen = seen.lock();
        assert_eq!(seen.len(), 1);
        assert_eq!((seen[0].0, seen[0].1), (Health::Unknown, Health::Unhealthy));
        assert!(seen[0].2 >= before);
    }
    let at = first.lock()[0].2;
    let row = monitor.backend_health(backend.addr()).unwrap();
    assert_eq!(row.health, Health::Unhealthy);
    assert_eq!(row.consecutive_failures, 2);
    let ms = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    };
    assert_eq!(
        row.since.map(ms),
        Some(ms(at)),
        "since is the transition's time"
    );
    assert_eq!(backend.state().health_since().map(ms), Some(ms(at)));
    assert!(monitor
        .backend_health(Backend::parse("127.0.0.1:2").unwrap().addr())
        .is_none());
}

#[tokio::test]
async fn the_initial_health_is_the_monitors_and_a_carried_verdict_goes_on() {
    let check = Arc::new(Switch {
        up: AtomicBool::new(true),
    });
    // Initial `Unhealthy`: `rise` passes before the first transition.
    let monitor = HealthMonitor::new(check.clone()).with_initial_health(Health::Unhealthy);
    assert_eq!(monitor.initial_health(), Health::Unhealthy);
    let seen = observed(&monitor);
    let fresh = Backend::parse("127.0.0.1:1")
        .unwrap()
        .with_initial_health(Health::Unhealthy);
    assert_eq!(monitor.check_one(&fresh).await, None, "pass 1 < rise");
    assert_eq!(monitor.check_one(&fresh).await, Some(Health::Healthy));

    // Carried over: the verdict its shared state has (healthy), not the initial health.
    let carried = Backend::parse("127.0.0.1:2")
        .unwrap()
        .with_initial_health(Health::Healthy);
    monitor.carry_over(&carried);
    assert_eq!(monitor.check_one(&carried).await, None, "already healthy");
    check.up.store(false, Ordering::SeqCst);
    assert_eq!(monitor.check_one(&carried).await, None, "failure 1 < fall");
    assert_eq!(monitor.check_one(&carried).await, Some(Health::Unhealthy));
    assert_eq!(seen.lock().len(), 2);
}
