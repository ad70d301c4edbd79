//! The TCP check against a real listener that is closed and reopened, and the timeout bound.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lb_core::{Backend, Health};
use lb_health::{
    CheckFailure, CheckParams, HealthCheck, HealthMonitor, StatusChange, TcpHealthCheck,
};
use lb_testkit::TestBackend;
use parking_lot::Mutex;

type Log = Arc<Mutex<Vec<(Health, Health, Option<String>)>>>;

fn params(rise: u32, fall: u32, timeout: Duration) -> CheckParams {
    CheckParams {
        rise: NonZeroU32::new(rise).unwrap(),
        fall: NonZeroU32::new(fall).unwrap(),
        timeout,
    }
}

/// A monitor running `check`, with an observer that records every transition.
fn recording(check: impl HealthCheck) -> (HealthMonitor, Log) {
    let log: Log = Arc::default();
    let sink = log.clone();
    let monitor = HealthMonitor::new(Arc::new(check));
    monitor.subscribe(Arc::new(move |c: &StatusChange<'_>| {
        sink.lock()
            .push((c.old, c.new, c.reason.map(|r| r.to_string())));
    }));
    (monitor, log)
}

#[tokio::test]
async fn rise_and_fall_flip_after_the_exact_number_of_checks() {
    let mut server = TestBackend::start("a").await;
    let backend = Backend::new(server.addr());
    let (monitor, log) = recording(TcpHealthCheck::new(params(2, 3, Duration::from_secs(2))));

    // First result after start-up settles the unknown state and fires the hook.
    assert_eq!(backend.state().health(), Health::Unknown);
    assert_eq!(monitor.check_one(&backend).await, Some(Health::Healthy));
    assert_eq!(log.lock().len(), 1);

    server.stop().await;
    for n in 1..3 {
        assert_eq!(
            monitor.check_one(&backend).await,
            None,
            "failure {n} < fall"
        );
        assert!(backend.state().is_usable());
    }
    assert_eq!(monitor.check_one(&backend).await, Some(Health::Unhealthy));
    assert!(!backend.state().is_usable());
    for _ in 0..3 {
        assert_eq!(
            monitor.check_one(&backend).await,
            None,
            "no repeat of the transition"
        );
    }

    server.start_again().await;
    assert_eq!(monitor.check_one(&backend).await, None, "pass 1 < rise");
    assert!(!backend.state().is_usable());
    assert_eq!(monitor.check_one(&backend).await, Some(Health::Healthy));
    assert!(backend.state().is_usable());

    let log = log.lock();
    assert_eq!(log.len(), 3, "one hook call per transition: {log:?}");
    assert_eq!((log[0].0, log[0].1), (Health::Unknown, Health::Healthy));
    assert_eq!((log[1].0, log[1].1), (Health::Healthy, Health::Unhealthy));
    let reason = log[1].2.as_deref().unwrap();
    assert!(reason.starts_with("connect failed"), "reason: {reason}");
    assert_eq!(
        (log[2].0, log[2].1, log[2].2.as_deref()),
        (Health::Unhealthy, Health::Healthy, None)
    );
}

/// A check that never answers for one backend and answers at once for the others.
struct HangsOn(Backend);

#[async_trait]
impl HealthCheck for HangsOn {
    async fn check(&self, backend: &Backend) -> Result<(), CheckFailure> {
        if *backend == self.0 {
            std::future::pending::<()>().await;
        }
        Ok(())
    }

    fn params(&self) -> CheckParams {
        params(1, 1, Duration::from_millis(300))
    }
}

#[tokio::test(start_paused = true)]
async fn a_hung_check_fails_by_its_timeout_and_blocks_no_other() {
    let hung = Backend::parse("10.255.0.1:80").unwrap();
    let fine = Backend::parse("10.255.0.2:80").unwrap();
    let (monitor, log) = recording(HangsOn(hung.clone()));

    let started = tokio::time::Instant::now();
    let all = [hung.clone(), fine.clone()];
    let round = monitor.check_all(&all);
    tokio::pin!(round);
    // Just before the timeout the fine backend is settled and the hung one is not.
    assert!(tokio::time::timeout(Duration::from_millis(299), &mut round)
        .await
        .is_err());
    assert_eq!(fine.state().health(), Health::Healthy);
    assert_eq!(hung.state().health(), Health::Unknown);
    round.await;
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(300),
        "fails by the timeout, not later"
    );
    assert_eq!(hung.state().health(), Health::Unhealthy);
    let log = log.lock();
    assert_eq!(log.len(), 2);
    assert!(log.iter().any(|(_, new, why)| *new == Health::Unhealthy
        && why.as_deref() == Some("timed out after 300ms")));
}

#[tokio::test]
async fn removed_backends_are_forgotten() {
    let server = TestBackend::start("a").await;
    let backend = Backend::new(server.addr());
    let (monitor, _log) = recording(TcpHealthCheck::default());
    monitor.check_one(&backend).await;
    assert!(monitor.tracker(backend.addr()).is_some());
    monitor.retain(&[]);
    assert!(monitor.tracker(backend.addr()).is_none());
}
