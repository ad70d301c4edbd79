//! Per-connection protection (the connection limit is `gate.rs`): [`ConnIo`], the client's
//! socket with two timers, `keepalive_timeout` (no request in progress for that long) and
//! `send_timeout` (a write to the client that makes no progress for that long: a client
//! that does not read its response).
//!
//! A connection's requests mark it busy through [`Activity::enter`]; the mark is held by
//! the response body ([`TrackedBody`]) until the body ends. An upgraded connection
//! (WebSocket) is left to the splice's own `upgrade_idle_timeout`.
//!
//! Cost: a connection allocates its timer and its [`Activity`] once; a request adds two
//! atomic operations on the busy count and one clock read when the connection goes idle.
//! The timer is never re-armed per read or write: it wakes at most once per
//! `min(keepalive_timeout, send_timeout)` to compare the deadlines with the clock, and it
//! is polled again only when it fired or another task polls the socket.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use std::future::Future;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

use lb_client::frames::{Finish, OnEnd};

use super::framing::Refusal;

/// The timers of a client connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnTimeouts {
    /// No request in progress for this long: close.
    pub(crate) keepalive: Duration,
    /// A write to the client that makes no progress for this long: close.
    pub(crate) send: Duration,
}

/// What a connection's requests tell its socket: whether any is in progress, since when
/// none is, and whether the connection was upgraded.
#[derive(Debug)]
pub(crate) struct Activity {
    base: Instant,
    busy: AtomicUsize,
    /// Milliseconds after `base` when the last request ended.
    idle_since_ms: AtomicU64,
    upgraded: AtomicBool,
    /// Requests begun on the connection (the ordinal of the last one).
    requests: AtomicU64,
    /// A head refused by the framing check (`framed_io.rs`): the ordinal of the request
    /// standing in for it, shifted left 8 bits, and the refusal's code; 0 if none.
    refused: AtomicU64,
}

/// A request in progress on its connection; dropped when its response body ends.
#[derive(Debug)]
pub(crate) struct Busy {
    activity: Arc<Activity>,
}

/// A response body that keeps its connection busy until it ends or is dropped.
pub(crate) type TrackedBody<B> = OnEnd<B, Busy>;

/// The client's socket, closed with `TimedOut` when a connection timer runs out. Holds the
/// connection's permit, so the slot is free again when the socket is dropped.
#[derive(Debug)]
pub(crate) struct ConnIo<I> {
    io: I,
    activity: Arc<Activity>,
    timeouts: ConnTimeouts,
    /// When the first write that is still pending was attempted.
    write_stalled: Option<Instant>,
    timer: Pin<Box<Sleep>>,
    /// The waker `timer` was last polled with, while it has not fired since: polling it
    /// again with the same waker would change nothing (see [`ConnIo::expired`]).
    registered: Option<Waker>,
    _permit: OwnedSemaphorePermit,
}

/// Why [`ConnIo`] closed the connection (the `io::Error`'s inner error).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnTimeout {
    /// No request for `keepalive_timeout`.
    #[error("no request for keepalive_timeout ({0:?})")]
    Idle(Duration),
    /// The client took no response data for `send_timeout`.
    #[error("the client read nothing for send_timeout ({0:?})")]
    Send(Duration),
}

impl Activity {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            busy: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            upgraded: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Marks a request in progress until the returned guard is dropped. A request that
    /// stands in for a head the framing check refused gets the [`Refusal`] in its
    /// `extensions` (an allocation for that request only): the verdict travels with the
    /// request to [`inspect`](super::inspect), which refuses it.
    pub(crate) fn enter(self: &Arc<Self>, extensions: &mut http::Extensions) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        let ordinal = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(why) = self.refusal(ordinal) {
            extensions.insert(why);
        }
        Busy {
            activity: self.clone(),
        }
    }

    /// The framing check's refusal, when the request with `ordinal` stands in for a
    /// refused head.
    fn refusal(&self, ordinal: u64) -> Option<Refusal> {
        let refused = self.refused.load(Ordering::Acquire);
        if refused == 0 || refused >> 8 != ordinal {
            return None;
        }
        Refusal::from_code((refused & 0xff) as u8)
    }

    /// Records that the request with `ordinal` stands in for a head the framing check
    /// refused (there is at most one per connection: nothing is read after it).
    pub(crate) fn refuse(&self, ordinal: u64, why: Refusal) {
        self.refused
            .store((ordinal << 8) | u64::from(why.code()), Ordering::Release);
    }

    /// No request in progress and the connection not upgraded.
    pub(crate) fn is_idle_and_not_upgraded(&self) -> bool {
        self.busy.load(Ordering::Relaxed) == 0 && !self.upgraded.load(Ordering::Relaxed)
    }

    /// When the connection became idle, if it is.
    /// How long the connection has been idle at `now`; `None` while a request is in
    /// progress or after an upgrade.
    pub(crate) fn idle_for(&self, now: Instant) -> Option<Duration> {
        if self.upgraded.load(Ordering::Relaxed) {
            return None;
        }
        self.idle_since()
            .map(|since| now.saturating_duration_since(since))
    }

    fn idle_since(&self) -> Option<Instant> {
        if self.busy.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let ms = self.idle_since_ms.load(Ordering::Relaxed);
        Some(self.base + Duration::from_millis(ms))
    }
}

