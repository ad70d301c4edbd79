//! A backend connection after `101 Switching Protocols` ([`Upgraded`]): the response to an
//! upgrade request carries it in its extensions ([`OnUpgraded`]), and whoever switches
//! protocols (lb-proxy's WebSocket splice) takes it from there and reads and writes the
//! new protocol on it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use crossbeam_queue::ArrayQueue;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::stream::Stream;

/// The backend's side of an upgraded connection: the bytes that came behind the `101`
/// head are read first, then the connection's. It is never pooled again; dropping it
/// closes the connection.
///
/// Taken from the [`OnUpgraded`] in the extensions of a `101` response from
/// [`UpstreamClient::request`](crate::UpstreamClient::request) when the request asked for
/// an upgrade (`Upgrade` header) over HTTP/1.1:
///
/// ```no_run
/// # async fn demo(
/// #     client: lb_client::UpstreamClient<http_body_util::Empty<bytes::Bytes>>,
/// #     backend: lb_core::Backend,
/// # ) -> Result<(), Box<dyn std::error::Error>> {
/// use tokio::io::AsyncWriteExt;
///
/// let req = http::Request::get("/chat")
///     .header("connection", "upgrade")
///     .header("upgrade", "websocket")
///     .body(http_body_util::Empty::new())?;
/// let mut resp = client.request(&backend, req).await?;
/// let upgraded = resp.extensions().get::<lb_client::OnUpgraded>();
/// if let Some(mut conn) = upgraded.and_then(lb_client::OnUpgraded::take) {
///     conn.write_all(b"the new protocol's bytes").await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Upgraded {
    stream: Stream,
    read: Bytes,
}

/// The extension of a `101` response that holds its [`Upgraded`] connection until someone
/// takes it (response extensions must be `Clone`; the clones share the one connection).
#[derive(Clone, Debug)]
pub struct OnUpgraded(Arc<ArrayQueue<Upgraded>>);

impl Upgraded {
    pub(crate) fn new(stream: Stream, read: Bytes) -> Self {
        Self { stream, read }
    }
}

impl OnUpgraded {
    pub(crate) fn new(upgraded: Upgraded) -> Self {
        let slot = ArrayQueue::new(1);
        let _ = slot.push(upgraded);
        Self(Arc::new(slot))
    }

    /// The connection; `None` once it was taken (through this or a clone).
    pub fn take(&self) -> Option<Upgraded> {
        self.0.pop()
    }
}

impl AsyncRead for Upgraded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read.is_empty() {
            return Pin::new(&mut this.stream).poll_read(cx, buf);
        }
        let n = this.read.len().min(buf.remaining());
        buf.put_slice(&this.read[..n]);
        this.read.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
