//! Upstream connections without TLS, through the real proxy and the public
//! `UpstreamClient`: connect, read (head and body) and write timeouts, invalid answers,
//! keep-alive reuse and the idle timeout, `pool_max_idle`, `bind`, Unix socket backends.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;
mod upstream_support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{config, Harness};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use lb_proxy::client::{PeerOptions, UpstreamClient};
use lb_testkit::TestBackend;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use upstream_support::{backend_at, blackhole, client, get, request_error, silent_server};

#[tokio::test]
async fn connect_timeout_to_a_blackhole_is_bounded() {
    let (listener, _fillers) = blackhole().await;
    let addr = listener.local_addr().unwrap();
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstreams.web]\nbackends = [\"{addr}\"]\n\
         connect_timeout = \"200ms\"\n[[routes]]\nupstream = \"web\"\n"
    );
    let (h, _events) = Harness::start(&toml).await;
    let started = Instant::now();
    assert_eq!(h.get("/").await.0, StatusCode::BAD_GATEWAY);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    let c = client(|o| o.connect_timeout = Duration::from_millis(200));
    let error = request_error(&c, &backend_at(addr), "/").await;
    assert!(error.is_connect() && error.is_timeout(), "{error:?}");
}

#[tokio::test]
async fn no_response_head_within_read_timeout_is_a_timeout_and_504() {
    let (addr, _server) = silent_server().await;
    let c = client(|o| o.read_timeout = Some(Duration::from_millis(200)));
    let started = Instant::now();
    let error = request_error(&c, &backend_at(addr), "/").await;
    assert!(
        error.is_timeout() && !error.is_connect() && !error.is_body(),
        "{error:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(200));

    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstreams.web]\nbackends = [\"{addr}\"]\n\
         read_timeout = \"200ms\"\n[[routes]]\nupstream = \"web\"\n"
    );
    let (h, _events) = Harness::start(&toml).await;
    assert_eq!(
        h.get("/").await,
        (
            StatusCode::GATEWAY_TIMEOUT,
            "504 Gateway Timeout\n".to_owned()
        )
    );
}

#[tokio::test]
async fn an_answer_that_is_not_http_is_an_invalid_response() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _server = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let mut buf = vec![0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await;
            });
        }
    });
    let c = client(|_| {});
    let error = request_error(&c, &backend_at(addr), "/").await;
    assert!(
        error.is_invalid_response() && !error.is_connect(),
        "{error:?}"
    );
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstreams.web]\nbackends = [\"{addr}\"]\n\
         [[routes]]\nupstream = \"web\"\n"
    );
    let (h, _events) = Harness::start(&toml).await;
    assert_eq!(h.get("/").await.0, StatusCode::BAD_GATEWAY);
}

/// Unix socket backends go through the same client (their path is encoded in the pool's
/// authority).
#[tokio::test]
async fn unix_socket_backends_are_reached() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backend.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let _server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = hyper::service::service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                    Bytes::from_static(b"unix"),
                )))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc),
            );
        }
    });
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstreams.web]\nbackends = [\"unix:{}\"]\n\
         [[routes]]\nupstream = \"web\"\n",
        path.display()
    );
    let (h, _events) = Harness::start(&toml).await;
    assert_eq!(h.get("/").await, (StatusCode::OK, "unix".to_owned()));
}

#[tokio::test]
async fn a_body_that_stalls_mid_stream_times_out() {
    let backends = TestBackend::start_many(1).await;
    let c = client(|o| o.read_timeout = Some(Duration::from_millis(200)));
    let resp = c
        .request(&backend_at(backends[0].addr()), get("/stall-body"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // The body holds its timer inline (no allocation), so it is pinned to be polled.
    let mut body = std::pin::pin!(resp.into_body());
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "b0");
    let error = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("the body timed out within 10 s")
        .unwrap()
        .unwrap_err();
    assert!(error.is_timeout() && error.is_body(), "{error:?}");

    // Through the proxy: the head and first chunk arrive, then the body breaks off.
    let (h, _events) = Harness::start(&config(&backends, "read_timeout = \"200ms\"")).await;
    let resp = h
        .client
        .get(h.url("/stall-body").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let collected = tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect())
        .await
        .expect("the body ended within 10 s");
    assert!(collected.is_err(), "the client sees the body cut short");
}

#[tokio::test]
async fn a_write_without_progress_times_out() {
    // A listener that accepts and never reads: the request body fills the buffers.
    let deaf = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let deaf_addr = deaf.local_addr().unwrap();
    let _held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = deaf.accept().await {
            open.push(stream);
        }
    });
    let mut o = PeerOptions::default();
    o.write_timeout = Some(Duration::from_millis(200));
    o.read_timeout = Some(Duration::from_secs(30));
    let c: UpstreamClient<Full<Bytes>> = UpstreamClient::new(o).unwrap();
    let big = Bytes::from(vec![b'x'; 64 << 20]);
    let req = Request::post("/upload").body(Full::new(big)).unwrap();
    let error = tokio::time::timeout(
        Duration::from_secs(10),
        c.request(&backend_at(deaf_addr), req),
    )
    .await
    .expect("the write timed out within 10 s")
    .unwrap_err();
    assert!(error.is_timeout() && !error.is_connect(), "{error:?}");
}

#[tokio::test]
async fn idle_connections_are_reused_then_closed_after_idle_timeout() {
    let backends = TestBackend::start_many(1).await;
    let (h, _events) = Harness::start(&config(&backends, "idle_timeout = \"300ms\"")).await;
    for _ in 0..3 {
        assert_eq!(h.get("/").await.0, StatusCode::OK);
    }
    assert_eq!(backends[0].connections(), 1, "kept alive and reused");
    // The pool closes the idle connection once idle_timeout passed.
    tokio::time::timeout(Duration::from_secs(10), backends[0].wait_for_closed(1))
        .await
        .expect("the idle connection was closed");
    assert_eq!(h.get("/").await.0, StatusCode::OK);
    assert_eq!(
        backends[0].connections(),
        2,
        "a new connection after the idle timeout"
    );
}

#[tokio::test]
async fn pool_max_idle_zero_opens_a_connection_per_request() {
    let backends = TestBackend::start_many(1).await;
    let (h, _events) = Harness::start(&config(&backends, "pool_max_idle = 0")).await;
    for _ in 0..3 {
        assert_eq!(h.get("/").await.0, StatusCode::OK);
    }
    assert_eq!(backends[0].connections(), 3);
}

#[tokio::test]
async fn bind_sets_the_source_address() {
    let backends = TestBackend::start_many(1).await;
    let (h, _events) = Harness::start(&config(&backends, "bind = \"127.0.0.2\"")).await;
    assert_eq!(h.get("/").await.0, StatusCode::OK);
    let peer = backends[0].last_peer().await.unwrap();
    assert_eq!(peer.ip().to_string(), "127.0.0.2");
}
