//! Upstream connections through the real proxy and through the public `UpstreamClient`:
//! TLS to backends (CA file, verification switches, SNI, mTLS, HTTP/2 through ALPN),
//! connect / read / write timeouts, the keep-alive pool and its idle timeout, `bind`, and
//! the configuration errors of these keys. Certificates are made by rcgen in each test.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{config, Harness};
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty, Full};
use lb_core::Backend;
use lb_proxy::client::{PeerOptions, TlsOptions, UpstreamClient, UpstreamError};
use lb_proxy::config::Config;
use lb_testkit::tls::{TestCa, TlsServer};
use lb_testkit::TestBackend;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// A CA, a server certificate for `names` signed by it, and the CA written to a temporary
/// directory (kept alive by the returned `TempDir`).
struct Pki {
    dir: tempfile::TempDir,
    ca: TestCa,
    ca_file: PathBuf,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("upstream test CA");
        let ca_file = ca.write(dir.path(), "ca");
        Self { dir, ca, ca_file }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A TLS backend whose certificate names `names`.
    async fn backend(&self, names: &[&str]) -> TestBackend {
        TestBackend::start_tls("tls", TlsServer::new(&self.ca.server_cert(names))).await
    }
}

/// `tls = { ... }` pointing at `ca_file`, plus `more` keys.
fn tls_table(ca_file: &Path, more: &str) -> String {
    format!("tls = {{ ca_file = \"{}\"{more} }}", ca_file.display())
}

/// A client that trusts `ca_file` (or verifies nothing), for tests that look at errors.
fn client(options: impl FnOnce(&mut PeerOptions)) -> UpstreamClient<Empty<Bytes>> {
    let mut o = PeerOptions::default();
    options(&mut o);
    UpstreamClient::new(o).unwrap()
}

fn tls_options(ca_file: &Path) -> TlsOptions {
    let mut tls = TlsOptions::default();
    tls.ca = Some(lb_proxy::client::load_certs(ca_file).unwrap());
    tls
}

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(path).body(Empty::new()).unwrap()
}

fn backend_at(addr: SocketAddr) -> Backend {
    lb_proxy::client::prepare_backend(&Backend::new(addr))
}

/// Sends through `client` within 10 s and returns the error it fails with.
async fn request_error(
    client: &UpstreamClient<Empty<Bytes>>,
    backend: &Backend,
    path: &str,
) -> UpstreamError {
    tokio::time::timeout(Duration::from_secs(10), client.request(backend, get(path)))
        .await
        .expect("the request ended within 10 s")
        .expect_err("the request failed")
}

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

/// A listener whose accept queue is full: further connects get no answer, as with a
/// black-holed address. Returns the listener and the connections filling it.
async fn blackhole() -> (TcpListener, Vec<TcpStream>) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..64 {
        match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => fillers.push(s),
            Ok(Err(e)) => panic!("connect to the filling listener failed: {e}"),
            Err(_) => return (listener, fillers),
        }
    }
    panic!("the accept queue never filled");
}

#[tokio::test]
async fn connect_timeout_to_a_blackhole_is_bounded() {
    let (listener, _fillers) = blackhole().await;
    let addr = listener.local_addr().unwrap();
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstreams.web]\nbackends = [\"{addr}\"]\n\
         connect_timeout = \"200ms\"\n[[routes]]\nupstream = \"web\"\n"
    );
    let (h, _events) = Harness::start(&toml).await;
    let started = Instant::now();
    assert_eq!(h.get("/").await.0, StatusCode::BAD_GATEWAY);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    let c = client(|o| o.connect_timeout = Duration::from_millis(200));
    let error = request_error(&c, &backend_at(addr), "/").await;
    assert!(error.is_connect() && error.is_timeout(), "{error:?}");
}

/// A server that reads requests and never answers.
async fn silent_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            open.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
            }));
        }
    });
    (addr, task)
}

#[tokio::test]
async fn no_response_head_within_read_timeout_is_a_timeout_and_504() {
    let (addr, _server) = silent_server().await;
    let c = client(|o| o.read_timeout = Some(Duration::from_millis(200)));
    let started = Instant::now();
    let error = request_error(&c, &backend_at(addr), "/").await;
    assert!(
        error.is_timeout() && !error.is_connect() && !error.is_body(),
        "{error:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(200));

    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstreams.web]\nbackends = [\"{addr}\"]\n\
         read_timeout = \"200ms\"\n[[routes]]\nupstream = \"web\"\n"
    );
    let (h, _events) = Harness::start(&toml).await;
    assert_eq!(
        h.get("/").await,
        (
            StatusCode::GATEWAY_TIMEOUT,
            "504 Gateway Timeout\n".to_owned()
        )
    );
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

#[tokio::test]
async fn an_answer_that_is_not_http_is_an_invalid_response() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _server = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let mut buf = vec![0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await;
            });
        }
    });
    let c = client(|_| {});
    let error = request_error(&c, &backend_at(addr), "/").await;
    assert!(
        error.is_invalid_response() && !error.is_connect(),
        "{error:?}"
    );
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstreams.web]\nbackends = [\"{addr}\"]\n\
         [[routes]]\nupstream = \"web\"\n"
    );
    let (h, _events) = Harness::start(&toml).await;
    assert_eq!(h.get("/").await.0, StatusCode::BAD_GATEWAY);
}

