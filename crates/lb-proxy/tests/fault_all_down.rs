//! Fault: every backend of an upstream down.
//!
//! - With active checks, once the checks have marked them down, the answer is `503` with
//!   `Retry-After` within milliseconds: no connect attempt, no timeout. When one backend
//!   returns, its first passing check (`rise = 1`) puts it back and requests succeed.
//! - Without checks the proxy cannot know before trying: each backend refuses the
//!   connection, the retry moves on to the next, and the answer is `502`, still within
//!   milliseconds.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // tests; figures go to the test output

mod common;

use std::time::{Duration, Instant};

use common::Harness;
use http::{header, Request, StatusCode};
use http_body_util::Full;
use lb_core::Health;
use lb_testkit::TestBackend;

/// The slowest acceptable answer while everything is down.
const FAST: Duration = Duration::from_millis(100);
/// Requests sent while everything is down.
const PROBES: usize = 50;

/// Sends `PROBES` GETs; the statuses seen, and the slowest answer.
async fn probe(h: &Harness) -> (Vec<StatusCode>, Duration) {
    let mut statuses = Vec::with_capacity(PROBES);
    let mut slowest = Duration::ZERO;
    for _ in 0..PROBES {
        let started = Instant::now();
        let req = Request::get(h.url("/")).body(Full::default()).unwrap();
        let resp = h.client.request(req).await.unwrap();
        slowest = slowest.max(started.elapsed());
        if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        }
        statuses.push(resp.status());
    }
    (statuses, slowest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_backends_down_gives_503_in_milliseconds_and_recovers_when_one_returns() {
    let mut backends = TestBackend::start_many(2).await;
    let toml = common::config(
        &backends,
        "\n[upstreams.web.health_check]\nkind = \"tcp\"\ninterval = \"100ms\"\n\
         timeout = \"200ms\"\nfall = 1\nrise = 1\ninitial = \"healthy\"\n",
    );
    let (h, mut events) = Harness::start(&toml).await;
    assert_eq!(h.get("/").await.0, StatusCode::OK);

    for b in &mut backends {
        b.stop().await;
    }
    for _ in 0..2 {
        let t = events.next().await;
        assert_eq!(t.new, Health::Unhealthy, "{t:?}");
    }
    let (statuses, slowest) = probe(&h).await;
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
    assert!(slowest < FAST, "a 503 took {slowest:?}");

    // One comes back: its next check passes and it serves again.
    let restarted = Instant::now();
    backends[1].start_again().await;
    let t = events.next().await;
    assert_eq!((t.backend, t.new), (backends[1].addr(), Health::Healthy));
    let recovered_after = restarted.elapsed();
    for _ in 0..10 {
        assert_eq!(h.get("/").await, (StatusCode::OK, "b1".to_owned()));
    }
    eprintln!(
        "all down: {PROBES} answers of 503, slowest {slowest:?}; a backend back was in \
         service {recovered_after:?} after it listened (check interval 100ms)"
    );
    assert!(h.proxy.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_backends_refusing_without_checks_gives_502_in_milliseconds() {
    let mut backends = TestBackend::start_many(3).await;
    let (h, _) = Harness::start(&common::config(&backends, "")).await;
    for b in &mut backends {
        b.stop().await;
    }
    let (statuses, slowest) = probe(&h).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::BAD_GATEWAY),
        "{statuses:?}"
    );
    assert!(slowest < FAST, "a 502 took {slowest:?}");
    eprintln!("all refusing, no checks: {PROBES} answers of 502, slowest {slowest:?}");

    backends[0].start_again().await;
    assert_eq!(h.get("/").await, (StatusCode::OK, "b0".to_owned()));
    assert!(h.proxy.shutdown().await);
}
