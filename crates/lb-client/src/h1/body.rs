//! The response body of an own HTTP/1.1 exchange ([`OwnBody`]): either already whole (it
//! came with the head, or there is none), or streamed from the connection, which goes
//! back to its backend's pool once the body has been read to its end.
//!
//! Reads grow from 8 KiB while they fill the buffer, up to 256 KiB, so a large body takes
//! few system calls and a small one little memory; each frame is handed out without a copy.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::chunked::{Chunked, Step};
use super::response::{Framing, Head};
use super::upload::{Rest, UploadError};
use super::{H1Conn, KeepAlive, READ_SIZE};
use crate::error::Kind;
use crate::UpstreamError;

/// How long a failed body waits before it reports the failure: one timer tick, so that the
/// tasks already woken (the connection's writer among them) run first. Only on failure.
const FAILURE_PAUSE: Duration = Duration::from_millis(1);

/// The largest read while streaming a body.
const MAX_READ: usize = 256 * 1024;

/// A response body read by the own HTTP/1.1 client; `K` is where its connection goes back
/// (the pool's entry of its backend).
pub(crate) struct OwnBody<K> {
    state: State<K>,
}

enum State<K> {
    /// The whole body (`None` once taken, or when there is none).
    Whole(Option<Bytes>),
    /// Streamed from the connection.
    Reading {
        conn: H1Conn,
        framing: Reading,
        /// Where the connection goes back at the end; `None`: it is closed instead.
        back: Option<Arc<K>>,
        read_size: usize,
        /// The request body, still being written (the backend answered early); the
        /// connection goes back only once it is all written.
        rest: Option<Box<dyn Rest>>,
    },
    /// Failed: the error, handed out once `pause` ([`FAILURE_PAUSE`]) is over. What was
    /// passed on before the failure is thus written to the client first, as it is when
    /// the failure comes in a later read: the HTTP/1.1 server flushes while the body is
    /// pending, and an HTTP/2 stream's queued frames (its head, its data), which the reset
    /// that follows the error would drop, go out with its connection's task meanwhile.
    Failed {
        error: Option<UpstreamError>,
        pause: Pin<Box<dyn Future<Output = ()> + Send>>,
    },
    /// Read to its end while the request body is still being written: the last frame
    /// (`None`: the end) waits until the rest is written, then the connection goes back.
    /// The response thus ends after the request did, as on a full-duplex exchange it
    /// should, and the client's body is read to its end.
    /// Boxed: it is rare, and the other states stay small.
    Finishing(Box<Finishing<K>>),
    /// Ended, failed, or its connection is gone.
    Done,
}

/// The state of [`State::Finishing`].
struct Finishing<K> {
    conn: H1Conn,
    back: Option<Arc<K>>,
    rest: Box<dyn Rest>,
    last: Option<Frame<Bytes>>,
}

/// How a streamed body ends.
enum Reading {
    /// After this many more bytes.
    Length(u64),
    /// After the last chunk and the trailers.
    Chunked(Chunked),
    /// When the backend closes the connection.
    Close,
}

impl<K: KeepAlive> OwnBody<K> {
    /// The body after `head`, read on `conn`; `back` is the connection's backend entry when
    /// it may serve another request after this response; `rest` is the request body when
    /// it is still being written (it is written while this body is read).
    pub(crate) fn new(
        conn: H1Conn,
        head: &mut Head,
        back: Option<Arc<K>>,
        rest: Option<Box<dyn Rest>>,
    ) -> Self {
        let back = back.filter(|_| head.keep_alive);
        let framing = match head.framing {
            Framing::Empty | Framing::Length(0) => None,
            _ if head.body.is_some() => None,
            Framing::Length(n) => Some(Reading::Length(n)),
            Framing::Chunked => Some(Reading::Chunked(Chunked::new())),
            Framing::Close => Some(Reading::Close),
        };
        let Some(framing) = framing else {
            let whole = head.body.take().filter(|b| !b.is_empty());
            let Some(rest) = rest else {
                // Whole already: the connection is free before the response is even
                // passed on.
                give_back(conn, back);
                return Self {
                    state: State::Whole(whole),
                };
            };
            return Self {
                state: State::Finishing(Box::new(Finishing {
                    conn,
                    back,
                    rest,
                    last: whole.map(Frame::data),
                })),
            };
        };
        Self {
            state: State::Reading {
                conn,
                framing,
                back,
                read_size: READ_SIZE,
                rest,
            },
        }
    }

    /// A body with nothing in it, on no connection.
    pub(crate) fn empty() -> Self {
        Self {
            state: State::Whole(None),
        }
    }

    /// Ends the body with `last` (a frame, or `None` for the end itself): at once, and the
    /// connection goes back to the pool if it may; or, while the request body is still
    /// being written, after it ([`State::Finishing`]).
    fn finish(
        &mut self,
        cx: &mut Context<'_>,
        last: Option<Frame<Bytes>>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let State::Reading {
            conn, back, rest, ..
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Poll::Ready(last.map(Ok));
        };
        match rest {
            None => {
                give_back(conn, back);
                Poll::Ready(last.map(Ok))
            }
            Some(rest) => {
                self.state = State::Finishing(Box::new(Finishing {
                    conn,
                    back,
                    rest,
                    last,
                }));
                self.poll_finishing(cx)
            }
        }
    }

