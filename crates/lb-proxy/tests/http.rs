//! HTTP behaviour of the proxy: headers, HTTP/2 downstream, streaming, 502/503, shutdown.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{config, Harness};
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lb_testkit::TestBackend;

#[tokio::test]
async fn headers_are_rewritten_as_a_proxy_must() {
    let backends = TestBackend::start_many(1).await;
    let (h, _events) = Harness::start(&config(&backends, "")).await;
    let req = Request::get(h.url("/path?q=1"))
        .header("host", "app.example.test")
        .header("x-forwarded-for", "203.0.113.7")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "secret")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("te", "trailers")
        .header("x-end-to-end", "kept")
        .body(Full::default())
        .unwrap();
    let (status, body) = h.send(req).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "b0"));
    let seen = backends[0].last_headers().await.unwrap();
    assert_eq!(
        seen["host"], "app.example.test",
        "Host passed as the client sent it"
    );
    // 127.0.0.1 is not a trusted proxy: its X-Forwarded-For is replaced (tests/forwarding.rs).
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-end-to-end"], "kept");
    for hop in ["x-hop", "keep-alive", "proxy-connection", "te", "upgrade"] {
        assert!(!seen.contains_key(hop), "{hop} forwarded: {seen:?}");
    }
    // The proxy speaks keep-alive to the backend on its own terms.
    assert_ne!(
        seen.get("connection").map(|v| v.as_bytes()),
        Some(&b"keep-alive, x-hop"[..])
    );
}

#[tokio::test]
async fn http2_prior_knowledge_downstream() {
    let backends = TestBackend::start_many(2).await;
    let (h, _events) = Harness::start(&config(&backends, "")).await;
    let h2: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let mut bodies = Vec::new();
    for _ in 0..4 {
        let resp = h2.get(h.url("/").parse().unwrap()).await.unwrap();
        assert_eq!(
            (resp.status(), resp.version()),
            (StatusCode::OK, Version::HTTP_2)
        );
        bodies.push(resp.into_body().collect().await.unwrap().to_bytes());
    }
    // Round robin alternates between the two (their order follows their ports).
    assert_ne!(bodies[0], bodies[1]);
    assert_eq!((&bodies[0], &bodies[1]), (&bodies[2], &bodies[3]));
    let seen = backends[0].last_headers().await.unwrap();
    assert_eq!(
        seen["host"],
        h.addr().to_string(),
        "Host taken from :authority"
    );
}

/// A request body fed chunk by chunk from the test.
struct Chunks(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|c| c.map(|b| Ok(http_body::Frame::data(b))))
    }
}

/// Each chunk travels client → proxy → backend → proxy → client before the next is sent:
/// a proxy that buffered either body whole would deadlock here.
#[tokio::test]
async fn bodies_stream_both_ways() {
    let backends = TestBackend::start_many(1).await;
    let (h, _events) = Harness::start(&config(&backends, "")).await;
    let client: Client<_, Chunks> = Client::builder(TokioExecutor::new()).build_http();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let req = Request::post(h.url("/echo")).body(Chunks(rx)).unwrap();
    tx.send(Bytes::from_static(b"chunk-0;")).await.unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("response headers before the request body ended")
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut echoed = Vec::new();
    for i in 1..=20 {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("echo of the previous chunk")
            .unwrap()
            .unwrap();
        echoed.extend_from_slice(&frame.into_data().unwrap());
        if i < 20 {
            // 64 KiB chunks, so the stream is far larger than any single buffer.
            let chunk = format!("chunk-{i};").repeat(64 * 1024 / 9);
            tx.send(Bytes::from(chunk)).await.unwrap();
        }
    }
    drop(tx);
    while let Some(frame) = body.frame().await {
        echoed.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    let text = String::from_utf8(echoed).unwrap();
    assert!(text.starts_with("chunk-0;chunk-1;"));
    assert!(text.ends_with("chunk-19;"));
    assert!(text.len() > 1_000_000);
}

#[tokio::test]
async fn unreachable_backend_gives_502() {
    let mut backends = TestBackend::start_many(1).await;
    backends[0].stop().await;
    // No health check: the backend stays in rotation and the connect fails.
    let (h, _events) = Harness::start(&config(&backends, "connect_timeout = \"1s\"")).await;
    let (status, body) = h.get("/").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body, "502 Bad Gateway\n");
}

#[tokio::test]
async fn no_healthy_backend_gives_503_at_once() {
    let mut backends = TestBackend::start_many(2).await;
    for b in &mut backends {
        b.stop().await;
    }
    let checks = "[upstreams.web.health_check]\ninterval = \"1h\"\ninitial = \"unhealthy\"\n";
    let (h, _events) = Harness::start(&config(&backends, checks)).await;
    let req = Request::get(h.url("/")).body(Full::default()).unwrap();
    let resp = h.client.request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"503 Service Unavailable: no healthy backend\n");
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_then_refuses_connections() {
    let backends = TestBackend::start_many(1).await;
    backends[0].set_delay(Duration::from_millis(300));
    let (h, _events) = Harness::start(&config(&backends, "")).await;
    let addr = h.addr();
    let client = h.client.clone();
    let url = h.url("/slow");
    let in_flight = tokio::spawn(async move {
        let resp = client.get(url.parse().unwrap()).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, body)
    });
    backends[0].wait_for_hits(1).await;
    assert!(h.proxy.shutdown().await, "drained within the grace period");
    let (status, body) = in_flight.await.unwrap();
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"b0"[..]));
    let refused = tokio::net::TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
}
