//! The request body sent upstream, replayable for retries.
//!
//! A retry must send the same body again, but the client's body is a stream that can be
//! read once. [`RequestBody::replayable`] keeps the chunks it forwards in a buffer of at
//! most `limit` bytes; a retry then reads the buffered chunks first and continues with the
//! rest of the client's stream. When the body outgrows the buffer, the buffer is dropped (so
//! memory stays bounded) and the request can no longer be retried once any of it was sent:
//! nginx behaves the same way when a body does not fit `client_body_buffer_size`.
//!
//! The client's stream and the buffer live in one shared state; each attempt's body holds a
//! generation number, and an older attempt's body (still owned by a failed connection for a
//! moment) stops reading as soon as a newer one exists, so two attempts never interleave.
//! The state is locked once per chunk (never across an await, uncontended in practice), and
//! only for requests that have a body and may be retried: other requests stream through
//! untouched.
//!
//! [`ReplayPolicy`] is a request's replay policy, owned by its [`Session`](crate::hooks::Session):
//! the hooks set how much of the body may be kept, the pipeline takes each attempt's body
//! from it, and both read whether the request can still be sent again.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use parking_lot::Mutex;

use crate::protect::ClientBody;

/// The error type of a request body.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body on its way to a backend.
#[derive(Debug)]
pub struct RequestBody {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    /// No body (most GET requests): trivially replayable.
    Empty,
    /// Recorded for replay.
    Replay(Replay),
}

#[derive(Debug)]
struct Replay {
    shared: Arc<Mutex<State>>,
    generation: u64,
    /// How many buffered chunks this attempt has sent.
    position: usize,
    hint: SizeHint,
}

#[derive(Debug)]
struct State {
    /// The rest of the client's body (under `[server.limits]`); `None` once it ended.
    rest: Option<ClientBody>,
    chunks: Vec<Bytes>,
    buffered: usize,
    limit: usize,
    /// The body outgrew `limit` (or announced a larger length): nothing is buffered.
    overflowed: bool,
    /// Some of the client's body was read, so an attempt may have sent it.
    read: bool,
    trailers: Option<HeaderMap>,
    /// The newest attempt; older ones stop reading.
    generation: u64,
    /// Reading the client's body failed: a replay would send the part read so far as if
    /// it were the whole body, so there is none.
    failed: bool,
}

/// A request's body and the policy for sending it again.
#[derive(Debug)]
pub(crate) struct ReplayPolicy {
    /// Up to this many bytes of the body are kept for another attempt.
    limit: usize,
    body: Source,
    /// Whether the request could be sent again after the last attempt.
    replayable: bool,
}

/// Where the next attempt's body comes from.
#[derive(Debug)]
enum Source {
    /// The client's body, not read yet: the first attempt records it.
    Unread(ClientBody),
    /// The body as the first attempt recorded it.
    Recorded(RequestBody),
}

/// An older attempt's body was read after a retry started.
#[derive(Debug, thiserror::Error)]
#[error("request body superseded by a retry")]
struct Superseded;

impl Default for ReplayPolicy {
    /// No body, nothing kept (a limit of 0).
    fn default() -> Self {
        Self {
            limit: 0,
            body: Source::Recorded(RequestBody::empty()),
            replayable: true,
        }
    }
}

impl ReplayPolicy {
    /// The client's body, for the attempts to send.
    pub(crate) fn set_body(&mut self, body: ClientBody) {
        self.body = Source::Unread(body);
    }

    /// Keeps up to `bytes` of the body for another attempt (effective until the first
    /// attempt takes the body).
    pub(crate) fn set_limit(&mut self, bytes: usize) {
        self.limit = bytes;
    }

    /// The body for the next attempt: the first records the client's body (up to the
    /// limit), later ones replay it; `None` when it cannot be sent again.
    pub(crate) fn next_body(&mut self) -> Option<RequestBody> {
        if let Source::Recorded(recorded) = &self.body {
            return recorded.replay();
        }
        let recorded = Source::Recorded(RequestBody::empty());
        let Source::Unread(body) = std::mem::replace(&mut self.body, recorded) else {
            return None;
        };
        let recorded = RequestBody::replayable(body, self.limit);
        let first = recorded.replay();
        self.body = Source::Recorded(recorded);
        first
    }

