//! Request bodies on the upstream client's own HTTP/1.1 exchange (`lb-client/src/h1/`),
//! through the public `UpstreamClient` against real loopback backends: what goes on the
//! wire for a known and an unknown length, a backend answering before the body ends, a
//! body streamed both ways at once, a `200` before a large body is read (directly and
//! through lb-proxy, whose client connection must stay open), `Expect: 100-continue`
//! (refused, granted, and unanswered), a stale pooled connection, a body that breaks its
//! length, and an upgrade.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod upstream_support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use lb_proxy::client::UpstreamClient;
use lb_testkit::raw::RawBackend;
use lb_testkit::TestBackend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use upstream_support::backend_at;

const STEP: Duration = Duration::from_secs(10);

/// A request body fed frame by frame by the test, of unknown length; it notes whether it
/// was ever read.
struct Chan {
    rx: mpsc::UnboundedReceiver<Frame<Bytes>>,
    polled: Arc<AtomicBool>,
}

impl Body for Chan {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.polled.store(true, Ordering::SeqCst);
        self.rx.poll_recv(cx).map(|f| f.map(Ok))
    }
}

/// A `Chan`, its sender and its flag.
fn chan() -> (Chan, mpsc::UnboundedSender<Frame<Bytes>>, Arc<AtomicBool>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let polled = Arc::new(AtomicBool::new(false));
    let body = Chan {
        rx,
        polled: polled.clone(),
    };
    (body, tx, polled)
}

fn data(text: &'static str) -> Frame<Bytes> {
    Frame::data(Bytes::from_static(text.as_bytes()))
}

/// Reads from `stream` until `buf` ends with `end`.
async fn read_until(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>, end: &[u8]) {
    while !buf.ends_with(end) {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before {:?}", String::from_utf8_lossy(end));
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A backend that reads one request up to `end` and answers `200` with the bytes it read.
async fn mirror(end: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        read_until(&mut stream, &mut seen, end).await;
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", seen.len());
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&seen).await.unwrap();
    });
    addr
}

/// How [`continue_server`] answers `Expect: 100-continue`.
#[derive(Clone, Copy, PartialEq)]
enum Continue {
    /// `100 Continue` at once.
    Grant,
    /// Nothing: the client has to go ahead on its own.
    Ignore,
}

/// A backend for a 5-byte body sent with `Expect: 100-continue`: reads the head, checks that
/// no byte of the body came with it, answers as `mode` says, reads the body and answers
/// `200` with it.
async fn continue_server(mode: Continue) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        read_until(&mut stream, &mut seen, b"\r\n\r\n").await;
        let mut early = [0u8; 16];
        match stream.try_read(&mut early) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("the body came with the head: {other:?}"),
        }
        if mode == Continue::Grant {
            stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .unwrap();
        }
        let mut body = [0u8; 5];
        stream.read_exact(&mut body).await.unwrap();
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
            .await
            .unwrap();
        stream.write_all(&body).await.unwrap();
    });
    addr
}

/// A backend that answers `200 ok` as soon as it has read a request's head, then reads the
/// body (its `Content-Length`) and serves the next request on the same connection. It
/// sends the length of each body once read, and counts the connections it accepted.
async fn answers_first() -> (SocketAddr, mpsc::UnboundedReceiver<usize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (bodies, read) = mpsc::unbounded_channel();
    let conns = Arc::new(AtomicUsize::new(0));
    let (b, c) = (bodies, conns.clone());
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            c.fetch_add(1, Ordering::SeqCst);
            let b = b.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // The head (requests come one after the other: nothing follows it yet).
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        let mut chunk = [0u8; 4096];
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    buf.drain(..end);
                    stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await
                        .unwrap();
                    while buf.len() < length {
                        let mut chunk = [0u8; 65536];
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..length);
                    let _ = b.send(length);
                }
            });
        }
    });
    (addr, read, conns)
}

/// A body larger than the loopback socket buffers, so the answer comes while it is written.
const LARGE: usize = 4 << 20;

