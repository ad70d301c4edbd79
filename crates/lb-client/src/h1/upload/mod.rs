//! The request body of an own HTTP/1.1 exchange ([`Upload`]): how it is delimited, and
//! writing it behind the head, frame by frame as the caller's body yields them.
//!
//! **Delimiting** (RFC 9112 §6, the way Go's and hyper's clients choose): a request that
//! carries `Transfer-Encoding` must end in `chunked` and is sent chunked as it is (a
//! `Content-Length` beside it is dropped, §6.2); one with `Content-Length` is sent with
//! it, and a body longer or shorter than it fails the request; otherwise a body of known
//! size gets a `Content-Length`, one of unknown size the chunked coding, and an empty
//! body none, except that `POST`, `PUT` and `PATCH` say `Content-Length: 0` (RFC 9110
//! §8.6: their methods give content a meaning).
//!
//! **Writing.** The head and the first frame go out in one vectored write when the frame
//! is already there (a short `POST` costs one system call); after that each frame is one
//! write of its bytes (never copied), with its chunk-size line and line end when chunked,
//! and the last frame carries the last-chunk too. The connection is flushed whenever the
//! body has nothing ready, so the backend sees each frame as it comes.
//!
//! **An answer before the end** ([`Upload::answered`]): after a `2xx` the body goes on (the
//! rest is written beside the answer, `rest.rs`); after any other status it stops.
//!
//! **`Expect: 100-continue`** (RFC 9110 §10.1.1): the head goes out alone and the body is
//! not read until the backend says `100 Continue` ([`Upload::go_ahead`]), answers `2xx`, or
//! [`CONTINUE_WAIT`] passes without an answer. A backend that answers at once with another
//! final status (a `413`, a `401`) thus refuses the upload before a byte of it is read from
//! the client, and the client, whose `100 Continue` hyper's server sends only when the body
//! is first read, is told so before it sends its body too.
//!
//! **Sending again.** While the body has given at most one frame, [`Upload`] keeps it, so a
//! request found on a connection the backend had closed can be sent again on another
//! ([`Upload::rewind`]).

mod declared;
mod queue;
mod rest;
#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::header::HeaderMap;
use http::Request;
use http_body::Body;
use tokio::io::AsyncWrite;

pub(crate) use declared::Added;
pub(crate) use queue::Text;
pub(crate) use rest::{Rest, Uploading};

use crate::error::{BoxError, Kind};
use crate::stream::Stream;
use crate::UpstreamError;
use declared::{Declared, Framing};
use queue::Queue;

/// How long a request with `Expect: 100-continue` waits for the backend's answer before it
/// sends its body anyway (curl and Go's `ExpectContinueTimeout` wait as long).
pub(crate) const CONTINUE_WAIT: Duration = Duration::from_secs(1);

/// The end of a chunk.
const CHUNK_END: &[u8] = b"\r\n";
/// The end of the last data chunk, with the last-chunk and the empty trailer section.
const CHUNK_END_LAST: &[u8] = b"\r\n0\r\n\r\n";

/// Sending one request's body: its framing, where it is, the bytes queued for the
/// connection and what is kept for sending it again.
#[derive(Debug)]
pub(crate) struct Upload {
    /// How the body goes out, as the request declares it.
    declared: Declared,
    /// Bytes still due under `Content-Length`.
    left: u64,
    phase: Phase,
    /// The body's first data frame while it is the only one read, to send again.
    held: Option<Bytes>,
    /// Whether the body ended right after `held`.
    held_last: bool,
    /// `held` is to be written again (another attempt).
    resend: bool,
    /// More of the body than `held` was read: it cannot be sent again.
    spent: bool,
    /// Whether the connection took any byte of this attempt.
    wrote: bool,
    /// A write failed: the rest is not sent (the answer may still be read).
    broken: bool,
    queue: Queue,
}

#[derive(Debug)]
enum Phase {
    /// `Expect: 100-continue`: the head is sent, the body waits for `100 Continue` or the
    /// timer.
    Continue(Option<Pin<Box<tokio::time::Sleep>>>),
    /// Reading the body and writing it.
    Body,
    /// Everything is queued: flush it.
    Ended,
    /// Written and flushed.
    Done,
}

/// Why sending the body stopped.
#[derive(Debug)]
pub(crate) enum UploadError {
    /// Writing to the backend failed.
    Io(io::Error),
    /// The caller's body failed (its error is the source).
    Body(BoxError),
    /// The body does not match its declared length.
    Framing(&'static str),
}

impl Upload {
    /// How `req`'s body goes out; an error for a `Transfer-Encoding` that does not end in
    /// `chunked` or a `Content-Length` that is not one number.
    pub(crate) fn new<B: Body>(req: &Request<B>) -> Result<Self, UpstreamError> {
        let mut upload = Self::done(Declared::of(req)?);
        upload.rewind();
        Ok(upload)
    }

