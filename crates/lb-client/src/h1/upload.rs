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
//! write of its chunk-size line, its bytes (never copied) and its line end, and the last
//! frame carries the last-chunk too. The connection is flushed whenever the body has
//! nothing ready, so the backend sees each frame as it comes.
//!
//! **`Expect: 100-continue`** (RFC 9110 §10.1.1): the head goes out alone and the body is
//! not read until the backend says `100 Continue` ([`Upload::go_ahead`]) or
//! [`CONTINUE_WAIT`] passes without an answer. A backend that answers at once with a final
//! status (a `413`, a `401`) thus refuses the upload before a byte of it is read from the
//! client, and the client, whose `100 Continue` hyper's server sends only when the body is
//! first read, is told so before it sends its body too.
//!
//! **Sending again.** While the body has given at most one frame, [`Upload`] keeps it, so a
//! request found on a connection the backend had closed can be sent again on another
//! ([`Upload::rewind`]).

use std::fmt::Write as _;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::header::{HeaderMap, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING, UPGRADE};
use http::{Method, Request};
use http_body::Body;
use tokio::io::AsyncWrite;

use crate::error::{BoxError, Kind};
use crate::stream::Stream;
use crate::UpstreamError;

/// How long a request with `Expect: 100-continue` waits for the backend's answer before it
/// sends its body anyway (curl and Go's `ExpectContinueTimeout` wait as long).
pub(crate) const CONTINUE_WAIT: Duration = Duration::from_secs(1);

/// The end of a chunk.
const CHUNK_END: &[u8] = b"\r\n";
/// The end of the last data chunk, with the last-chunk and the empty trailer section.
const CHUNK_END_LAST: &[u8] = b"\r\n0\r\n\r\n";

/// How the request body is delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// The chunked coding.
    Chunked,
}

/// A header line the head needs that the request does not carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Added {
    /// Nothing to add.
    Nothing,
    /// `content-length: N`.
    Length(u64),
    /// `transfer-encoding: chunked`.
    Chunked,
}

/// Sending one request's body: its framing, where it is, the bytes queued for the
/// connection and what is kept for sending it again.
#[derive(Debug)]
pub(crate) struct Upload {
    framing: Framing,
    /// What the head adds to the request's header fields.
    added: Added,
    /// Whether `Content-Length` lines of the request are left out (it has
    /// `Transfer-Encoding`).
    drop_length: bool,
    expect: bool,
    /// Whether the request asks for a protocol upgrade (`Upgrade`).
    upgrade: bool,
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

/// What is queued for the connection: the connection's head buffer from `head` on, then
/// `data`, then `tail`.
#[derive(Debug, Default)]
struct Queue {
    head: usize,
    data: Bytes,
    tail: &'static [u8],
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
        let headers = req.headers();
        let body = req.body();
        // One pass over the names (most requests have none of these) instead of a lookup
        // for each.
        let (mut te, mut cl, mut expect_field, mut upgrade) = (false, false, false, false);
        for name in headers.keys() {
            if name == TRANSFER_ENCODING {
                te = true;
            } else if name == CONTENT_LENGTH {
                cl = true;
            } else if name == EXPECT {
                expect_field = true;
            } else if name == UPGRADE {
                upgrade = true;
            }
        }
        let drop_length = te;
        let (framing, added) = if te {
            if !ends_chunked(headers) {
                return Err(invalid("a Transfer-Encoding that does not end in chunked"));
            }
            (Framing::Chunked, Added::Nothing)
        } else if cl {
            let n = content_length(headers).ok_or_else(|| invalid("an invalid Content-Length"))?;
            (Framing::Length(n), Added::Nothing)
        } else if body.is_end_stream() {
            if matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) {
                (Framing::Length(0), Added::Length(0))
            } else {
                (Framing::Empty, Added::Nothing)
            }
        } else if let Some(n) = body.size_hint().exact() {
            (Framing::Length(n), Added::Length(n))
        } else {
            (Framing::Chunked, Added::Chunked)
        };
        let expect = expect_field
            && headers
                .get(EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let mut send = Self {
            framing,
            added,
            drop_length,
            expect,
            upgrade,
            left: 0,
            phase: Phase::Done,
            held: None,
            held_last: false,
            resend: false,
            spent: false,
            wrote: false,
            broken: false,
            queue: Queue::default(),
        };
        send.reset();
        Ok(send)
    }

    /// An upload with nothing left to send (what stays behind when the rest of one moves
    /// into the answer's body).
    pub(crate) fn finished() -> Self {
        Self {
            framing: Framing::Empty,
            added: Added::Nothing,
            drop_length: false,
            expect: false,
            upgrade: false,
            left: 0,
            phase: Phase::Done,
            held: None,
            held_last: false,
            resend: false,
            spent: true,
            wrote: false,
            broken: false,
            queue: Queue::default(),
        }
    }

