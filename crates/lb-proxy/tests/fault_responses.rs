//! Fault: backends that answer garbage, or close the connection in the middle of the
//! response head or body (raw TCP backends from `lb_testkit::raw`).
//!
//! - Garbage and a cut head: `502`, or a retry on another backend where the retry
//!   conditions allow it (nothing of the response was sent to the client yet).
//! - A cut body: the head was already passed on, so the client must see the response
//!   aborted (HTTP/1.1: the connection closes before the announced length, or without the
//!   last chunk; HTTP/2: the stream is reset), never a complete response.
//! - Afterwards the proxy serves normally and counts nothing as still in flight.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::Harness;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lb_testkit::raw::{RawBackend, ANNOUNCED_BODY_LEN, PARTIAL_BODY_LEN};
use lb_testkit::TestBackend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Every wait of this test ends by this deadline.
const STEP: Duration = Duration::from_secs(10);

/// The misbehaving backends and the proxy in front of them, one route per case.
struct Rig {
    h: Harness,
    good: TestBackend,
    garbage: RawBackend,
    cut_head: RawBackend,
    cut_body: RawBackend,
    cut_chunked: RawBackend,
}

impl Rig {
    async fn start() -> Self {
        let good = TestBackend::start("good").await;
        let garbage = RawBackend::garbage().await;
        let cut_head = RawBackend::close_mid_headers().await;
        let cut_body = RawBackend::close_mid_body().await;
        let cut_chunked = RawBackend::close_mid_chunked_body().await;
        let g = good.addr();
        let upstream = |name: &str, backends: &[SocketAddr], retry: &str| {
            let list: Vec<String> = backends.iter().map(|a| format!("\"{a}\"")).collect();
            format!(
                "[upstreams.{name}]\nbackends = [{}]\nretry = {{ on = [{retry}] }}\n\n",
                list.join(", ")
            )
        };
        let route = |name: &str| {
            format!("[[routes]]\nupstream = \"{name}\"\npath_prefix = \"/{name}/\"\n\n")
        };
        let cases = [
            ("garbage", vec![garbage.addr()], ""),
            (
                "garbage_retried",
                vec![garbage.addr(), g],
                "\"invalid_header\"",
            ),
            ("cut_head", vec![cut_head.addr()], ""),
            ("cut_head_retried", vec![cut_head.addr(), g], "\"error\""),
            (
                "cut_body",
                vec![cut_body.addr()],
                "\"error\", \"invalid_header\"",
            ),
            (
                "cut_chunked",
                vec![cut_chunked.addr()],
                "\"error\", \"invalid_header\"",
            ),
        ];
        let mut toml =
            String::from("[server]\nlisten = [\"127.0.0.1:0\"]\ngrace_period = \"1s\"\n\n");
        for (name, backends, retry) in &cases {
            toml.push_str(&upstream(name, backends, retry));
        }
        toml.push_str(&upstream("good", &[g], "\"error\""));
        for (name, _, _) in &cases {
            toml.push_str(&route(name));
        }
        toml.push_str("[[routes]]\nupstream = \"good\"\n");
        let (h, _) = Harness::start(&toml).await;
        Self {
            h,
            good,
            garbage,
            cut_head,
            cut_body,
            cut_chunked,
        }
    }

    /// Sends `GET path` over a raw connection and reads until the proxy closes it (or
    /// `STEP`): everything the client received.
    async fn raw_get(&self, path: &str) -> Vec<u8> {
        let mut stream = TcpStream::connect(self.h.addr()).await.unwrap();
        let head = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(STEP, stream.read_to_end(&mut got))
            .await
            .expect("the proxy neither finished nor closed")
            .ok();
        got
    }

    /// Nothing is counted in flight on any backend of any upstream.
    fn nothing_in_flight(&self) {
        for name in ["garbage", "cut_head", "cut_body", "cut_chunked", "good"] {
            for b in self
                .h
                .proxy
                .upstream(name)
                .unwrap()
                .balancer()
                .backends()
                .iter()
            {
                assert_eq!(b.state().in_flight(), 0, "{name}: {b}");
            }
        }
    }
}

