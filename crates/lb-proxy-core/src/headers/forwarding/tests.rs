//! The request rewrite for trusted and untrusted peers, IPv4 and IPv6.

#![allow(clippy::unwrap_used)]

use std::net::IpAddr;

use http::Request;

use super::*;
use crate::config::Via;

fn config(trusted: &[&str]) -> ForwardingConfig {
    ForwardingConfig {
        trusted_proxies: trusted.iter().map(|s| s.parse().unwrap()).collect(),
        ..ForwardingConfig::default()
    }
}

fn everything(trusted: &[&str]) -> ForwardingConfig {
    ForwardingConfig {
        x_forwarded_host: true,
        forwarded: true,
        via: Via::Named("lb-proxy".into()),
        ..config(trusted)
    }
}

/// A request with `headers`, rewritten as if it came from `peer`.
fn rewrite(
    cfg: &ForwardingConfig,
    peer: &str,
    tls: bool,
    host: Option<&str>,
    req: http::request::Builder,
) -> (HeaderMap, ClientAddr) {
    let fwd = Forwarding::new(cfg);
    let (mut parts, ()) = req.body(()).unwrap().into_parts();
    let peer: IpAddr = peer.parse().unwrap();
    let client = fwd.client(peer, &parts.headers);
    let host = host.map(|h| HeaderValue::from_str(h).unwrap());
    crate::headers::strip_hop_by_hop(&mut parts.headers);
    fwd.rewrite_request(&mut parts, &client, tls, host.as_ref());
    (parts.headers, client)
}

fn spoofed() -> http::request::Builder {
    Request::get("/x")
        .header("host", "app.example.com")
        .header("x-forwarded-for", "1.2.3.4")
        .header("x-real-ip", "1.2.3.4")
        .header("forwarded", "for=1.2.3.4")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.example")
}

#[test]
fn an_untrusted_peer_cannot_claim_anything() {
    let (h, client) = rewrite(&everything(&[]), "198.51.100.7", false, None, spoofed());
    assert!(!client.trusted);
    assert_eq!(h["x-forwarded-for"], "198.51.100.7");
    assert_eq!(h["x-real-ip"], "198.51.100.7");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "app.example.com");
    assert_eq!(
        h["forwarded"],
        "for=198.51.100.7;proto=http;host=app.example.com"
    );
    assert_eq!(h["via"], "1.1 lb-proxy");
    assert_eq!(h["host"], "app.example.com");
    for name in ["x-forwarded-for", "x-real-ip", "forwarded"] {
        assert_eq!(h.get_all(name).iter().count(), 1, "{name}");
    }
}

#[test]
fn disabled_headers_are_still_removed_from_untrusted_peers() {
    let cfg = ForwardingConfig {
        x_forwarded_for: false,
        x_forwarded_proto: false,
        x_real_ip: false,
        ..config(&["10.0.0.0/8"])
    };
    let (h, _) = rewrite(&cfg, "198.51.100.7", false, None, spoofed());
    for name in [
        "x-forwarded-for",
        "x-real-ip",
        "forwarded",
        "x-forwarded-proto",
        "x-forwarded-host",
        "via",
    ] {
        assert!(!h.contains_key(name), "{name}: {h:?}");
    }
    // From a trusted peer they pass untouched.
    let (h, _) = rewrite(&cfg, "10.0.0.1", false, None, spoofed());
    assert_eq!(h["x-forwarded-for"], "1.2.3.4");
    assert_eq!(h["x-real-ip"], "1.2.3.4");
    assert_eq!(h["forwarded"], "for=1.2.3.4");
}

#[test]
fn a_trusted_peer_extends_the_chain() {
    let req = Request::get("/")
        .header("host", "app.example.com")
        .header("x-forwarded-for", "1.1.1.1, 203.0.113.7")
        .header("x-forwarded-for", "10.0.0.9")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "public.example.com")
        .header("forwarded", "for=203.0.113.7;proto=https")
        .header("via", "1.1 edge");
    let (h, client) = rewrite(&everything(&["10.0.0.0/8"]), "10.0.0.1", false, None, req);
    assert_eq!(client.ip, "203.0.113.7".parse::<IpAddr>().unwrap());
    assert_eq!(
        h["x-forwarded-for"],
        "1.1.1.1, 203.0.113.7, 10.0.0.9, 10.0.0.1"
    );
    assert_eq!(h["x-real-ip"], "203.0.113.7");
    assert_eq!(h["x-forwarded-proto"], "https", "the first proxy saw TLS");
    assert_eq!(h["x-forwarded-host"], "public.example.com");
    assert_eq!(
        h["forwarded"],
        "for=203.0.113.7;proto=https, for=10.0.0.1;proto=http;host=app.example.com"
    );
    assert_eq!(h["via"], "1.1 edge, 1.1 lb-proxy");
}

