//! Passive health under paused time: nginx's `max_fails` within `fail_timeout`, Envoy's
//! consecutive 5xx and gateway failures with growing (and decaying) ejection times, the
//! `max_ejection_percent` cap, return on an active pass, and the background `run`.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lb_core::{Backend, BackendSet};
use lb_health::{
    CheckFailure, CheckParams, HealthCheck, HealthMonitor, Outcome, PassiveConfig, PassiveHealth,
};
use tokio::sync::watch;
use tokio::time::{advance, Instant};

fn n(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v).unwrap()
}

fn set(count: usize) -> BackendSet {
    (0..count)
        .map(|i| Backend::parse(&format!("127.0.0.{}:80", i + 1)).unwrap())
        .collect()
}

fn watching(config: PassiveConfig, backends: &BackendSet) -> PassiveHealth {
    let passive = PassiveHealth::new(config);
    passive.set_backends(backends);
    passive
}

fn report_n(p: &PassiveHealth, b: &Backend, outcome: Outcome, times: usize) {
    for _ in 0..times {
        p.report(b, outcome);
    }
}

#[tokio::test(start_paused = true)]
async fn nginx_max_fails_within_fail_timeout_ejects_for_fail_timeout() {
    let backends = set(2);
    let mut config = PassiveConfig::nginx(n(3), Duration::from_secs(10));
    config.max_ejection_percent = 50;
    let p = watching(config, &backends);
    let b = &backends[0];

    // Two failures, then the window runs out: the count starts again.
    p.report(b, Outcome::ConnectFailure);
    p.report(b, Outcome::Status(502));
    advance(Duration::from_secs(10)).await;
    p.report(b, Outcome::Timeout);
    p.report(b, Outcome::Status(200)); // a success inside the window does not reset it
    p.report(b, Outcome::Status(500)); // not in fail_statuses (502-504)
    p.report(b, Outcome::Error);
    assert!(!b.state().is_ejected());
    assert_eq!(p.snapshot()[0].window_failures, 2);
    p.report(b, Outcome::Status(504));
    assert!(b.state().is_ejected() && !b.state().is_usable());
    let until = p.snapshot()[0].ejected_until.unwrap();
    assert_eq!(until, Instant::now() + Duration::from_secs(10));

    assert_eq!(p.tick(until - Duration::from_millis(1)), 0);
    assert!(b.state().is_ejected());
    assert_eq!(p.tick(until), 1);
    assert!(!b.state().is_ejected() && b.state().is_usable());
    let s = &p.snapshot()[0];
    assert_eq!(
        (s.ejected, s.window_failures, s.total_ejections),
        (false, 0, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn envoy_consecutive_5xx_ejects_for_a_growing_then_capped_time() {
    let backends = set(1);
    let mut config = PassiveConfig::envoy(n(3));
    config.base_ejection_time = Duration::from_secs(30);
    config.max_ejection_time = Duration::from_secs(80);
    let p = watching(config, &backends);
    let b = &backends[0];

    report_n(&p, b, Outcome::Status(500), 2);
    p.report(b, Outcome::Status(404)); // not a 5xx: the streak restarts
    report_n(&p, b, Outcome::Status(503), 2);
    assert!(!b.state().is_ejected());
    p.report(b, Outcome::Timeout); // counts as a 5xx, as Envoy's router would answer 504
    assert!(b.state().is_ejected());

    let mut lengths = Vec::new();
    for _ in 0..3 {
        let until = p.snapshot()[0].ejected_until.unwrap();
        lengths.push(until - Instant::now());
        advance(until - Instant::now()).await;
        assert_eq!(p.tick(Instant::now()), 1);
        report_n(&p, b, Outcome::Status(500), 3);
        assert!(b.state().is_ejected());
    }
    assert_eq!(
        lengths,
        [30, 60, 80].map(Duration::from_secs),
        "base × times ejected, capped by max_ejection_time"
    );
    assert_eq!(p.snapshot()[0].total_ejections, 4);

    // While not ejected the multiplier decays by one per base ejection time.
    let until = p.snapshot()[0].ejected_until.unwrap();
    advance(until - Instant::now()).await;
    p.tick(Instant::now());
    assert_eq!(p.snapshot()[0].ejections, 4);
    advance(Duration::from_secs(90)).await; // three base times
    report_n(&p, b, Outcome::Status(500), 3);
    let s = &p.snapshot()[0];
    assert_eq!(s.ejections, 2, "4 - 3 + 1");
    assert_eq!(
        s.ejected_until.unwrap() - Instant::now(),
        Duration::from_secs(60)
    );
}

#[tokio::test(start_paused = true)]
async fn consecutive_gateway_failures_count_502_to_504_and_errors_only() {
    let backends = set(1);
    let mut config = PassiveConfig::default();
    config.consecutive_gateway_failure = Some(n(3));
    let p = watching(config, &backends);
    let b = &backends[0];
    p.report(b, Outcome::Status(502));
    p.report(b, Outcome::ConnectFailure);
    p.report(b, Outcome::Status(500)); // a 5xx, but no gateway failure: restarts the streak
    p.report(b, Outcome::Status(503));
    p.report(b, Outcome::Error);
    assert!(!b.state().is_ejected());
    assert_eq!(p.snapshot()[0].consecutive_gateway_failures, 2);
    p.report(b, Outcome::Status(504));
    assert!(b.state().is_ejected());
    let s = &p.snapshot()[0];
    assert_eq!(
        s.ejected_until.unwrap() - Instant::now(),
        Duration::from_secs(30)
    );
}

#[tokio::test(start_paused = true)]
async fn never_more_than_max_ejection_percent_but_always_one() {
    let backends = set(10);
    let mut config = PassiveConfig::nginx(n(1), Duration::from_secs(10));
    config.max_ejection_percent = 20;
    let p = watching(config, &backends);
    for b in backends.iter() {
        p.report(b, Outcome::ConnectFailure);
    }
    let ejected: Vec<bool> = backends.iter().map(|b| b.state().is_ejected()).collect();
    assert_eq!(ejected.iter().filter(|e| **e).count(), 2, "20% of 10");
    assert!(ejected[0] && ejected[1], "the first two to fail");

    // When one returns, the next failing backend may take its place.
    advance(Duration::from_secs(10)).await;
    assert_eq!(p.tick(Instant::now()), 2);
    p.report(&backends[5], Outcome::ConnectFailure);
    assert!(backends[5].state().is_ejected());

    let three = set(3);
    let p = watching(PassiveConfig::nginx(n(1), Duration::from_secs(10)), &three);
    for b in three.iter() {
        p.report(b, Outcome::ConnectFailure);
    }
    let count = three.iter().filter(|b| b.state().is_ejected()).count();
    assert_eq!(
        count, 1,
        "10% of 3 is 0.3, but one backend may always be ejected"
    );
}

#[tokio::test(start_paused = true)]
async fn late_reports_and_unknown_backends_are_ignored() {
    let backends = set(2);
    let p = watching(
        PassiveConfig::nginx(n(1), Duration::from_secs(10)),
        &backends,
    );
    let stranger = Backend::parse("127.0.0.99:80").unwrap();
    p.report(&stranger, Outcome::ConnectFailure);
    assert!(!stranger.state().is_ejected());
    p.report(&backends[0], Outcome::ConnectFailure);
    report_n(&p, &backends[0], Outcome::ConnectFailure, 5);
    assert_eq!(
        p.snapshot()[0].total_ejections,
        1,
        "reports while ejected change nothing"
    );
}

/// Passes for every backend, instantly.
struct AlwaysPass;

#[async_trait]
impl HealthCheck for AlwaysPass {
    async fn check(&self, _backend: &Backend) -> Result<(), CheckFailure> {
        Ok(())
    }

    fn params(&self) -> CheckParams {
        support::params(1, 1, Duration::from_secs(1))
    }
}

#[tokio::test(start_paused = true)]
async fn an_active_pass_returns_an_ejected_backend_only_when_configured() {
    for return_on_active_pass in [false, true] {
        let backends = set(2);
        let mut config = PassiveConfig::nginx(n(1), Duration::from_secs(10));
        config.return_on_active_pass = return_on_active_pass;
        let passive = Arc::new(watching(config, &backends));
        let monitor = HealthMonitor::new(Arc::new(AlwaysPass)).with_passive(passive.clone());
        passive.report(&backends[0], Outcome::Timeout);
        assert!(backends[0].state().is_ejected());
        monitor.check_one(&backends[0]).await;
        assert_eq!(backends[0].state().is_ejected(), !return_on_active_pass);
    }
}

#[tokio::test(start_paused = true)]
async fn run_returns_backends_on_time_and_follows_the_set() {
    let backends = set(4);
    let mut config = PassiveConfig::nginx(n(1), Duration::from_secs(10));
    config.max_ejection_percent = 100;
    let passive = Arc::new(watching(config, &backends));
    let (tx, rx) = watch::channel(backends.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn({
        let passive = passive.clone();
        async move {
            passive
                .run(rx, async {
                    let _ = stopped.await;
                })
                .await;
        }
    });
    passive.report(&backends[0], Outcome::ConnectFailure);
    tokio::time::sleep(Duration::from_secs(4)).await;
    passive.report(&backends[1], Outcome::ConnectFailure);
    passive.report(&backends[2], Outcome::ConnectFailure);
    assert_eq!(
        passive.next_return(),
        Some(Instant::now() + Duration::from_secs(6))
    );

    tokio::time::sleep(Duration::from_millis(6001)).await;
    assert!(!backends[0].state().is_ejected(), "returned at 10s");
    assert!(backends[1].state().is_ejected() && backends[2].state().is_ejected());

    // Backend 1 leaves the set while ejected: its bit is cleared, its state forgotten.
    let rest: BackendSet = [
        backends[0].clone(),
        backends[2].clone(),
        backends[3].clone(),
    ]
    .into_iter()
    .collect();
    tx.send(rest).unwrap();
    tokio::task::yield_now().await;
    assert!(!backends[1].state().is_ejected());
    assert_eq!(passive.snapshot().len(), 3);

    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!backends[2].state().is_ejected(), "returned at 14s");
    stop.send(()).unwrap();
    task.await.unwrap();
}

/// A backend whose state arrives already ejected (a reload built a new upstream and carried
/// the state over) is adopted: it stays out one base ejection time, then `tick` lets it back.
#[tokio::test(start_paused = true)]
async fn a_backend_that_arrives_ejected_is_let_back_after_one_ejection_time() {
    let backends = set(2);
    let old = watching(PassiveConfig::envoy(n(1)), &backends);
    old.report(&backends[0], Outcome::Status(500));
    assert!(backends[0].state().is_ejected());

    // The replacement sees the same states.
    let new = watching(PassiveConfig::envoy(n(1)), &backends);
    let s = new.snapshot();
    assert!(s[0].ejected, "adopted: {s:?}");
    let until = s[0].ejected_until.unwrap();
    assert_eq!(until, Instant::now() + Duration::from_secs(30));
    assert_eq!(new.tick(until - Duration::from_millis(1)), 0);
    assert_eq!(new.tick(until), 1);
    assert!(backends[0].state().is_usable());
    assert!(!s[1].ejected);
}
