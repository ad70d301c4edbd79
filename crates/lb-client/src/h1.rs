//! The upstream client's own HTTP/1.1 exchange: every request to a backend that speaks
//! HTTP/1.1 (hyper's client serves only HTTP/2). Requests with a body stream it
//! (`upload/`: `Content-Length` or chunked, `Expect: 100-continue`, sent again when the
//! connection was found closed); an answer may come while the body is still being written,
//! and the body then goes on beside the answer's (`body.rs`); a `101` to an upgrade request
//! hands the connection over as an [`Upgraded`] (`upgraded.rs`).
//!
//! Why own: with hyper's client, each request crossed a channel to a task of its own that
//! drove the connection, was encoded from a moved head, and its response head was parsed
//! into a fresh buffer that the next read had to reallocate. Here the request's own task
//! writes the head from a buffer the connection keeps, reads the answer into a buffer that
//! is never shared, and parses it in place (`response.rs`): the head and a short body are
//! copied once into one `Bytes` that the header values and the body share. A connection
//! whose response was read whole with its head goes back to the pool before the response
//! is even handed on; a longer body streams from the connection (`body.rs`, chunked coding
//! in `chunked.rs`) and gives it back at its end.
//!
//! A pooled connection the backend closed while it was idle is noticed without a system
//! call when the reactor already saw it readable ([`H1Conn::is_idle_open`]); one closed as
//! it was taken fails on the first write or with an empty read, and the request is sent
//! again on another when that is safe ([`Upload::may_resend`]: its body so far is kept, and
//! its method is idempotent (RFC 9110 §9.2.2) or no byte of it was written).

mod body;
mod chunked;
mod response;
mod upgraded;
mod upload;

use std::fmt::Write as _;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};

use bytes::{Buf, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH};
use http::{Method, Request};
use http_body::Body;
use tokio::io::{AsyncRead, ReadBuf};

pub(crate) use body::OwnBody;
pub(crate) use response::Head;
pub use upgraded::{OnUpgraded, Upgraded};
pub(crate) use upload::{Rest, Upload, UploadError, Uploading};

use super::error::{BoxError, Kind};
use super::stream::Stream;
use super::UpstreamError;
use response::Parsed;
use upload::{Added, Text};

/// The first read buffer of a connection; a head larger than that grows it.
const READ_SIZE: usize = 8 * 1024;

/// An HTTP/1.1 connection to a backend, between requests or serving one.
#[derive(Debug)]
pub(crate) struct H1Conn {
    stream: Stream,
    /// Bytes read and not yet consumed; empty between requests.
    buf: BytesMut,
    /// The request head being written, kept for the next request.
    out: Vec<u8>,
}

/// A failed exchange, and whether the request may be sent again on another connection
/// (nothing of an answer came back, so on a reused connection the backend most likely
/// closed it as it was taken).
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) error: UpstreamError,
    pub(crate) unanswered: bool,
}

/// Where a connection goes back once its response was read: the pool's entry of its
/// backend (`pool.rs` implements it; this module does not know the pool).
pub(crate) trait KeepAlive {
    /// Queues `conn` (idle, nothing pending on it) for the next request, or drops (closes)
    /// it when there is no room.
    fn put_own(&self, conn: H1Conn);
}

impl H1Conn {
    /// A connection over `stream`, which has carried nothing yet or ended its last
    /// exchange cleanly.
    pub(crate) fn new(stream: Stream) -> Self {
        Self {
            stream,
            buf: BytesMut::with_capacity(READ_SIZE),
            out: Vec::with_capacity(512),
        }
    }

    /// Whether an idle connection is still open and quiet. The backend may not send
    /// anything between responses: any byte or the end of the stream makes it unusable.
    /// Costs no system call unless the reactor saw the socket readable since the last read.
    pub(crate) fn is_idle_open(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        let mut probe = [0u8; 1];
        let mut probe = ReadBuf::new(&mut probe);
        Pin::new(&mut self.stream)
            .poll_read(&mut cx, &mut probe)
            .is_pending()
    }

