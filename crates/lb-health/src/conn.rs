//! Opening the transport of a check: TCP or a Unix socket, with an optional port override;
//! and the host part of a backend's configured name (for SNI and `Host`).
//!
//! Shared by the TLS and HTTP checks (compiled with feature `tls` or `http`; the plain TCP
//! check only connects and needs none of this). They speak over whatever the backend
//! address is. A boxed stream keeps one code path for both kinds of socket (the box costs
//! one allocation per check, nothing next to a connect). `TCP_NODELAY` is set because
//! checks send one small request and wait for the answer: Nagle's algorithm would only add
//! latency.

use std::net::SocketAddr;

use lb_core::BackendAddr;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use crate::CheckFailure;

/// A byte stream a check can talk over.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A boxed transport.
pub(crate) type BoxIo = Box<dyn Io>;

/// Connects to the backend (TCP with `TCP_NODELAY`, or its Unix socket); `port`, if
/// given, replaces the port of a TCP address and is ignored for a Unix socket.
pub(crate) async fn connect(addr: &BackendAddr, port: Option<u16>) -> Result<BoxIo, CheckFailure> {
    match addr {
        BackendAddr::Inet(inet) => {
            let inet = port.map_or(*inet, |p| SocketAddr::new(inet.ip(), p));
            let stream = TcpStream::connect(inet)
                .await
                .map_err(CheckFailure::Connect)?;
            // Only a latency tweak: a socket that refuses it still works.
            let _ = stream.set_nodelay(true);
            Ok(Box::new(stream))
        }
        BackendAddr::Unix(path) => Ok(Box::new(
            UnixStream::connect(path)
                .await
                .map_err(CheckFailure::Connect)?,
        )),
    }
}

/// The host part of a configured `host:port` or `[v6]:port` name.
pub(crate) fn host_of(name: &str) -> &str {
    let host = name.rsplit_once(':').map_or(name, |(host, _)| host);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}
