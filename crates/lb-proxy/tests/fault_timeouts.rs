//! Fault: a backend that accepts and never answers, and one that answers later than
//! `read_timeout`. Each request to them gets `504` within the timeout plus a small margin,
//! while requests to a healthy upstream on the same proxy keep being served at once; the
//! proxy closes its connections to the stuck backends instead of keeping them, and when a
//! client gives up first, its request to the hung backend is abandoned at once.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // tests; figures go to the test output

mod common;

use std::time::{Duration, Instant};

use common::Harness;
use http::StatusCode;
use lb_testkit::raw::RawBackend;
use lb_testkit::TestBackend;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// The stuck upstreams' `read_timeout`.
const READ_TIMEOUT: Duration = Duration::from_millis(1000);
/// How late a 504 may come after `READ_TIMEOUT` (timer and scheduling slack on a busy
/// machine).
const MARGIN: Duration = Duration::from_millis(300);
/// Requests parked on each stuck backend at once.
const STUCK: usize = 8;
/// Requests to the healthy upstream while they are parked.
const FAST: usize = 100;
/// The slowest a request to the healthy upstream may be.
const FAST_LIMIT: Duration = Duration::from_millis(200);
/// Every wait of this test ends by this deadline.
const STEP: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_and_slow_backends_get_504_within_read_timeout_and_others_are_unaffected() {
    let hang = RawBackend::hang().await;
    let slow = TestBackend::start("slow").await;
    slow.set_delay(READ_TIMEOUT * 3);
    let fast = TestBackend::start("fast").await;
    let timeout = format!("read_timeout = \"{}ms\"", READ_TIMEOUT.as_millis());
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\ngrace_period = \"1s\"\n\n\
         [upstreams.hang]\nbackends = [\"{}\"]\n{timeout}\nretry = {{ on = [] }}\n\n\
         [upstreams.slow]\nbackends = [\"{}\"]\n{timeout}\nretry = {{ on = [] }}\n\n\
         [upstreams.fast]\nbackends = [\"{}\"]\n\n\
         [[routes]]\nupstream = \"hang\"\npath_prefix = \"/hang\"\n\n\
         [[routes]]\nupstream = \"slow\"\npath_prefix = \"/slow\"\n\n\
         [[routes]]\nupstream = \"fast\"\n",
        hang.addr(),
        slow.addr(),
        fast.addr()
    );
    let (h, _) = Harness::start(&toml).await;

    let mut stuck = JoinSet::new();
    for path in ["/hang", "/slow"] {
        for _ in 0..STUCK {
            let (client, url) = (h.client.clone(), h.url(path));
            stuck.spawn(async move {
                let started = Instant::now();
                let resp = client.get(url.parse().unwrap()).await.unwrap();
                (path, resp.status(), started.elapsed())
            });
        }
    }
    // All of them have reached their backend and wait.
    tokio::time::timeout(STEP, hang.wait_for_requests(STUCK))
        .await
        .unwrap();
    tokio::time::timeout(STEP, slow.wait_for_hits(STUCK))
        .await
        .unwrap();

    // Meanwhile the healthy upstream answers at once.
    let mut fast_max = Duration::ZERO;
    for _ in 0..FAST {
        let started = Instant::now();
        assert_eq!(h.get("/").await, (StatusCode::OK, "fast".to_owned()));
        fast_max = fast_max.max(started.elapsed());
    }
    assert!(
        fast_max < FAST_LIMIT,
        "a request to the healthy upstream took {fast_max:?}"
    );

    let (mut earliest, mut latest) = (Duration::MAX, Duration::ZERO);
    while let Some(done) = stuck.join_next().await {
        let (path, status, took) = done.unwrap();
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{path}");
        earliest = earliest.min(took);
        latest = latest.max(took);
    }
    assert!(
        earliest >= READ_TIMEOUT,
        "504 before the timeout: {earliest:?}"
    );
    assert!(
        latest < READ_TIMEOUT + MARGIN,
        "504 after {latest:?}, timeout {READ_TIMEOUT:?}"
    );
    eprintln!(
        "read_timeout {READ_TIMEOUT:?}: 504 after {earliest:?}..{latest:?}; \
         {FAST} requests to the healthy upstream meanwhile, slowest {fast_max:?}"
    );

    // The proxy let go of the stuck connections (none kept, none pooled).
    tokio::time::timeout(STEP, hang.wait_all_closed())
        .await
        .expect("the proxy kept connections to the hung backend open");
    tokio::time::timeout(STEP, slow.wait_for_closed(slow.connections()))
        .await
        .expect("the proxy kept connections to the slow backend open");

    // Clients that give up before the timeout: their requests to the hung backend are
    // abandoned with them, not left to run until `read_timeout`.
    let mut clients = Vec::with_capacity(STUCK);
    for _ in 0..STUCK {
        let mut stream = TcpStream::connect(h.addr()).await.unwrap();
        stream
            .write_all(b"GET /hang HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        clients.push(stream);
    }
    tokio::time::timeout(STEP, hang.wait_for_requests(2 * STUCK))
        .await
        .unwrap();
    let gave_up = Instant::now();
    drop(clients);
    tokio::time::timeout(READ_TIMEOUT / 2, hang.wait_all_closed())
        .await
        .expect("requests of clients that left still hold connections to the hung backend");
    eprintln!(
        "{STUCK} clients gave up: their backend connections closed {:?} later",
        gave_up.elapsed()
    );
    assert!(h.proxy.shutdown().await);
}
