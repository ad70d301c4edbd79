//! The HTTP/1.x request framing check: a scanner that follows the bytes a client sends, head
//! by head and body by body, and refuses the heads that a proxy and a backend could frame
//! differently, before hyper parses them.
//!
//! hyper's parser is lenient where RFC 9112 allows it: it reads a request with both
//! `Content-Length` and `Transfer-Encoding: chunked` as chunked (section 6.1), keeps one of two
//! identical `Content-Length` fields, and accepts a bare LF as a line end (section 2.2). By
//! the time the proxy sees the parsed request, these are gone. The proxy re-frames every
//! request it forwards, so none of them can smuggle a request to the backend (the hostile
//! tests prove it), but they are the signature of an attack, and the answer is 400 and a
//! closed connection, as nginx and HAProxy in strict mode answer:
//!
//! - both `Content-Length` and `Transfer-Encoding` (RFC 9112 section 6.3 lets a server reject
//!   it, and requires closing the connection after it);
//! - more than one `Content-Length` line, even with the same value;
//! - a `Content-Length` that is not one decimal number, a `Transfer-Encoding` that is not
//!   exactly one `chunked` line, `Transfer-Encoding` on HTTP/1.0;
//! - a bare LF ending a line of the head, and obs-fold (a line starting with a space or tab);
//! - a request line too long for `max_uri_length` (414), and a head larger than
//!   `max_header_size` (431: hyper would stop at its buffer size with 431 also when the
//!   request line is what is too long; the scanner tells the two apart).
//!
//! The scanner works on complete lines: an incomplete head is reported as such, and the caller
//! ([`FramedIo`](super::FramedIo)) keeps its bytes from hyper until the head is complete
//! (a head that arrives in one read, the usual case, is checked in place, with no copy). It
//! follows `Content-Length` bodies by counting and chunked bodies with the grammar hyper's
//! decoder uses; where the chunked grammar is broken, the scanner stops checking the
//! connection (hyper refuses the body itself, and the connection ends), rather than guess
//! where the next head starts. After an `Upgrade` or `CONNECT` request it stops as well,
//! unless the connection is idle and not upgraded when the next bytes arrive. An HTTP/2
//! connection (the prior-knowledge preface) is not checked.
//!
//! Files: the scanner's states and its walk over the input here; a head's lines and fields
//! in `head.rs`; why a head is refused in `refusal.rs`; the fuzz target's wrapper in
//! `check.rs`.

mod check;
mod head;
mod refusal;

pub use check::FramingCheck;
pub(crate) use refusal::Refusal;

use std::time::Duration;

use head::Head;
use lb_client::chunk::{chunk_byte, Chunk, ChunkStep};

/// The HTTP/2 connection preface (RFC 9113 section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How many bytes of a request line can surround the target: the method, two spaces and
/// the version (`max_uri_length` plus this is the longest request line).
const REQUEST_LINE_SLACK: usize = 64;

/// The sizes the scanner enforces, and the time a held head may take.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FramingLimits {
    /// `max_header_size`: a larger head is refused with 431.
    pub(crate) max_head: usize,
    /// The longest request line (`max_uri_length` plus the method and version): 414.
    pub(crate) max_request_line: usize,
    /// `header_read_timeout`, for a head held back until it is complete (hyper's own timer
    /// does not see those bytes).
    pub(crate) header_timeout: Duration,
}

/// What [`Framer::scan`] found in its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// All of the input is framed: it can go to hyper.
    Pass,
    /// `input[..n]` can go to hyper; `input[n..]` is the start of a head not complete yet.
    Partial(usize),
    /// `input[..n]` can go to hyper; the head that starts at `n` is refused.
    Refuse(usize, Refusal),
}

/// Follows a connection's requests; see the [module](self) docs.
#[derive(Debug)]
pub(crate) struct Framer {
    state: State,
    limits: FramingLimits,
    /// No byte seen yet: the HTTP/2 preface is possible.
    first: bool,
    /// Complete heads framed so far (the ordinal of the last one).
    heads: u64,
}

