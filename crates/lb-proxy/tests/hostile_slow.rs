//! Slow clients against the connection and body timers of `[server.limits]`: slowloris
//! (a head trickled byte by byte) is cut at `header_read_timeout`, slow POST at
//! `body_read_timeout` (408), a client that never reads its response at `send_timeout`
//! (releasing the backend), and idle connections, HTTP/1.1 and HTTP/2, at
//! `keepalive_timeout`; a connection with a request in progress is not idle. A
//! well-behaved client keeps getting 200s throughout.
//!
//! The limits are one second here, so each test takes a few seconds: the time an attack
//! has to last before the limit can act.

#![allow(clippy::unwrap_used)]

mod common;
mod hostile_support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Harness;
use futures_util::stream;
use hostile_support::{config, read_until_closed, GoodClient, RawBackend};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use lb_testkit::TestBackend;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The limit under test, and how late the proxy may act on it.
const LIMIT: Duration = Duration::from_secs(1);
const MARGIN: Duration = Duration::from_millis(1500);

fn assert_cut_at(elapsed: Duration, what: &str) {
    assert!(
        elapsed >= LIMIT - Duration::from_millis(50) && elapsed <= LIMIT + MARGIN,
        "{what} cut after {elapsed:?}, expected about {LIMIT:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_at_header_read_timeout_and_others_are_served() {
    let backend = TestBackend::start("b").await;
    let limits = "header_read_timeout = \"1s\"\nkeepalive_timeout = \"30s\"\n";
    let (h, _) = Harness::start(&config(&[backend.addr()], limits, "")).await;
    let good = GoodClient::start(h.url("/"), Duration::from_millis(20));

    // Twenty slowloris connections, each trickling one header byte every 100 ms.
    let mut attackers = Vec::new();
    for _ in 0..20 {
        let addr = h.addr();
        attackers.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let start = Instant::now();
            s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").await.unwrap();
            // Bounded: 100 bytes at most, ten seconds, far past the limit.
            for b in b"X-Slow: ".iter().chain([b'a'; 92].iter()) {
                if s.write_all(&[*b]).await.is_err() {
                    break;
                }
                let answer = read_until_closed(&mut s, Duration::from_millis(100)).await;
                if answer.closed {
                    return (start.elapsed(), answer);
                }
            }
            (
                start.elapsed(),
                read_until_closed(&mut s, Duration::from_secs(1)).await,
            )
        }));
    }
    for a in attackers {
        let (elapsed, answer) = a.await.unwrap();
        assert!(
            answer.closed,
            "slowloris connection still open after {elapsed:?}"
        );
        assert_cut_at(elapsed, "slowloris");
        // hyper answers 408 when it can, or just closes.
        assert!(matches!(answer.status(), 0 | 408), "{}", answer.text());
    }
    let (ok, failed) = good.finish().await;
    assert!(
        ok >= 20 && failed == 0,
        "good client: {ok} ok, {failed} failed"
    );
    h.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_post_gets_408_at_body_read_timeout_but_a_steady_trickle_passes() {
    let backend = RawBackend::start().await;
    let limits = "body_read_timeout = \"1s\"\n";
    let (h, _) = Harness::start(&config(&[backend.addr], limits, "")).await;
    let good = GoodClient::start(h.url("/"), Duration::from_millis(20));

    // Ten of a hundred bytes, then silence.
    let mut s = TcpStream::connect(h.addr()).await.unwrap();
    s.write_all(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    let start = Instant::now();
    let answer = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert_eq!(answer.status(), 408, "{}", answer.text());
    assert!(answer.closed);
    assert_cut_at(start.elapsed(), "slow POST");
    assert!(
        backend
            .complete()
            .iter()
            .all(|r| !r.text().starts_with("POST")),
        "the backend got the cut body as complete"
    );

    // A body that keeps coming, each piece well within the limit, takes longer in total
    // than the limit and still passes: the limit is on one wait, not on the whole body.
    let mut s = TcpStream::connect(h.addr()).await.unwrap();
    s.write_all(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 8\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    for b in b"steady!!" {
        tokio::time::sleep(Duration::from_millis(200)).await;
        s.write_all(&[*b]).await.unwrap();
    }
    let answer = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert_eq!(answer.status(), 200, "{}", answer.text());
    let got = backend.complete();
    assert!(got.iter().any(|r| r.body() == b"steady!!"), "{got:?}");

    let (ok, failed) = good.finish().await;
    assert!(
        ok >= 20 && failed == 0,
        "good client: {ok} ok, {failed} failed"
    );
    h.proxy.shutdown().await;
}

/// A backend whose `GET` answers an endless body, and reports when that body is dropped
/// (its connection to the proxy closed).
async fn endless_backend() -> (SocketAddr, mpsc::UnboundedReceiver<()>) {
    struct Dropped(mpsc::UnboundedSender<()>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_: Request<Incoming>| {
                    let guard = Dropped(tx.clone());
                    let chunks = stream::iter(std::iter::repeat_with(move || {
                        let _ = &guard;
                        Ok::<_, Infallible>(Frame::data(Bytes::from_static(&[b'z'; 16384])))
                    }));
                    async move { Ok::<_, Infallible>(Response::new(StreamBody::new(chunks))) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_cut_at_send_timeout_and_frees_the_backend() {
    let (backend, mut dropped) = endless_backend().await;
    let limits = "send_timeout = \"1s\"\n";
    let (h, _) = Harness::start(&config(&[backend], limits, "")).await;
    let mut s = TcpStream::connect(h.addr()).await.unwrap();
    s.write_all(b"GET /endless HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    // The client reads nothing. Socket buffers fill within milliseconds, then the proxy's
    // writes stall; send_timeout later the proxy gives up and drops the backend's body.
    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), dropped.recv())
        .await
        .expect("the backend's response was never released")
        .unwrap();
    let elapsed = start.elapsed();
    assert!(
        elapsed >= LIMIT && elapsed <= LIMIT + Duration::from_secs(3),
        "released after {elapsed:?}"
    );
    // The client's connection is closed: reading drains what was buffered, then ends.
    let answer = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(answer.closed);
    assert_eq!(answer.status(), 200);
    h.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_at_keepalive_timeout_busy_ones_do_not() {
    let mut backend = TestBackend::start("b").await;
    let limits = "keepalive_timeout = \"1s\"\nheader_read_timeout = \"10s\"\n";
    let (h, _) = Harness::start(&config(&[backend.addr()], limits, "")).await;

    // HTTP/1.1: one request, then idle.
    let mut s = TcpStream::connect(h.addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let answer = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert_eq!(answer.status(), 200);
    assert!(answer.closed, "idle HTTP/1.1 connection still open");
    assert_cut_at(start.elapsed(), "idle HTTP/1.1 connection");

    // A connection that sends nothing at all.
    let mut s = TcpStream::connect(h.addr()).await.unwrap();
    let start = Instant::now();
    assert!(
        read_until_closed(&mut s, Duration::from_secs(5))
            .await
            .closed
    );
    assert_cut_at(start.elapsed(), "silent connection");

    // HTTP/2 (prior knowledge): one request, then idle; the client sees the close.
    let tcp = TcpStream::connect(h.addr()).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = Request::get(h.url("/"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.into_body().collect().await.unwrap();
    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("idle HTTP/2 connection still open")
        .unwrap()
        .ok();
    assert_cut_at(start.elapsed(), "idle HTTP/2 connection");

    // Busy: a request the backend answers after twice the timeout is not cut.
    backend.set_delay(Duration::from_secs(2));
    let tcp = TcpStream::connect(h.addr()).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get(h.url("/"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), send.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    backend.stop().await;
    h.proxy.shutdown().await;
}
