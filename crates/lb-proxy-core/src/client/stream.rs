//! A connection to a backend: TCP or Unix, optionally inside TLS, with the write timeout
//! enforced at the stream (a write that makes no progress for that long fails).
//!
//! Only writes are timed here: an idle pooled connection never writes, so the timer never
//! runs while it waits. Reads are timed per request (see `body.rs` and the client).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::{Instant, Sleep};
use tokio_rustls::client::TlsStream;

use super::error::WriteTimeout;

/// A plain byte stream to a backend.
#[derive(Debug)]
pub(crate) enum Plain {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// The transport of a [`Stream`].
#[derive(Debug)]
pub(crate) enum Io {
    Plain(Plain),
    Tls(Box<TlsStream<Plain>>),
}

/// A connection as the HTTP client sees it.
#[derive(Debug)]
pub(crate) struct Stream {
    io: Io,
    h2: bool,
    write_timeout: Option<Duration>,
    /// Armed when a write returns pending; disarmed by any write progress. Boxed once
    /// per connection, on the first write that has to wait.
    write_timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl Stream {
    pub(crate) fn new(io: Io, h2: bool, write_timeout: Option<Duration>) -> Self {
        Self {
            io,
            h2,
            write_timeout,
            write_timer: None,
            armed: false,
        }
    }

    /// Runs one write-side operation under the write timeout.
    fn timed<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut Io>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let polled = op(Pin::new(&mut self.io), cx);
        let Some(limit) = self.write_timeout else {
            return polled;
        };
        if polled.is_ready() {
            self.armed = false;
            return polled;
        }
        let deadline = Instant::now() + limit;
        let timer = match &mut self.write_timer {
            Some(timer) => {
                if !self.armed {
                    timer.as_mut().reset(deadline);
                }
                timer
            }
            None => self
                .write_timer
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        self.armed = true;
        ready!(timer.as_mut().poll(cx));
        self.armed = false;
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            WriteTimeout(limit),
        )))
    }
}

impl Stream {
    /// True when TLS negotiated HTTP/2 (ALPN `h2`).
    pub(crate) fn is_h2(&self) -> bool {
        self.h2
    }
}

macro_rules! plain {
    ($self:expr, $s:ident => $body:expr) => {
        match $self {
            Plain::Tcp($s) => $body,
            Plain::Unix($s) => $body,
        }
    };
}

macro_rules! io {
    ($self:expr, $s:ident => $body:expr) => {
        match $self {
            Io::Plain($s) => $body,
            Io::Tls($s) => $body,
        }
    };
}

impl AsyncRead for Plain {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        plain!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Plain {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        plain!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        plain!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        plain!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        plain!(self.get_mut(), s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        plain!(self, s => s.is_write_vectored())
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        io!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        io!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        io!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        io!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        io!(self.get_mut(), s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        io!(self, s => s.is_write_vectored())
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().timed(cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().timed(cx, |io, cx| io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().timed(cx, |io, cx| io.poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .timed(cx, |io, cx| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    /// A peer that never reads fills the socket buffers; the next write then fails after
    /// the write timeout instead of waiting forever.
    #[tokio::test]
    async fn a_write_without_progress_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (_peer, _) = server.unwrap();
        let limit = Duration::from_millis(100);
        let mut stream = Stream::new(Io::Plain(Plain::Tcp(client.unwrap())), false, Some(limit));
        let chunk = vec![0u8; 1 << 16];
        let started = std::time::Instant::now();
        let error = tokio::time::timeout(Duration::from_secs(10), async {
            // Bounded: loopback buffers hold a few MiB at most.
            for _ in 0..100_000 {
                if let Err(e) = stream.write_all(&chunk).await {
                    return e;
                }
            }
            panic!("100_000 writes to a peer that never reads all succeeded");
        })
        .await
        .expect("the write timeout fired");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(error.get_ref().is_some_and(|e| e.is::<WriteTimeout>()));
        assert!(started.elapsed() >= limit);
    }
}