    /// After an attempt: notes, and returns, whether the request can still be sent again.
    pub(crate) fn attempt_sent(&mut self) -> bool {
        self.replayable = match &self.body {
            Source::Recorded(recorded) => recorded.can_replay(),
            Source::Unread(_) => true,
        };
        self.replayable
    }

    /// Whether the request could be sent again after the last attempt.
    pub(crate) fn replayable(&self) -> bool {
        self.replayable
    }
}

impl RequestBody {
    /// An empty body.
    pub(crate) fn empty() -> Self {
        Self {
            inner: Inner::Empty,
        }
    }

    /// The client's body, recording up to `limit` bytes so that it can be sent again.
    pub(crate) fn replayable(body: ClientBody, limit: usize) -> Self {
        if body.is_end_stream() {
            return Self::empty();
        }
        let hint = body.size_hint();
        let overflowed = hint.lower() > limit as u64;
        Self {
            inner: Inner::Replay(Replay {
                shared: Arc::new(Mutex::new(State {
                    rest: Some(body),
                    chunks: Vec::new(),
                    buffered: 0,
                    limit,
                    overflowed,
                    read: false,
                    trailers: None,
                    generation: 0,
                    failed: false,
                })),
                generation: 0,
                position: 0,
                hint,
            }),
        }
    }

    /// The body for another attempt, or `None` when it cannot be sent again (it outgrew
    /// the buffer after part of it was read).
    pub(crate) fn replay(&self) -> Option<Self> {
        match &self.inner {
            Inner::Empty => Some(Self::empty()),
            Inner::Replay(r) => {
                let mut state = r.shared.lock();
                if !state.replayable() {
                    return None;
                }
                state.generation += 1;
                Some(Self {
                    inner: Inner::Replay(Replay {
                        shared: r.shared.clone(),
                        generation: state.generation,
                        position: 0,
                        hint: r.hint,
                    }),
                })
            }
        }
    }

    /// True when the next attempt could be sent with [`replay`](Self::replay).
    pub(crate) fn can_replay(&self) -> bool {
        match &self.inner {
            Inner::Empty => true,
            Inner::Replay(r) => r.shared.lock().replayable(),
        }
    }
}

impl State {
    /// Everything read so far is still buffered (or nothing was read at all), and the
    /// client's body did not fail.
    fn replayable(&self) -> bool {
        !(self.failed || (self.overflowed && self.read))
    }

    /// Keeps `data` for later attempts while it fits the buffer; returns whether it did.
    fn record(&mut self, data: &Bytes) -> bool {
        self.read = true;
        if self.overflowed {
            return false;
        }
        if self.buffered + data.len() > self.limit {
            self.overflowed = true;
            self.chunks = Vec::new();
            self.buffered = 0;
            return false;
        }
        self.buffered += data.len();
        self.chunks.push(data.clone());
        true
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().inner {
            Inner::Empty => Poll::Ready(None),
            Inner::Replay(r) => r.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Empty => true,
            Inner::Replay(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Empty => SizeHint::with_exact(0),
            Inner::Replay(r) => r.hint,
        }
    }
}

impl Replay {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut state = self.shared.lock();
        if state.generation != self.generation {
            return Poll::Ready(Some(Err(Superseded.into())));
        }
        if let Some(chunk) = state.chunks.get(self.position) {
            self.position += 1;
            return Poll::Ready(Some(Ok(Frame::data(chunk.clone()))));
        }
        let Some(rest) = state.rest.as_mut() else {
            return Poll::Ready(state.trailers.clone().map(|t| Ok(Frame::trailers(t))));
        };
        let polled = Pin::new(rest).poll_frame(cx);
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                state.rest = None;
                Poll::Ready(state.trailers.clone().map(|t| Ok(Frame::trailers(t))))
            }
            Poll::Ready(Some(Err(e))) => {
                state.rest = None;
                state.failed = true;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(Some(Ok(frame))) => {
                let frame = match frame.into_data() {
                    Ok(data) => {
                        if state.record(&data) {
                            self.position += 1;
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Err(frame) => frame,
                };
                if let Some(t) = frame.trailers_ref() {
                    state.trailers = Some(t.clone());
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }
}