    /// Whether the request asks for a protocol upgrade: a `101` is then its answer.
    pub(crate) fn asks_upgrade(&self) -> bool {
        self.upgrade
    }

    /// The header line the head adds.
    pub(crate) fn added(&self) -> Added {
        self.added
    }

    /// Whether the request's `Content-Length` lines are left out of the head.
    pub(crate) fn drops_length(&self) -> bool {
        self.drop_length
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
    /// encoded again, and the kept frame goes out behind it.
    pub(crate) fn rewind(&mut self) {
        self.reset();
    }

    fn reset(&mut self) {
        self.left = match self.framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        self.wrote = false;
        self.broken = false;
        self.resend = self.held.is_some();
        self.queue = Queue::default();
        self.phase = if self.framing == Framing::Empty || self.framing == Framing::Length(0) {
            Phase::Ended
        } else if self.expect {
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
                    ready!(self.poll_queue(stream, out, cx)).map_err(UploadError::Io)?;
                    ready!(Pin::new(&mut *stream).poll_flush(cx)).map_err(UploadError::Io)?;
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
                    ready!(self.poll_queue(stream, out, cx)).map_err(UploadError::Io)?;
                    ready!(Pin::new(&mut *stream).poll_flush(cx)).map_err(UploadError::Io)?;
                    return Poll::Pending;
                }
                Phase::Body => {}
            }
            // Reading the body. What is queued of it goes out first; the head alone waits
            // for the first frame, so that both leave in one write.
            if !self.queue.data.is_empty() || !self.queue.tail.is_empty() {
                ready!(self.poll_queue(stream, out, cx)).map_err(UploadError::Io)?;
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
                    ready!(self.poll_queue(stream, out, cx)).map_err(UploadError::Io)?;
                    ready!(Pin::new(&mut *stream).poll_flush(cx)).map_err(UploadError::Io)?;
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
                        Ok(trailers) if self.framing == Framing::Chunked => {
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
        match self.framing {
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

    /// The body ended: checks its length, queues the last-chunk when chunked.
    fn end(&mut self, out: &mut Vec<u8>) -> Result<(), UploadError> {
        match self.framing {
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

    /// Writes what is queued.
    fn poll_queue(
        &mut self,
        stream: &mut Stream,
        out: &[u8],
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        // Bounded: each pass writes at least one byte or returns.
        loop {
            let q = &mut self.queue;
            let head = out.get(q.head..).unwrap_or_default();
            if head.is_empty() && q.data.is_empty() && q.tail.is_empty() {
                return Poll::Ready(Ok(()));
            }
            let bufs = [
                IoSlice::new(head),
                IoSlice::new(&q.data),
                IoSlice::new(q.tail),
            ];
            let mut n = ready!(Pin::new(&mut *stream).poll_write_vectored(cx, &bufs))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wrote = true;
            let from_head = n.min(head.len());
            q.head += from_head;
            n -= from_head;
            let from_data = n.min(q.data.len());
            q.data.advance(from_data);
            n -= from_data;
            q.tail = q.tail.get(n..).unwrap_or_default();
        }
    }
}

/// The rest of a request body still being written when the answer's head came: the
/// answer's body ([`OwnBody`](super::OwnBody)) drives it on the same connection while it
/// is read, so a backend that answers as it reads (a full-duplex stream) gets all of it.
pub(crate) trait Rest: std::marker::Send {
    /// Writes what is ready of the rest; ready once all of it is written and flushed.
    fn poll_rest(
        &mut self,
        stream: &mut Stream,
        out: &mut Vec<u8>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), UploadError>>;
}

/// An [`Upload`] under way with its body.
pub(crate) struct Uploading<B> {
    pub(crate) upload: Upload,
    pub(crate) body: B,
}

impl<B> Rest for Uploading<B>
where
    B: Body + Unpin + std::marker::Send,
    B::Error: Into<BoxError>,
{
    fn poll_rest(
        &mut self,
        stream: &mut Stream,
        out: &mut Vec<u8>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), UploadError>> {
        self.upload
            .poll_send(stream, out, Pin::new(&mut self.body), cx)
    }
}

/// `fmt::Write` into a byte buffer (for the chunk-size and length lines).
pub(super) struct Text<'a>(pub(super) &'a mut Vec<u8>);

impl std::fmt::Write for Text<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Whether the last coding of the last `Transfer-Encoding` line is `chunked`.
fn ends_chunked(headers: &HeaderMap) -> bool {
    headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .next_back()
        .and_then(|v| v.as_bytes().rsplit(|&b| b == b',').next())
        .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// The one value of the `Content-Length` lines (equal repeats allowed), if valid.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    let mut found = None;
    for line in headers.get_all(CONTENT_LENGTH) {
        for item in line.as_bytes().split(|&b| b == b',') {
            let item = item.trim_ascii();
            if item.is_empty() || !item.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let n: u64 = std::str::from_utf8(item).ok()?.parse().ok()?;
            match found {
                Some(m) if m != n => return None,
                _ => found = Some(n),
            }
        }
    }
    found
}

fn invalid(what: &'static str) -> UpstreamError {
    UpstreamError::new(
        Kind::Request,
        Some(format!("cannot send a request with {what}").into()),
    )
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use bytes::Bytes;
    use http_body_util::{Empty, Full};

    use super::*;

    fn send<B: Body>(req: Request<B>) -> Upload {
        Upload::new(&req).unwrap()
    }

    #[test]
    fn the_framing_follows_the_headers_then_the_body() {
        let full = || Full::new(Bytes::from_static(b"abc"));
        let s = send(Request::post("/").body(full()).unwrap());
        assert_eq!((s.framing, s.added), (Framing::Length(3), Added::Length(3)));
        let s = send(
            Request::post("/")
                .header("content-length", "3")
                .body(full())
                .unwrap(),
        );
        assert_eq!((s.framing, s.added), (Framing::Length(3), Added::Nothing));
        let s = send(
            Request::post("/")
                .header("transfer-encoding", "gzip, chunked")
                .header("content-length", "3")
                .body(full())
                .unwrap(),
        );
        assert_eq!((s.framing, s.added), (Framing::Chunked, Added::Nothing));
        assert!(s.drops_length());
        let s = send(Request::post("/").body(Empty::<Bytes>::new()).unwrap());
        assert_eq!((s.framing, s.added), (Framing::Length(0), Added::Length(0)));
        assert!(matches!(s.phase, Phase::Ended));
        let s = send(Request::get("/").body(Empty::<Bytes>::new()).unwrap());
        assert_eq!((s.framing, s.added), (Framing::Empty, Added::Nothing));
        let s = send(
            Request::put("/")
                .header("expect", "100-Continue")
                .body(full())
                .unwrap(),
        );
        assert!(matches!(s.phase, Phase::Continue(None)));
    }

    #[test]
    fn bad_declarations_are_refused() {
        for (name, value) in [
            ("transfer-encoding", "gzip"),
            ("content-length", "3, 4"),
            ("content-length", "-3"),
            ("content-length", ""),
        ] {
            let req = Request::post("/")
                .header(name, value)
                .body(Empty::<Bytes>::new())
                .unwrap();
            assert!(Upload::new(&req).is_err(), "{name}: {value}");
        }
        let req = Request::post("/")
            .header("content-length", "3, 3")
            .body(Empty::<Bytes>::new())
            .unwrap();
        assert_eq!(Upload::new(&req).unwrap().framing, Framing::Length(3));
    }

    #[test]
    fn chunks_are_framed_and_the_last_carries_the_last_chunk() {
        let mut s = send(
            Request::post("/")
                .header("transfer-encoding", "chunked")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        );
        let mut out = b"HEAD".to_vec();
        s.push(&mut out, Bytes::from_static(b"0123456789abcdef!"), false)
            .unwrap();
        assert_eq!(out, b"HEAD11\r\n", "the size line follows the unsent head");
        assert_eq!(s.queue.tail, CHUNK_END);
        s.queue = Queue {
            head: out.len(),
            ..Queue::default()
        };
        s.push(&mut out, Bytes::from_static(b"xy"), true).unwrap();
        assert_eq!(out, b"2\r\n");
        assert_eq!(s.queue.tail, CHUNK_END_LAST);
        assert!(matches!(s.phase, Phase::Ended));
    }

    #[test]
    fn a_length_is_held_to() {
        let mut s = send(
            Request::post("/")
                .header("content-length", "4")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        );
        let mut out = Vec::new();
        assert!(matches!(
            s.push(&mut out, Bytes::from_static(b"12345"), false),
            Err(UploadError::Framing(_))
        ));
        s.push(&mut out, Bytes::from_static(b"12"), false).unwrap();
        assert!(matches!(s.end(&mut out), Err(UploadError::Framing(_))));
        s.push(&mut out, Bytes::from_static(b"34"), false).unwrap();
        assert!(matches!(s.phase, Phase::Ended), "ends with its length");
    }
}
