//! Retries (nginx `proxy_next_upstream` semantics), the retry budget, backup backends and
//! load limits, through the real proxy over real backends.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{backend_list, config, Harness};
use futures_util::future::join_all;
use http::{Request, StatusCode};
use http_body_util::Full;
use lb_testkit::TestBackend;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// A backend that reads each request head and closes the connection without answering.
struct Dropper {
    addr: SocketAddr,
    reached: Arc<AtomicUsize>,
}

impl Dropper {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reached = Arc::new(AtomicUsize::new(0));
        let counter = reached.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                            counter.fetch_add(1, Ordering::SeqCst);
                            return; // dropped: the connection closes unanswered
                        }
                    }
                });
            }
        });
        Self { addr, reached }
    }

    fn reached(&self) -> usize {
        self.reached.load(Ordering::SeqCst)
    }
}

fn upstream(backends: &str, extra: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[upstreams.web]\nbackends = [{backends}]\n\
         {extra}\n\n[[routes]]\nupstream = \"web\"\n"
    )
}

#[tokio::test]
async fn gets_survive_a_backend_that_drops_every_connection() {
    let good = TestBackend::start_many(2).await;
    let bad = Dropper::start().await;
    let list = format!("{}, \"{}\"", backend_list(&good), bad.addr);
    let (h, _) = Harness::start(&upstream(&list, "retry = { on = [\"error\"] }")).await;

    let requests = 1000;
    let mut ok = 0;
    for chunk in 0..requests / 20 {
        let batch = (0..20).map(|i| h.get(if (chunk + i) % 2 == 0 { "/a" } else { "/b" }));
        ok += join_all(batch)
            .await
            .into_iter()
            .filter(|(status, _)| *status == StatusCode::OK)
            .count();
    }
    let counts = h.proxy.upstream("web").unwrap().retry().counts();
    assert_eq!(ok, requests, "every GET must succeed ({counts:?})");
    let served: usize = good.iter().map(TestBackend::hits).sum();
    assert_eq!(served, requests);
    // Round robin sent about a third of the first attempts to the dropping backend; each
    // of those was retried once, for reason "error".
    assert!(
        bad.reached() > requests / 5,
        "dropper reached {}",
        bad.reached()
    );
    assert_eq!(counts.error as usize, bad.reached());
}

