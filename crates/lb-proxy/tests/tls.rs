//! TLS listeners through the real proxy: certificates by SNI, versions, ALPN (HTTP/2 and
//! HTTP/1.1), curl, mutual TLS, plain and TLS side by side, the handshake timeout, and
//! configuration errors. Certificates come from a fresh rcgen CA per test; clients are
//! rustls (tokio-rustls) with hyper, and curl.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // tests: failures are test failures

mod common;
mod tls_kit;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use http::{StatusCode, Version};
use lb_proxy::config::Config;
use lb_proxy::{Proxy, RunningProxy};
use lb_testkit::TestBackend;
use rustls::version::{TLS12, TLS13};
use rustls::ProtocolVersion;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use common::{read_response, wait_parked};
use tls_kit::{presented, Answer, Ca, ClientOptions, Dir, Leaf};

/// A proxy over one backend, from `server` (the `[server]` keys and `[[server.tls]]`
/// tables), loaded as `DIR/lb.toml` so relative file names resolve into `dir`.
async fn start(dir: &Dir, backend: &TestBackend, server: &str) -> RunningProxy {
    let text = format!(
        "[server]\ngrace_period = \"5s\"\n{server}\n\n\
         [upstreams.web]\nbackends = [\"{}\"]\n\n[[routes]]\nupstream = \"web\"\n",
        backend.addr()
    );
    let config = Config::from_toml_str(&text, dir.path().join("lb.toml")).unwrap();
    Proxy::new(config).start().await.unwrap()
}

/// A CA, and in `dir`: `ca.pem`, `a.pem`/`a.key` for a.example.com, `b.pem`/`b.key` for
/// b.example.com and *.b.example.com.
struct Pki {
    ca: Ca,
    a: Leaf,
    b: Leaf,
}

fn pki(dir: &Dir) -> Pki {
    let ca = Ca::new("test CA");
    let a = ca.server(&["a.example.com"]);
    let b = ca.server(&["b.example.com", "*.b.example.com"]);
    dir.write("ca.pem", &ca.pem);
    dir.write_leaf("a", &a);
    dir.write_leaf("b", &b);
    Pki { ca, a, b }
}

const TWO_CERTS: &str = r#"certificates = [
  { cert = "a.pem", key = "a.key" },
  { cert = "b.pem", key = "b.key", sni = ["b.example.com", "*.b.example.com"] },
]"#;

/// An ALPN case: listener, protocols offered, protocol agreed, HTTP version served.
type Alpn<'a> = (
    &'a SocketAddr,
    &'static [&'static str],
    Option<&'static str>,
    Version,
);

const ONLY_12: &[&rustls::SupportedProtocolVersion] = &[&TLS12];
const ONLY_13: &[&rustls::SupportedProtocolVersion] = &[&TLS13];

fn ok(answer: &Answer, version: Version) {
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body, "b0", "{answer:?}");
    assert_eq!(answer.version, version, "{answer:?}");
}