/// Sends `req` to `backend` (bounded by `STEP`); the response, which must come.
async fn send<B>(
    client: &UpstreamClient<B>,
    backend: &lb_core::Backend,
    req: Request<B>,
) -> http::Response<lb_proxy::client::UpstreamBody<B>>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::time::timeout(STEP, client.request(backend, req))
        .await
        .unwrap()
        .unwrap()
}

async fn collect<B>(resp: http::Response<B>) -> (StatusCode, Bytes)
where
    B: Body,
    B::Error: std::fmt::Debug,
{
    let status = resp.status();
    let body = tokio::time::timeout(STEP, resp.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    (status, body)
}

#[tokio::test(flavor = "current_thread")]
async fn bodies_of_known_length_share_the_pooled_connection_with_bodiless_requests() {
    let backend = TestBackend::start("b").await;
    let client: UpstreamClient<Full<Bytes>> = UpstreamClient::new(Default::default()).unwrap();
    let target = backend_at(backend.addr());
    for (method, body) in [
        (Method::POST, "a body"),
        (Method::GET, ""),
        (Method::PUT, "another body"),
        (Method::PATCH, "a third"),
        (Method::POST, ""),
    ] {
        let req = Request::builder()
            .method(method.clone())
            .uri("/echo")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        let resp = send(&client, &target, req).await;
        let (status, echoed) = collect(resp).await;
        assert_eq!((status, &echoed[..]), (StatusCode::OK, body.as_bytes()));
        let headers = backend.last_headers().await.unwrap();
        let length = headers.get("content-length").map(|v| v.to_str().unwrap());
        let expected = match (&method, body.len()) {
            (&Method::GET, 0) => None,
            (_, n) => Some(n.to_string()),
        };
        assert_eq!(length, expected.as_deref(), "{method} {body:?}");
        assert!(headers.get("transfer-encoding").is_none());
    }
    assert_eq!(backend.connections(), 1, "one connection for all five");
}

#[tokio::test(flavor = "current_thread")]
async fn a_body_of_unknown_length_is_chunked_with_its_trailers() {
    let addr = mirror(b"0\r\nx-sum: 8\r\n\r\n").await;
    let client: UpstreamClient<Chan> = UpstreamClient::new(Default::default()).unwrap();
    let (body, tx, _) = chan();
    tx.send(data("abc")).unwrap();
    tx.send(data("defgh")).unwrap();
    let mut trailers = HeaderMap::new();
    trailers.insert("x-sum", "8".parse().unwrap());
    tx.send(Frame::trailers(trailers)).unwrap();
    let req = Request::post("/up").body(body).unwrap();
    let resp = send(&client, &backend_at(addr), req).await;
    let (_, wire) = collect(resp).await;
    let wire = String::from_utf8(wire.to_vec()).unwrap();
    let (head, body) = wire.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("POST /up HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("\r\ntransfer-encoding: chunked"), "{head}");
    assert!(!head.contains("content-length"), "{head}");
    assert_eq!(body, "3\r\nabc\r\n5\r\ndefgh\r\n0\r\nx-sum: 8\r\n\r\n");
}

#[tokio::test(flavor = "current_thread")]
async fn an_answer_before_the_body_ends_is_returned_and_its_connection_closed() {
    let backend = TestBackend::start("b").await;
    backend.set_status(413);
    let client: UpstreamClient<Chan> = UpstreamClient::new(Default::default()).unwrap();
    let target = backend_at(backend.addr());
    // The body never ends: the sender stays alive and quiet after the first chunk.
    let (body, tx, _) = chan();
    tx.send(data("the start of a large upload")).unwrap();
    let req = Request::post("/").body(body).unwrap();
    let resp = send(&client, &target, req).await;
    let (status, answer) = collect(resp).await;
    assert_eq!(
        (status, &answer[..]),
        (StatusCode::PAYLOAD_TOO_LARGE, &b"b"[..])
    );
    // The upload was cut short: that connection cannot carry another request.
    let (empty, done, _) = chan();
    drop(done);
    let resp = send(&client, &target, Request::get("/").body(empty).unwrap()).await;
    collect(resp).await;
    assert_eq!(backend.connections(), 2);
    drop(tx);
}

#[tokio::test(flavor = "current_thread")]
async fn a_body_streams_both_ways_at_once_and_the_connection_is_kept() {
    let backend = TestBackend::start("b").await;
    let client: UpstreamClient<Chan> = UpstreamClient::new(Default::default()).unwrap();
    let target = backend_at(backend.addr());
    let (body, tx, _) = chan();
    tx.send(data("ping 1")).unwrap();
    // `/echo` answers at once and streams the request body back as it reads it.
    let req = Request::post("/echo").body(body).unwrap();
    let resp = send(&client, &target, req).await;
    let mut echo = std::pin::pin!(resp.into_body());
    let mut read = Vec::new();
    for (i, next) in ["ping 2", "ping 3"].into_iter().enumerate() {
        // Each chunk comes back before the next is sent.
        while read.len() < 6 * (i + 1) {
            let frame = tokio::time::timeout(STEP, echo.frame()).await.unwrap();
            read.extend_from_slice(&frame.unwrap().unwrap().into_data().unwrap());
        }
        tx.send(data(next)).unwrap();
    }
    drop(tx);
    while let Some(frame) = tokio::time::timeout(STEP, echo.frame()).await.unwrap() {
        read.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    assert_eq!(read, b"ping 1ping 2ping 3");
    let (empty, done, _) = chan();
    drop(done);
    let resp = send(&client, &target, Request::get("/").body(empty).unwrap()).await;
    collect(resp).await;
    assert_eq!(
        backend.connections(),
        1,
        "written whole: the connection served again"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_200_before_the_body_is_read_still_gets_all_of_it() {
    let (addr, mut bodies, conns) = answers_first().await;
    let client: UpstreamClient<Full<Bytes>> = UpstreamClient::new(Default::default()).unwrap();
    let target = backend_at(addr);
    for _ in 0..3 {
        let req = Request::post("/")
            .body(Full::new(Bytes::from(vec![b'x'; LARGE])))
            .unwrap();
        let resp = send(&client, &target, req).await;
        assert_eq!(collect(resp).await, (StatusCode::OK, Bytes::from("ok")));
    }
    // The answer ends once the body is written, so the connection is back in the pool.
    for _ in 0..3 {
        let read = tokio::time::timeout(STEP, bodies.recv()).await.unwrap();
        assert_eq!(read, Some(LARGE));
    }
    assert_eq!(conns.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn through_lb_proxy_an_early_200_keeps_the_client_connection() {
    let (addr, mut bodies, _) = answers_first().await;
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[upstreams.web]\nbackends = [\"{addr}\"]\n\n[[routes]]\nupstream = \"web\"\n"
    );
    let proxy =
        lb_proxy::Proxy::new(lb_proxy::config::Config::from_toml_str(&toml, "test.toml").unwrap())
            .start()
            .await
            .unwrap();
    // One client connection, two uploads on it, as wrk sends them.
    let mut conn = tokio::net::TcpStream::connect(proxy.local_addrs()[0])
        .await
        .unwrap();
    let body = vec![b'x'; LARGE];
    for round in 1..=2 {
        let head = format!("POST / HTTP/1.1\r\nhost: test\r\ncontent-length: {LARGE}\r\n\r\n");
        conn.write_all(head.as_bytes()).await.unwrap();
        conn.write_all(&body).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(STEP, read_until(&mut conn, &mut answer, b"\r\n\r\nok"))
            .await
            .unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 200"), "round {round}");
    }
    for _ in 0..2 {
        let read = tokio::time::timeout(STEP, bodies.recv()).await.unwrap();
        assert_eq!(read, Some(LARGE));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn expect_100_continue_refused_never_reads_the_body() {
    let raw =
        RawBackend::reply(b"HTTP/1.1 417 Expectation Failed\r\ncontent-length: 0\r\n\r\n".to_vec())
            .await;
    let client: UpstreamClient<Chan> = UpstreamClient::new(Default::default()).unwrap();
    let (body, tx, polled) = chan();
    tx.send(data("hello")).unwrap();
    let req = Request::put("/")
        .header("expect", "100-continue")
        .body(body)
        .unwrap();
    let resp = send(&client, &backend_at(raw.addr()), req).await;
    assert_eq!(resp.status(), StatusCode::EXPECTATION_FAILED);
    assert!(!polled.load(Ordering::SeqCst), "the body was read");
}

#[tokio::test(flavor = "current_thread")]
async fn expect_100_continue_sends_the_body_when_granted_or_after_the_wait() {
    for mode in [Continue::Grant, Continue::Ignore] {
        let addr = continue_server(mode).await;
        let client: UpstreamClient<Full<Bytes>> = UpstreamClient::new(Default::default()).unwrap();
        let req = Request::put("/")
            .header("expect", "100-continue")
            .body(Full::new(Bytes::from_static(b"hello")))
            .unwrap();
        let resp = send(&client, &backend_at(addr), req).await;
        let (status, body) = collect(resp).await;
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"hello"[..]));
    }
    // hyper's server answers `/echo` at once, before it reads the body (so without a
    // `100 Continue`): a 2xx is the go-ahead.
    let backend = TestBackend::start("b").await;
    let client: UpstreamClient<Full<Bytes>> = UpstreamClient::new(Default::default()).unwrap();
    let req = Request::post("/echo")
        .header("expect", "100-continue")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let resp = send(&client, &backend_at(backend.addr()), req).await;
    assert_eq!(collect(resp).await, (StatusCode::OK, Bytes::from("hello")));
}

#[tokio::test(flavor = "current_thread")]
async fn a_put_on_a_connection_the_backend_closed_is_sent_again() {
    let raw = RawBackend::reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()).await;
    let client: UpstreamClient<Full<Bytes>> = UpstreamClient::new(Default::default()).unwrap();
    let backend = backend_at(raw.addr());
    for round in 1..=3 {
        let req = Request::put("/")
            .body(Full::new(Bytes::from_static(b"idempotent")))
            .unwrap();
        let resp = send(&client, &backend, req).await;
        assert_eq!(
            collect(resp).await,
            (StatusCode::OK, Bytes::from("ok")),
            "round {round}"
        );
        tokio::time::timeout(STEP, raw.wait_all_closed())
            .await
            .unwrap();
    }
    assert_eq!(raw.requests(), 3);
}

#[tokio::test(flavor = "current_thread")]
async fn a_body_that_breaks_its_length_fails_the_request() {
    let backend = TestBackend::start("b").await;
    let client: UpstreamClient<Full<Bytes>> = UpstreamClient::new(Default::default()).unwrap();
    let target = backend_at(backend.addr());
    for (declared, body) in [("10", "short"), ("2", "too long")] {
        let req = Request::post("/echo")
            .header("content-length", declared)
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        let result = tokio::time::timeout(STEP, client.request(&target, req))
            .await
            .unwrap();
        let error = match result {
            Err(e) => e,
            // The head may come first; then the body fails.
            Ok(resp) => {
                let read = tokio::time::timeout(STEP, resp.into_body().collect())
                    .await
                    .unwrap();
                match read {
                    Err(e) => e,
                    Ok(_) => panic!("a body of {} bytes passed for {declared}", body.len()),
                }
            }
        };
        assert!(!error.is_connect(), "{error}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_101_hands_the_connection_over() {
    let raw = RawBackend::reply(
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: echo\r\nconnection: upgrade\r\n\r\nfirst bytes".to_vec(),
    )
    .await;
    let client: UpstreamClient<Full<Bytes>> = UpstreamClient::new(Default::default()).unwrap();
    let req = Request::get("/")
        .header("connection", "upgrade")
        .header("upgrade", "echo")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send(&client, &backend_at(raw.addr()), req).await;
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    let on = resp
        .extensions()
        .get::<lb_proxy::client::OnUpgraded>()
        .unwrap();
    let mut conn = on.take().unwrap();
    assert!(on.take().is_none(), "taken once");
    let mut read = Vec::new();
    tokio::time::timeout(STEP, conn.read_to_end(&mut read))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        read, b"first bytes",
        "the bytes behind the 101 head come first"
    );
}
