//! The TLS and HTTPS checks against real rustls servers on loopback, with certificates made
//! in the test by rcgen: the right name, a wrong name, an expired certificate, an untrusted
//! CA, verification off, mTLS and ALPN. Each asserts the exact check after which the state
//! flips, and one hook call per transition with the typed reason. The HTTPS test also
//! needs the `http` feature.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use lb_core::{Backend, Health};
#[cfg(feature = "http")]
use lb_health::HttpHealthCheck;
use lb_health::{HealthCheck, TlsConfig, TlsFailureKind, TlsHealthCheck};
use rcgen::ExtendedKeyUsagePurpose;
use support::pki::{serve, serve_simple, Ca, Mode, ServerOptions};
use support::{params, recording, Transition};

/// The backend at `addr`, configured as `localhost:PORT`, starting in `start` (the
/// monitor of [`flips_after`] starts it in the same initial health).
fn localhost(addr: SocketAddr, start: Health) -> Backend {
    Backend::new(addr)
        .with_name(format!("localhost:{}", addr.port()))
        .with_initial_health(start)
}

/// Runs `check` against `backend` and asserts that the state flips to `to` on exactly the
/// `n`th check, not before, stays there, and that the hook fired exactly once; returns
/// that one transition.
async fn flips_after(check: impl HealthCheck, backend: &Backend, n: u32, to: Health) -> Transition {
    let (monitor, log) = recording(check);
    // The initial state the backend was configured with.
    let monitor = monitor.with_initial_health(backend.state().health());
    for i in 1..n {
        assert_eq!(
            monitor.check_one(backend).await,
            None,
            "check {i} of {n} must not flip"
        );
    }
    assert_eq!(
        monitor.check_one(backend).await,
        Some(to),
        "check {n} flips"
    );
    assert_eq!(
        monitor.check_one(backend).await,
        None,
        "no second transition"
    );
    assert_eq!(backend.state().health(), to);
    let log = log.lock();
    assert_eq!(log.len(), 1, "one hook call: {log:?}");
    log[0].clone()
}

fn tls_check(tls: TlsConfig, rise: u32, fall: u32) -> TlsHealthCheck {
    TlsHealthCheck::new(params(rise, fall, Duration::from_secs(5)), tls)
}

fn trusting(ca: &Ca) -> lb_health::TlsConfigBuilder {
    TlsConfig::builder().ca_pem(ca.pem.as_bytes().to_vec())
}

#[tokio::test]
async fn the_right_name_passes_after_exactly_rise_checks() {
    let ca = Ca::new("test CA");
    let server = serve_simple(&ca.server_leaf(&["localhost"])).await;
    let backend = localhost(server.addr, Health::Unhealthy);
    let t = flips_after(
        tls_check(trusting(&ca).build().unwrap(), 3, 1),
        &backend,
        3,
        Health::Healthy,
    )
    .await;
    assert_eq!(
        (t.old, t.new, t.reason),
        (Health::Unhealthy, Health::Healthy, None)
    );
}

#[tokio::test]
async fn a_wrong_name_fails_after_exactly_fall_checks_with_that_reason() {
    let ca = Ca::new("test CA");
    let server = serve_simple(&ca.server_leaf(&["localhost"])).await;
    let backend = Backend::new(server.addr)
        .with_name(format!("api.internal:{}", server.addr.port()))
        .with_initial_health(Health::Healthy);
    let t = flips_after(
        tls_check(trusting(&ca).build().unwrap(), 1, 2),
        &backend,
        2,
        Health::Unhealthy,
    )
    .await;
    assert_eq!(t.tls, Some(TlsFailureKind::WrongName), "{:?}", t.reason);

    // The same certificate passes when the check is told the name to verify.
    let named = trusting(&ca).server_name("localhost").build().unwrap();
    let again = Backend::new(server.addr).with_name("api.internal:1");
    flips_after(tls_check(named, 1, 1), &again, 1, Health::Healthy).await;
}

#[tokio::test]
async fn an_expired_certificate_fails_with_expired() {
    let ca = Ca::new("test CA");
    let leaf = ca.leaf(&["localhost"], ExtendedKeyUsagePurpose::ServerAuth, true);
    let server = serve_simple(&leaf).await;
    let backend = localhost(server.addr, Health::Healthy);
    let t = flips_after(
        tls_check(trusting(&ca).build().unwrap(), 1, 3),
        &backend,
        3,
        Health::Unhealthy,
    )
    .await;
    assert_eq!(t.tls, Some(TlsFailureKind::Expired), "{:?}", t.reason);
    assert!(t.reason.unwrap().starts_with("TLS certificate expired"));
}

#[tokio::test]
async fn an_untrusted_ca_fails_with_untrusted_issuer() {
    let trusted = Ca::new("trusted CA");
    let rogue = Ca::new("rogue CA");
    let server = serve_simple(&rogue.server_leaf(&["localhost"])).await;
    let backend = localhost(server.addr, Health::Unknown);
    let t = flips_after(
        tls_check(trusting(&trusted).build().unwrap(), 2, 2),
        &backend,
        1,
        Health::Unhealthy,
    )
    .await;
    assert_eq!(
        t.tls,
        Some(TlsFailureKind::UntrustedIssuer),
        "{:?}",
        t.reason
    );
}

