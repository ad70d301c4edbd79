//! Parking (`parking.rs`, `protect/park.rs`): an idle HTTP/1.x connection on a plain
//! listener gives hyper's state back and keeps only its socket; the client's next request
//! on the same connection is served as before, a head begun before the park is completed
//! after it, and shutdown closes parked connections at once and still counts them.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::{config, read_response, wait_parked, Harness};
use lb_testkit::TestBackend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const STEP: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_parked_connection_serves_its_next_requests() {
    let backends = TestBackend::start_many(1).await;
    let (h, _events) = Harness::start(&config(&backends, "")).await;
    let mut client = TcpStream::connect(h.addr()).await.unwrap();
    let mut data = Vec::new();
    let get = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";
    client.write_all(get).await.unwrap();
    assert_eq!(
        read_response(&mut client, &mut data).await,
        "http/1.1 200 ok"
    );
    wait_parked(&h.proxy, 1).await;

    // The same connection, after the park: a GET, then a POST with a body.
    client.write_all(get).await.unwrap();
    assert_eq!(
        read_response(&mut client, &mut data).await,
        "http/1.1 200 ok"
    );
    wait_parked(&h.proxy, 1).await;
    client
        .write_all(b"POST /p HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .unwrap();
    assert_eq!(
        read_response(&mut client, &mut data).await,
        "http/1.1 200 ok"
    );
    assert_eq!(backends[0].hits(), 3);
    let open: usize = h
        .proxy
        .worker_stats()
        .iter()
        .map(|w| w.open_connections)
        .sum();
    assert_eq!(open, 1, "one client connection throughout");
    assert!(h.proxy.shutdown().await);
}

#[tokio::test]
async fn a_head_begun_before_the_park_is_served_after_it() {
    let backends = TestBackend::start_many(1).await;
    let (h, _events) = Harness::start(&config(&backends, "")).await;
    let mut client = TcpStream::connect(h.addr()).await.unwrap();
    let mut data = Vec::new();
    client
        .write_all(b"GET /half HTTP/1.1\r\nHost: te")
        .await
        .unwrap();
    // The held half-head does not keep the connection from parking...
    wait_parked(&h.proxy, 1).await;
    // ...and the rest completes it.
    client.write_all(b"st\r\n\r\n").await.unwrap();
    assert_eq!(
        read_response(&mut client, &mut data).await,
        "http/1.1 200 ok"
    );
    assert_eq!(backends[0].hits(), 1);
    assert!(h.proxy.shutdown().await);
}

#[tokio::test]
async fn shutdown_closes_parked_connections_at_once() {
    let backends = TestBackend::start_many(1).await;
    let (h, _events) = Harness::start(&config(&backends, "")).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut client = TcpStream::connect(h.addr()).await.unwrap();
        let mut data = Vec::new();
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(
            read_response(&mut client, &mut data).await,
            "http/1.1 200 ok"
        );
        clients.push(client);
    }
    wait_parked(&h.proxy, 3).await;
    let started = Instant::now();
    assert!(
        h.proxy.shutdown().await,
        "every connection finished in time"
    );
    // The grace period is 5 s: parked connections did not wait for it.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    for mut client in clients {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(STEP, client.read(&mut byte))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0, "closed");
    }
}