/// The body of a raw HTTP/1.1 response: everything after the blank line.
fn split(raw: &[u8]) -> (String, &[u8]) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete head in {:?}", String::from_utf8_lossy(raw)));
    (
        String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase(),
        &raw[end + 4..],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_a_cut_head_give_502_or_a_retry() {
    let rig = Rig::start().await;
    for _ in 0..3 {
        assert_eq!(rig.h.get("/garbage/").await.0, StatusCode::BAD_GATEWAY);
        assert_eq!(rig.h.get("/cut_head/").await.0, StatusCode::BAD_GATEWAY);
    }
    assert_eq!(rig.garbage.requests(), 3);
    assert_eq!(rig.cut_head.requests(), 3);

    // Where a retry condition covers it, the next backend answers instead.
    for _ in 0..6 {
        let good = (StatusCode::OK, "good".to_owned());
        assert_eq!(rig.h.get("/garbage_retried/").await, good);
        assert_eq!(rig.h.get("/cut_head_retried/").await, good);
    }
    assert!(rig.garbage.requests() > 3, "round robin reached it again");
    assert!(rig.cut_head.requests() > 3, "round robin reached it again");
    let counts = rig
        .h
        .proxy
        .upstream("garbage_retried")
        .unwrap()
        .retry()
        .counts();
    assert!(counts.invalid_header > 0, "{counts:?}");
    let counts = rig
        .h
        .proxy
        .upstream("cut_head_retried")
        .unwrap()
        .retry()
        .counts();
    assert!(counts.error > 0, "{counts:?}");

    // The same client connection still works, and nothing is left counted in flight.
    assert_eq!(rig.h.get("/").await, (StatusCode::OK, "good".to_owned()));
    rig.nothing_in_flight();
    assert!(rig.good.hits() >= 13);
    assert!(rig.h.proxy.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_cut_mid_way_reaches_the_client_as_an_aborted_response() {
    let rig = Rig::start().await;

    // HTTP/1.1, Content-Length: the announced length, part of the body, then the close.
    let raw = rig.raw_get("/cut_body/").await;
    let (head, body) = split(&raw);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains(&format!("content-length: {ANNOUNCED_BODY_LEN}")),
        "{head}"
    );
    assert_eq!(
        body.len(),
        PARTIAL_BODY_LEN,
        "what the backend sent, no more"
    );

    // HTTP/1.1, chunked: the chunk that arrived, but never the last chunk.
    let raw = rig.raw_get("/cut_chunked/").await;
    let (head, body) = split(&raw);
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    let text = String::from_utf8_lossy(body).to_ascii_lowercase();
    assert!(
        text.starts_with(&format!("{PARTIAL_BODY_LEN:x}\r\n")),
        "{text}"
    );
    assert!(
        !text.contains("\r\n0\r\n\r\n"),
        "a last chunk was sent: {text}"
    );

    // A real client sees an error, never a complete body, over HTTP/1.1 and HTTP/2.
    let http2 = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    for (client, version) in [(&rig.h.client, "HTTP/1.1"), (&http2, "HTTP/2")] {
        for path in ["/cut_body/", "/cut_chunked/"] {
            let req = Request::get(rig.h.url(path)).body(Full::default()).unwrap();
            let resp = client.request(req).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{version} {path}");
            let body = tokio::time::timeout(STEP, resp.into_body().collect())
                .await
                .unwrap();
            assert!(
                body.is_err(),
                "{version} {path}: a cut body arrived as a complete one"
            );
        }
    }
    // The head had been passed on: no retry, one request per attempt at the backend.
    assert_eq!(rig.cut_body.requests(), 3);
    assert_eq!(rig.cut_chunked.requests(), 3);

    assert_eq!(rig.h.get("/").await, (StatusCode::OK, "good".to_owned()));
    rig.nothing_in_flight();
    assert!(rig.h.proxy.shutdown().await);
}
