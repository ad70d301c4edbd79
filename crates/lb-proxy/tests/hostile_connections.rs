//! More connections than `max_connections`: the proxy serves that many at once; the rest
//! wait in the listen backlog (accepted, and served, as soon as a slot frees) and cost the
//! proxy no socket, no task and no buffer meanwhile. Connections already open keep being
//! served while the listener is full.

#![allow(clippy::unwrap_used)]

mod common;
mod hostile_support;

use std::time::Duration;

use common::Harness;
use hostile_support::{config, exchange, read_until_closed};
use lb_testkit::TestBackend;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Open file descriptors of this process (the test and the in-process proxy).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

const LIMITS: &str =
    "max_connections = 4\nheader_read_timeout = \"30s\"\nkeepalive_timeout = \"30s\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excess_connections_wait_until_a_slot_frees() {
    let backend = TestBackend::start("b").await;
    let (h, _) = Harness::start(&config(&[backend.addr()], LIMITS, "")).await;

    // One keep-alive connection that has already been served...
    let mut served = TcpStream::connect(h.addr()).await.unwrap();
    served
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let first = read_until_closed(&mut served, Duration::from_millis(300)).await;
    assert_eq!(first.status(), 200);
    // ...and three that say nothing: the four slots are taken.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(h.addr()).await.unwrap());
    }

    // A fifth connects (the kernel completes the handshake into the backlog) but is not
    // served while the slots are taken.
    let mut waiting = TcpStream::connect(h.addr()).await.unwrap();
    waiting
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let early = read_until_closed(&mut waiting, Duration::from_millis(500)).await;
    assert!(
        early.bytes.is_empty() && !early.closed,
        "served past max_connections: {}",
        early.text()
    );

    // The connections already open are still served.
    served
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let again = read_until_closed(&mut served, Duration::from_millis(300)).await;
    assert_eq!(
        again.status(),
        200,
        "an open connection stopped being served"
    );

    // One slot frees: the waiting connection is accepted and answered.
    drop(idle.pop());
    let late = read_until_closed(&mut waiting, Duration::from_secs(5)).await;
    assert_eq!(late.status(), 200, "{}", late.text());
    assert!(late.closed);
    h.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_costs_at_most_max_connections_sockets() {
    let backend = TestBackend::start("b").await;
    let limits =
        "max_connections = 20\nheader_read_timeout = \"30s\"\nkeepalive_timeout = \"30s\"\n";
    let (h, _) = Harness::start(&config(&[backend.addr()], limits, "")).await;
    let before = open_fds();

    // 100 connections that never send anything (fewer than the listen backlog of 128, so
    // the kernel completes every handshake).
    let mut flood = Vec::new();
    for _ in 0..100 {
        flood.push(TcpStream::connect(h.addr()).await.unwrap());
    }
    // Give the accept loop every chance to take more than it may (this asserts that
    // something does not happen, so there is no event to wait for): the test's own 100
    // sockets plus the proxy's 20 accepted ones, and nothing more.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let opened = open_fds() - before;
    assert!(
        opened <= 100 + 20 + 4,
        "{opened} descriptors for 100 client sockets: the proxy accepted past max_connections"
    );

    // The flood leaves: the proxy serves again.
    drop(flood);
    let answer = exchange(
        h.addr(),
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(answer.status(), 200, "{}", answer.text());
    h.proxy.shutdown().await;
}
