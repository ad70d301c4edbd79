//! [`ClientBody`]: the client's request body with `max_body_size` and `body_read_timeout`
//! enforced while it streams, and [`ClientBodyError`], which tells the pipeline that a
//! failed attempt was the client's fault (answer 413, 408 or 400; no retry, and no blame
//! on the backend in passive health).

use std::error::Error as StdError;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::{Rejection, RequestLimits};
use lb_client::frames::FrameTimer;
use lb_client::UpstreamError;

/// The client's request body, counted and timed as it is read.
///
/// The timer is created the first time the body has to wait for the client (one
/// allocation for such a request) and re-armed, without allocating, each time a wait
/// starts: the limit is on one wait for the client, so time the proxy spends waiting for
/// the backend to take the data never counts against the client.
#[derive(Debug)]
pub(crate) struct ClientBody {
    inner: Incoming,
    received: u64,
    limit: u64,
    timeout: Duration,
    /// Boxed (the body must stay `Unpin` for the replay buffer) and only once a read had
    /// to wait.
    timer: Option<Pin<Box<FrameTimer>>>,
}

/// Why the client's body could not be forwarded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ClientBodyError {
    /// More bytes than `max_body_size`.
    #[error("request body larger than max_body_size ({limit} bytes)")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// No data for `body_read_timeout`.
    #[error("no request body data for body_read_timeout ({0:?})")]
    TimedOut(Duration),
    /// The body was malformed (a bad chunk size, a length mismatch) or the client went away.
    #[error("reading the request body failed")]
    Read(#[source] hyper::Error),
}

impl ClientBody {
    /// `body` under `limits`.
    pub(crate) fn new(body: Incoming, limits: &RequestLimits) -> Self {
        Self {
            inner: body,
            received: 0,
            limit: limits.max_body_size,
            timeout: limits.body_read_timeout,
            timer: None,
        }
    }

    /// The client has sent nothing for a while: time the wait, and fail once it has
    /// lasted `body_read_timeout`.
    fn wait(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        let timeout = self.timeout;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(FrameTimer::new(timeout)));
        timer
            .as_mut()
            .poll_wait(cx)
            .map(|limit| Some(Err(ClientBodyError::TimedOut(limit))))
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => this.wait(cx),
            Poll::Ready(frame) => {
                if let Some(timer) = &mut this.timer {
                    timer.as_mut().stop();
                }
                match frame {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            this.received = this.received.saturating_add(data.len() as u64);
                            if this.received > this.limit {
                                let limit = this.limit;
                                return Poll::Ready(Some(Err(ClientBodyError::TooLarge { limit })));
                            }
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Some(Err(e)) => Poll::Ready(Some(Err(ClientBodyError::Read(e)))),
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl ClientBodyError {
    /// The answer to the client.
    pub(crate) fn rejection(&self) -> Rejection {
        match self {
            Self::TooLarge { .. } => {
                Rejection::new(StatusCode::PAYLOAD_TOO_LARGE, "413 Content Too Large\n")
            }
            Self::TimedOut(_) => Rejection::new(
                StatusCode::REQUEST_TIMEOUT,
                "408 Request Timeout: the request body stalled\n",
            ),
            Self::Read(_) => Rejection::new(
                StatusCode::BAD_REQUEST,
                "400 Bad Request: malformed or incomplete request body\n",
            ),
        }
    }
}

/// The client's body failure behind an upstream attempt's error, if that is what made the
/// attempt fail.
pub(crate) fn client_fault(error: &UpstreamError) -> Option<&ClientBodyError> {
    let mut next: Option<&(dyn StdError + 'static)> = StdError::source(error);
    while let Some(e) = next {
        if let Some(fault) = e.downcast_ref::<ClientBodyError>() {
            return Some(fault);
        }
        next = e.source();
    }
    None
}
