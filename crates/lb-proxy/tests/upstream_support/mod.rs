//! Helpers shared by the upstream connection tests (`upstream.rs`,
//! `upstream_connections.rs`): a test PKI, clients built from `PeerOptions`, and servers
//! that misbehave on purpose (a full accept queue, a server that never answers).

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use lb_core::Backend;
use lb_proxy::client::{PeerOptions, TlsOptions, UpstreamClient, UpstreamError};
use lb_testkit::tls::{TestCa, TlsServer};
use lb_testkit::TestBackend;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// A CA, a server certificate for `names` signed by it, and the CA written to a temporary
/// directory (kept alive by the returned `TempDir`).
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: TestCa,
    pub ca_file: PathBuf,
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("upstream test CA");
        let ca_file = ca.write(dir.path(), "ca");
        Self { dir, ca, ca_file }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A TLS backend whose certificate names `names`.
    pub async fn backend(&self, names: &[&str]) -> TestBackend {
        TestBackend::start_tls("tls", TlsServer::new(&self.ca.server_cert(names))).await
    }
}

/// `tls = { ... }` pointing at `ca_file`, plus `more` keys.
pub fn tls_table(ca_file: &Path, more: &str) -> String {
    format!("tls = {{ ca_file = \"{}\"{more} }}", ca_file.display())
}

/// A client with the default options, changed by `options`, for tests that look at errors.
pub fn client(options: impl FnOnce(&mut PeerOptions)) -> UpstreamClient<Empty<Bytes>> {
    let mut o = PeerOptions::default();
    options(&mut o);
    UpstreamClient::new(o).unwrap()
}

/// TLS trusting only the CA in `ca_file`.
pub fn tls_options(ca_file: &Path) -> TlsOptions {
    let mut tls = TlsOptions::default();
    tls.ca = Some(lb_proxy::client::load_certs(ca_file).unwrap());
    tls
}

pub fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(path).body(Empty::new()).unwrap()
}

pub fn backend_at(addr: SocketAddr) -> Backend {
    lb_proxy::client::prepare_backend(&Backend::new(addr))
}

/// Sends through `client` within 10 s and returns the error it fails with.
pub async fn request_error(
    client: &UpstreamClient<Empty<Bytes>>,
    backend: &Backend,
    path: &str,
) -> UpstreamError {
    tokio::time::timeout(Duration::from_secs(10), client.request(backend, get(path)))
        .await
        .expect("the request ended within 10 s")
        .expect_err("the request failed")
}

/// A listener whose accept queue is full: further connects get no answer, as with a
/// black-holed address. Returns the listener and the connections filling it.
pub async fn blackhole() -> (TcpListener, Vec<TcpStream>) {
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

/// A server that reads requests and never answers.
pub async fn silent_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
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
