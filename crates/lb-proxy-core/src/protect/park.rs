//! Releasing an idle HTTP/1.x connection's state ("parking"), as nginx frees a keep-alive
//! connection's buffers between requests.
//!
//! hyper keeps about 25 KiB per HTTP/1.x connection for as long as it is open: a 16 KiB
//! read buffer, an 8 KiB write buffer, the in-flight slot sized like the service future.
//! It neither frees nor shrinks them while the connection waits for its next request, so
//! a thousand idle keep-alive clients cost 25 MB. An HTTP/1.x connection's task
//! (`parking.rs`: plain listeners, and TLS ones once ALPN chose HTTP/1.1) therefore drops
//! hyper's connection once it has been idle for
//! `release_idle_after` (`[server.limits]`, 10 ms by default), keeps only the socket and its protections (`FramedIo`, `ConnIo`:
//! about 1 KiB with the task), and starts a new hyper connection when the next bytes
//! arrive.
//!
//! [`ParkingIo`] is the stream hyper reads: when the task asks it to park
//! ([`ParkSlot::request`]) and the connection is at rest (no request in progress, nothing
//! framed and not yet read by hyper, no write pending, still HTTP/1.x), its next read
//! reports the end of the stream. hyper ends the connection as if the client had closed
//! it, without a byte lost: nothing unread was taken from the socket. Its shutdown is then
//! not passed to the socket, and when hyper drops the stream, the stream goes back to the
//! [`ParkSlot`] instead of closing.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::ConnIo;

/// A client stream that can be parked: it tells when it is at rest, frees what only a
/// head in progress needs, and waits for the client's next bytes without reading them.
/// [`FramedIo`](super::FramedIo) over any [`WaitReadable`] stream is one.
pub(crate) trait Parkable: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Whether hyper's connection may be released now (see [`FramedIo::parkable`](super::FramedIo::parkable)).
    fn parkable(&self) -> bool;
    /// Frees the buffers a resting connection does not need.
    fn release_buffers(&mut self);
    /// Ready when the client has sent something (or closed); an error when a
    /// connection timer ran out. Reads nothing that hyper would then miss.
    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

/// The stream under a parked [`FramedIo`](super::FramedIo): ready when the client has sent something (or
/// closed), an error when a connection timer ran out; it reads nothing.
pub(crate) trait WaitReadable {
    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl WaitReadable for ConnIo<TcpStream> {
    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ConnIo::poll_readable(self, cx)
    }
}

impl WaitReadable for tokio_rustls::server::TlsStream<ConnIo<TcpStream>> {
    /// Ready at once when rustls holds decrypted bytes not read yet (records that came
    /// with the last read), or the client closed; else when the socket has bytes. rustls
    /// keeps what a resting connection needs (its keys, a 4 KiB record buffer that it
    /// shrinks back to by itself).
    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (io, tls) = self.get_mut();
        match tls.process_new_packets() {
            Ok(state) if state.plaintext_bytes_to_read() == 0 && !state.peer_has_closed() => {}
            // Bytes, the end, or a TLS error: hyper's next read takes it from here.
            _ => return Poll::Ready(Ok(())),
        }
        io.poll_readable(cx)
    }
}

/// Where a parked stream waits for its task; shared by the task and [`ParkingIo`].
#[derive(Debug)]
pub(crate) struct ParkSlot<I> {
    requested: AtomicBool,
    /// Boxed: the task takes it out at once, and an empty slot stays small.
    parked: Mutex<Option<Box<I>>>,
}

/// The stream hyper serves an HTTP/1.x connection over (see the module doc).
#[derive(Debug)]
pub(crate) struct ParkingIo<I> {
    io: Option<I>,
    slot: Arc<ParkSlot<I>>,
    /// A write or flush returned pending and has not completed since.
    writing: bool,
}

impl<I> Default for ParkSlot<I> {
    fn default() -> Self {
        Self {
            requested: AtomicBool::new(false),
            parked: Mutex::new(None),
        }
    }
}

impl<I> ParkSlot<I> {
    /// Asks the stream to end hyper's connection at its next read, if it is at rest then.
    pub(crate) fn request(&self) {
        self.requested.store(true, Ordering::Relaxed);
    }

    /// The parked stream, if hyper's connection ended by parking; resets the request.
    pub(crate) fn take(&self) -> Option<I> {
        self.requested.store(false, Ordering::Relaxed);
        self.parked.lock().take().map(|io| *io)
    }

    fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Relaxed)
    }
}

impl<I: Parkable> ParkingIo<I> {
    /// `io`, parked into `slot` when asked.
    pub(crate) fn new(io: I, slot: Arc<ParkSlot<I>>) -> Self {
        Self {
            io: Some(io),
            slot,
            writing: false,
        }
    }

    /// Runs one write-side operation, noting whether it is left pending.
    fn write_op<T>(
        self: Pin<&mut Self>,
        op: impl FnOnce(Pin<&mut I>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let this = self.get_mut();
        let Some(io) = this.io.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        let polled = op(Pin::new(io));
        this.writing = polled.is_pending();
        polled
    }
}

impl<I: Parkable> AsyncRead for ParkingIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(io) = this.io.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        if this.slot.is_requested() {
            if !this.writing && io.parkable() {
                // The end of the stream, for hyper: it ends the connection cleanly.
                return Poll::Ready(Ok(()));
            }
            // Not at rest after all: the task asks again later.
            this.slot.requested.store(false, Ordering::Relaxed);
        }
        Pin::new(io).poll_read(cx, buf)
    }
}

impl<I: Parkable> AsyncWrite for ParkingIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_op(|io| io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.write_op(|io| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.write_op(|io| io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.slot.is_requested() {
            // Parking: the socket stays open for the next request.
            return Poll::Ready(Ok(()));
        }
        self.write_op(|io| io.poll_shutdown(cx))
    }
}

impl<I> Drop for ParkingIo<I> {
    fn drop(&mut self) {
        if self.slot.is_requested() {
            if let Some(io) = self.io.take() {
                *self.slot.parked.lock() = Some(Box::new(io));
            }
        }
    }
}
