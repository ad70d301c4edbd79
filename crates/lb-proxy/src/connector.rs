//! Opens connections to backends for the upstream HTTP client.
//!
//! The client addresses a backend by the authority of the request URI. TCP backends use
//! their socket address as the authority; Unix socket backends use a hex encoding of the
//! path under the reserved `.unix.invalid` name, so one pool keyed by authority serves both.

use std::future::Future;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use lb_core::BackendAddr;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

const UNIX_SUFFIX: &str = ".unix.invalid";

/// The URI authority of a backend, computed once when the upstream is built and carried in
/// the backend's metadata, so the request path clones it instead of formatting an address.
#[derive(Clone, Debug)]
pub(crate) struct UpstreamAuthority(pub(crate) http::uri::Authority);

/// The [`UpstreamAuthority`] of `backend` (none if its address cannot be one).
pub(crate) fn upstream_authority(backend: &lb_core::Backend) -> Option<UpstreamAuthority> {
    http::uri::Authority::try_from(authority(backend.addr()))
        .ok()
        .map(UpstreamAuthority)
}

/// The URI authority the client uses for `addr`.
pub(crate) fn authority(addr: &BackendAddr) -> String {
    match addr {
        BackendAddr::Inet(a) => a.to_string(),
        BackendAddr::Unix(path) => {
            let bytes = path.as_os_str().as_encoded_bytes();
            let mut s = String::with_capacity(bytes.len() * 2 + UNIX_SUFFIX.len());
            for b in bytes {
                s.push_str(&format!("{b:02x}"));
            }
            s.push_str(UNIX_SUFFIX);
            s
        }
    }
}

fn unix_path(host: &str) -> Option<PathBuf> {
    let hex = host.strip_suffix(UNIX_SUFFIX)?;
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    bytes.map(|b| PathBuf::from(std::ffi::OsString::from_vec(b)))
}

/// Connects to the backend named by a URI authority, within a timeout.
#[derive(Clone, Debug)]
pub(crate) struct Connector {
    pub(crate) timeout: Duration,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<Stream>>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let timeout = self.timeout;
        Box::pin(async move {
            let host = uri.host().unwrap_or_default();
            let connect = async {
                if let Some(path) = unix_path(host) {
                    return UnixStream::connect(path).await.map(Stream::Unix);
                }
                let addr = uri
                    .authority()
                    .and_then(|a| a.as_str().parse::<std::net::SocketAddr>().ok())
                    .ok_or_else(|| {
                        io::Error::new(io::ErrorKind::InvalidInput, "not a backend address")
                    })?;
                let stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                Ok(Stream::Tcp(stream))
            };
            match tokio::time::timeout(timeout, connect).await {
                Ok(result) => result.map(TokioIo::new),
                Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
            }
        })
    }
}

/// A connection to a backend.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

macro_rules! delegate {
    ($self:ident, $method:ident($($arg:expr),*)) => {
        match $self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).$method($($arg),*),
            Stream::Unix(s) => Pin::new(s).$method($($arg),*),
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;

    #[test]
    fn unix_paths_round_trip_through_the_authority() {
        let addr = BackendAddr::Unix(Arc::from(Path::new("/run/app v2.sock")));
        let auth = authority(&addr);
        let uri: Uri = format!("http://{auth}/x").parse().unwrap();
        assert_eq!(
            unix_path(uri.host().unwrap()),
            Some(PathBuf::from("/run/app v2.sock"))
        );
        assert_eq!(unix_path("127.0.0.1"), None);
    }
}
