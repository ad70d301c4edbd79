//! The upstream client's own HTTP/1.1 exchange, for the common request: no body and an
//! idempotent method (`GET`, `HEAD`, `OPTIONS`, `DELETE`), no upgrade (see [`eligible`]).
//! Requests with a body or an upgrade still go through hyper's client on the same pooled
//! connections (`client.rs`).
//!
//! Why: with hyper's client, each request crossed a channel to a task of its own that
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
//! it was taken fails on the first write or with an empty read, and the request (which has
//! no body, and whose method is idempotent, RFC 9110 §9.2.2) is sent again on another.

mod body;
mod chunked;
mod response;

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Waker};

use bytes::{Buf, BytesMut};
use http::header::{CONNECTION, TRANSFER_ENCODING, UPGRADE};
use http::{Method, Request};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

pub(crate) use body::OwnBody;
pub(crate) use response::Head;

use super::error::Kind;
use super::stream::Stream;
use super::UpstreamError;
use response::Parsed;

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

/// Whether `req` can take the own exchange: an idempotent method without a body, without
/// `Transfer-Encoding` and without an upgrade.
pub(crate) fn eligible<B: Body>(req: &Request<B>) -> bool {
    matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE
    ) && req.body().is_end_stream()
        && !req.headers().contains_key(UPGRADE)
        && !req.headers().contains_key(TRANSFER_ENCODING)
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

    /// The stream, for hyper's client to take over; `None` if bytes are pending on it.
    pub(crate) fn into_stream(self) -> Option<Stream> {
        self.buf.is_empty().then_some(self.stream)
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

    /// Sends `req`'s head and reads the answer's head. On success the connection is
    /// positioned at the start of the body (`buf` holds what was read of it, unless the
    /// head carries the whole body).
    pub(crate) async fn exchange<B>(&mut self, req: &Request<B>) -> Result<Head, Failure> {
        self.encode(req);
        let written = async {
            self.stream.write_all(&self.out).await?;
            self.stream.flush().await
        };
        if let Err(e) = written.await {
            return Err(Failure::io(e, true));
        }
        let head_request = req.method() == Method::HEAD;
        let mut answered = false;
        // Bounded: every pass consumes a head or reads more bytes, and a head is at most
        // `MAX_HEAD` bytes.
        loop {
            if !self.buf.is_empty() {
                match response::parse(&self.buf, head_request) {
                    Ok(Parsed::Complete(head)) => {
                        let used = head.len + head.body.as_ref().map_or(0, |b| b.len());
                        self.buf.advance(used);
                        return Ok(head);
                    }
                    Ok(Parsed::Informational(len)) => {
                        self.buf.advance(len);
                        continue;
                    }
                    Ok(Parsed::Partial) => {}
                    Err(e) => {
                        return Err(Failure {
                            error: UpstreamError::new(Kind::InvalidResponse, Some(Box::new(e))),
                            unanswered: false,
                        })
                    }
                }
            }
            if self.buf.capacity() - self.buf.len() < READ_SIZE / 4 {
                self.buf.reserve(READ_SIZE);
            }
            let read = poll_fn(|cx| {
                tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.buf)
            })
            .await;
            match read {
                Ok(0) => {
                    let closed = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the backend closed the connection before the end of the response head",
                    );
                    return Err(Failure::io(closed, !answered));
                }
                Ok(_) => answered = true,
                Err(e) => return Err(Failure::io(e, !answered)),
            }
        }
    }

    /// Writes `req`'s head into `out`: request line in origin form, the headers as they
    /// are (the caller set `Host` and stripped hop-by-hop fields).
    fn encode<B>(&mut self, req: &Request<B>) {
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(req.method().as_str().as_bytes());
        out.push(b' ');
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
        out.extend_from_slice(target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in req.headers() {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
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