#[tokio::test]
async fn verification_off_passes_on_every_bad_certificate() {
    let ca = Ca::new("test CA");
    let rogue = Ca::new("rogue CA");
    let leaves = [
        ca.server_leaf(&["wrong.example"]),
        ca.leaf(&["localhost"], ExtendedKeyUsagePurpose::ServerAuth, true),
        rogue.server_leaf(&["localhost"]),
    ];
    let off = TlsConfig::builder()
        .dangerous_accept_any_certificate()
        .build()
        .unwrap();
    for leaf in &leaves {
        let server = serve_simple(leaf).await;
        let backend = localhost(server.addr, Health::Unhealthy);
        flips_after(tls_check(off.clone(), 2, 1), &backend, 2, Health::Healthy).await;
    }
}

#[tokio::test]
async fn mtls_passes_with_a_client_certificate_and_fails_without() {
    let ca = Ca::new("server CA");
    let clients = Ca::new("client CA");
    let rogue = Ca::new("rogue client CA");
    let leaf = ca.server_leaf(&["localhost"]);
    let server = serve(ServerOptions {
        leaf: &leaf,
        client_ca: Some(&clients),
        alpn: &[],
        mode: Mode::Close,
    })
    .await;

    let good = clients.leaf(&[], ExtendedKeyUsagePurpose::ClientAuth, false);
    let with_cert = trusting(&ca)
        .client_cert_pem(good.cert, good.key)
        .build()
        .unwrap();
    let backend = localhost(server.addr, Health::Unhealthy);
    flips_after(tls_check(with_cert, 2, 1), &backend, 2, Health::Healthy).await;

    let t = flips_after(
        tls_check(trusting(&ca).build().unwrap(), 1, 2),
        &backend,
        2,
        Health::Unhealthy,
    )
    .await;
    assert_eq!(t.tls, Some(TlsFailureKind::Rejected), "{:?}", t.reason);

    let bad = rogue.leaf(&[], ExtendedKeyUsagePurpose::ClientAuth, false);
    let wrong_cert = trusting(&ca)
        .client_cert_pem(bad.cert, bad.key)
        .build()
        .unwrap();
    let fresh = localhost(server.addr, Health::Healthy);
    let t = flips_after(tls_check(wrong_cert, 1, 1), &fresh, 1, Health::Unhealthy).await;
    assert_eq!(t.tls, Some(TlsFailureKind::Rejected), "{:?}", t.reason);
}

#[tokio::test]
async fn alpn_without_a_common_protocol_is_rejected() {
    let ca = Ca::new("test CA");
    let leaf = ca.server_leaf(&["localhost"]);
    let server = serve(ServerOptions {
        leaf: &leaf,
        client_ca: None,
        alpn: &["h2"],
        mode: Mode::Close,
    })
    .await;
    let h1 = trusting(&ca).alpn(["http/1.1"]).build().unwrap();
    let t = flips_after(
        tls_check(h1, 1, 1),
        &localhost(server.addr, Health::Healthy),
        1,
        Health::Unhealthy,
    )
    .await;
    assert_eq!(t.tls, Some(TlsFailureKind::Rejected), "{:?}", t.reason);
    let h2 = trusting(&ca).alpn(["h2", "http/1.1"]).build().unwrap();
    flips_after(
        tls_check(h2, 1, 1),
        &localhost(server.addr, Health::Unhealthy),
        1,
        Health::Healthy,
    )
    .await;
}

// HTTPS: the HTTP check over the same TLS settings.
#[cfg(feature = "http")]
#[tokio::test]
async fn https_checks_reuse_the_tls_settings() {
    let ca = Ca::new("test CA");
    let clients = Ca::new("client CA");
    let leaf = ca.server_leaf(&["localhost"]);
    let plain = serve(ServerOptions {
        leaf: &leaf,
        client_ca: None,
        alpn: &["http/1.1"],
        mode: Mode::Http,
    })
    .await;
    let https = |tls: TlsConfig| {
        HttpHealthCheck::builder(params(1, 1, Duration::from_secs(5)))
            .tls(tls)
            .expect_body_contains("ok")
            .build()
            .unwrap()
    };
    let tls = trusting(&ca).alpn(["http/1.1"]).build().unwrap();
    flips_after(
        https(tls.clone()),
        &localhost(plain.addr, Health::Unhealthy),
        1,
        Health::Healthy,
    )
    .await;
    let wrong = Backend::new(plain.addr).with_name("wrong.example:443");
    let t = flips_after(https(tls), &wrong, 1, Health::Unhealthy).await;
    assert_eq!(t.tls, Some(TlsFailureKind::WrongName), "{:?}", t.reason);

    // A TLS 1.3 server refusing the missing client certificate says so after the
    // handshake, during the HTTP exchange: still a typed TLS failure.
    let mtls = serve(ServerOptions {
        leaf: &leaf,
        client_ca: Some(&clients),
        alpn: &[],
        mode: Mode::Http,
    })
    .await;
    let t = flips_after(
        https(trusting(&ca).build().unwrap()),
        &localhost(mtls.addr, Health::Healthy),
        1,
        Health::Unhealthy,
    )
    .await;
    assert_eq!(t.tls, Some(TlsFailureKind::Rejected), "{:?}", t.reason);
}
