//! TLS to backends through the real proxy and the public `UpstreamClient`: a CA file,
//! the verification switches, SNI, mTLS, HTTP/2 through ALPN, a handshake that never ends,
//! relative file paths, and the configuration errors of the connection keys. Certificates
//! are made by rcgen in each test.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;
mod upstream_support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{config, Harness};
use http::{StatusCode, Version};
use http_body_util::Empty;
use lb_core::Backend;
use lb_proxy::config::Config;
use lb_testkit::tls::{TestCa, TlsServer};
use lb_testkit::TestBackend;
use upstream_support::{
    backend_at, client, get, request_error, silent_server, tls_options, tls_table, Pki,
};

#[tokio::test]
async fn tls_backend_trusted_through_a_ca_file() {
    let pki = Pki::new();
    let backend = pki.backend(&["127.0.0.1"]).await;
    let tls = tls_table(&pki.ca_file, "");
    let (h, _events) = Harness::start(&config(std::slice::from_ref(&backend), &tls)).await;
    assert_eq!(h.get("/").await, (StatusCode::OK, "tls".to_owned()));
    assert_eq!(backend.hits(), 1);
    // An IP address is verified, not sent as SNI (RFC 6066).
    assert_eq!(backend.last_sni().await, None);
}

#[tokio::test]
async fn a_certificate_from_another_ca_fails_the_handshake() {
    let pki = Pki::new();
    let backend = pki.backend(&["127.0.0.1"]).await;
    let stranger = TestCa::new("another CA").write(pki.path(), "other-ca");
    let tls = tls_table(&stranger, "");
    let (h, _events) = Harness::start(&config(std::slice::from_ref(&backend), &tls)).await;
    assert_eq!(h.get("/").await.0, StatusCode::BAD_GATEWAY);
    assert_eq!(backend.hits(), 0);

    let c = client(|o| o.tls = Some(tls_options(&stranger)));
    let error = request_error(&c, &backend_at(backend.addr()), "/").await;
    assert!(
        error.is_connect() && error.is_tls() && !error.is_timeout(),
        "{error:?}"
    );
}

#[tokio::test]
async fn verify_false_accepts_an_untrusted_certificate() {
    let pki = Pki::new();
    let backend = pki.backend(&["elsewhere.test"]).await;
    let (h, _events) = Harness::start(&config(
        std::slice::from_ref(&backend),
        "tls = { verify = false }",
    ))
    .await;
    assert_eq!(h.get("/").await, (StatusCode::OK, "tls".to_owned()));
}

