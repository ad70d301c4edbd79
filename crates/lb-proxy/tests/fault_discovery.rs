//! Fault: the discovery registry (a real etcd) unreachable for a minute while traffic flows.
//!
//! The proxy keeps the last good backend set the whole time: every request succeeds and
//! both backends keep serving. When etcd returns (same ports and data), the watcher
//! reconnects (backoff capped at 5 s) and a backend registered then is picked up.
//!
//! Needs the `etcd` binary (`apt-get install etcd-server`; `.ci/run` installs it): without
//! it the test fails with that instruction, as the other etcd tests do. It takes about
//! `OUTAGE` plus a few seconds; the load meanwhile is paced, so the machine stays idle.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // tests; figures go to the test output

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::load::{self, Load};
use common::Harness;
use lb_testkit::etcd::Etcd;
use lb_testkit::TestBackend;

/// How long etcd stays down.
const OUTAGE: Duration = Duration::from_secs(60);
/// Each client loop waits this long between requests.
const PACE: Duration = Duration::from_millis(20);
/// Client loops.
const CONCURRENCY: usize = 2;
/// An upper bound on the load's requests (about 100 per second are sent).
const MAX_REQUESTS: usize = 100 * (OUTAGE.as_secs() as usize + 60);
/// Every other wait of this test ends by this deadline.
const STEP: Duration = Duration::from_secs(20);

/// Waits (bounded) until the upstream's backend set is exactly `want`.
async fn until_set_is(h: &Harness, want: &[SocketAddr]) {
    let mut rx = h.proxy.upstream("web").unwrap().balancer().watch_backends();
    let mut want = want.to_vec();
    want.sort();
    let wait = rx.wait_for(|set| {
        let mut have: Vec<_> = set.iter().filter_map(|b| b.addr().as_inet()).collect();
        have.sort();
        have == want
    });
    tokio::time::timeout(STEP, wait)
        .await
        .expect("the backend set did not converge")
        .unwrap();
}

fn key(addr: SocketAddr) -> String {
    format!("/lb/web/{addr}")
}

fn value(addr: SocketAddr) -> String {
    format!("{{\"addr\": \"{addr}\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_outage_of_a_minute_keeps_the_last_set_and_recovers() {
    let mut etcd = Etcd::start().await;
    let backends = TestBackend::start_many(3).await;
    let addrs: Vec<SocketAddr> = backends.iter().map(TestBackend::addr).collect();
    let mut registry = etcd.client().await;
    for a in &addrs[..2] {
        registry.put(key(*a), value(*a), None).await.unwrap();
    }
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[upstreams.web]\n\
         discovery = {{ kind = \"etcd\", endpoints = [\"{}\"], prefix = \"/lb/web/\" }}\n\n\
         [[routes]]\nupstream = \"web\"\n",
        etcd.endpoint()
    );
    let (h, _) = Harness::start(&toml).await;
    until_set_is(&h, &addrs[..2]).await;
    let client = load::client();
    let load = Load::start(
        &client,
        CONCURRENCY,
        MAX_REQUESTS,
        PACE,
        load::gets(h.url("/")),
    );
    load.wait_done(20, STEP).await;

    etcd.kill().await;
    let hits: Vec<usize> = backends.iter().map(TestBackend::hits).collect();
    // The outage itself: nothing to wait for but time.
    tokio::time::sleep(OUTAGE).await;
    until_set_is(&h, &addrs[..2]).await;
    for (b, before) in backends.iter().zip(&hits).take(2) {
        assert!(
            b.hits() > before + 100,
            "{} served {} requests during the outage",
            b.name(),
            b.hits() - before
        );
    }
    let during = load.done();

    // etcd returns; a backend registered now is picked up.
    let restarted = Instant::now();
    etcd.restart().await;
    let mut registry = etcd.client().await;
    registry
        .put(key(addrs[2]), value(addrs[2]), None)
        .await
        .unwrap();
    until_set_is(&h, &addrs).await;
    let converged_after = restarted.elapsed();
    tokio::time::timeout(STEP, backends[2].wait_for_hits(20))
        .await
        .expect("the backend added after the outage gets traffic");

    load.stop();
    let report = load.finish().await;
    eprintln!(
        "etcd down {OUTAGE:?}: {during} requests by then, {} in all, {} failed; a change \
         after the restart applied {converged_after:?} after etcd was started again",
        report.done,
        report.failures.len()
    );
    assert!(
        report.failures.is_empty(),
        "{} of {} failed: {:?}",
        report.failures.len(),
        report.done,
        report.failures
    );
    assert!(h.proxy.shutdown().await);
}
