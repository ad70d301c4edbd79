//! Passive health through the real proxy: a backend that starts answering 502 is ejected
//! after the configured number of failures, gets no traffic while ejected, and returns when
//! its ejection time is over.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::{config, Harness};
use lb_testkit::TestBackend;

fn hits(backends: &[TestBackend]) -> Vec<usize> {
    backends.iter().map(TestBackend::hits).collect()
}

/// Waits (bounded) until the proxy lets `addr` back into selection. Nothing signals the end
/// of an ejection, so the flag is polled.
async fn until_returned(h: &Harness, addr: std::net::SocketAddr) {
    let set = h.proxy.upstream("web").unwrap().balancer().backends();
    let b = set
        .iter()
        .find(|b| b.addr().as_inet() == Some(addr))
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while b.state().is_ejected() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{addr} still ejected after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn ejected_after(passive: &str, failures: usize) {
    let backends = TestBackend::start_many(3).await;
    let toml = config(
        &backends,
        &format!("\n[upstreams.web.passive]\n{passive}\n"),
    );
    let (h, _events) = Harness::start(&toml).await;
    backends[1].set_status(502);

    // Round robin sends every third request to the failing backend: it sees exactly
    // `failures` requests, then none while ejected.
    let mut bad_gateway = 0;
    for _ in 0..(3 * failures + 60) {
        if h.get("/").await.0 == 502 {
            bad_gateway += 1;
        }
    }
    assert_eq!(
        hits(&backends)[1],
        failures,
        "ejected after exactly {failures} failures"
    );
    assert_eq!(
        bad_gateway, failures,
        "no 502 reaches the client once it is ejected"
    );

    // It returns when the ejection time is over; healthy again, it gets its share.
    backends[1].set_status(200);
    until_returned(&h, backends[1].addr()).await;
    let before = hits(&backends)[1];
    for _ in 0..30 {
        assert_eq!(h.get("/").await.0, 200);
    }
    assert_eq!(hits(&backends)[1] - before, 10);
    assert!(h.proxy.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_consecutive_5xx_ejects_and_returns() {
    ejected_after(
        "consecutive_5xx = 3\nbase_ejection_time = \"300ms\"\nmax_ejection_percent = 50",
        3,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_max_fails_within_fail_timeout_ejects_and_returns() {
    ejected_after(
        "max_fails = 2\nfail_timeout = \"300ms\"\nmax_ejection_percent = 50",
        2,
    )
    .await;
}
