//! Fault: a backend process SIGKILLed in the middle of a bounded load.
//!
//! Backend `a` is a real separate process (this test binary run again as a backend, see
//! `lb_testkit::process`); `b` is an in-process backend. Sixteen client loops send a fixed
//! number of idempotent requests (GETs, and PUTs whose body must come back whole) through
//! the proxy. Mid-load, `a` is frozen (SIGSTOP) until every loop has a request parked on
//! it, as the proxy's `lb_backend_in_flight` gauge on `/metrics` shows, and then killed
//! (SIGKILL): the kernel resets its connections. Freezing first makes "the requests in
//! flight on that backend at that moment" an exact number instead of a race.
//!
//! - Retries on (the default `error`, `timeout`): no request fails.
//! - Retries off (`on = []`): only requests in flight on `a` when it died fail, with 502;
//!   passive health (`consecutive_gateway_failure = 1`) takes `a` out at its first failure,
//!   so nothing sent afterwards is lost.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // tests; figures go to the test output

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::load::{self, Load, Planned};
use common::Harness;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use lb_testkit::process::BackendProcess;
use lb_testkit::TestBackend;

/// Client loops, hence the most requests that can be in flight at once.
const CONCURRENCY: usize = 16;
/// Requests in the whole load.
const TOTAL: usize = 1_200;
/// Requests done before the backend is frozen and killed.
const BEFORE_KILL: usize = 300;
/// Every wait of these tests ends by this deadline.
const STEP: Duration = Duration::from_secs(20);

/// Not a test: the body of backend `a`'s process (this binary, run again by
/// `BackendProcess::spawn` with the selection `backend_process`). Skipped in a normal run,
/// and returns at once when run without the child's environment.
#[test]
#[ignore = "the backend process of the SIGKILL tests; they start it themselves"]
fn backend_process() {
    lb_testkit::process::serve_if_child();
}

fn config(a: SocketAddr, b: SocketAddr, retry_and_passive: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\ngrace_period = \"5s\"\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [upstreams.web]\nbackends = [\"{a}\", \"{b}\"]\n{retry_and_passive}\n\n\
         [upstreams.web.health_check]\nkind = \"tcp\"\ninterval = \"100ms\"\nfall = 1\nrise = 1\n\n\
         [[routes]]\nupstream = \"web\"\n"
    )
}

/// GETs, and every third request a PUT to `/echo` whose body must come back unchanged (a
/// retried PUT is replayed from the proxy's buffer).
fn plan(url_root: String) -> load::Plan {
    Arc::new(move |i| {
        if i % 3 == 2 {
            let body = Bytes::from(format!("put number {i}"));
            Planned {
                request: Request::builder()
                    .method(Method::PUT)
                    .uri(format!("{url_root}/echo"))
                    .body(Full::new(body.clone()))
                    .unwrap(),
                expect_body: Some(body),
            }
        } else {
            Planned {
                request: Request::get(format!("{url_root}/"))
                    .body(Full::default())
                    .unwrap(),
                expect_body: None,
            }
        }
    })
}

/// The proxy's in-flight count for `addr`, as the balancer holds it.
fn in_flight(h: &Harness, addr: SocketAddr) -> usize {
    let set = h.proxy.upstream("web").unwrap().balancer().backends();
    let backend = set.iter().find(|b| b.addr().as_inet() == Some(addr));
    backend.unwrap().state().in_flight()
}

/// `lb_backend_in_flight` for `addr` on the admin listener's `/metrics`.
async fn scraped_in_flight(h: &Harness, addr: SocketAddr) -> usize {
    let url = format!("http://{}/metrics", h.proxy.admin_addr().unwrap());
    let req = Request::get(url).body(Full::default()).unwrap();
    let resp = h.client.request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(body.to_vec()).unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    let name = addr.to_string();
    let value = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "lb_backend_in_flight" && s.labels.get("backend") == Some(name.as_str())
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .unwrap();
    value as usize
}

/// Runs the load, freezes and kills `a` mid-way; the in-flight count on `a` at the kill and
/// the load's report.
async fn kill_mid_load(retry_and_passive: &str) -> (usize, load::Report, TestBackend) {
    let mut a = BackendProcess::spawn("backend_process", "a", Duration::from_millis(2)).await;
    let b = TestBackend::start("b").await;
    let (h, _transitions) = Harness::start(&config(a.addr(), b.addr(), retry_and_passive)).await;
    let client = load::client();
    let load = Load::start(&client, CONCURRENCY, TOTAL, Duration::ZERO, plan(h.url("")));
    load.wait_done(BEFORE_KILL, STEP).await;

    a.freeze();
    // Every loop ends up waiting on `a` (round robin keeps sending it every other request,
    // and `b` answers at once). Nothing signals it, so the count is polled.
    let deadline = Instant::now() + STEP;
    while in_flight(&h, a.addr()) < CONCURRENCY {
        assert!(
            Instant::now() < deadline,
            "only {} requests parked on the frozen backend",
            in_flight(&h, a.addr())
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Frozen, `a` can complete nothing, and every loop is waiting: the gauge is exact.
    let at_kill = scraped_in_flight(&h, a.addr()).await;
    assert_eq!(at_kill, CONCURRENCY);
    let b_before = b.hits();
    a.kill().await;

    let report = load.finish().await;
    assert_eq!(report.done, TOTAL, "the whole load ran");
    assert!(
        b.hits() > b_before,
        "b served the rest of the load after the kill"
    );
    assert_eq!(in_flight(&h, a.addr()), 0, "nothing left counted on a");
    assert!(h.proxy.shutdown().await);
    (at_kill, report, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_load_with_retries_loses_no_idempotent_request() {
    let (at_kill, report, _b) = kill_mid_load("").await;
    eprintln!(
        "retries on: {} requests, {} in flight on the killed backend, {} failed",
        report.done,
        at_kill,
        report.failures.len()
    );
    assert!(
        report.failures.is_empty(),
        "{} of {} failed: {:?}",
        report.failures.len(),
        report.done,
        report.failures
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_load_without_retries_fails_only_the_requests_in_flight_there() {
    let (at_kill, report, _b) = kill_mid_load(
        "retry = { on = [] }\npassive = { consecutive_gateway_failure = 1, max_ejection_percent = 50 }",
    )
    .await;
    eprintln!(
        "retries off: {} requests, {} in flight on the killed backend, {} failed",
        report.done,
        at_kill,
        report.failures.len()
    );
    assert!(
        !report.failures.is_empty(),
        "the requests in flight on the killed backend cannot have succeeded"
    );
    assert!(
        report.failures.len() <= at_kill,
        "{} failures, but only {at_kill} requests were in flight on the killed backend: {:?}",
        report.failures.len(),
        report.failures
    );
    for failure in &report.failures {
        assert!(
            failure.starts_with(StatusCode::BAD_GATEWAY.as_str()),
            "{failure}"
        );
    }
}