#[tokio::test]
async fn a_wrong_name_fails_unless_verify_hostname_is_false() {
    let pki = Pki::new();
    let backend = pki.backend(&["elsewhere.test"]).await;
    let strict = tls_table(&pki.ca_file, "");
    let (h, _events) = Harness::start(&config(std::slice::from_ref(&backend), &strict)).await;
    assert_eq!(h.get("/").await.0, StatusCode::BAD_GATEWAY);
    assert_eq!(backend.hits(), 0);

    let lax = tls_table(&pki.ca_file, ", verify_hostname = false");
    let (h, _events) = Harness::start(&config(std::slice::from_ref(&backend), &lax)).await;
    assert_eq!(h.get("/").await, (StatusCode::OK, "tls".to_owned()));

    // The chain is still verified: another CA's certificate fails even so.
    let stranger = TestCa::new("another CA").write(pki.path(), "other-ca");
    let lax_stranger = tls_table(&stranger, ", verify_hostname = false");
    let (h, _events) = Harness::start(&config(std::slice::from_ref(&backend), &lax_stranger)).await;
    assert_eq!(h.get("/").await.0, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn the_configured_sni_is_sent_and_verified() {
    let pki = Pki::new();
    let backend = pki.backend(&["api.example.test"]).await;
    let tls = tls_table(&pki.ca_file, ", sni = \"api.example.test\"");
    let (h, _events) = Harness::start(&config(std::slice::from_ref(&backend), &tls)).await;
    assert_eq!(h.get("/").await, (StatusCode::OK, "tls".to_owned()));
    assert_eq!(
        backend.last_sni().await.as_deref(),
        Some("api.example.test")
    );
}

/// Without `sni`, a backend configured by DNS name sends (and verifies) that name.
#[tokio::test]
async fn sni_defaults_to_the_backend_host_name() {
    let pki = Pki::new();
    let backend = pki.backend(&["api.example.test"]).await;
    let named = Backend::new(backend.addr())
        .with_name(format!("api.example.test:{}", backend.addr().port()));
    let c = client(|o| o.tls = Some(tls_options(&pki.ca_file)));
    for b in [lb_proxy::client::prepare_backend(&named), named] {
        let resp = c.request(&b, get("/")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            backend.last_sni().await.as_deref(),
            Some("api.example.test")
        );
    }
}

#[tokio::test]
async fn client_certificates_for_a_backend_that_requires_them() {
    let pki = Pki::new();
    let clients = TestCa::new("client CA");
    let server = TlsServer::new(&pki.ca.server_cert(&["127.0.0.1"])).require_client_cert(&clients);
    let backend = TestBackend::start_tls("mtls", server).await;
    let (cert, key) = clients.client_cert("proxy").write(pki.path(), "proxy");
    let with_cert = tls_table(
        &pki.ca_file,
        &format!(
            ", client_cert = \"{}\", client_key = \"{}\"",
            cert.display(),
            key.display()
        ),
    );
    let (h, _events) = Harness::start(&config(std::slice::from_ref(&backend), &with_cert)).await;
    assert_eq!(h.get("/").await, (StatusCode::OK, "mtls".to_owned()));

    let without = tls_table(&pki.ca_file, "");
    let (h, _events) = Harness::start(&config(std::slice::from_ref(&backend), &without)).await;
    assert_eq!(h.get("/").await.0, StatusCode::BAD_GATEWAY);
    assert_eq!(backend.hits(), 1);
}

#[tokio::test]
async fn http2_when_alpn_agrees_on_h2() {
    let pki = Pki::new();
    let server = TlsServer::new(&pki.ca.server_cert(&["127.0.0.1"])).alpn(&["h2", "http/1.1"]);
    let backend = TestBackend::start_tls("h2", server).await;
    let h2 = tls_table(&pki.ca_file, ", alpn = [\"h2\", \"http/1.1\"]");
    let (h, _events) = Harness::start(&config(std::slice::from_ref(&backend), &h2)).await;
    for _ in 0..3 {
        assert_eq!(h.get("/").await, (StatusCode::OK, "h2".to_owned()));
    }
    assert_eq!(backend.last_version().await, Some(Version::HTTP_2));
    assert_eq!(backend.connections(), 1, "one multiplexed connection");
    let seen = backend.last_headers().await.unwrap();
    assert_eq!(
        seen["host"],
        h.addr().to_string(),
        "Host passed over HTTP/2"
    );

    // The default offer is http/1.1 only.
    let h1 = tls_table(&pki.ca_file, "");
    let (h, _events) = Harness::start(&config(std::slice::from_ref(&backend), &h1)).await;
    assert_eq!(h.get("/").await.0, StatusCode::OK);
    assert_eq!(backend.last_version().await, Some(Version::HTTP_11));
}

/// A TLS backend that accepts TCP and never answers the handshake: the connect (TCP plus
/// TLS) times out, and the error says the backend never saw the request.
#[tokio::test]
async fn a_handshake_that_never_finishes_is_a_connect_timeout() {
    let (addr, _server) = silent_server().await;
    let pki = Pki::new();
    for total in [Some(Duration::from_millis(300)), None] {
        let c = client(|o| {
            o.connect_timeout = Duration::from_millis(200);
            o.total_connection_timeout = total;
            o.tls = Some(tls_options(&pki.ca_file));
        });
        let started = Instant::now();
        let error = request_error(&c, &backend_at(addr), "/").await;
        assert!(error.is_connect() && error.is_timeout(), "{error:?}");
        // Bounded by the total, or by connect_timeout again for the handshake.
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }
}

/// Relative TLS paths are resolved against the configuration file's directory.
#[tokio::test]
async fn relative_tls_files_follow_the_config_file() {
    let pki = Pki::new();
    let backend = pki.backend(&["127.0.0.1"]).await;
    let text = config(
        std::slice::from_ref(&backend),
        "tls = { ca_file = \"ca.pem\" }",
    );
    let path = pki.path().join("lb.toml");
    std::fs::write(&path, &text).unwrap();
    let proxy = lb_proxy::Proxy::new(Config::load(&path).unwrap())
        .start()
        .await
        .unwrap();
    let addr = proxy.local_addrs()[0];
    let c: hyper_util::client::legacy::Client<_, Empty<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let resp = c
        .get(format!("http://{addr}/").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

fn config_error(upstream_keys: &str) -> String {
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[upstreams.api]\nbackends = [\"127.0.0.1:9\"]\n\
         {upstream_keys}\n\n[[routes]]\nupstream = \"api\"\n"
    );
    Config::from_toml_str(&text, "/etc/lb/lb.toml")
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_connection_keys_are_reported_at_their_line() {
    let pki = Pki::new();
    let ca = pki.ca_file.display().to_string();
    let (cert, key) = pki.ca.client_cert("proxy").write(pki.path(), "proxy");
    let (_, other_key) = pki.ca.client_cert("other").write(pki.path(), "other");
    let cases = [
        (
            "tls = { ca_file = \"missing.pem\" }".to_owned(),
            "lb.toml:6:19: upstreams.api.tls.ca_file: cannot read certificates from /etc/lb/missing.pem",
        ),
        (
            format!("tls = {{ client_cert = \"{}\" }}", cert.display()),
            "upstreams.api.tls.client_cert: needs `client_key`",
        ),
        (
            format!(
                "tls = {{ client_cert = \"{}\", client_key = \"{}\" }}",
                cert.display(),
                other_key.display()
            ),
            "upstreams.api.tls.client_key:",
        ),
        (
            "tls = { alpn = [\"h3\"] }".to_owned(),
            "lb.toml:6:16: upstreams.api.tls.alpn: unknown protocol `h3`",
        ),
        (
            format!("tls = {{ verify = false, ca_file = \"{ca}\" }}"),
            "upstreams.api.tls.verify: `verify = false` ignores `ca_file`",
        ),
        (
            "tls = { sni = \"not a name\" }".to_owned(),
            "upstreams.api.tls.sni: `not a name` is neither a DNS name nor an IP address",
        ),
        (
            "tls = { verfy = false }".to_owned(),
            "lb.toml:6:9: upstreams.api.tls.verfy: unknown field `verfy`",
        ),
        (
            "total_connection_timeout = \"5s\"".to_owned(),
            "lb.toml:6:28: upstreams.api.total_connection_timeout: applies to TLS upstreams only",
        ),
        (
            "tls = {}\nconnect_timeout = \"3s\"\ntotal_connection_timeout = \"1s\"".to_owned(),
            "lb.toml:8:28: upstreams.api.total_connection_timeout: 1s is shorter than connect_timeout (3s)",
        ),
        (
            "bind = \"::1\"".to_owned(),
            "lb.toml:6:8: upstreams.api.bind: ::1 cannot reach backend `127.0.0.1:9`",
        ),
        (
            "bind = \"10.0.0.300\"".to_owned(),
            "lb.toml:6:8: upstreams.api.bind: invalid IP address syntax",
        ),
        (
            "read_timeout = \"0s\"".to_owned(),
            "lb.toml:6:16: upstreams.api.read_timeout: must be greater than zero",
        ),
    ];
    for (keys, expected) in cases {
        let e = config_error(&keys);
        assert!(
            e.contains(expected),
            "{keys}\n  gave: {e}\n  want: {expected}"
        );
        assert!(e.starts_with("/etc/lb/lb.toml:"), "{e}");
    }
    // And a good one loads, with its files read.
    let good = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstreams.api]\nbackends = [\"127.0.0.1:9\"]\n\
         tls = {{ ca_file = \"{ca}\", client_cert = \"{}\", client_key = \"{}\", alpn = [\"h2\", \"http/1.1\"] }}\n\
         [[routes]]\nupstream = \"api\"\n",
        cert.display(),
        key.display()
    );
    let config = Config::from_toml_str(&good, "lb.toml").unwrap();
    let options = lb_proxy::peer_options(&config.upstreams["api"]);
    let tls = options.tls.unwrap();
    assert!(tls.ca.is_some() && tls.client_cert.is_some());
    assert_eq!(tls.alpn.len(), 2);
}