#[tokio::test]
async fn a_post_that_reached_the_backend_is_not_retried() {
    let good = TestBackend::start_many(2).await;
    let bad = Dropper::start().await;
    let list = format!("{}, \"{}\"", backend_list(&good), bad.addr);
    let (h, _) = Harness::start(&upstream(
        &list,
        "retry = { on = [\"error\"], non_idempotent = false }",
    ))
    .await;

    let mut bad_gateway = 0;
    for i in 0..30 {
        let req = Request::post(h.url("/echo"))
            .body(Full::new(Bytes::from(format!("order {i}"))))
            .unwrap();
        let (status, body) = h.send(req).await;
        match status {
            StatusCode::OK => assert_eq!(body, format!("order {i}")),
            StatusCode::BAD_GATEWAY => bad_gateway += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(bad_gateway > 0);
    assert_eq!(
        bad_gateway,
        bad.reached(),
        "each 502 is a POST the dropper saw"
    );
    let served: usize = good.iter().map(TestBackend::hits).sum();
    assert_eq!(served + bad_gateway, 30, "no POST was sent twice");
}

#[tokio::test]
async fn posts_are_retried_when_allowed_or_when_they_never_reached_a_backend() {
    let good = TestBackend::start("good").await;
    let bad = Dropper::start().await;
    // A port with nothing listening: connecting fails, so the POST provably never left.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let list = format!("\"{}\", \"{closed}\"", good.addr());
    let (h, _) = Harness::start(&upstream(&list, "")).await;
    for i in 0..10 {
        let body = format!("payment {i}");
        let req = Request::post(h.url("/echo")).body(Full::new(Bytes::from(body.clone())));
        assert_eq!(h.send(req.unwrap()).await, (StatusCode::OK, body));
    }

    // With non_idempotent = true, a POST that reached the dropping backend is replayed to
    // the good one, body intact (a 100 KiB body, within the 1 MiB replay buffer).
    let list = format!("\"{}\", \"{}\"", good.addr(), bad.addr);
    let (h, _) = Harness::start(&upstream(
        &list,
        "retry = { on = [\"error\"], non_idempotent = true, buffer = \"1MiB\" }",
    ))
    .await;
    let big: String = (0..100 * 1024)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    for _ in 0..6 {
        let req = Request::post(h.url("/echo")).body(Full::new(Bytes::from(big.clone())));
        let (status, body) = h.send(req.unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body == big, "replayed body differs ({} bytes)", body.len());
    }
    assert!(bad.reached() > 0);
}

#[tokio::test]
async fn a_body_larger_than_the_replay_buffer_is_not_sent_twice() {
    let good = TestBackend::start("good").await;
    let bad = Dropper::start().await;
    let list = format!("\"{}\", \"{}\"", bad.addr, good.addr());
    let (h, _) = Harness::start(&upstream(
        &list,
        "selection = \"round_robin\"\nretry = { on = [\"error\"], non_idempotent = true, buffer = 1024 }",
    ))
    .await;
    let big = Bytes::from(vec![b'x'; 64 * 1024]);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let req = Request::put(h.url("/echo")).body(Full::new(big.clone()));
        statuses.push(h.send(req.unwrap()).await.0);
    }
    // The requests that went to the dropper first cannot be replayed: 502, not a retry.
    let failed = statuses
        .iter()
        .filter(|s| **s == StatusCode::BAD_GATEWAY)
        .count();
    assert_eq!(failed, bad.reached());
    assert!(failed > 0);
    assert_eq!(good.hits() + failed, 4);
}

#[tokio::test]
async fn status_retries_keep_the_last_answer_when_every_backend_fails() {
    let backends = TestBackend::start_many(3).await;
    backends[0].set_status(503);
    let (h, _) = Harness::start(&config(&backends, "retry = { on = [\"http_503\"] }")).await;
    for _ in 0..30 {
        assert_eq!(h.get("/").await.0, StatusCode::OK);
    }
    assert_eq!(backends[1].hits() + backends[2].hits(), 30);

    for b in &backends {
        b.set_status(503);
    }
    let before: usize = backends.iter().map(TestBackend::hits).sum();
    let (status, body) = h.get("/").await;
    // Every backend tried once, and the last backend's own 503 passed on.
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(matches!(body.as_str(), "b0" | "b1" | "b2"), "{body}");
    let after: usize = backends.iter().map(TestBackend::hits).sum();
    assert_eq!(after - before, 3);
}

#[tokio::test]
async fn the_retry_budget_caps_retries_during_an_outage() {
    let backends = TestBackend::start_many(2).await;
    for b in &backends {
        b.set_status(502);
    }
    let (h, _) = Harness::start(&config(
        &backends,
        "retry = { on = [\"http_502\"], budget_ratio = 0.0, budget_min_per_sec = 1 }",
    ))
    .await;
    for _ in 0..50 {
        assert_eq!(h.get("/").await.0, StatusCode::BAD_GATEWAY);
    }
    let counts = h.proxy.upstream("web").unwrap().retry().counts();
    // The floor allows 1 retry per second over the 10-second window; the rest are refused.
    assert_eq!(counts.status, 10);
    assert_eq!(counts.over_budget, 40);
    let sent: usize = backends.iter().map(TestBackend::hits).sum();
    assert_eq!(sent, 60);
}

#[tokio::test]
async fn backups_serve_only_when_no_primary_is_usable() {
    let mut primary = TestBackend::start("primary").await;
    let backup = TestBackend::start("backup").await;
    let list = format!(
        "\"{}\", {{ addr = \"{}\", backup = true }}",
        primary.addr(),
        backup.addr()
    );
    let (h, mut transitions) = Harness::start(&upstream(
        &list,
        "[upstreams.web.health_check]\ninterval = \"100ms\"\nfall = 1\nrise = 1",
    ))
    .await;
    for _ in 0..20 {
        assert_eq!(h.get("/").await, (StatusCode::OK, "primary".into()));
    }
    assert_eq!(backup.hits(), 0);

    primary.stop().await;
    // Until the check notices, a retry skips the tried primary and lands on the backup.
    for _ in 0..5 {
        assert_eq!(h.get("/").await, (StatusCode::OK, "backup".into()));
    }
    loop {
        let t = transitions.next().await;
        if t.backend == primary.addr() && t.new == lb_core::Health::Unhealthy {
            break;
        }
    }
    let served_before = backup.hits();
    for _ in 0..20 {
        assert_eq!(h.get("/").await, (StatusCode::OK, "backup".into()));
    }
    assert_eq!(backup.hits(), served_before + 20);

    primary.start_again().await;
    loop {
        let t = transitions.next().await;
        if t.backend == primary.addr() && t.new == lb_core::Health::Healthy {
            break;
        }
    }
    assert_eq!(h.get("/").await, (StatusCode::OK, "primary".into()));
}

#[tokio::test]
async fn max_conns_queues_then_sheds_load_with_503() {
    let slow = TestBackend::start("slow").await;
    slow.set_delay(Duration::from_millis(300));
    // No queue: the second concurrent request is refused at once.
    let (h, _) = Harness::start(&config(
        std::slice::from_ref(&slow),
        "limits = { max_conns = 1 }",
    ))
    .await;
    let first = h.get("/");
    let second = async {
        slow.wait_for_hits(1).await;
        let start = std::time::Instant::now();
        let resp = Request::get(h.url("/")).body(Full::default()).unwrap();
        let raw = h.client.request(resp).await.unwrap();
        (
            raw.status(),
            raw.headers().get("retry-after").cloned(),
            start.elapsed(),
        )
    };
    let ((s1, _), (s2, retry_after, waited)) = tokio::join!(first, second);
    assert_eq!(s1, StatusCode::OK);
    assert_eq!(s2, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry_after.unwrap(), "1");
    assert!(waited < Duration::from_millis(250), "503 took {waited:?}");

    // A queue of one: the second request waits for the slot; a third finds the queue full.
    let (h, _) = Harness::start(&config(
        std::slice::from_ref(&slow),
        "limits = { max_conns = 1, max_queue = 1, queue_timeout = \"5s\" }",
    ))
    .await;
    let hits = slow.hits();
    let first = h.get("/");
    let second = async {
        slow.wait_for_hits(hits + 1).await;
        h.get("/").await
    };
    let third = async {
        // Wait (bounded) until the second request is in the queue.
        let web = h.proxy.upstream("web").unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while web.queued() == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "second request never queued"
            );
            tokio::task::yield_now().await;
        }
        h.get("/").await
    };
    let (r1, r2, r3) = tokio::join!(first, second, third);
    assert_eq!(r1.0, StatusCode::OK);
    assert_eq!(
        r2.0,
        StatusCode::OK,
        "the queued request gets the freed slot"
    );
    assert_eq!(r3.0, StatusCode::SERVICE_UNAVAILABLE, "the queue was full");
    assert_eq!(slow.hits(), hits + 2, "at most one at a time, two served");
}