/// Unix socket backends go through the same client (their path is encoded in the pool's
/// authority).
#[tokio::test]
async fn unix_socket_backends_are_reached() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backend.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let _server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = hyper::service::service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                    Bytes::from_static(b"unix"),
                )))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc),
            );
        }
    });
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstreams.web]\nbackends = [\"unix:{}\"]\n\
         [[routes]]\nupstream = \"web\"\n",
        path.display()
    );
    let (h, _events) = Harness::start(&toml).await;
    assert_eq!(h.get("/").await, (StatusCode::OK, "unix".to_owned()));
}

#[tokio::test]
async fn a_body_that_stalls_mid_stream_times_out() {
    let backends = TestBackend::start_many(1).await;
    let c = client(|o| o.read_timeout = Some(Duration::from_millis(200)));
    let resp = c
        .request(&backend_at(backends[0].addr()), get("/stall-body"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // The body holds its timer inline (no allocation), so it is pinned to be polled.
    let mut body = std::pin::pin!(resp.into_body());
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "b0");
    let error = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("the body timed out within 10 s")
        .unwrap()
        .unwrap_err();
    assert!(error.is_timeout() && error.is_body(), "{error:?}");

    // Through the proxy: the head and first chunk arrive, then the body breaks off.
    let (h, _events) = Harness::start(&config(&backends, "read_timeout = \"200ms\"")).await;
    let resp = h
        .client
        .get(h.url("/stall-body").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let collected = tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect())
        .await
        .expect("the body ended within 10 s");
    assert!(collected.is_err(), "the client sees the body cut short");
}

#[tokio::test]
async fn a_write_without_progress_times_out() {
    // A listener that accepts and never reads: the request body fills the buffers.
    let deaf = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let deaf_addr = deaf.local_addr().unwrap();
    let _held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = deaf.accept().await {
            open.push(stream);
        }
    });
    let mut o = PeerOptions::default();
    o.write_timeout = Some(Duration::from_millis(200));
    o.read_timeout = Some(Duration::from_secs(30));
    let c: UpstreamClient<Full<Bytes>> = UpstreamClient::new(o).unwrap();
    let big = Bytes::from(vec![b'x'; 64 << 20]);
    let req = Request::post("/upload").body(Full::new(big)).unwrap();
    let error = tokio::time::timeout(
        Duration::from_secs(10),
        c.request(&backend_at(deaf_addr), req),
    )
    .await
    .expect("the write timed out within 10 s")
    .unwrap_err();
    assert!(error.is_timeout() && !error.is_connect(), "{error:?}");
}

#[tokio::test]
async fn idle_connections_are_reused_then_closed_after_idle_timeout() {
    let backends = TestBackend::start_many(1).await;
    let (h, _events) = Harness::start(&config(&backends, "idle_timeout = \"300ms\"")).await;
    for _ in 0..3 {
        assert_eq!(h.get("/").await.0, StatusCode::OK);
    }
    assert_eq!(backends[0].connections(), 1, "kept alive and reused");
    // The pool closes the idle connection once idle_timeout passed.
    tokio::time::timeout(Duration::from_secs(10), backends[0].wait_for_closed(1))
        .await
        .expect("the idle connection was closed");
    assert_eq!(h.get("/").await.0, StatusCode::OK);
    assert_eq!(
        backends[0].connections(),
        2,
        "a new connection after the idle timeout"
    );
}

#[tokio::test]
async fn pool_max_idle_zero_opens_a_connection_per_request() {
    let backends = TestBackend::start_many(1).await;
    let (h, _events) = Harness::start(&config(&backends, "pool_max_idle = 0")).await;
    for _ in 0..3 {
        assert_eq!(h.get("/").await.0, StatusCode::OK);
    }
    assert_eq!(backends[0].connections(), 3);
}

#[tokio::test]
async fn bind_sets_the_source_address() {
    let backends = TestBackend::start_many(1).await;
    let (h, _events) = Harness::start(&config(&backends, "bind = \"127.0.0.2\"")).await;
    assert_eq!(h.get("/").await.0, StatusCode::OK);
    let peer = backends[0].last_peer().await.unwrap();
    assert_eq!(peer.ip().to_string(), "127.0.0.2");
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
    let options = config.upstreams["api"].peer_options();
    let tls = options.tls.unwrap();
    assert!(tls.ca.is_some() && tls.client_cert.is_some());
    assert_eq!(tls.alpn.len(), 2);
}
