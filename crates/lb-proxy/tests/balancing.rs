//! The foundation's acceptance test: three real backends behind the real proxy, round robin,
//! TCP health checks with rise/fall, and the status-change hook.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use common::{config, Harness};
use lb_core::Health;
use lb_testkit::TestBackend;

const CHECKS: &str = "[upstreams.web.health_check]\nkind = \"tcp\"\ninterval = \"1h\"\ntimeout = \"2s\"\nrise = 2\nfall = 3\n";

fn hits(backends: &[TestBackend]) -> Vec<usize> {
    backends.iter().map(TestBackend::hits).collect()
}

/// Health rounds are driven by the test (the configured interval is an hour, so only the
/// start-up round runs by itself): every assertion about "after N checks" is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_rise_fall_and_hooks_through_the_real_proxy() {
    let mut backends = TestBackend::start_many(3).await;
    let (h, mut events) = Harness::start(&config(&backends, CHECKS)).await;

    // The first check after start-up settles each backend and is reported once.
    let mut first: Vec<_> = Vec::new();
    for _ in 0..3 {
        let t = events.next().await;
        assert_eq!(
            (t.upstream.as_str(), t.old, t.new),
            ("web", Health::Unknown, Health::Healthy)
        );
        first.push(t.backend);
    }
    first.sort();
    let mut addrs: Vec<_> = backends.iter().map(TestBackend::addr).collect();
    addrs.sort();
    assert_eq!(first, addrs);

    // 300 sequential requests: exactly 100 per backend.
    for _ in 0..300 {
        let (status, _) = h.get("/").await;
        assert_eq!(status, 200);
    }
    assert_eq!(hits(&backends), [100, 100, 100]);

    // Backend 1 goes away: it leaves rotation after exactly `fall` = 3 failed checks.
    backends[1].stop().await;
    let down = backends[1].addr();
    let web = h.proxy.upstream("web").unwrap();
    let web = web.balancer();
    let state_of = |addr| {
        web.backends()
            .iter()
            .find(|b| b.addr().as_inet() == Some(addr))
            .unwrap()
            .state()
            .health()
    };
    for _ in 0..2 {
        web.run_health_check().await;
        events.assert_none();
        assert_eq!(state_of(down), Health::Healthy);
    }
    web.run_health_check().await;
    let t = events.next().await;
    assert_eq!(
        (t.backend, t.old, t.new),
        (down, Health::Healthy, Health::Unhealthy)
    );
    let reason = t.reason.unwrap();
    assert!(reason.starts_with("connect failed"), "{reason}");
    events.assert_none();

    // No request fails from now on, and none reaches the stopped backend.
    let before = hits(&backends);
    for _ in 0..60 {
        let (status, body) = h.get("/").await;
        assert_eq!(status, 200);
        assert_ne!(body, "b1");
    }
    let after = hits(&backends);
    assert_eq!(after[1], before[1]);
    let (b0, b2) = (after[0] - before[0], after[2] - before[2]);
    assert_eq!(b0 + b2, 60);
    assert!(
        (25..=35).contains(&b0),
        "the down backend's share is spread: {b0} / {b2}"
    );

    // It comes back: rejoins after exactly `rise` = 2 passed checks.
    backends[1].start_again().await;
    web.run_health_check().await;
    events.assert_none();
    for _ in 0..6 {
        assert_ne!(h.get("/").await.1, "b1", "not before `rise` passes");
    }
    web.run_health_check().await;
    let t = events.next().await;
    assert_eq!(
        (t.backend, t.old, t.new, t.reason),
        (down, Health::Unhealthy, Health::Healthy, None)
    );

    let before = hits(&backends);
    for _ in 0..30 {
        assert_eq!(h.get("/").await.0, 200);
    }
    let after = hits(&backends);
    let delta: Vec<_> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(delta, [10, 10, 10]);
    events.assert_none();
    assert!(h.proxy.shutdown().await);
}

/// The same cycle on the proxy's own schedule (100 ms interval): events are awaited, never
/// slept for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_checks_eject_and_restore_on_their_own() {
    let mut backends = TestBackend::start_many(3).await;
    let checks = "[upstreams.web.health_check]\ninterval = \"100ms\"\ntimeout = \"1s\"\nrise = 2\nfall = 2\n";
    let (h, mut events) = Harness::start(&config(&backends, checks)).await;
    for _ in 0..3 {
        assert_eq!(events.next().await.new, Health::Healthy);
    }

    backends[2].stop().await;
    let t = events.next().await;
    assert_eq!((t.backend, t.new), (backends[2].addr(), Health::Unhealthy));
    for _ in 0..30 {
        let (status, body) = h.get("/").await;
        assert_eq!(status, 200);
        assert_ne!(body, "b2");
    }

    backends[2].start_again().await;
    let t = events.next().await;
    assert_eq!((t.backend, t.new), (backends[2].addr(), Health::Healthy));
    let before = backends[2].hits();
    for _ in 0..30 {
        assert_eq!(h.get("/").await.0, 200);
    }
    assert!(
        backends[2].hits() > before,
        "restored backend receives traffic again"
    );
    assert!(h.proxy.shutdown().await);
}