    /// An upload with nothing left to send (what stays behind when the rest of one moves
    /// into the answer's body).
    pub(crate) fn finished() -> Self {
        Self {
            spent: true,
            ..Self::done(Declared::NONE)
        }
    }

    /// An upload of `declared` with nothing queued, done.
    fn done(declared: Declared) -> Self {
        Self {
            declared,
            left: 0,
            phase: Phase::Done,
            held: None,
            held_last: false,
            resend: false,
            spent: false,
            wrote: false,
            broken: false,
            queue: Queue::default(),
        }
    }

    /// Whether the request asks for a protocol upgrade: a `101` is then its answer.
    pub(crate) fn asks_upgrade(&self) -> bool {
        self.declared.upgrade
    }

    /// The header line the head adds.
    pub(crate) fn added(&self) -> Added {
        self.declared.added
    }

    /// Whether the request's `Content-Length` lines are left out of the head.
    pub(crate) fn drops_length(&self) -> bool {
        self.declared.drop_length
    }

    /// Whether the whole request, body included, is written and flushed.
    pub(crate) fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// Whether the body can still be sent after the answer's head arrived: it is being
    /// read and nothing failed (a request waiting for `100 Continue` when a final answer
    /// came never sends its body).
    pub(crate) fn is_streaming(&self) -> bool {
        !self.broken && matches!(self.phase, Phase::Body | Phase::Ended)
    }

    /// The backend said `100 Continue`: send the body.
    pub(crate) fn go_ahead(&mut self) {
        if matches!(self.phase, Phase::Continue(_)) {
            self.phase = Phase::Body;
        }
    }

    /// The final answer's head came. While the body waits for `100 Continue`, a `2xx` (a
    /// backend that answers at once and reads the body as it streams its answer) is taken
    /// as the go-ahead and anything else as the refusal of the body, which is then never
    /// read, as curl does. While the body is being written, a `2xx` lets it go on (the
    /// answer ends only after it), and anything else stops it: the backend answered
    /// without wanting the rest (a `413`, a `401`), and the connection is closed after the
    /// answer.
    pub(crate) fn answered(&mut self, status: http::StatusCode) {
        match self.phase {
            Phase::Continue(_) if status.is_success() => self.phase = Phase::Body,
            Phase::Body | Phase::Ended if !status.is_success() => self.broken = true,
            _ => {}
        }
    }

    /// Whether the request may be sent again on another connection after this attempt
    /// found its connection closed: all of the body read so far is kept, and either the
    /// method is idempotent or the connection took no byte (RFC 9110 §9.2.2).
    pub(crate) fn may_resend(&self, idempotent: bool) -> bool {
        !self.spent && (idempotent || !self.wrote)
    }

    /// Whether any of the body was read (an attempt on HTTP/2 could not send it again).
    pub(crate) fn read_any(&self) -> bool {
        self.spent || self.held.is_some()
    }

    /// Starts over for another attempt (after [`Self::may_resend`]): the head is to be
    /// encoded again, and the kept frame goes out behind it. Also the start of the first.
    pub(crate) fn rewind(&mut self) {
        self.left = match self.declared.framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        self.wrote = false;
        self.broken = false;
        self.resend = self.held.is_some();
        self.queue = Queue::default();
        self.phase = if self.declared.framing == Framing::Empty
            || self.declared.framing == Framing::Length(0)
        {
            Phase::Ended
        } else if self.declared.expect {
            Phase::Continue(None)
        } else {
            Phase::Body
        };
    }

    /// Writes the head in `out`, then as much of the body as is ready, and flushes; ready
    /// once everything is written and flushed. On an error nothing more is sent.
    pub(crate) fn poll_send<B>(
        &mut self,
        stream: &mut Stream,
        out: &mut Vec<u8>,
        mut body: Pin<&mut B>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), UploadError>>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        if self.broken {
            return Poll::Ready(Err(UploadError::Framing("the request was not sent whole")));
        }
        let sent = self.poll_steps(stream, out, body.as_mut(), cx);
        if let Poll::Ready(Err(UploadError::Io(_))) = &sent {
            self.broken = true;
        }
        sent
    }

