//! The scheduler under paused time, with a scripted check that logs when each backend is
//! checked and counts concurrency: exact periods, jitter and spread bounds, the unhealthy
//! interval, the concurrency bound, prompt shutdown, and set changes through the watch.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

use lb_core::{Backend, BackendSet, Health};
use lb_health::{FirstCheck, HealthMonitor, Schedule};
use support::params;
use support::probe::{Behave, Probe};
use tokio::sync::watch;
use tokio::time::Instant;

fn backends(names: &[&str]) -> BackendSet {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            Backend::parse(&format!("127.0.0.1:{}", 1000 + i))
                .unwrap()
                .with_name(*n)
        })
        .collect()
}

fn numbered(n: usize) -> BackendSet {
    (0..n)
        .map(|i| {
            Backend::parse(&format!("127.0.{}.{}:80", i / 250, 1 + i % 250))
                .unwrap()
                .with_name(format!("b{i}"))
        })
        .collect()
}

fn exact(interval_ms: u64) -> Schedule {
    let mut s = Schedule::new(Duration::from_millis(interval_ms));
    s.jitter = 0.0;
    s
}

fn ms(v: &[u64]) -> Vec<Duration> {
    v.iter().map(|m| Duration::from_millis(*m)).collect()
}

#[tokio::test(start_paused = true)]
async fn first_checks_at_once_then_one_interval_after_each_end() {
    let probe = Probe::new(params(1, 1, Duration::from_secs(1)));
    probe.set("slow", Behave::Take(Duration::from_millis(200)));
    let monitor = HealthMonitor::new(probe.clone());
    let (_tx, rx) = watch::channel(backends(&["a", "slow"]));
    let started = Instant::now();
    monitor
        .run(
            rx,
            exact(1000),
            tokio::time::sleep(Duration::from_millis(3500)),
        )
        .await;
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(3500),
        "returns when shutdown resolves"
    );
    assert_eq!(probe.times("a"), ms(&[0, 1000, 2000, 3000]));
    // The next check is due one interval after the previous one ended.
    assert_eq!(probe.times("slow"), ms(&[0, 1200, 2400]));
    assert_eq!(monitor.schedule_stats().max_lateness, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn spread_first_checks_cover_the_first_interval() {
    let probe = Probe::new(params(1, 1, Duration::from_secs(1)));
    let monitor = HealthMonitor::new(probe.clone());
    let (_tx, rx) = watch::channel(numbered(1000));
    let mut schedule = exact(10_000);
    schedule.first_check = FirstCheck::Spread;
    schedule.max_concurrency = 1000;
    monitor
        .run(
            rx,
            schedule,
            tokio::time::sleep(Duration::from_millis(10_500)),
        )
        .await;
    let mut first: BTreeMap<String, Duration> = BTreeMap::new();
    for (name, t) in probe.starts.lock().iter() {
        first.entry(name.clone()).or_insert(*t);
    }
    assert_eq!(first.len(), 1000, "every backend checked");
    // Offsets are drawn in [0, 10s); the timer wheel rounds up to the millisecond.
    assert!(first.values().all(|t| *t <= Duration::from_secs(10)));
    let mut buckets = [0usize; 10];
    for t in first.values() {
        buckets[usize::try_from(t.as_secs()).unwrap().min(9)] += 1;
    }
    // 100 expected per second; the bounds are more than 5 standard deviations wide.
    assert!(
        buckets.iter().all(|n| (50..=150).contains(n)),
        "{buckets:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn jitter_spreads_each_wait_within_its_bounds() {
    let probe = Probe::new(params(1, 1, Duration::from_secs(1)));
    let monitor = HealthMonitor::new(probe.clone());
    let (_tx, rx) = watch::channel(numbered(200));
    let mut schedule = exact(1000);
    schedule.jitter = 0.5;
    monitor
        .run(
            rx,
            schedule,
            tokio::time::sleep(Duration::from_millis(1300)),
        )
        .await;
    let starts = probe.starts.lock();
    let second: Vec<Duration> = starts
        .iter()
        .filter(|(_, t)| !t.is_zero())
        .map(|(_, t)| *t)
        .collect();
    assert_eq!(starts.len() - second.len(), 200, "all first checks at once");
    assert_eq!(second.len(), 200, "every second check within 1000ms ± 25%");
    let bounds = Duration::from_millis(750)..=Duration::from_millis(1250);
    assert!(second.iter().all(|t| bounds.contains(t)));
    let distinct: HashSet<&Duration> = second.iter().collect();
    assert!(
        distinct.len() > 100,
        "spread, not one instant: {}",
        distinct.len()
    );
}

#[tokio::test(start_paused = true)]
async fn the_unhealthy_interval_applies_while_unhealthy() {
    let probe = Probe::new(params(1, 1, Duration::from_secs(1)));
    probe.set("down", Behave::Fail);
    let monitor = HealthMonitor::new(probe.clone());
    let set = backends(&["down", "up"]);
    let (_tx, rx) = watch::channel(set.clone());
    let mut schedule = exact(1000);
    schedule.unhealthy_interval = Some(Duration::from_millis(3000));
    let run = monitor.run(
        rx,
        schedule,
        tokio::time::sleep(Duration::from_millis(7500)),
    );
    tokio::pin!(run);
    // The down backend recovers at 5.5s.
    tokio::select! {
        () = &mut run => unreachable!(),
        () = tokio::time::sleep(Duration::from_millis(5500)) => probe.set("down", Behave::Pass),
    }
    run.await;
    assert_eq!(
        probe.times("up"),
        ms(&[0, 1000, 2000, 3000, 4000, 5000, 6000, 7000])
    );
    // Unhealthy after its first check: every 3s; the pass at 6s makes it healthy: 1s again.
    assert_eq!(probe.times("down"), ms(&[0, 3000, 6000, 7000]));
    assert_eq!(set[0].state().health(), Health::Healthy);
}

#[tokio::test(start_paused = true)]
async fn concurrency_never_exceeds_the_bound() {
    let probe = Probe::new(params(1, 1, Duration::from_secs(1)));
    let set = numbered(50);
    for b in set.iter() {
        probe.set(b.name(), Behave::Take(Duration::from_millis(100)));
    }
    let monitor = HealthMonitor::new(probe.clone());
    let (_tx, rx) = watch::channel(set);
    let mut schedule = exact(1000);
    schedule.max_concurrency = 4;
    monitor
        .run(
            rx,
            schedule,
            tokio::time::sleep(Duration::from_millis(1300)),
        )
        .await;
    assert_eq!(probe.max_running.load(SeqCst), 4);
    let starts = probe.starts.lock();
    // 50 due at once, 4 at a time, 100ms each: the 13th group starts at 1200ms.
    assert_eq!(starts.iter().filter(|(_, t)| t.is_zero()).count(), 4);
    // At 1200ms: the last 2 first checks, then 2 second checks due since 1100ms.
    assert_eq!(
        starts
            .iter()
            .filter(|(_, t)| *t == Duration::from_millis(1200))
            .count(),
        4
    );
    let stats = monitor.schedule_stats();
    assert_eq!(stats.max_lateness, Duration::from_millis(1200));
    assert_eq!(
        stats.started, 52,
        "50 first checks, then two due at 1100ms started at 1200ms"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_returns_at_once_and_cancels_checks_in_progress() {
    let probe = Probe::new(params(1, 1, Duration::from_secs(30)));
    probe.set("hung", Behave::Hang);
    let monitor = HealthMonitor::new(probe.clone());
    let set = backends(&["hung", "ok"]);
    let (_tx, rx) = watch::channel(set.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let run = monitor.run(rx, exact(1000), async {
        let _ = stopped.await;
    });
    tokio::pin!(run);
    tokio::select! {
        () = &mut run => unreachable!(),
        () = tokio::time::sleep(Duration::from_millis(2500)) => {}
    }
    assert_eq!(
        probe.running.load(SeqCst),
        1,
        "the hung check is in progress"
    );
    stop.send(()).unwrap();
    run.await;
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(2500),
        "no time passed"
    );
    assert_eq!(
        (probe.running.load(SeqCst), probe.cancelled.load(SeqCst)),
        (0, 1)
    );
    assert!(
        monitor.tracker(set[0].addr()).is_none(),
        "the cancelled check recorded nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn set_changes_stop_removed_backends_at_once_and_start_new_ones() {
    let probe = Probe::new(params(1, 1, Duration::from_secs(30)));
    probe.set("hung", Behave::Hang);
    let monitor = Arc::new(HealthMonitor::new(probe.clone()));
    let (tx, rx) = watch::channel(backends(&["a", "b", "hung"]));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn({
        let monitor = monitor.clone();
        async move {
            monitor
                .run(rx, exact(1000), async {
                    let _ = stopped.await;
                })
                .await;
        }
    });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let kept_b = tx.borrow()[1].clone();
    let a_addr = tx.borrow()[0].addr().clone();
    let hung_addr = tx.borrow()[2].addr().clone();
    assert_eq!(monitor.tracker(kept_b.addr()).unwrap().totals(), (3, 0));

    // b stays (same address, new name), a and hung leave, c arrives.
    let mut next: Vec<Backend> = backends(&["x", "b2", "y", "c"]).iter().cloned().collect();
    next.retain(|b| b.name() == "b2" || b.name() == "c");
    let notified = probe.event.notified();
    tx.send(next.into_iter().collect()).unwrap();
    notified.await;
    assert_eq!(
        probe.cancelled.load(SeqCst),
        1,
        "the hung check of a removed backend is dropped"
    );
    let forgotten = probe.forgotten.lock().clone();
    assert!(forgotten.contains(&a_addr) && forgotten.contains(&hung_addr));
    assert!(monitor.tracker(&a_addr).is_none() && monitor.tracker(&hung_addr).is_none());

    tokio::time::sleep(Duration::from_millis(2200)).await;
    stop.send(()).unwrap();
    task.await.unwrap();
    assert_eq!(
        probe.times("a"),
        ms(&[0, 1000, 2000]),
        "nothing after removal"
    );
    assert_eq!(
        probe.times("c"),
        ms(&[2500, 3500, 4500]),
        "first check at once on arrival"
    );
    assert_eq!(probe.times("b"), ms(&[0, 1000, 2000]));
    assert_eq!(
        probe.times("b2"),
        ms(&[3000, 4000]),
        "b keeps its timeline under its new name"
    );
    assert_eq!(
        monitor.tracker(kept_b.addr()).unwrap().totals(),
        (5, 0),
        "and its tracker"
    );
    let names: Vec<String> = monitor.snapshot().into_iter().map(|h| h.name).collect();
    assert_eq!(names, ["b2", "c"]);
}