    /// Writes the rest of the request body, then hands out the last frame.
    fn poll_finishing(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let State::Finishing(finishing) = &mut self.state else {
            return Poll::Ready(None);
        };
        let Finishing { conn, rest, .. } = &mut **finishing;
        let written = ready!(rest.poll_rest(&mut conn.stream, &mut conn.out, cx));
        let State::Finishing(finishing) = std::mem::replace(&mut self.state, State::Done) else {
            return Poll::Ready(None);
        };
        let Finishing {
            conn, back, last, ..
        } = *finishing;
        match written {
            Ok(()) => give_back(conn, back),
            // The backend stopped reading: the answer is whole all the same; the
            // connection is closed.
            Err(UploadError::Io(_)) => {}
            Err(e) => return self.fail(cx, Box::new(e.into_error())),
        }
        Poll::Ready(last.map(Ok))
    }
}

impl<K> OwnBody<K> {
    /// Fails the body (its connection is closed): pending now, the error after a pause.
    fn fail(
        &mut self,
        cx: &mut Context<'_>,
        cause: Box<dyn std::error::Error + Send + Sync>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let mut pause: Pin<Box<dyn Future<Output = ()> + Send>> =
            Box::pin(tokio::time::sleep(FAILURE_PAUSE));
        // Registers the timer (a sleep of at least 1 ms is pending on its first poll).
        let _ = pause.as_mut().poll(cx);
        self.state = State::Failed {
            error: Some(UpstreamError::new(Kind::Body, Some(cause))),
            pause,
        };
        Poll::Pending
    }
}

/// Puts `conn` back in `back`'s queue when it has nothing pending; else drops (closes) it.
fn give_back<K: KeepAlive>(conn: H1Conn, back: Option<Arc<K>>) {
    if let Some(host) = back {
        if conn.buf.is_empty() {
            host.put_own(conn);
        }
    }
}

impl<K: KeepAlive> http_body::Body for OwnBody<K> {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let this = self.get_mut();
        // Bounded: each pass hands out a frame, ends, fails, waits, or reads bytes.
        loop {
            let State::Reading {
                conn,
                framing,
                read_size,
                back,
                rest,
            } = &mut this.state
            else {
                return match &mut this.state {
                    State::Whole(body) => Poll::Ready(body.take().map(|b| Ok(Frame::data(b)))),
                    State::Finishing(_) => this.poll_finishing(cx),
                    State::Failed { error, pause } => {
                        std::task::ready!(pause.as_mut().poll(cx));
                        Poll::Ready(error.take().map(Err))
                    }
                    _ => Poll::Ready(None),
                };
            };
            if let Some(sending) = rest {
                match sending.poll_rest(&mut conn.stream, &mut conn.out, cx) {
                    Poll::Pending => {}
                    Poll::Ready(Ok(())) => *rest = None,
                    // The backend stopped reading the request: its answer goes on, and the
                    // connection is closed after it.
                    Poll::Ready(Err(UploadError::Io(_))) => {
                        *rest = None;
                        *back = None;
                    }
                    Poll::Ready(Err(e)) => return this.fail(cx, Box::new(e.into_error())),
                }
            }
            match framing {
                Reading::Length(left) => {
                    if !conn.buf.is_empty() {
                        let n = usize::try_from(*left)
                            .unwrap_or(usize::MAX)
                            .min(conn.buf.len());
                        let data = conn.buf.split_to(n).freeze();
                        *left -= n as u64;
                        if *left == 0 {
                            return this.finish(cx, Some(Frame::data(data)));
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Reading::Chunked(decoder) => match decoder.step(&mut conn.buf) {
                    Ok(Step::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Step::Trailers(trailers)) => {
                        return this.finish(cx, Some(Frame::trailers(trailers)));
                    }
                    Ok(Step::End) => return this.finish(cx, None),
                    Ok(Step::More) => {}
                    Err(e) => {
                        return this.fail(cx, e.into());
                    }
                },
                Reading::Close => {
                    if !conn.buf.is_empty() {
                        let data = conn.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
            }
            if conn.buf.capacity() - conn.buf.len() < *read_size / 2 {
                conn.buf.reserve(*read_size);
            }
            let spare = conn.buf.capacity() - conn.buf.len();
            let read = tokio_util::io::poll_read_buf(Pin::new(&mut conn.stream), cx, &mut conn.buf);
            match read {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    let closed = matches!(framing, Reading::Close);
                    this.state = State::Done;
                    if closed {
                        return Poll::Ready(None);
                    }
                    let eof = std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the backend closed the connection before the end of the body",
                    );
                    return this.fail(cx, eof.into());
                }
                Poll::Ready(Ok(n)) => {
                    if n == spare {
                        *read_size = (*read_size * 2).min(MAX_READ);
                    }
                }
                Poll::Ready(Err(e)) => return this.fail(cx, e.into()),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            State::Whole(body) => body.is_none(),
            State::Reading { .. } | State::Failed { .. } | State::Finishing(_) => false,
            State::Done => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Whole(body) => SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64)),
            State::Reading {
                framing: Reading::Length(left),
                conn: _,
                ..
            } => SizeHint::with_exact(*left),
            State::Finishing(f) => SizeHint::with_exact(
                f.last
                    .as_ref()
                    .and_then(Frame::data_ref)
                    .map_or(0, |b| b.len() as u64),
            ),
            State::Reading { .. } | State::Failed { .. } => SizeHint::default(),
            State::Done => SizeHint::with_exact(0),
        }
    }
}

impl<K> std::fmt::Debug for OwnBody<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Whole(_) => "whole",
            State::Reading { .. } => "reading",
            State::Failed { .. } => "failed",
            State::Finishing(_) => "finishing",
            State::Done => "done",
        };
        f.debug_struct("OwnBody").field("state", &state).finish()
    }
}