    /// Sends `req` (its head, then its body as [`Upload`] writes it) and reads the answer's
    /// head, while the body is still being written too: a backend may answer early. On
    /// success the connection is positioned at the start of the answer's body (`buf` holds
    /// what was read of it, unless the head carries the whole body), and `upload` says
    /// whether the request body was sent whole or is still streaming.
    pub(crate) async fn exchange<B>(
        &mut self,
        req: &mut Request<B>,
        upload: &mut Upload,
    ) -> Result<Head, Failure>
    where
        B: Body + Unpin,
        B::Error: Into<BoxError>,
    {
        self.encode(req, upload);
        let head_request = req.method() == Method::HEAD;
        let upgrade = upload.asks_upgrade();
        let mut answered = false;
        let mut write_error = None;
        // Bounded: every pass consumes a head or reads more bytes (a head is at most
        // `MAX_HEAD` bytes); the body's progress is bounded by `Upload`.
        poll_fn(|cx| loop {
            if write_error.is_none() && !upload.is_done() {
                match upload.poll_send(
                    &mut self.stream,
                    &mut self.out,
                    Pin::new(req.body_mut()),
                    cx,
                ) {
                    Poll::Ready(Ok(())) | Poll::Pending => {}
                    // The backend stopped reading and closed: its answer may still be
                    // there to read (a `413` before the close, say).
                    Poll::Ready(Err(UploadError::Io(e))) if closed_by_peer(&e) => {
                        write_error = Some(e);
                    }
                    // A write timeout: the backend does not read, and the request fails.
                    Poll::Ready(Err(UploadError::Io(e))) => {
                        return Poll::Ready(Err(Failure::io(e, !answered)))
                    }
                    Poll::Ready(Err(e)) => {
                        return Poll::Ready(Err(Failure {
                            error: e.into_error(),
                            unanswered: false,
                        }))
                    }
                }
            }
            if !self.buf.is_empty() {
                match response::parse(&self.buf, head_request, upgrade) {
                    Ok(Parsed::Complete(head)) => {
                        let used = head.len + head.body.as_ref().map_or(0, |b| b.len());
                        self.buf.advance(used);
                        return Poll::Ready(Ok(head));
                    }
                    Ok(Parsed::Informational { len, go_ahead }) => {
                        self.buf.advance(len);
                        if go_ahead {
                            upload.go_ahead();
                        }
                        continue;
                    }
                    Ok(Parsed::Partial) => {}
                    Err(e) => {
                        return Poll::Ready(Err(Failure {
                            error: UpstreamError::new(Kind::InvalidResponse, Some(Box::new(e))),
                            unanswered: false,
                        }))
                    }
                }
            }
            if self.buf.capacity() - self.buf.len() < READ_SIZE / 4 {
                self.buf.reserve(READ_SIZE);
            }
            let read = tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.buf);
            match ready!(read) {
                Ok(0) => {
                    let error = write_error.take().unwrap_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the backend closed the connection before the end of the response head",
                        )
                    });
                    return Poll::Ready(Err(Failure::io(error, !answered)));
                }
                Ok(_) => answered = true,
                Err(e) => return Poll::Ready(Err(Failure::io(e, !answered))),
            }
        })
        .await
    }

    /// Writes `req`'s head into `out`: request line in origin form, the headers as they
    /// are (the caller set `Host` and stripped hop-by-hop fields), plus the framing line
    /// `upload` adds.
    fn encode<B>(&mut self, req: &Request<B>, upload: &Upload) {
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(req.method().as_str().as_bytes());
        out.push(b' ');
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
        out.extend_from_slice(target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        let drop_length = upload.drops_length();
        for (name, value) in req.headers() {
            if drop_length && name == CONTENT_LENGTH {
                continue;
            }
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        match upload.added() {
            Added::Nothing => {}
            Added::Length(n) => {
                let _ = write!(Text(out), "content-length: {n}\r\n");
            }
            Added::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The connection, switched to another protocol after a `101`: the stream and the
    /// bytes already read of the new protocol.
    pub(crate) fn into_upgraded(self) -> OnUpgraded {
        OnUpgraded::new(Upgraded::new(self.stream, self.buf.freeze()))
    }
}

/// Whether a write failed because the backend closed the connection (rather than, say,
/// the write timeout).
fn closed_by_peer(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

/// Whether the request asks the backend to close the connection after answering.
pub(crate) fn asks_close<B>(req: &Request<B>) -> bool {
    req.headers().get_all(CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
    })
}

impl Failure {
    fn io(error: io::Error, unanswered: bool) -> Self {
        Self {
            error: UpstreamError::from_io(error),
            unanswered,
        }
    }
}
