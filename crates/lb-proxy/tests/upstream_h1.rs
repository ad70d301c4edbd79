//! The upstream client's own HTTP/1.1 exchange (`client/h1.rs`), through the public
//! `UpstreamClient` against real loopback backends: a pooled connection the backend closed
//! is replaced without an error, requests with and without a body share the pooled
//! connection, chunked bodies with trailers, and `HEAD` answers. Request bodies in detail:
//! `upstream_bodies.rs`.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod upstream_support;

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use lb_proxy::client::UpstreamClient;
use lb_testkit::raw::RawBackend;
use lb_testkit::TestBackend;
use upstream_support::backend_at;

const STEP: Duration = Duration::from_secs(10);

fn request(method: Method, body: &'static str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri("/")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

/// Sends `req` and reads the whole answer.
async fn exchange(
    client: &UpstreamClient<Full<Bytes>>,
    backend: &lb_core::Backend,
    req: Request<Full<Bytes>>,
) -> (StatusCode, http_body_util::Collected<Bytes>) {
    let resp = tokio::time::timeout(STEP, client.request(backend, req))
        .await
        .unwrap()
        .unwrap();
    let status = resp.status();
    let body = tokio::time::timeout(STEP, resp.into_body().collect())
        .await
        .unwrap()
        .unwrap();
    (status, body)
}

#[tokio::test(flavor = "current_thread")]
async fn a_pooled_connection_the_backend_closed_is_replaced_without_an_error() {
    // Announces keep-alive (HTTP/1.1, a length), then closes after every answer.
    let raw = RawBackend::reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()).await;
    let client = UpstreamClient::new(Default::default()).unwrap();
    let backend = backend_at(raw.addr());
    for round in 1..=3 {
        let (status, body) = exchange(&client, &backend, request(Method::GET, "")).await;
        assert_eq!(status, StatusCode::OK, "round {round}");
        assert_eq!(body.to_bytes(), "ok");
        // The backend has closed this connection; the next GET must not see it fail, whether
        // the pool notices the close at checkout or the GET finds it closed as it writes.
        tokio::time::timeout(STEP, raw.wait_all_closed())
            .await
            .unwrap();
    }
    assert_eq!(raw.requests(), 3);
    assert_eq!(raw.connections(), 3);
}

#[tokio::test(flavor = "current_thread")]
async fn requests_with_and_without_a_body_share_the_pooled_connection() {
    let backend = TestBackend::start("b").await;
    let client = UpstreamClient::new(Default::default()).unwrap();
    let target = backend_at(backend.addr());
    for (method, body) in [
        (Method::GET, ""),
        (Method::POST, "a body"),
        (Method::GET, ""),
        (Method::PUT, "another"),
        (Method::DELETE, ""),
    ] {
        let (status, _) = exchange(&client, &target, request(method.clone(), body)).await;
        assert_eq!(status, StatusCode::OK, "{method}");
    }
    assert_eq!(backend.hits(), 5);
    assert_eq!(backend.connections(), 1, "one connection for all five");
}

#[tokio::test(flavor = "current_thread")]
async fn chunked_bodies_arrive_with_their_trailers() {
    let raw = RawBackend::reply(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n\
          5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n"
            .to_vec(),
    )
    .await;
    let client = UpstreamClient::new(Default::default()).unwrap();
    let (status, body) = exchange(&client, &backend_at(raw.addr()), request(Method::GET, "")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.trailers().unwrap()["x-sum"], "42");
    assert_eq!(body.to_bytes(), "hello world");
}

#[tokio::test(flavor = "current_thread")]
async fn head_answers_have_no_body_whatever_their_length() {
    let raw = RawBackend::reply(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".to_vec()).await;
    let client = UpstreamClient::new(Default::default()).unwrap();
    let (status, body) =
        exchange(&client, &backend_at(raw.addr()), request(Method::HEAD, "")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.to_bytes().is_empty());
}