#[test]
fn a_trusted_peer_without_headers_gets_ours() {
    let req = Request::get("/").header("host", "a");
    let (h, _) = rewrite(&everything(&["10.0.0.0/8"]), "10.0.0.1", true, None, req);
    assert_eq!(h["x-forwarded-for"], "10.0.0.1");
    assert_eq!(h["x-real-ip"], "10.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], "a");
}

#[test]
fn ipv6_peers_are_quoted_and_bracketed_in_forwarded() {
    let req = Request::get("/").header("host", "example.com:8080");
    let (h, _) = rewrite(&everything(&[]), "2001:db8:cafe::17", true, None, req);
    assert_eq!(
        h["forwarded"],
        r#"for="[2001:db8:cafe::17]";proto=https;host="example.com:8080""#
    );
    assert_eq!(h["x-forwarded-for"], "2001:db8:cafe::17");
    // IPv4-mapped peers (a dual-stack listener) are IPv4 clients.
    let req = Request::get("/").header("host", "h");
    let (h, _) = rewrite(&everything(&[]), "::ffff:192.0.2.1", false, None, req);
    assert_eq!(h["forwarded"], "for=192.0.2.1;proto=http;host=h");
    assert_eq!(h["x-real-ip"], "192.0.2.1");
}

#[test]
fn an_odd_host_is_escaped_in_forwarded() {
    let req = Request::get("/").header("host", r#"a"b\c"#);
    let (h, _) = rewrite(&everything(&[]), "192.0.2.1", false, None, req);
    assert_eq!(h["forwarded"], r#"for=192.0.2.1;proto=http;host="a\"b\\c""#);
}

#[test]
fn via_names_the_received_version_and_pseudonym() {
    let cfg = ForwardingConfig {
        via: Via::Named("edge-1".into()),
        ..config(&[])
    };
    let req = Request::get("/").version(Version::HTTP_2);
    let (h, _) = rewrite(&cfg, "192.0.2.1", false, None, req);
    assert_eq!(h["via"], "2 edge-1");
    let req = Request::get("/")
        .version(Version::HTTP_10)
        .header("via", "1.0 fred")
        .header("via", "1.1 p.example.net");
    let (h, _) = rewrite(&cfg, "192.0.2.1", false, None, req);
    assert_eq!(h["via"], "1.0 fred, 1.1 p.example.net, 1.0 edge-1");
}

#[test]
fn host_is_kept_or_rewritten_per_upstream() {
    let (h, _) = rewrite(&everything(&[]), "192.0.2.1", false, None, spoofed());
    assert_eq!(h["host"], "app.example.com");
    let (h, _) = rewrite(
        &everything(&[]),
        "192.0.2.1",
        false,
        Some("api.internal:8443"),
        spoofed(),
    );
    assert_eq!(h["host"], "api.internal:8443");
    assert_eq!(
        h["x-forwarded-host"], "app.example.com",
        "what the client asked for"
    );
    assert!(h["forwarded"]
        .to_str()
        .unwrap()
        .ends_with(";host=app.example.com"));
    // HTTP/2 carries :authority only; Host is made from it.
    let req = Request::get("http://h2.example.com/").version(Version::HTTP_2);
    let (h, _) = rewrite(&config(&[]), "192.0.2.1", false, None, req);
    assert_eq!(h["host"], "h2.example.com");
}

#[test]
fn hop_by_hop_fields_go() {
    let req = Request::get("/")
        .header("connection", "close, x-hop")
        .header("x-hop", "1")
        .header("te", "trailers")
        .header("upgrade", "websocket");
    let (h, _) = rewrite(&config(&[]), "192.0.2.1", false, None, req);
    for name in ["connection", "x-hop", "te", "upgrade"] {
        assert!(!h.contains_key(name), "{name}");
    }
}

#[test]
fn the_field_index_matches_the_tables() {
    for (i, name) in CLAIMS.iter().enumerate() {
        assert_eq!(field_index(name.as_str()), Some(u32::try_from(i).unwrap()));
    }
    assert_eq!(field_index(X_FORWARDED_FOR.as_str()), Some(XFF));
    assert_eq!(field_index(X_FORWARDED_PROTO.as_str()), Some(XFP));
    assert_eq!(field_index(X_FORWARDED_HOST.as_str()), Some(XFH));
    assert_eq!(field_index(header::VIA.as_str()), Some(VIA));
    assert_eq!(field_index(header::HOST.as_str()), Some(HOST));
    assert_eq!(field_index("x-kept"), None);
}
