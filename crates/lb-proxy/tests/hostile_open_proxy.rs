//! No open proxy, no spoofed client address. A request in absolute form (or an HTTP/2
//! `:authority`) naming some other host is routed by that host like any other request and,
//! if a route takes it, goes to one of that route's configured backends with `Host` set
//! to the authority the router saw; the named host is never contacted. `CONNECT` is
//! refused. `X-Forwarded-For` and friends from an untrusted client are dropped: the
//! backend sees the real peer, and `ip_hash` hashes it.

#![allow(clippy::unwrap_used)]

mod common;
mod hostile_support;

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use common::Harness;
use hostile_support::{exchange, RawBackend};
use http::Request;
use http_body_util::Full;
use lb_testkit::TestBackend;
use tokio::net::TcpStream;

const WITHIN: Duration = Duration::from_secs(5);

/// A proxy whose routes are `host_route` (to the backend) and, with `catch_all`, a
/// default route to the same backend.
fn toml(backend: std::net::SocketAddr, catch_all: bool) -> String {
    let default = if catch_all {
        "[[routes]]\nupstream = \"web\"\n"
    } else {
        ""
    };
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\ngrace_period = \"1s\"\n\n\
         [upstreams.web]\nbackends = [\"{backend}\"]\n\n\
         [[routes]]\nupstream = \"web\"\nhost = \"good.example\"\n{default}"
    )
}

#[tokio::test]
async fn absolute_form_for_an_unrouted_host_is_never_forwarded_there() {
    // "evil.example" is a real listener here, so a connection to it would show.
    let evil = RawBackend::start().await;
    let backend = RawBackend::start().await;
    let target = format!("http://{}/steal", evil.addr);

    // Only good.example is routed: 404, nobody contacted.
    let (h, _) = Harness::start(&toml(backend.addr, false)).await;
    let req = format!("GET {target} HTTP/1.1\r\nHost: good.example\r\nConnection: close\r\n\r\n");
    let answer = exchange(h.addr(), req.as_bytes(), WITHIN).await;
    assert_eq!(answer.status(), 404, "{}", answer.text());
    assert_eq!(backend.connections(), 0);
    h.proxy.shutdown().await;

    // With a catch-all route: the configured backend gets it, with the Host the router
    // matched (the authority, RFC 9112 section 3.2.2), never the named host.
    let (h, _) = Harness::start(&toml(backend.addr, true)).await;
    let answer = exchange(h.addr(), req.as_bytes(), WITHIN).await;
    assert_eq!(answer.status(), 200, "{}", answer.text());
    let got = backend.complete();
    assert_eq!(got.len(), 1);
    assert!(
        got[0].text().starts_with("GET /steal HTTP/1.1\r\n"),
        "{}",
        got[0].text()
    );
    assert_eq!(got[0].header("host"), [evil.addr.to_string()]);

    // The same over HTTP/2: :authority names the other host.
    let tcp = TcpStream::connect(h.addr()).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let (resp, _) = client
        .send_request(Request::get(&target).body(()).unwrap(), true)
        .unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
    assert_eq!(backend.complete().len(), 2);

    // CONNECT (a tunnel to anywhere) is refused outright.
    let connect = format!(
        "CONNECT {} HTTP/1.1\r\nHost: {}\r\n\r\n",
        evil.addr, evil.addr
    );
    let answer = exchange(h.addr(), connect.as_bytes(), WITHIN).await;
    assert_eq!(answer.status(), 405, "{}", answer.text());
    assert!(answer.closed);

    assert_eq!(
        evil.connections(),
        0,
        "the proxy connected to the host named in the request"
    );
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_client_are_not_believed() {
    let backends = TestBackend::start_many(4).await;
    let list = backends
        .iter()
        .map(|b| format!("\"{}\"", b.addr()))
        .collect::<Vec<_>>()
        .join(", ");
    let (h, _) = Harness::start(&format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[upstreams.web]\nselection = \"ip_hash\"\n\
         backends = [{list}]\n\n[[routes]]\nupstream = \"web\"\n"
    ))
    .await;
    let mut chosen = HashSet::new();
    for i in 0..40 {
        let spoofed = format!("198.51.{i}.{}", i * 3);
        let req = Request::get(h.url("/"))
            .header("x-forwarded-for", &spoofed)
            .header("x-real-ip", &spoofed)
            .header("forwarded", format!("for={spoofed}"))
            .body(Full::<Bytes>::default())
            .unwrap();
        let (status, body) = h.send(req).await;
        assert_eq!(status, 200);
        chosen.insert(body);
    }
    // ip_hash saw one client address, the real one, for all forty.
    assert_eq!(
        chosen.len(),
        1,
        "ip_hash followed the spoofed addresses: {chosen:?}"
    );
    let served = backends.iter().find(|b| b.hits() > 0).unwrap();
    let headers = served.last_headers().await.unwrap();
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-real-ip"], "127.0.0.1");
    assert!(headers.get("forwarded").is_none());
    h.proxy.shutdown().await;
}
