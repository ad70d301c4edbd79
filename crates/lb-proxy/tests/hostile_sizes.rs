//! Oversized requests against `[server.limits]`, with a raw client and a raw backend:
//! a long target gets 414, a large head or too many headers 431, a body over
//! `max_body_size` 413 (by `Content-Length` before anything is forwarded, or while a
//! chunked body streams, leaving the backend an incomplete request). Each closes the
//! connection, and a request within the limits still passes.

#![allow(clippy::unwrap_used)]

mod common;
mod hostile_support;

use std::time::Duration;

use common::Harness;
use hostile_support::{config, exchange, RawBackend};

const WITHIN: Duration = Duration::from_secs(5);

const LIMITS: &str = "max_uri_length = 1024\nmax_header_size = \"8KiB\"\nmax_headers = 20\n\
                      max_body_size = 1000\n";

async fn start() -> (Harness, RawBackend) {
    let backend = RawBackend::start().await;
    let (h, _) = Harness::start(&config(&[backend.addr], LIMITS, "")).await;
    (h, backend)
}

fn get(target: &str, headers: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: a\r\n{headers}\r\n").into_bytes()
}

#[tokio::test]
async fn long_targets_get_414_and_large_heads_431() {
    let (h, backend) = start().await;

    // Within the limits: forwarded.
    let ok = format!("/{}", "a".repeat(1000));
    let answer = exchange(h.addr(), &get(&ok, "Connection: close\r\n"), WITHIN).await;
    assert_eq!(answer.status(), 200, "{}", answer.text());
    assert_eq!(backend.complete().len(), 1);

    // Over max_uri_length, within the head size: 414 from the proxy's check.
    let long = format!("/{}", "a".repeat(1100));
    let answer = exchange(h.addr(), &get(&long, ""), WITHIN).await;
    assert_eq!(answer.status(), 414, "{}", answer.text());
    assert!(answer.closed);

    // A request line past the whole head size: still 414 (the framing check sees that the
    // line is what is too long, where hyper's buffer limit alone would say 431).
    let huge = format!("/{}", "a".repeat(9000));
    let answer = exchange(h.addr(), &get(&huge, ""), WITHIN).await;
    assert_eq!(answer.status(), 414, "{}", answer.text());
    assert!(answer.closed);

    // Headers past max_header_size.
    let big = format!("X-Big: {}\r\n", "b".repeat(9000));
    let answer = exchange(h.addr(), &get("/", &big), WITHIN).await;
    assert_eq!(answer.status(), 431, "{}", answer.text());
    assert!(answer.closed);

    // More than max_headers fields, each small.
    let many: String = (0..21).map(|i| format!("X-{i}: v\r\n")).collect();
    let answer = exchange(h.addr(), &get("/", &many), WITHIN).await;
    assert_eq!(answer.status(), 431, "{}", answer.text());
    assert!(answer.closed);
    let fine: String = (0..18).map(|i| format!("X-{i}: v\r\n")).collect();
    let answer = exchange(
        h.addr(),
        &get("/", &(fine + "Connection: close\r\n")),
        WITHIN,
    )
    .await;
    assert_eq!(answer.status(), 200, "{}", answer.text());

    assert_eq!(
        backend.complete().len(),
        2,
        "only the two requests within limits"
    );
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn a_declared_body_over_the_limit_gets_413_before_anything_is_forwarded() {
    let (h, backend) = start().await;
    // Only the head is sent: the answer cannot wait for the body.
    let head = b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n";
    let answer = exchange(h.addr(), head, WITHIN).await;
    assert_eq!(answer.status(), 413, "{}", answer.text());
    assert!(answer.closed);
    assert_eq!(backend.connections(), 0, "the backend was contacted");

    // Exactly the limit passes, whole.
    let mut exact =
        b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n"
            .to_vec();
    exact.extend_from_slice(&[b'x'; 1000]);
    let answer = exchange(h.addr(), &exact, WITHIN).await;
    assert_eq!(answer.status(), 200, "{}", answer.text());
    assert_eq!(backend.complete()[0].body().len(), 1000);
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn a_chunked_body_growing_past_the_limit_is_cut_off_with_413() {
    let (h, backend) = start().await;
    let mut req =
        b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        req.extend_from_slice(b"190\r\n"); // 400 bytes per chunk
        req.extend_from_slice(&[b'x'; 400]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let answer = exchange(h.addr(), &req, WITHIN).await;
    assert_eq!(answer.status(), 413, "{}", answer.text());
    assert!(answer.closed);
    // The backend never got a complete request: at most the head and the part within
    // the limit, then the connection was closed.
    assert!(backend.complete().is_empty(), "{:?}", backend.complete());
    assert!(backend
        .received()
        .iter()
        .all(|r| r.body().len() < 1000 + 64));
    h.proxy.shutdown().await;
}
