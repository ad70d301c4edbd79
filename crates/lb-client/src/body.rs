//! Bodies around the pooled client: [`UpstreamBody`] (the response body, from hyper's client
//! or the own HTTP/1.1 one, with the read timeout between frames) and `RequestBody` (the request body, noting when it last made
//! progress so the wait for the response head restarts after each chunk sent).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use lb_core::monotonic_ms;

use super::frames::FrameTimer;
use super::h1::OwnBody;
use super::pool::Host;
use super::UpstreamError;

pin_project_lite::pin_project! {
    /// A response body streamed from a backend. A read that waits longer than the
    /// client's `read_timeout` for the next frame fails with an [`UpstreamError`] whose
    /// `is_timeout()` and `is_body()` are true.
    ///
    /// It holds its timer inline rather than boxed, so it is not `Unpin`: pin it
    /// (`std::pin::pin!`) to call `BodyExt::frame` on it directly. `B` is the request body
    /// type of the [`UpstreamClient`](super::UpstreamClient) it came from: an HTTP/1.1
    /// connection rides along and goes back to that client's pool once the body has been
    /// read to its end (it is closed if the body is dropped before).
    pub struct UpstreamBody<B>
    where
        B: Send,
        B: 'static,
    {
        body: Source<B>,
        #[pin]
        timer: Option<FrameTimer>,
    }
}

/// Where the body comes from: hyper's HTTP/2 client, or the own HTTP/1.1 client.
enum Source<B: Send + 'static> {
    Hyper(Incoming),
    Own(OwnBody<Host<RequestBody<B>>>),
}

impl<B: Send + 'static> Body for Source<B> {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        match self.get_mut() {
            Self::Hyper(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(UpstreamError::from_body),
            Self::Own(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Hyper(body) => body.is_end_stream(),
            Self::Own(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Hyper(body) => body.size_hint(),
            Self::Own(body) => body.size_hint(),
        }
    }
}

impl<B: Send + 'static> UpstreamBody<B> {
    /// A body read by the own HTTP/1.1 client (its connection rides inside it).
    pub(crate) fn own(body: OwnBody<Host<RequestBody<B>>>, timeout: Option<Duration>) -> Self {
        Self {
            body: Source::Own(body),
            timer: timeout.map(FrameTimer::new),
        }
    }

    /// No body (a `101`'s).
    pub(crate) fn empty(timeout: Option<Duration>) -> Self {
        Self::own(OwnBody::empty(), timeout)
    }

    /// A body from hyper's HTTP/2 client.
    pub(crate) fn new(body: Incoming, timeout: Option<Duration>) -> Self {
        Self {
            body: Source::Hyper(body),
            timer: timeout.map(FrameTimer::new),
        }
    }
}

impl<B: Send + 'static> std::fmt::Debug for UpstreamBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("timer", &self.timer)
            .finish_non_exhaustive()
    }
}

impl<B: Send + 'static> Body for UpstreamBody<B> {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let this = self.project();
        let polled = Pin::new(this.body).poll_frame(cx);
        let Some(timer) = this.timer.as_pin_mut() else {
            return polled;
        };
        if polled.is_ready() {
            timer.stop();
            return polled;
        }
        timer
            .poll_wait(cx)
            .map(|limit| Some(Err(UpstreamError::body_timeout(limit))))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body that records, in [`monotonic_ms`], when it last produced a frame or
/// ended. Tracking is off (`None`) for bodies that are empty from the start.
#[derive(Debug)]
pub(crate) struct RequestBody<B> {
    body: B,
    progress: Option<Arc<AtomicU64>>,
}

impl<B> RequestBody<B> {
    pub(crate) fn new(body: B, progress: Option<Arc<AtomicU64>>) -> Self {
        Self { body, progress }
    }
}

impl<B: Body + Unpin> Body for RequestBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Some(p) = &self.progress {
            if matches!(polled, Poll::Ready(Some(Ok(_)) | None)) {
                p.store(monotonic_ms(), Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