/// Where the scanner is in the client's byte stream.
#[derive(Clone, Copy, Debug)]
enum State {
    /// In a request head (possibly at its first byte).
    Head(Head),
    /// In a `Content-Length` body: this many bytes left.
    Body(u64),
    /// In a chunked body.
    Chunked(Chunk),
    /// After an `Upgrade` or `CONNECT` head: the caller decides (see [`Framer::resume`]).
    AfterUpgrade,
    /// Not checking any more.
    Off,
}

impl Framer {
    /// A scanner for a new connection.
    pub(crate) fn new(limits: FramingLimits) -> Self {
        Self {
            state: State::Head(Head::default()),
            limits,
            first: true,
            heads: 0,
        }
    }

    /// True when the scanner no longer checks anything: bytes can go straight to hyper.
    pub(crate) fn is_off(&self) -> bool {
        matches!(self.state, State::Off)
    }

    /// Stops checking (an HTTP/2 connection, or one the caller leaves to hyper).
    pub(crate) fn turn_off(&mut self) {
        self.state = State::Off;
    }

    /// After an `Upgrade` or `CONNECT` head, when more bytes arrive: `idle` (no request in
    /// progress and the connection not upgraded: the request was answered without a
    /// switch) resumes checking with a new head; anything else stops it.
    pub(crate) fn resume(&mut self, idle: bool) {
        if matches!(self.state, State::AfterUpgrade) {
            self.state = if idle {
                State::Head(Head::default())
            } else {
                State::Off
            };
        }
    }

    /// How many complete heads were framed (and so given to hyper) so far.
    pub(crate) fn heads(&self) -> u64 {
        self.heads
    }

    /// True after an `Upgrade` or `CONNECT` head, until [`resume`](Self::resume).
    pub(crate) fn after_upgrade(&self) -> bool {
        matches!(self.state, State::AfterUpgrade)
    }

    /// Scans `input`, the bytes that follow what was scanned before, except after
    /// [`Step::Partial`]: then `input` starts again at the incomplete head's first byte.
    pub(crate) fn scan(&mut self, input: &[u8]) -> Step {
        let mut at = 0;
        if std::mem::take(&mut self.first) && !input.is_empty() {
            let n = input.len().min(H2_PREFACE.len());
            if input[..n] == H2_PREFACE[..n] {
                if n < H2_PREFACE.len() {
                    self.first = true;
                    return Step::Partial(0);
                }
                self.state = State::Off;
                return Step::Pass;
            }
        }
        while at < input.len() {
            match self.state {
                State::Off | State::AfterUpgrade => return Step::Pass,
                State::Body(left) => {
                    let take = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(input.len() - at);
                    at += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::Head(Head::default())
                    } else {
                        State::Body(left)
                    };
                }
                State::Chunked(chunk) => at = self.chunked(chunk, input, at),
                State::Head(head) => match self.head(head, &input[at..]) {
                    Ok(Some(len)) => at += len,
                    Ok(None) => return Step::Partial(at),
                    Err(why) => return Step::Refuse(at, why),
                },
            }
        }
        Step::Pass
    }

    /// Follows a chunked body from `input[at]`; returns where it stopped.
    fn chunked(&mut self, mut chunk: Chunk, input: &[u8], mut at: usize) -> usize {
        while at < input.len() {
            if let Chunk::Data(left) = chunk {
                let take = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(input.len() - at);
                at += take;
                let left = left - take as u64;
                chunk = if left == 0 {
                    Chunk::DataCr
                } else {
                    Chunk::Data(left)
                };
                continue;
            }
            let byte = input[at];
            at += 1;
            match chunk_byte(chunk, byte) {
                ChunkStep::Next(next) => chunk = next,
                ChunkStep::Done => {
                    self.state = State::Head(Head::default());
                    return at;
                }
                ChunkStep::Invalid => {
                    // hyper refuses the body; where the next head starts is not ours to guess.
                    self.state = State::Off;
                    return input.len();
                }
            }
        }
        self.state = State::Chunked(chunk);
        at
    }
}

impl FramingLimits {
    /// The limits for `max_header_size`, `max_uri_length` and `header_read_timeout`.
    pub(crate) fn new(
        max_header_size: usize,
        max_uri_length: usize,
        header_timeout: Duration,
    ) -> Self {
        Self {
            max_head: max_header_size,
            max_request_line: max_uri_length.saturating_add(REQUEST_LINE_SLACK),
            header_timeout,
        }
    }
}

#[cfg(test)]
mod tests;