/// A backend that accepts, reads the request head, then either says nothing (`answer`
/// `None`) or writes `answer` and closes.
async fn raw_backend(answer: Option<&'static [u8]>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                match answer {
                    Some(bytes) => {
                        let _ = stream.write_all(bytes).await;
                    }
                    // Hold the connection open, silent, until the proxy gives up on it.
                    None => {
                        let _ = stream.read(&mut buf).await;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn timeouts_and_invalid_answers_are_retried_when_listed() {
    let good = TestBackend::start("good").await;
    let silent = raw_backend(None).await;
    let garbage = raw_backend(Some(b"HELLO, I AM NOT HTTP\r\n\r\n")).await;
    let list = format!("\"{}\", \"{silent}\", \"{garbage}\"", good.addr());
    let (h, _) = Harness::start(&upstream(
        &list,
        "read_timeout = \"200ms\"\nretry = { on = [\"timeout\", \"invalid_header\"] }",
    ))
    .await;
    for _ in 0..9 {
        assert_eq!(h.get("/").await, (StatusCode::OK, "good".into()));
    }
    let counts = h.proxy.upstream("web").unwrap().retry().counts();
    assert!(
        counts.timeout > 0 && counts.invalid_header > 0,
        "{counts:?}"
    );

    // Without those conditions, the same failures answer 504 and 502.
    let (h, _) = Harness::start(&upstream(
        &format!("\"{silent}\""),
        "read_timeout = \"200ms\"\nretry = { on = [] }",
    ))
    .await;
    let start = std::time::Instant::now();
    let (status, _) = h.get("/").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let (h, _) = Harness::start(&upstream(&format!("\"{garbage}\""), "retry = { on = [] }")).await;
    assert_eq!(h.get("/").await.0, StatusCode::BAD_GATEWAY);
}
