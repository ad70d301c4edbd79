//! Protection against hostile clients: `[server.limits]` applied to connections and
//! requests, and the request-smuggling checks that hyper's parser leaves to the proxy.
//! `docs/security.md` maps each threat to its default, its key and its test.
//!
//! - [`Protect`]: built once per proxy from [`ServerLimits`]; configures hyper's connection
//!   builders (head size and count, header timeout, HTTP/2 stream limits), holds the
//!   connection [`Gate`] (`max_connections`) and the connection timers.
//! - [`inspect`] (`head.rs`): the request head before anything acts on it: the framing
//!   check's verdict on it (below), 414, 431, 413 by `Content-Length`, framing and `Host`
//!   checks (400), `CONNECT` (405).
//! - [`ClientBody`] (`body.rs`): the body limit and the body read timeout while streaming;
//!   [`client_fault`] recognises them (and malformed bodies) behind an upstream error.
//! - [`ConnIo`] (`conn.rs`): `keepalive_timeout` and `send_timeout` on the client's socket.
//! - [`FramedIo`] (`framed_io.rs`, with the scanner in `framing/`): HTTP/1.x heads whose
//!   framing a backend could read differently (`Content-Length` with `Transfer-Encoding`,
//!   two `Content-Length`s, bare LF, obs-fold), refused with 400 before hyper parses them;
//!   414 and 431 for request lines and heads past the limits. The refused head's stand-in
//!   request carries the [`Refusal`] in its extensions ([`Activity::enter`]), so the
//!   verdict travels with the request to [`inspect`].
//!
//! Every refusal is a [`Rejection`]: the pipeline answers it (as a closing
//! `LocalResponse`), never forwards the request, and closes the connection.
//! - [`park`]: an idle HTTP/1.x connection (plain or TLS) gives hyper's state back
//!   (about 25 KiB) and keeps only its socket until the client sends again.

mod body;
mod conn;
mod framed_io;
pub(crate) mod framing;
mod gate;
mod head;
pub(crate) mod park;

pub(crate) use body::{client_fault, ClientBody};
pub(crate) use conn::{Activity, ConnIo, ConnTimeouts, TrackedBody};
pub(crate) use framed_io::FramedIo;
pub(crate) use framing::FramingLimits;
pub(crate) use gate::Gate;
pub(crate) use head::inspect;

use std::time::Duration;

use http::StatusCode;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;

use crate::config::ServerLimits;

/// hyper's smallest HTTP/1 read buffer; a head larger than the buffer gets 431.
const MIN_READ_BUFFER: usize = 8192;

/// The limits every request of a connection is held to; `Copy`, handed to the pipeline.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RequestLimits {
    /// Longer request targets get 414.
    pub(crate) max_uri_length: usize,
    /// More header fields get 431.
    pub(crate) max_headers: usize,
    /// Larger bodies get 413 (`u64::MAX`: no limit).
    pub(crate) max_body_size: u64,
    /// A body that waits longer for the client gets 408.
    pub(crate) body_read_timeout: Duration,
}

/// A request the protections refuse: the status and short text of the answer, after which
/// the connection closes (so nothing more the client sent is read as a request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rejection {
    /// The answer's status.
    pub(crate) status: StatusCode,
    /// The answer's body.
    pub(crate) text: &'static str,
}

impl Rejection {
    /// The answer `status` with `text`.
    pub(crate) const fn new(status: StatusCode, text: &'static str) -> Self {
        Self { status, text }
    }
}

/// Everything `[server.limits]` sets up, built once per proxy.
#[derive(Debug)]
pub(crate) struct Protect {
    /// `max_connections`.
    pub(crate) gate: Gate,
    /// `keepalive_timeout` and `send_timeout`.
    pub(crate) timeouts: ConnTimeouts,
    /// The per-request limits.
    pub(crate) request: RequestLimits,
    /// The HTTP/1.x framing check's sizes.
    pub(crate) framing: FramingLimits,
    /// `release_idle_after`: when an idle HTTP/1.x connection parks (`park.rs`).
    pub(crate) park_after: Duration,
}

impl Protect {
    /// The protection `limits` describe.
    pub(crate) fn new(limits: &ServerLimits) -> Self {
        Self::with_gate(limits, Gate::new(limits.max_connections.get()))
    }

    /// Like [`new`](Self::new), counting connections with `gate` (a reload: the
    /// connections of the previous listeners count against the new maximum).
    pub(crate) fn with_gate(limits: &ServerLimits, gate: Gate) -> Self {
        Self {
            gate,
            timeouts: ConnTimeouts {
                keepalive: limits.keepalive_timeout.get(),
                send: limits.send_timeout.get(),
            },
            request: RequestLimits {
                max_uri_length: size(limits.max_uri_length.get_ref().0),
                max_headers: size(u64::from(limits.max_headers.get())),
                max_body_size: limits.body_limit(),
                body_read_timeout: limits.body_read_timeout.get(),
            },
            framing: FramingLimits::new(
                size(limits.max_header_size.0).max(MIN_READ_BUFFER),
                size(limits.max_uri_length.get_ref().0),
                limits.header_read_timeout.get(),
            ),
            park_after: limits.release_idle_after.get(),
        }
    }
}

/// Sets hyper's own limits on `builder` (HTTP/1.1 and HTTP/2 sides): the head size (its
/// read buffer for HTTP/1.1: a larger head gets 431; SETTINGS_MAX_HEADER_LIST_SIZE for
/// HTTP/2), the header count, the header timeout, and the HTTP/2 stream limits.
pub(crate) fn configure(builder: &mut auto::Builder<TokioExecutor>, limits: &ServerLimits) {
    let head = size(limits.max_header_size.0);
    let max_headers = size(u64::from(limits.max_headers.get()));
    builder
        .http1()
        .max_buf_size(head.max(MIN_READ_BUFFER))
        .max_headers(max_headers)
        .header_read_timeout(limits.header_read_timeout.get());
    builder
        .http2()
        .max_header_list_size(u32::try_from(head).unwrap_or(u32::MAX))
        .max_concurrent_streams(limits.h2_max_concurrent_streams.get())
        .max_pending_accept_reset_streams(size(u64::from(
            limits.h2_max_pending_accept_reset_streams.get(),
        )))
        .max_local_error_reset_streams(size(u64::from(
            limits.h2_max_local_error_reset_streams.get(),
        )));
}

fn size(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}