#[tokio::test]
async fn sni_selects_the_certificate_exact_then_wildcard() {
    let backend = TestBackend::start("b0").await;
    let dir = Dir::new();
    let pki = pki(&dir);
    // No plain listener at all: a TLS listener is enough.
    let tls = format!("[[server.tls]]\nlisten = [\"127.0.0.1:0\"]\n{TWO_CERTS}\n");
    let proxy = start(&dir, &backend, &tls).await;
    assert_eq!(proxy.local_addrs(), proxy.tls_addrs());
    let addr = proxy.tls_addrs()[0];
    let client = ClientOptions::trusting(&pki.ca);
    for (name, want) in [
        ("a.example.com", &pki.a),
        ("b.example.com", &pki.b),
        ("x.b.example.com", &pki.b),
    ] {
        // The verifying client accepts it for `name`, and it is the expected certificate.
        let stream = client.connect(addr, name).await.unwrap();
        assert_eq!(presented(&stream), want.der, "{name}");
        ok(&tls_kit::get(stream, name).await.unwrap(), Version::HTTP_2);
    }
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn sni_lists_replace_certificate_names_and_win_over_other_certificates() {
    let backend = TestBackend::start("b0").await;
    let dir = Dir::new();
    let pki = pki(&dir);
    let c = pki.ca.server(&["c.example.com"]);
    dir.write_leaf("c", &c);
    // `c` is listed for a.example.com (which `a` also has) and an alias, not for its own name.
    let tls = "[[server.tls]]\nlisten = [\"127.0.0.1:0\"]\ncertificates = [\n\
               { cert = \"a.pem\", key = \"a.key\" },\n\
               { cert = \"c.pem\", key = \"c.key\", sni = [\"a.example.com\", \"alias.example.com\"] },\n]\n";
    let proxy = start(&dir, &backend, tls).await;
    let addr = proxy.tls_addrs()[0];
    let any = ClientOptions::any_cert();
    for name in ["a.example.com", "alias.example.com"] {
        let stream = any.connect(addr, name).await.unwrap();
        assert_eq!(presented(&stream), c.der, "{name}");
    }
    let e = any.connect(addr, "c.example.com").await.unwrap_err();
    assert!(e.starts_with("handshake"), "{e}");
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn unknown_or_absent_sni_gets_the_default_or_fails() {
    let backend = TestBackend::start("b0").await;
    let dir = Dir::new();
    let pki = pki(&dir);
    let tls = format!(
        "[[server.tls]]\nlisten = [\"127.0.0.1:0\"]\n{TWO_CERTS}\n\n\
         [[server.tls]]\nlisten = [\"127.0.0.1:0\"]\n{TWO_CERTS}\ndefault_certificate = 1\n"
    );
    let proxy = start(&dir, &backend, &tls).await;
    let tls_addrs = proxy.tls_addrs();
    let [strict, with_default] = &tls_addrs[..] else {
        panic!("two TLS listeners expected: {:?}", proxy.tls_addrs());
    };
    let any = ClientOptions::any_cert();
    let no_sni = ClientOptions {
        sni: false,
        ..ClientOptions::any_cert()
    };

    // Without a default, an unknown name and a missing SNI fail the handshake...
    let e = any
        .connect(*strict, "unknown.example.com")
        .await
        .unwrap_err();
    assert!(e.starts_with("handshake"), "{e}");
    let e = no_sni.connect(*strict, "a.example.com").await.unwrap_err();
    assert!(e.starts_with("handshake"), "{e}");
    // ... a known name still works.
    let stream = any.connect(*strict, "a.example.com").await.unwrap();
    assert_eq!(presented(&stream), pki.a.der);

    // With one, both get the default certificate, and are served.
    let stream = any
        .connect(*with_default, "unknown.example.com")
        .await
        .unwrap();
    assert_eq!(presented(&stream), pki.b.der);
    ok(
        &tls_kit::get(stream, "unknown.example.com").await.unwrap(),
        Version::HTTP_2,
    );
    let stream = no_sni
        .connect(*with_default, "a.example.com")
        .await
        .unwrap();
    assert_eq!(presented(&stream), pki.b.der);
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn tls12_and_tls13_clients_and_a_13_only_listener() {
    let backend = TestBackend::start("b0").await;
    let dir = Dir::new();
    let pki = pki(&dir);
    let tls = format!(
        "[[server.tls]]\nlisten = [\"127.0.0.1:0\"]\n{TWO_CERTS}\n\n\
         [[server.tls]]\nlisten = [\"127.0.0.1:0\"]\n{TWO_CERTS}\nmin_version = \"1.3\"\n"
    );
    let proxy = start(&dir, &backend, &tls).await;
    let tls_addrs = proxy.tls_addrs();
    let [default, tls13_only] = &tls_addrs[..] else {
        panic!("two TLS listeners expected");
    };
    let only = |versions| ClientOptions {
        versions,
        ..ClientOptions::trusting(&pki.ca)
    };
    let (v12, v13) = (only(ONLY_12), only(ONLY_13));

    for (client, want) in [
        (&v12, ProtocolVersion::TLSv1_2),
        (&v13, ProtocolVersion::TLSv1_3),
    ] {
        let stream = client.connect(*default, "a.example.com").await.unwrap();
        assert_eq!(stream.get_ref().1.protocol_version(), Some(want));
        ok(
            &tls_kit::get(stream, "a.example.com").await.unwrap(),
            Version::HTTP_2,
        );
    }
    let e = v12.connect(*tls13_only, "a.example.com").await.unwrap_err();
    assert!(e.starts_with("handshake"), "{e}");
    let stream = v13.connect(*tls13_only, "a.example.com").await.unwrap();
    assert_eq!(
        stream.get_ref().1.protocol_version(),
        Some(ProtocolVersion::TLSv1_3)
    );
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn alpn_chooses_http2_or_http11() {
    let backend = TestBackend::start("b0").await;
    let dir = Dir::new();
    let pki = pki(&dir);
    let tls = format!(
        "[[server.tls]]\nlisten = [\"127.0.0.1:0\"]\n{TWO_CERTS}\n\n\
         [[server.tls]]\nlisten = [\"127.0.0.1:0\"]\n{TWO_CERTS}\nalpn = [\"http/1.1\"]\n"
    );
    let proxy = start(&dir, &backend, &tls).await;
    let tls_addrs = proxy.tls_addrs();
    let [both, h1_only] = &tls_addrs[..] else {
        panic!("two TLS listeners expected");
    };
    let offering = |alpn| ClientOptions {
        alpn,
        ..ClientOptions::trusting(&pki.ca)
    };
    let cases: [Alpn<'_>; 4] = [
        (both, &["h2", "http/1.1"], Some("h2"), Version::HTTP_2),
        (both, &["http/1.1"], Some("http/1.1"), Version::HTTP_11),
        (both, &[], None, Version::HTTP_11),
        (
            h1_only,
            &["h2", "http/1.1"],
            Some("http/1.1"),
            Version::HTTP_11,
        ),
    ];
    for (addr, alpn, agreed, version) in cases {
        let agreed = agreed.map(str::as_bytes);
        let stream = offering(alpn)
            .connect(*addr, "a.example.com")
            .await
            .unwrap();
        assert_eq!(stream.get_ref().1.alpn_protocol(), agreed, "{alpn:?}");
        ok(
            &tls_kit::get(stream, "a.example.com").await.unwrap(),
            version,
        );
    }
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn curl_speaks_http2_with_cacert() {
    let version = Command::new("curl").arg("--version").output();
    let Ok(version) = version else {
        eprintln!("curl is not installed: skipping the curl test");
        return;
    };
    assert!(
        String::from_utf8_lossy(&version.stdout).contains("HTTP2"),
        "this curl has no HTTP/2 support"
    );
    let backend = TestBackend::start("b0").await;
    let dir = Dir::new();
    pki(&dir);
    let tls = format!("[[server.tls]]\nlisten = [\"127.0.0.1:0\"]\n{TWO_CERTS}\n");
    let proxy = start(&dir, &backend, &tls).await;
    let port = proxy.tls_addrs()[0].port();
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--http2", "--max-time", "10", "--cacert"])
        .arg(dir.path().join("ca.pem"))
        .arg("--resolve")
        .arg(format!("x.b.example.com:{port}:127.0.0.1"))
        .args(["-w", "\n%{http_version} %{http_code}"])
        .arg(format!("https://x.b.example.com:{port}/"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, "b0\n2 200");
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn mutual_tls_requires_a_certificate_from_the_configured_ca() {
    let backend = TestBackend::start("b0").await;
    let dir = Dir::new();
    let pki = pki(&dir);
    let clients_ca = Ca::new("client CA");
    let other_ca = Ca::new("another CA");
    dir.write("clients.pem", &clients_ca.pem);
    let tls = format!(
        "[[server.tls]]\nlisten = [\"127.0.0.1:0\"]\n{TWO_CERTS}\n\
         client_auth = {{ ca_file = \"clients.pem\", required = true }}\n\n\
         [[server.tls]]\nlisten = [\"127.0.0.1:0\"]\n{TWO_CERTS}\n\
         client_auth = {{ ca_file = \"clients.pem\", required = false }}\n"
    );
    let proxy = start(&dir, &backend, &tls).await;
    let tls_addrs = proxy.tls_addrs();
    let [required, optional] = &tls_addrs[..] else {
        panic!("two TLS listeners expected");
    };
    let good = clients_ca.client("client.example.com");
    let foreign = other_ca.client("client.example.com");
    let with = |cert| ClientOptions {
        client_cert: cert,
        ..ClientOptions::trusting(&pki.ca)
    };
    for versions in [ONLY_12, ONLY_13] {
        let with = |cert| ClientOptions {
            versions,
            ..with(cert)
        };
        // In TLS 1.3 the client learns of the refusal after its side of the handshake,
        // on its first read; either way no request gets through.
        let e = with(None)
            .get(*required, "a.example.com")
            .await
            .unwrap_err();
        assert!(
            e.starts_with("handshake") || e.starts_with("request"),
            "{e}"
        );
        let e = with(Some(&foreign))
            .get(*required, "a.example.com")
            .await
            .unwrap_err();
        assert!(
            e.starts_with("handshake") || e.starts_with("request"),
            "{e}"
        );
        let answer = with(Some(&good)).get(*required, "a.example.com").await;
        ok(&answer.unwrap(), Version::HTTP_2);

        // `required = false`: no certificate is fine, a foreign one is still refused.
        let answer = with(None).get(*optional, "a.example.com").await;
        ok(&answer.unwrap(), Version::HTTP_2);
        let e = with(Some(&foreign))
            .get(*optional, "a.example.com")
            .await
            .unwrap_err();
        assert!(
            e.starts_with("handshake") || e.starts_with("request"),
            "{e}"
        );
    }
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn plain_and_tls_listeners_side_by_side_with_h2c_on_plain() {
    let backend = TestBackend::start("b0").await;
    let dir = Dir::new();
    let pki = pki(&dir);
    let tls = format!(
        "listen = [\"127.0.0.1:0\"]\n\n[[server.tls]]\nlisten = [\"127.0.0.1:0\"]\n{TWO_CERTS}\n"
    );
    let proxy = start(&dir, &backend, &tls).await;
    let (plain, tls) = (proxy.local_addrs()[0], proxy.tls_addrs()[0]);
    assert_eq!(proxy.local_addrs(), [plain, tls]);

    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let h2c = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let url: http::Uri = format!("http://{plain}/").parse().unwrap();
    for (client, version) in [(&client, Version::HTTP_11), (&h2c, Version::HTTP_2)] {
        let resp = tokio::time::timeout(tls_kit::STEP, client.get(url.clone()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((resp.status(), resp.version()), (StatusCode::OK, version));
    }
    // The plain port does not speak TLS, and the TLS port does.
    let tls_client = ClientOptions::trusting(&pki.ca);
    assert!(tls_client.get(plain, "a.example.com").await.is_err());
    ok(
        &tls_client.get(tls, "a.example.com").await.unwrap(),
        Version::HTTP_2,
    );
    assert_eq!(backend.hits(), 3);
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn a_silent_client_is_cut_at_the_handshake_timeout_and_delays_no_one() {
    let backend = TestBackend::start("b0").await;
    let dir = Dir::new();
    let pki = pki(&dir);
    let timeout = Duration::from_millis(1500);
    let tls = format!(
        "[[server.tls]]\nlisten = [\"127.0.0.1:0\"]\n{TWO_CERTS}\nhandshake_timeout = \"1500ms\"\n"
    );
    let proxy = start(&dir, &backend, &tls).await;
    let addr = proxy.tls_addrs()[0];

    let connected = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let cut = tokio::spawn(async move {
        for mut s in silent {
            let mut buf = [0u8; 64];
            // End of stream or a reset: either way the proxy closed it.
            match tokio::time::timeout(tls_kit::STEP, s.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => {}
                other => panic!("the silent connection was not closed: {other:?}"),
            }
        }
        connected.elapsed()
    });

    // Meanwhile a real client is served at once.
    let answer = ClientOptions::trusting(&pki.ca)
        .get(addr, "a.example.com")
        .await
        .unwrap();
    ok(&answer, Version::HTTP_2);
    assert!(
        connected.elapsed() < timeout,
        "served only after {:?}",
        connected.elapsed()
    );
    assert!(
        !cut.is_finished(),
        "silent clients were cut before the timeout"
    );

    let elapsed = cut.await.unwrap();
    assert!(
        elapsed >= timeout && elapsed < timeout + Duration::from_secs(3),
        "silent clients cut after {elapsed:?}"
    );
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn shutdown_does_not_wait_for_handshakes_in_progress() {
    let backend = TestBackend::start("b0").await;
    let dir = Dir::new();
    let pki = pki(&dir);
    // The default handshake timeout (10s) is longer than the grace period (5s).
    let tls = format!("[[server.tls]]\nlisten = [\"127.0.0.1:0\"]\n{TWO_CERTS}\n");
    let proxy = start(&dir, &backend, &tls).await;
    let addr = proxy.tls_addrs()[0];
    let mut silent = TcpStream::connect(addr).await.unwrap();
    // One byte of a ClientHello that never completes.
    tokio::io::AsyncWriteExt::write_all(&mut silent, &[0x16])
        .await
        .unwrap();
    // Connections are accepted in order: once this one is served, the silent one is in
    // its handshake.
    let answer = ClientOptions::trusting(&pki.ca)
        .get(addr, "a.example.com")
        .await
        .unwrap();
    ok(&answer, Version::HTTP_2);
    let started = Instant::now();
    assert!(proxy.shutdown().await, "a handshake held up shutdown");
    assert!(started.elapsed() < Duration::from_secs(3));
    let mut buf = [0u8; 8];
    let closed = tokio::time::timeout(tls_kit::STEP, silent.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "the half-open handshake was not closed: {closed:?}"
    );
}

#[tokio::test]
async fn an_idle_https_connection_parks_and_serves_its_next_requests() {
    use tokio::io::AsyncWriteExt;

    let backend = TestBackend::start("b0").await;
    let dir = Dir::new();
    let pki = pki(&dir);
    let tls = format!("[[server.tls]]\nlisten = [\"127.0.0.1:0\"]\n{TWO_CERTS}\n");
    let proxy = start(&dir, &backend, &tls).await;
    let addr = proxy.local_addrs()[0];
    let mut options = ClientOptions::trusting(&pki.ca);
    options.alpn = &["http/1.1"];
    let mut stream = options.connect(addr, "a.example.com").await.unwrap();
    let get = b"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n";
    let mut data = Vec::new();
    stream.write_all(get).await.unwrap();
    assert_eq!(
        read_response(&mut stream, &mut data).await,
        "http/1.1 200 ok"
    );
    wait_parked(&proxy, 1).await;

    // Two requests in one TLS write: rustls decrypts both at once, and the second waits in
    // rustls while the first is served (a park in between must not lose it).
    let two = [&get[..], &get[..]].concat();
    stream.write_all(&two).await.unwrap();
    for _ in 0..2 {
        assert_eq!(
            read_response(&mut stream, &mut data).await,
            "http/1.1 200 ok"
        );
    }
    wait_parked(&proxy, 1).await;
    stream
        .write_all(b"POST /p HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .unwrap();
    assert_eq!(
        read_response(&mut stream, &mut data).await,
        "http/1.1 200 ok"
    );
    assert_eq!(backend.hits(), 4);
    let open: usize = proxy
        .worker_stats()
        .iter()
        .map(|w| w.open_connections)
        .sum();
    assert_eq!(open, 1, "one client connection throughout");
    assert!(proxy.shutdown().await);
}
