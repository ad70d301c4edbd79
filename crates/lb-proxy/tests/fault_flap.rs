//! Fault: a backend that flaps, crashing and coming back on the same port every few hundred
//! milliseconds, under continuous load with retries on and active TCP checks.
//!
//! The checks run every 50 ms, `fall = 2` and `rise = 10`: an up phase of 250 ms holds at
//! most 5 passes, never the 10 needed to come back. So routing does not follow the flaps:
//! the backend goes down once, gets no request while it keeps flapping, and returns only
//! after it stays up for `rise` checks. No request fails, since the other backends can
//! serve every one (retries on `error`, the default).

#![allow(clippy::unwrap_used, clippy::print_stderr)] // tests; figures go to the test output

mod common;

use std::time::{Duration, Instant};

use common::load::{self, Load};
use common::{Harness, Transitions};
use lb_core::Health;
use lb_testkit::flap::Flapper;
use lb_testkit::TestBackend;

/// How long the flapping backend stays up, then down, in each cycle.
const PHASE: Duration = Duration::from_millis(250);
/// Crashes of the flapping backend during the test.
const FLAPS: usize = 8;
/// Client loops of the load.
const CONCURRENCY: usize = 4;
/// An upper bound on the load's requests (it is stopped long before).
const MAX_REQUESTS: usize = 200_000;
/// Every wait of this test ends by this deadline.
const STEP: Duration = Duration::from_secs(20);

/// The next transition of the backend at `addr`, skipping the others'.
async fn next_of(events: &mut Transitions, addr: std::net::SocketAddr) -> common::Transition {
    loop {
        let t = events.next().await;
        if t.backend == addr {
            return t;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_backend_is_held_down_by_rise_and_no_request_fails() {
    let backends = TestBackend::start_many(3).await;
    let toml = common::config(
        &backends,
        "\n[upstreams.web.health_check]\nkind = \"tcp\"\ninterval = \"50ms\"\njitter = 0.0\n\
         timeout = \"200ms\"\nfall = 2\nrise = 10\ninitial = \"healthy\"\n",
    );
    let (h, mut events) = Harness::start(&toml).await;
    let mut backends = backends;
    let flapping = backends.remove(0);
    let addr = flapping.addr();
    let client = load::client();
    let load = Load::start(
        &client,
        CONCURRENCY,
        MAX_REQUESTS,
        Duration::ZERO,
        load::gets(h.url("/")),
    );
    load.wait_done(200, STEP).await;

    let started = Instant::now();
    let flapper = Flapper::start(flapping, PHASE, PHASE);
    // The first crash takes it out after `fall` failed checks...
    let down = next_of(&mut events, addr).await;
    assert_eq!((down.old, down.new), (Health::Healthy, Health::Unhealthy));
    let went_down_after = started.elapsed();
    // ...and it is not routed to again while it flaps.
    let downs_then = flapper.downs();
    let hits_when_down = flapper.hits();
    tokio::time::timeout(STEP, flapper.wait_for_downs(FLAPS))
        .await
        .unwrap();
    let (flapping, downs) = flapper.finish().await;
    let hits_while_flapping = flapping.hits();
    events.assert_none();
    assert_eq!(
        hits_while_flapping, hits_when_down,
        "requests were routed to it during its up phases after it was marked down"
    );

    // Up for good: back after `rise` passes.
    let back = tokio::time::timeout(STEP, next_of(&mut events, addr))
        .await
        .unwrap();
    assert_eq!((back.old, back.new), (Health::Unhealthy, Health::Healthy));
    tokio::time::timeout(STEP, flapping.wait_for_hits(hits_while_flapping + 20))
        .await
        .expect("the recovered backend gets traffic again");
    load.stop();
    let report = load.finish().await;

    eprintln!(
        "{downs} crashes ({} after it was marked down), 2 health transitions (down after \
         {went_down_after:?}, back once stable); {} requests, {} failed",
        downs - downs_then,
        report.done,
        report.failures.len()
    );
    assert!(downs >= FLAPS);
    assert!(
        report.failures.is_empty(),
        "{} of {} failed: {:?}",
        report.failures.len(),
        report.done,
        report.failures
    );
    assert!(h.proxy.shutdown().await);
}
