//! Forwarding headers through the real proxy to real backends: what a backend sees from an
//! untrusted and a trusted client, every optional header, the per-upstream `Host`, IPv6,
//! and `ip_hash` hashing the client a trusted proxy names.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::collections::HashSet;

use bytes::Bytes;
use common::{backend_list, Harness};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::Full;
use lb_testkit::TestBackend;

/// One upstream `web` over `backends`, listening on `listen`, with `forwarding` as the
/// `[server.forwarding]` table and `upstream` added to `[upstreams.web]`.
fn toml(backends: &[TestBackend], listen: &str, forwarding: &str, upstream: &str) -> String {
    format!(
        "[server]\nlisten = [\"{listen}\"]\ngrace_period = \"5s\"\n\n\
         [server.forwarding]\n{forwarding}\n\n\
         [upstreams.web]\nbackends = [{}]\n{upstream}\n\n[[routes]]\nupstream = \"web\"\n",
        backend_list(backends)
    )
}

/// Sends `req` through the proxy; the headers the (single) backend received.
async fn seen_by_backend(
    h: &Harness,
    backend: &TestBackend,
    req: http::request::Builder,
) -> HeaderMap {
    let (status, _) = h.send(req.body(Full::<Bytes>::default()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    backend.last_headers().await.unwrap()
}

/// A request that claims things about its client.
fn spoofing(h: &Harness) -> http::request::Builder {
    Request::get(h.url("/"))
        .header("host", "app.example.com")
        .header("x-forwarded-for", "203.0.113.7, 10.0.0.3")
        .header("x-real-ip", "203.0.113.66")
        .header("forwarded", "for=203.0.113.7")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.example")
}

#[tokio::test]
async fn an_untrusted_client_cannot_spoof_its_address() {
    let backends = TestBackend::start_many(1).await;
    let (h, _events) = Harness::start(&toml(&backends, "127.0.0.1:0", "", "")).await;
    let seen = seen_by_backend(&h, &backends[0], spoofing(&h)).await;
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1", "{seen:?}");
    assert_eq!(seen["x-real-ip"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["host"], "app.example.com", "Host is kept by default");
    for gone in ["forwarded", "x-forwarded-host", "via"] {
        assert!(!seen.contains_key(gone), "{gone}: {seen:?}");
    }
}

#[tokio::test]
async fn a_trusted_proxy_names_the_client() {
    let backends = TestBackend::start_many(1).await;
    let forwarding = r#"trusted_proxies = ["127.0.0.1/32", "10.0.0.0/8"]"#;
    let (h, _events) = Harness::start(&toml(&backends, "127.0.0.1:0", forwarding, "")).await;
    let seen = seen_by_backend(&h, &backends[0], spoofing(&h)).await;
    assert_eq!(seen["x-forwarded-for"], "203.0.113.7, 10.0.0.3, 127.0.0.1");
    assert_eq!(
        seen["x-real-ip"], "203.0.113.7",
        "the right-most address that is not a trusted proxy"
    );
    assert_eq!(
        seen["x-forwarded-proto"], "https",
        "a trusted proxy's scheme is kept"
    );

    // Trusting only the peer: the next hop to the left is the client, whatever it is.
    let forwarding = r#"trusted_proxies = ["127.0.0.1/32"]"#;
    let (h, _events) = Harness::start(&toml(&backends, "127.0.0.1:0", forwarding, "")).await;
    let seen = seen_by_backend(&h, &backends[0], spoofing(&h)).await;
    assert_eq!(seen["x-real-ip"], "10.0.0.3");
}

#[tokio::test]
async fn every_optional_header_and_the_upstream_host() {
    let backends = TestBackend::start_many(1).await;
    let forwarding = "x_forwarded_host = true\nforwarded = true\nvia = \"edge-1\"";
    let upstream = "host = \"api.internal:8443\"";
    let (h, _events) = Harness::start(&toml(&backends, "127.0.0.1:0", forwarding, upstream)).await;
    let req = Request::get(h.url("/"))
        .header("host", "app.example.com:8080")
        .header("via", "1.0 fred");
    let seen = seen_by_backend(&h, &backends[0], req).await;
    assert_eq!(seen["host"], "api.internal:8443");
    assert_eq!(seen["x-forwarded-host"], "app.example.com:8080");
    assert_eq!(
        seen["forwarded"],
        r#"for=127.0.0.1;proto=http;host="app.example.com:8080""#
    );
    assert_eq!(seen["via"], "1.0 fred, 1.1 edge-1");

    // Everything off: only Host remains of all this.
    let forwarding = "x_forwarded_for = false\nx_forwarded_proto = false\nx_real_ip = false";
    let (h, _events) = Harness::start(&toml(&backends, "127.0.0.1:0", forwarding, "")).await;
    let seen = seen_by_backend(&h, &backends[0], spoofing(&h)).await;
    for gone in [
        "x-forwarded-for",
        "x-real-ip",
        "x-forwarded-proto",
        "x-forwarded-host",
        "forwarded",
        "via",
    ] {
        assert!(!seen.contains_key(gone), "{gone}: {seen:?}");
    }
}

#[tokio::test]
async fn ipv6_clients_are_bracketed_in_forwarded() {
    let backends = TestBackend::start_many(1).await;
    let forwarding = "forwarded = true\ntrusted_proxies = [\"::1/128\"]";
    let (h, _events) = Harness::start(&toml(&backends, "[::1]:0", forwarding, "")).await;
    let req = Request::get(h.url("/"))
        .header("host", "v6.example")
        .header("x-forwarded-for", "[2001:db8::17]:4711");
    let seen = seen_by_backend(&h, &backends[0], req).await;
    assert_eq!(
        seen["forwarded"],
        r#"for="[::1]";proto=http;host=v6.example"#
    );
    assert_eq!(seen["x-forwarded-for"], "[2001:db8::17]:4711, ::1");
    assert_eq!(seen["x-real-ip"], "2001:db8::17");
}

/// Which backends `ip_hash` picks for 16 requests claiming 16 different clients.
async fn backends_for_claimed_clients(forwarding: &str) -> HashSet<String> {
    let backends = TestBackend::start_many(4).await;
    let upstream = "selection = \"ip_hash\"";
    let (h, _events) = Harness::start(&toml(&backends, "127.0.0.1:0", forwarding, upstream)).await;
    let mut picked = HashSet::new();
    for i in 0..16 {
        let req = Request::get(h.url("/"))
            .header("x-forwarded-for", format!("198.51.{i}.1"))
            .body(Full::default())
            .unwrap();
        let (status, body) = h.send(req).await;
        assert_eq!(status, StatusCode::OK);
        picked.insert(body);
    }
    picked
}

#[tokio::test]
async fn ip_hash_hashes_the_client_a_trusted_proxy_names() {
    let untrusted = backends_for_claimed_clients("").await;
    assert_eq!(untrusted.len(), 1, "one peer, one backend: {untrusted:?}");
    let trusted = backends_for_claimed_clients("trusted_proxies = [\"127.0.0.0/8\"]").await;
    assert!(trusted.len() > 1, "16 clients spread out: {trusted:?}");
}
