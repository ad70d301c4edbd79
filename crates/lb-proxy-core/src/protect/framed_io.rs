//! [`FramedIo`]: the client's byte stream as hyper reads it, passed through the
//! [`Framer`](super::framing::Framer) so that a head with ambiguous framing never reaches
//! hyper's parser.
//!
//! Bytes go to hyper only once the scanner has framed them. A head that arrives in one read
//! is checked in hyper's own buffer (no copy); the bytes of a head that is not complete yet
//! are held back in `partial` until it is (hyper's `header_read_timeout` still runs: it
//! starts when hyper waits for a head, not when bytes arrive). A refused head is replaced by
//! a short head of our own (the refused request line when it is harmless, no fields,
//! `Connection: close`), and the refusal is recorded in the connection's
//! [`Activity`] under that request's ordinal, whence [`Activity::enter`] puts it in that
//! request's extensions: [`inspect`](super::inspect) refuses it, the pipeline answers it
//! with the refusal's status instead of forwarding, hyper closes the connection after the
//! answer, and nothing the client sent after the refused head is ever given to hyper.
//! Answers to the requests before it go out first, in order, because hyper handles a
//! connection's requests one at a time.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::conn::Activity;
use super::framing::{Framer, FramingLimits, Refusal, Step};
use super::park::{Parkable, WaitReadable};

/// What is read and discarded at a time once a connection is refused.
const DISCARD_CHUNK: usize = 512;

/// A client connection's reads, checked by the framing scanner.
#[derive(Debug)]
pub(crate) struct FramedIo<I> {
    io: I,
    framer: Framer,
    activity: Arc<Activity>,
    /// Bytes framed but not yet given to hyper (`queue[queued..]`).
    queue: Vec<u8>,
    queued: usize,
    /// The bytes of a head that is not complete yet.
    partial: Vec<u8>,
    /// `header_read_timeout` for the head in `partial`, from its first byte (allocated the
    /// first time a head arrives in pieces, then reused).
    head_timer: Option<Pin<Box<Sleep>>>,
    /// `header_read_timeout`.
    header_timeout: Duration,
    /// A head was refused: nothing more is read into hyper's buffer.
    refused: bool,
}

impl<I> FramedIo<I> {
    /// `io` with its requests' framing checked (`check` false: passed through unchanged,
    /// for HTTP/2 connections).
    pub(crate) fn new(io: I, activity: Arc<Activity>, limits: FramingLimits, check: bool) -> Self {
        let header_timeout = limits.header_timeout;
        let mut framer = Framer::new(limits);
        if !check {
            framer.turn_off();
        }
        Self {
            io,
            framer,
            activity,
            queue: Vec::new(),
            queued: 0,
            partial: Vec::new(),
            head_timer: None,
            header_timeout,
            refused: false,
        }
    }

    /// Copies queued bytes into `buf`; false when there were none.
    fn deliver_queued(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        if self.queued >= self.queue.len() {
            return false;
        }
        let n = buf.remaining().min(self.queue.len() - self.queued);
        buf.put_slice(&self.queue[self.queued..self.queued + n]);
        self.queued += n;
        if self.queued == self.queue.len() {
            self.queue.clear();
            self.queued = 0;
        }
        true
    }

    /// Records the refusal for the request after the heads framed so far (the caller
    /// queues its stand-in head, after the bytes already queued, which precede it).
    fn refuse(&mut self, why: Refusal) {
        self.refused = true;
        let ordinal = self.framer.heads() + 1;
        self.activity.refuse(ordinal, why);
        tracing::debug!(refusal = %why, request = ordinal, "request framing refused");
    }
}

impl<I> FramedIo<I> {
    /// Keeps `bytes`, the start of a head not complete yet; starts its timer when they are
    /// its first bytes.
    fn hold(&mut self, bytes: &[u8]) {
        if self.partial.is_empty() && !bytes.is_empty() {
            self.start_head_timer();
        }
        self.partial.extend_from_slice(bytes);
    }

    /// Starts `header_read_timeout` for the head held from now.
    fn start_head_timer(&mut self) {
        let deadline = Instant::now() + self.header_timeout;
        match &mut self.head_timer {
            Some(timer) => timer.as_mut().reset(deadline),
            None => self.head_timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
    }

    /// While a head is held: an error once `header_read_timeout` has passed since its
    /// first byte (hyper then closes the connection, as its own timer would).
    fn head_expired(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        if self.partial.is_empty() {
            return None;
        }
        let timer = self.head_timer.as_mut()?;
        timer.as_mut().poll(cx).is_ready().then(|| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "request head not complete after header_read_timeout ({:?})",
                    self.header_timeout
                ),
            )
        })
    }
}

impl<I> FramedIo<I> {
    /// Whether hyper's connection state may be released (`park.rs`): HTTP/1.x still
    /// checked (no HTTP/2 preface, no upgrade, no refusal), nothing framed and not yet
    /// given to hyper, and no request in progress. Bytes of a head not complete yet may be
    /// held: they stay here, under their own timer.
    pub(crate) fn parkable(&self) -> bool {
        !self.framer.is_off()
            && !self.refused
            && self.queued >= self.queue.len()
            && self.activity.is_idle_and_not_upgraded()
    }
}

