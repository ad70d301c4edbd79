//! Request smuggling through the proxy, with raw sockets on both sides: a raw client sends
//! ambiguous or malformed framing, and a raw backend records exactly the bytes it gets.
//! Each case asserts the status, that the proxy closed the connection, and what the
//! backend received: nothing, or one request whose framing cannot be read two ways.

#![allow(clippy::unwrap_used)]

mod common;
mod hostile_support;

use std::time::Duration;

use common::Harness;
use hostile_support::{config, exchange, Answer, RawBackend, Received};

const WITHIN: Duration = Duration::from_secs(5);

/// What the backend should have received after a case.
#[derive(Clone, Copy, Debug)]
enum Backend {
    /// No complete request (it may have seen an incomplete one, cut off).
    Nothing,
    /// Exactly one complete request, checked by the function.
    One(fn(&Received)),
}

struct Case {
    name: &'static str,
    request: &'static [u8],
    status: u16,
    /// The proxy must close the connection after answering.
    closes: bool,
    backend: Backend,
}

fn a_body_that_looks_like_a_request(r: &Received) {
    assert_eq!(r.header("content-length"), ["35"], "{}", r.text());
    assert_eq!(r.body(), b"GPOST / HTTP/1.1\r\nX-Smuggled: 1\r\n\r\n");
}

fn chunked_hello(r: &Received) {
    let text = r.text();
    assert!(text.starts_with("PUT /c HTTP/1.1\r\n"), "{text}");
    assert!(text.contains("\r\nhello\r\n"), "{text}");
}

fn crlf_only(r: &Received) {
    let text = r.text();
    assert!(text.starts_with("GET / HTTP/1.1\r\n"), "{text}");
    let bare_lf = r
        .bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || r.bytes[i - 1] != b'\r'));
    assert!(!bare_lf, "bare LF forwarded: {text:?}");
}

const CASES: &[Case] = &[
    Case {
        name: "a body that looks like a request (data, not a second request)",
        request: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 35\r\nConnection: close\r\n\r\nGPOST / HTTP/1.1\r\nX-Smuggled: 1\r\n\r\n",
        status: 200,
        closes: true,
        backend: Backend::One(a_body_that_looks_like_a_request),
    },
    Case {
        name: "a chunked body with an extension and a trailer",
        request: b"PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5;e=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
        status: 200,
        closes: true,
        backend: Backend::One(chunked_hello),
    },
    Case {
        name: "an empty line before the request line (RFC 9112 section 2.2)",
        request: b"\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        status: 200,
        closes: true,
        backend: Backend::One(crlf_only),
    },
    Case {
        name: "Content-Length then Transfer-Encoding (CL.TE)",
        request: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 35\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGPOST / HTTP/1.1\r\nX-Smuggled: 1\r\n\r\n",
        status: 400,
        closes: true,
        backend: Backend::Nothing,
    },
    Case {
        name: "Transfer-Encoding then Content-Length (TE.CL)",
        request: b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\nGPOST / HTTP/1.1\r\nX-Smuggled: 1\r\n\r\n",
        status: 400,
        closes: true,
        backend: Backend::Nothing,
    },
    Case {
        name: "two different Content-Lengths",
        request: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        status: 400,
        closes: true,
        backend: Backend::Nothing,
    },
    Case {
        name: "two equal Content-Length lines",
        request: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        status: 400,
        closes: true,
        backend: Backend::Nothing,
    },
    Case {
        name: "a Content-Length list",
        request: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello",
        status: 400,
        closes: true,
        backend: Backend::Nothing,
    },
    Case {
        name: "a signed Content-Length",
        request: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
        status: 400,
        closes: true,
        backend: Backend::Nothing,
    },
    Case {
        name: "Transfer-Encoding: chunked, identity",
        request: b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        status: 400,
        closes: true,
        backend: Backend::Nothing,
    },
    Case {
        name: "Transfer-Encoding: identity, chunked",
        request: b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n",
        status: 400,
        closes: true,
        backend: Backend::Nothing,
    },
    Case {
        name: "Transfer-Encoding: gzip, chunked (a coding the backend would not be told of)",
        request: b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        status: 400,
        closes: true,
        backend: Backend::Nothing,
    },
    Case {
        name: "two Transfer-Encoding lines",
        request: b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        status: 400,
        closes: true,
        backend: Backend::Nothing,
    },
    Case {
        name: "Transfer-Encoding: xchunked",
        request: b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        status: 400,
        closes: true,
        backend: Backend::Nothing,
    },
    Case {
        name: "Transfer-Encoding on HTTP/1.0",
        request: b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        status: 400,
        closes: true,
        backend: Backend::Nothing,
    },
    Case {
        name: "a space before the colon",
        request: b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        status: 400,
        closes: true,
        backend: Backend::Nothing,
    },
    Case {
        name: "obs-fold (a continuation line)",
        request: b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\r\n b\r\n\r\n",
        status: 400,
        closes: true,
        backend: Backend::Nothing,
    },
    Case {
        name: "an invalid header name",
        request: b"GET / HTTP/1.1\r\nHost: a\r\nBad\x01Name: x\r\n\r\n",
        status: 400,
        closes: true,
        backend: Backend::Nothing,
    },
    Case {
        name: "NUL in a header value",
        request: b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n",
        status: 400,
        closes: true,
        backend: Backend::Nothing,
    },
    Case {
        name: "a bare CR in a header value",
        request: b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rTransfer-Encoding: chunked\r\n\r\n",
        status: 400,
        closes: true,
        backend: Backend::Nothing,
    },
    Case {
        name: "bare LF line ends",
        request: b"GET / HTTP/1.1\nHost: a\nConnection: close\n\n",
        status: 400,
        closes: true,
        backend: Backend::Nothing,
    },
    Case {
        name: "a chunk size that is not hex",
        request: b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        status: 400,
        closes: true,
        backend: Backend::Nothing,
    },
    Case {
        name: "a chunk size that overflows 64 bits",
        request: b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n",
        status: 400,
        closes: true,
        backend: Backend::Nothing,
    },
    Case {
        name: "chunk lines ending in bare LF",
        request: b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n",
        status: 400,
        closes: true,
        backend: Backend::Nothing,
    },
    Case {
        name: "no Host on HTTP/1.1",
        request: b"GET / HTTP/1.1\r\n\r\n",
        status: 400,
        closes: true,
        backend: Backend::Nothing,
    },
    Case {
        name: "two Hosts",
        request: b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        status: 400,
        closes: true,
        backend: Backend::Nothing,
    },
];

