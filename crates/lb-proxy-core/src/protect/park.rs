//! Releasing an idle HTTP/1.x connection's state ("parking"), as nginx frees a keep-alive
//! connection's buffers between requests.
//!
//! hyper keeps about 25 KiB per HTTP/1.x connection for as long as it is open: a 16 KiB
//! read buffer, an 8 KiB write buffer, the in-flight slot sized like the service future.
//! It neither frees nor shrinks them while the connection waits for its next request, so
//! a thousand idle keep-alive clients cost 25 MB. A plain listener's connection task
//! (`parking.rs`) therefore drops hyper's connection once it has been idle for
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

use super::{ConnIo, FramedIo};

/// The client stream of a plain listener's connection.
pub(crate) type PlainIo = FramedIo<ConnIo<TcpStream>>;

/// Where a parked stream waits for its task; shared by the task and [`ParkingIo`].
#[derive(Debug, Default)]
pub(crate) struct ParkSlot {
    requested: AtomicBool,
    /// Boxed: the task takes it out at once, and an empty slot stays small.
    parked: Mutex<Option<Box<PlainIo>>>,
}

/// The stream hyper serves a plain HTTP/1.x connection over (see the module doc).
#[derive(Debug)]
pub(crate) struct ParkingIo {
    io: Option<PlainIo>,
    slot: Arc<ParkSlot>,
    /// A write or flush returned pending and has not completed since.
    writing: bool,
}

impl ParkSlot {
    /// Asks the stream to end hyper's connection at its next read, if it is at rest then.
    pub(crate) fn request(&self) {
        self.requested.store(true, Ordering::Relaxed);
    }

    /// The parked stream, if hyper's connection ended by parking; resets the request.
    pub(crate) fn take(&self) -> Option<PlainIo> {
        self.requested.store(false, Ordering::Relaxed);
        self.parked.lock().take().map(|io| *io)
    }

    fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Relaxed)
    }
}

impl ParkingIo {
    /// `io`, parked into `slot` when asked.
    pub(crate) fn new(io: PlainIo, slot: Arc<ParkSlot>) -> Self {
        Self {
            io: Some(io),
            slot,
            writing: false,
        }
    }

    /// Runs one write-side operation, noting whether it is left pending.
    fn write_op<T>(
        self: Pin<&mut Self>,
        op: impl FnOnce(Pin<&mut PlainIo>) -> Poll<io::Result<T>>,
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

impl AsyncRead for ParkingIo {
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

impl AsyncWrite for ParkingIo {
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

impl Drop for ParkingIo {
    fn drop(&mut self) {
        if self.slot.is_requested() {
            if let Some(io) = self.io.take() {
                *self.slot.parked.lock() = Some(Box::new(io));
            }
        }
    }
}