impl<I> FramedIo<I> {
    /// Frees what only a head in progress needs, when none is (a parked connection):
    /// the hold buffer, the framed-bytes queue and the head timer come back on demand.
    pub(crate) fn release_buffers(&mut self) {
        if self.partial.is_empty() {
            self.partial = Vec::new();
            self.head_timer = None;
        }
        if self.queued >= self.queue.len() {
            self.queue = Vec::new();
            self.queued = 0;
        }
    }
}

impl<I> Parkable for FramedIo<I>
where
    I: WaitReadable + AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn parkable(&self) -> bool {
        FramedIo::parkable(self)
    }

    fn release_buffers(&mut self) {
        FramedIo::release_buffers(self);
    }

    /// Ready when the client has bytes (or its end) to read; an error when a connection
    /// timer, or the held head's `header_read_timeout`, ran out. Reads nothing.
    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.head_expired(cx) {
            return Poll::Ready(Err(e));
        }
        self.io.poll_readable(cx)
    }
}

impl<I: AsyncRead + Unpin> FramedIo<I> {
    /// After a refusal: reads and discards what the client still sends (so the socket's
    /// timers and its end are still seen), never giving it to hyper.
    fn discard(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut scratch = [0u8; DISCARD_CHUNK];
        // Bounded: a client that keeps sending is read 16 chunks per wake-up.
        for _ in 0..16 {
            let mut sink = ReadBuf::new(&mut scratch);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut sink))?;
            if sink.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for FramedIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.deliver_queued(buf) {
            return Poll::Ready(Ok(()));
        }
        if this.refused {
            return this.discard(cx);
        }
        if this.framer.is_off() && this.partial.is_empty() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        loop {
            let start = buf.filled().len();
            if Pin::new(&mut this.io).poll_read(cx, buf)?.is_pending() {
                return match this.head_expired(cx) {
                    Some(e) => Poll::Ready(Err(e)),
                    None => Poll::Pending,
                };
            }
            if buf.filled().len() == start {
                // The client closed; an incomplete head is dropped with the connection.
                return Poll::Ready(Ok(()));
            }
            if this.framer.after_upgrade() {
                this.framer.resume(this.activity.is_idle_and_not_upgraded());
            }
            if this.partial.is_empty() {
                let step = this.framer.scan(&buf.filled()[start..]);
                match step {
                    Step::Pass => return Poll::Ready(Ok(())),
                    Step::Partial(n) => {
                        let cut = start + n;
                        this.hold(&buf.filled()[cut..]);
                        buf.set_filled(cut);
                    }
                    Step::Refuse(n, why) => {
                        let cut = start + n;
                        this.refuse(why);
                        stand_in(why, &buf.filled()[cut..], &mut this.queue);
                        buf.set_filled(cut);
                    }
                }
            } else {
                this.partial.extend_from_slice(&buf.filled()[start..]);
                buf.set_filled(start);
                match this.framer.scan(&this.partial) {
                    Step::Pass => {
                        this.queue.extend_from_slice(&this.partial);
                        this.partial.clear();
                    }
                    Step::Partial(0) => {}
                    Step::Partial(n) => {
                        this.queue.extend_from_slice(&this.partial[..n]);
                        this.partial.drain(..n);
                        this.start_head_timer();
                    }
                    Step::Refuse(n, why) => {
                        this.queue.extend_from_slice(&this.partial[..n]);
                        this.refuse(why);
                        stand_in(why, &this.partial[n..], &mut this.queue);
                        this.partial.clear();
                    }
                }
            }
            if buf.filled().len() > start || this.deliver_queued(buf) {
                return Poll::Ready(Ok(()));
            }
            if this.refused {
                return this.discard(cx);
            }
        }
    }
}

/// The head given to hyper in place of a refused one: its request line when that is
/// harmless (three parts of visible ASCII, so the access log names the request), else
/// `GET /`; `Connection: close`, no other field, no body.
fn stand_in(why: Refusal, head: &[u8], out: &mut Vec<u8>) {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = head[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&head[..line_end]);
    let mut parts = line.split(|&b| b == b' ');
    let harmless = why != Refusal::RequestLineTooLong
        && line.len() <= 8192
        && line.split(|&b| b == b' ').count() == 3
        && line.iter().all(|&b| b == b' ' || b.is_ascii_graphic());
    let (method, target) = match (harmless, parts.next(), parts.next()) {
        (true, Some(m), Some(t)) if !m.is_empty() && !t.is_empty() => (m, t),
        _ => (&b"GET"[..], &b"/"[..]),
    };
    out.extend_from_slice(method);
    out.push(b' ');
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\nconnection: close\r\n\r\n");
}

impl<I: AsyncWrite + Unpin> AsyncWrite for FramedIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