fn check(case: &Case, answer: &Answer, before: usize, backend: &RawBackend) {
    let name = case.name;
    assert_eq!(answer.status(), case.status, "{name}: {:?}", answer.text());
    assert_eq!(
        answer.statuses().len(),
        1,
        "{name}: one response only: {:?}",
        answer.text()
    );
    // No banner: the proxy's own answers name no server or version (the raw backend
    // sends no Server header either).
    let lower = answer.text().to_ascii_lowercase();
    assert!(!lower.contains("\r\nserver:"), "{name}: {lower}");
    if case.closes {
        assert!(answer.closed, "{name}: the proxy kept the connection open");
    }
    let got: Vec<Received> = backend.complete().into_iter().skip(before).collect();
    match case.backend {
        Backend::Nothing => assert!(got.is_empty(), "{name}: the backend received {got:?}"),
        Backend::One(check) => {
            assert_eq!(got.len(), 1, "{name}: the backend received {got:?}");
            check(&got[0]);
        }
    }
}

#[tokio::test]
async fn ambiguous_or_malformed_framing_is_refused_or_reframed() {
    let backend = RawBackend::start().await;
    let (h, _) = Harness::start(&config(&[backend.addr], "", "")).await;
    for case in CASES {
        let before = backend.complete().len();
        let answer = exchange(h.addr(), case.request, WITHIN).await;
        check(case, &answer, before, &backend);
    }
    h.proxy.shutdown().await;
}

/// Keep-alive and pipelining: the requests before a refused head are answered and forwarded
/// in order, the refused one gets 400, and nothing after it is read, even a valid request.
/// The head is refused in whatever pieces it arrives.
#[tokio::test]
async fn requests_before_a_refused_head_are_answered_and_nothing_after_it() {
    let backend = RawBackend::start().await;
    let (h, _) = Harness::start(&config(&[backend.addr], "", "")).await;
    let good = b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n".as_slice();
    let body =
        b"POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\nGET /x HTTP/".as_slice();
    let bad = b"POST /three HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".as_slice();
    let after = b"GET /four HTTP/1.1\r\nHost: a\r\n\r\n".as_slice();
    let all = [good, body, bad, after].concat();
    for piece in [all.len(), 7, 1] {
        let before = backend.complete().len();
        let mut stream = tokio::net::TcpStream::connect(h.addr()).await.unwrap();
        for part in all.chunks(piece) {
            use tokio::io::AsyncWriteExt;
            if stream.write_all(part).await.is_err() {
                break;
            }
        }
        let answer = hostile_support::read_until_closed(&mut stream, WITHIN).await;
        assert_eq!(
            answer.statuses(),
            [200, 200, 400],
            "pieces of {piece}: {}",
            answer.text()
        );
        assert!(answer.closed, "pieces of {piece}");
        assert!(
            answer
                .text()
                .contains("both Content-Length and Transfer-Encoding"),
            "{}",
            answer.text()
        );
        let got: Vec<Received> = backend.complete().into_iter().skip(before).collect();
        assert_eq!(got.len(), 2, "pieces of {piece}: {got:?}");
        assert!(got[0].text().starts_with("GET /one "), "{got:?}");
        assert!(got[1].text().starts_with("POST /two "), "{got:?}");
        assert_eq!(got[1].body(), b"GET /x HTTP/");
    }
    h.proxy.shutdown().await;
}

/// A body that breaks after its first chunk must not be retried: a retry would send the
/// chunk read so far as a complete body. Retries are on (PUT is idempotent, `error` is a
/// retry condition) and there are two backends; neither may see a complete request, and
/// neither is blamed (the client gets 400, not 502).
#[tokio::test]
async fn a_body_that_breaks_midway_is_never_replayed_as_complete() {
    let a = RawBackend::start().await;
    let b = RawBackend::start().await;
    let extra =
        "[upstreams.web.retry]\non = [\"error\", \"timeout\", \"http_502\"]\nbuffer = \"64KiB\"\n\
                 [upstreams.web.passive]\nmax_fails = 1\n";
    let (h, _) = Harness::start(&config(&[a.addr, b.addr], "", extra)).await;
    let request =
        b"PUT /file HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n";
    let answer = exchange(h.addr(), request, WITHIN).await;
    assert_eq!(answer.status(), 400, "{}", answer.text());
    assert!(answer.closed);
    assert!(a.complete().is_empty(), "{:?}", a.complete());
    assert!(b.complete().is_empty(), "{:?}", b.complete());
    // Neither backend was ejected for the client's fault: both still serve.
    for _ in 0..4 {
        let (status, _) = h.get("/").await;
        assert_eq!(status, 200);
    }
    assert!(!a.complete().is_empty() && !b.complete().is_empty());
    h.proxy.shutdown().await;
}
