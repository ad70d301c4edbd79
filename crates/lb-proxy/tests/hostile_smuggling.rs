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

fn no_length_and_nothing_smuggled(r: &Received) {
    let text = r.text();
    assert!(r.header("content-length").len() <= 1, "{text}");
    assert!(
        !text.contains("GPOST"),
        "smuggled request forwarded: {text}"
    );
    assert!(
        !text.contains("\nX-Smuggled"),
        "smuggled request forwarded: {text}"
    );
    // Re-framed by the proxy: chunked with an empty body, or no body at all.
    let body = r.body();
    assert!(body.is_empty() || body == b"0\r\n\r\n", "{text}");
}

fn one_length_five(r: &Received) {
    assert_eq!(r.header("content-length"), ["5"], "{}", r.text());
    assert_eq!(r.body(), b"hello");
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
        name: "Content-Length then Transfer-Encoding (CL.TE)",
        request: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 35\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGPOST / HTTP/1.1\r\nX-Smuggled: 1\r\n\r\n",
        status: 200,
        closes: true,
        backend: Backend::One(no_length_and_nothing_smuggled),
    },
    Case {
        name: "Transfer-Encoding then Content-Length (TE.CL)",
        request: b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\nGPOST / HTTP/1.1\r\nX-Smuggled: 1\r\n\r\n",
        status: 200,
        closes: true,
        backend: Backend::One(no_length_and_nothing_smuggled),
    },
    Case {
        name: "two different Content-Lengths",
        request: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        status: 400,
        closes: true,
        backend: Backend::Nothing,
    },
    Case {
        name: "two equal Content-Length lines (RFC 9110 allows one value)",
        request: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        status: 200,
        closes: true,
        backend: Backend::One(one_length_five),
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
        name: "bare LF line ends (RFC 9112 allows; forwarded as CRLF)",
        request: b"GET / HTTP/1.1\nHost: a\nConnection: close\n\n",
        status: 200,
        closes: true,
        backend: Backend::One(crlf_only),
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