    fn poll_steps<B>(
        &mut self,
        stream: &mut Stream,
        out: &mut Vec<u8>,
        mut body: Pin<&mut B>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), UploadError>>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        // Bounded: each pass writes bytes, reads a frame, moves to a later phase or waits.
        loop {
            match &mut self.phase {
                Phase::Done => return Poll::Ready(Ok(())),
                Phase::Ended => {
                    ready!(self.poll_out(stream, out, cx))?;
                    self.phase = Phase::Done;
                    return Poll::Ready(Ok(()));
                }
                Phase::Continue(timer) => {
                    let timer =
                        timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(CONTINUE_WAIT)));
                    if timer.as_mut().poll(cx).is_ready() {
                        self.phase = Phase::Body;
                        continue;
                    }
                    ready!(self.poll_out(stream, out, cx))?;
                    return Poll::Pending;
                }
                Phase::Body => {}
            }
            // Reading the body. What is queued of it goes out first; the head alone waits
            // for the first frame, so that both leave in one write.
            if !self.queue.data.is_empty() || !self.queue.tail.is_empty() {
                ready!(self.queue.poll_write(stream, out, &mut self.wrote, cx))
                    .map_err(UploadError::Io)?;
                continue;
            }
            if let Some(held) = self.held.clone().filter(|_| self.resend) {
                // Sending again: the kept frame first, then the rest of the body.
                self.resend = false;
                self.push(out, held, self.held_last)?;
                continue;
            }
            if body.is_end_stream() {
                self.end(out)?;
                continue;
            }
            let frame = match body.as_mut().poll_frame(cx) {
                Poll::Pending => {
                    ready!(self.poll_out(stream, out, cx))?;
                    return Poll::Pending;
                }
                Poll::Ready(None) => {
                    self.end(out)?;
                    continue;
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(UploadError::Body(e.into()))),
                Poll::Ready(Some(Ok(frame))) => frame,
            };
            match frame.into_data() {
                Ok(mut data) => {
                    let bytes = data.copy_to_bytes(data.remaining());
                    if bytes.is_empty() {
                        continue;
                    }
                    let last = body.is_end_stream();
                    if self.held.is_none() && !self.spent {
                        self.held = Some(bytes.clone());
                        self.held_last = last;
                    } else {
                        self.held = None;
                        self.spent = true;
                    }
                    self.push(out, bytes, last)?;
                }
                Err(frame) => {
                    // Trailers end the body; only the chunked coding can carry them.
                    self.spent = true;
                    self.held = None;
                    match frame.into_trailers() {
                        Ok(trailers) if self.declared.framing == Framing::Chunked => {
                            self.end_with_trailers(out, &trailers);
                        }
                        _ => self.end(out)?,
                    }
                }
            }
        }
    }

    /// Queues one data frame; `last`: the body ends with it.
    fn push(&mut self, out: &mut Vec<u8>, data: Bytes, last: bool) -> Result<(), UploadError> {
        let len = data.len() as u64;
        match self.declared.framing {
            Framing::Empty => return Err(UploadError::Framing("a body on a request without one")),
            Framing::Length(_) => {
                if len > self.left {
                    return Err(UploadError::Framing(
                        "the request body is longer than its Content-Length",
                    ));
                }
                self.left -= len;
                self.queue.data = data;
                if last || self.left == 0 {
                    self.end(out)?;
                }
            }
            Framing::Chunked => {
                self.reuse_out(out);
                let _ = write!(Text(out), "{len:X}\r\n");
                self.queue.data = data;
                self.queue.tail = if last { CHUNK_END_LAST } else { CHUNK_END };
                if last {
                    self.phase = Phase::Ended;
                }
            }
        }
        Ok(())
    }

    /// Writes what is queued and flushes the connection.
    fn poll_out(
        &mut self,
        stream: &mut Stream,
        out: &[u8],
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), UploadError>> {
        ready!(self.queue.poll_write(stream, out, &mut self.wrote, cx)).map_err(UploadError::Io)?;
        Pin::new(stream).poll_flush(cx).map_err(UploadError::Io)
    }

    /// The body ended: checks its length, queues the last-chunk when chunked.
    fn end(&mut self, out: &mut Vec<u8>) -> Result<(), UploadError> {
        match self.declared.framing {
            Framing::Length(_) if self.left > 0 => {
                return Err(UploadError::Framing(
                    "the request body is shorter than its Content-Length",
                ))
            }
            Framing::Chunked if self.queue.tail == CHUNK_END_LAST => {}
            Framing::Chunked if !self.queue.tail.is_empty() => self.queue.tail = CHUNK_END_LAST,
            Framing::Chunked => {
                self.reuse_out(out);
                out.extend_from_slice(b"0\r\n\r\n");
            }
            Framing::Empty | Framing::Length(_) => {}
        }
        self.phase = Phase::Ended;
        Ok(())
    }

    /// Queues the last-chunk and `trailers`.
    fn end_with_trailers(&mut self, out: &mut Vec<u8>, trailers: &HeaderMap) {
        self.reuse_out(out);
        out.extend_from_slice(b"0\r\n");
        for (name, value) in trailers {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        self.phase = Phase::Ended;
    }

    /// Empties `out` when all of it was written (the head stays while it is queued).
    fn reuse_out(&mut self, out: &mut Vec<u8>) {
        if self.queue.head == out.len() {
            out.clear();
            self.queue.head = 0;
        }
    }
}

impl UploadError {
    /// The request's error.
    pub(crate) fn into_error(self) -> UpstreamError {
        match self {
            Self::Io(e) => UpstreamError::from_io(e),
            Self::Body(e) => UpstreamError::new(Kind::Request, Some(e)),
            Self::Framing(what) => UpstreamError::new(Kind::Request, Some(what.into())),
        }
    }
}