impl Busy {
    /// The connection was upgraded (101): its timers no longer apply (the splice has its
    /// own `upgrade_idle_timeout`).
    pub(crate) fn set_upgraded(&self) {
        self.activity.upgraded.store(true, Ordering::Relaxed);
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.activity.busy.fetch_sub(1, Ordering::Relaxed) == 1 {
            let ms = u64::try_from(self.activity.base.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.activity.idle_since_ms.store(ms, Ordering::Relaxed);
        }
    }
}

/// The mark's drop is its whole job, at the end or not.
impl Finish for Busy {}

impl<I> ConnIo<I> {
    /// `io` with the connection timers, holding `permit` until dropped; the `Activity` is
    /// for the connection's requests.
    pub(crate) fn new(
        io: I,
        timeouts: ConnTimeouts,
        permit: OwnedSemaphorePermit,
    ) -> (Self, Arc<Activity>) {
        let activity = Arc::new(Activity::new());
        let first = Instant::now() + timeouts.keepalive.min(timeouts.send);
        let io = Self {
            io,
            activity: activity.clone(),
            timeouts,
            write_stalled: None,
            timer: Box::pin(tokio::time::sleep_until(first)),
            registered: None,
            _permit: permit,
        };
        (io, activity)
    }

    /// Polls the timer; `Some` when a limit has run out. When it fires early (the
    /// connection was busy, or became idle later), it is moved to the next deadline.
    ///
    /// Called whenever the socket is not ready, several times per request: while the timer
    /// is registered with this task's waker and has not fired, there is nothing to do (an
    /// atomic load instead of a poll, which also takes from the task's cooperative budget).
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        if !self.timer.is_elapsed()
            && self
                .registered
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
        {
            return None;
        }
        self.registered = None;
        // Two rounds at most: the second deadline is always in the future.
        for _ in 0..2 {
            // Without budget, the poll returns `Pending` without registering the timer.
            let registers = tokio::task::coop::has_budget_remaining();
            if self.timer.as_mut().poll(cx).is_pending() {
                if registers {
                    self.registered = Some(cx.waker().clone());
                }
                return None;
            }
            let now = Instant::now();
            let mut next = now + self.timeouts.keepalive.min(self.timeouts.send);
            if !self.activity.upgraded.load(Ordering::Relaxed) {
                if let Some(since) = self.write_stalled {
                    let deadline = since + self.timeouts.send;
                    if deadline <= now {
                        return Some(timed_out(ConnTimeout::Send(self.timeouts.send)));
                    }
                    next = next.min(deadline);
                }
                if let Some(since) = self.activity.idle_since() {
                    let deadline = since + self.timeouts.keepalive;
                    if deadline <= now {
                        return Some(timed_out(ConnTimeout::Idle(self.timeouts.keepalive)));
                    }
                    next = next.min(deadline);
                }
            }
            self.timer.as_mut().reset(next);
        }
        None
    }

    fn written(
        &mut self,
        polled: Poll<io::Result<usize>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        match polled {
            Poll::Pending => {
                self.write_stalled.get_or_insert_with(Instant::now);
                match self.expired(cx) {
                    Some(e) => Poll::Ready(Err(e)),
                    None => Poll::Pending,
                }
            }
            ready => {
                self.write_stalled = None;
                ready
            }
        }
    }
}

fn timed_out(why: ConnTimeout) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, why)
}

impl ConnIo<tokio::net::TcpStream> {
    /// Ready when the socket has bytes (or its end) to read; an error when a timer ran out.
    /// Reads nothing: a released (parked) connection waits here for its next request.
    pub(crate) fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.io.poll_read_ready(cx) {
            Poll::Pending => match self.expired(cx) {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            },
            ready => ready,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for ConnIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Pending => match this.expired(cx) {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            },
            ready => ready,
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for ConnIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.written(polled, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.written(polled, cx)
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
