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

use std::fmt;
use std::time::Duration;

use crate::chunk::{chunk_byte, Chunk, ChunkStep};

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

/// Why a head was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Refusal {
    /// Both `Content-Length` and `Transfer-Encoding`.
    LengthAndChunked = 1,
    /// More than one `Content-Length` line.
    DuplicateLength,
    /// A `Content-Length` that is not one decimal number.
    InvalidLength,
    /// A `Transfer-Encoding` other than one line saying `chunked`, or on HTTP/1.0.
    InvalidTransferEncoding,
    /// A line of the head ends with LF alone.
    BareLf,
    /// A header line starts with a space or a tab.
    ObsFold,
    /// The request line is longer than `max_uri_length` allows (414).
    RequestLineTooLong,
    /// The head is larger than `max_header_size` (431).
    HeadTooLarge,
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

/// What is known of the head being scanned, line by line.
#[derive(Clone, Copy, Debug, Default)]
struct Head {
    /// Bytes of the head already scanned (complete lines), from the head's first byte.
    pos: usize,
    /// The request line was seen.
    started: bool,
    http10: bool,
    upgrade: bool,
    lengths: u8,
    encodings: u8,
    length: u64,
}

/// The scanner for the fuzz target `fuzz/fuzz_targets/framing.rs`; not a stable API.
#[doc(hidden)]
#[derive(Debug)]
pub struct FramingCheck(Framer);

impl Refusal {
    /// The status of the answer.
    pub(crate) fn status(self) -> http::StatusCode {
        match self {
            Self::RequestLineTooLong => http::StatusCode::URI_TOO_LONG,
            Self::HeadTooLarge => http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            _ => http::StatusCode::BAD_REQUEST,
        }
    }

    /// The body of the answer.
    pub(crate) fn text(self) -> &'static str {
        match self {
            Self::LengthAndChunked => {
                "400 Bad Request: both Content-Length and Transfer-Encoding\n"
            }
            Self::DuplicateLength => "400 Bad Request: more than one Content-Length\n",
            Self::InvalidLength => "400 Bad Request: invalid Content-Length\n",
            Self::InvalidTransferEncoding => {
                "400 Bad Request: Transfer-Encoding must be exactly \"chunked\" (HTTP/1.1)\n"
            }
            Self::BareLf => "400 Bad Request: a line of the head ends without CR\n",
            Self::ObsFold => "400 Bad Request: obs-fold (a header line starting with whitespace)\n",
            Self::RequestLineTooLong => "414 URI Too Long\n",
            Self::HeadTooLarge => "431 Request Header Fields Too Large\n",
        }
    }

    /// The refusal stored as `code` by [`code`](Self::code).
    pub(crate) fn from_code(code: u8) -> Option<Self> {
        [
            Self::LengthAndChunked,
            Self::DuplicateLength,
            Self::InvalidLength,
            Self::InvalidTransferEncoding,
            Self::BareLf,
            Self::ObsFold,
            Self::RequestLineTooLong,
            Self::HeadTooLarge,
        ]
        .into_iter()
        .find(|r| r.code() == code)
    }

    /// A non-zero byte naming the refusal (stored in an atomic beside the request ordinal).
    pub(crate) fn code(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text().trim_end())
    }
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

    /// Scans the head that starts at `input[0]` from where it stopped: `Some(len)` when
    /// it is complete and framed (the state is then its body's), `None` when more bytes are
    /// needed.
    fn head(&mut self, mut head: Head, input: &[u8]) -> Result<Option<usize>, Refusal> {
        loop {
            let rest = &input[head.pos..];
            let Some(lf) = memchr::memchr(b'\n', rest) else {
                // `rest` is an unfinished line; one byte of it may be the CR of its CRLF.
                self.too_large(&head, input.len(), rest.len().saturating_sub(1))?;
                self.state = State::Head(head);
                return Ok(None);
            };
            let line = &rest[..lf];
            let Some(line) = line.strip_suffix(b"\r") else {
                return Err(Refusal::BareLf);
            };
            head.pos += lf + 1;
            if !head.started {
                if line.is_empty() {
                    // An empty line before the request line is ignored (RFC 9112 section 2.2).
                    continue;
                }
                if line.len() > self.limits.max_request_line {
                    return Err(Refusal::RequestLineTooLong);
                }
                head.started = true;
                head.http10 = line.ends_with(b" HTTP/1.0");
                head.upgrade = line.starts_with(b"CONNECT ");
            } else if line.is_empty() {
                if head.pos > self.limits.max_head {
                    return Err(Refusal::HeadTooLarge);
                }
                self.state = framing(&head)?;
                self.heads += 1;
                return Ok(Some(head.pos));
            } else {
                field(&mut head, line)?;
            }
            self.too_large(&head, head.pos, 0)?;
        }
    }

    /// Refuses a head already larger than the limits allow: `len` bytes in, `line` of them
    /// in an unfinished line (the request line if the head has not started).
    fn too_large(&self, head: &Head, len: usize, line: usize) -> Result<(), Refusal> {
        if !head.started && line > self.limits.max_request_line {
            return Err(Refusal::RequestLineTooLong);
        }
        if len > self.limits.max_head {
            return Err(if head.started {
                Refusal::HeadTooLarge
            } else {
                Refusal::RequestLineTooLong
            });
        }
        Ok(())
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

impl FramingCheck {
    /// A scanner with these limits (`header_read_timeout` plays no part in scanning).
    pub fn new(max_header_size: usize, max_uri_length: usize) -> Self {
        Self(Framer::new(FramingLimits::new(
            max_header_size,
            max_uri_length,
            Duration::ZERO,
        )))
    }

    /// Scans `input` (after a partial head, again from its first byte): `Ok(None)` when all
    /// is framed, `Ok(Some(n))` when a head starting at `n` is incomplete, `Err((n,
    /// status))` when the head at `n` is refused with `status`.
    pub fn scan(&mut self, input: &[u8]) -> Result<Option<usize>, (usize, u16)> {
        match self.0.scan(input) {
            Step::Pass => Ok(None),
            Step::Partial(n) => Ok(Some(n)),
            Step::Refuse(n, why) => Err((n, why.status().as_u16())),
        }
    }

    /// Complete heads framed so far.
    pub fn heads(&self) -> u64 {
        self.0.heads()
    }

    /// True when the scanner stopped checking (HTTP/2, an upgrade, broken chunk framing).
    pub fn is_off(&self) -> bool {
        self.0.is_off()
    }

    /// True after an `Upgrade` or `CONNECT` head (the caller decides with `resume`).
    pub fn after_upgrade(&self) -> bool {
        self.0.after_upgrade()
    }

    /// See `Framer::resume`.
    pub fn resume(&mut self, idle: bool) {
        self.0.resume(idle);
    }
}

/// Records one header field line.
fn field(head: &mut Head, line: &[u8]) -> Result<(), Refusal> {
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return Err(Refusal::ObsFold);
    }
    // Only three names matter; most lines are ruled out by their first letter.
    if !matches!(line.first().map(|b| b | 0x20), Some(b'c' | b't' | b'u')) {
        return Ok(());
    }
    let Some(colon) = memchr::memchr(b':', line) else {
        // Not a field: hyper refuses it.
        return Ok(());
    };
    let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
    if name.eq_ignore_ascii_case(b"content-length") {
        head.lengths = head.lengths.saturating_add(1);
        head.length = decimal(value).ok_or(Refusal::InvalidLength)?;
    } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
        head.encodings = head.encodings.saturating_add(1);
        if !value.eq_ignore_ascii_case(b"chunked") {
            return Err(Refusal::InvalidTransferEncoding);
        }
    } else if name.eq_ignore_ascii_case(b"upgrade") {
        head.upgrade = true;
    }
    Ok(())
}

/// The state after a complete head: its body's, or an error for ambiguous framing.
fn framing(head: &Head) -> Result<State, Refusal> {
    match (head.lengths, head.encodings) {
        (0, 0) => Ok(if head.upgrade {
            State::AfterUpgrade
        } else {
            State::Head(Head::default())
        }),
        (1.., 1..) => Err(Refusal::LengthAndChunked),
        (2.., 0) => Err(Refusal::DuplicateLength),
        (0, 2..) => Err(Refusal::InvalidTransferEncoding),
        _ if head.upgrade => Ok(State::Off),
        (1, 0) if head.length == 0 => Ok(State::Head(Head::default())),
        (1, 0) => Ok(State::Body(head.length)),
        (0, 1) if head.http10 => Err(Refusal::InvalidTransferEncoding),
        (0, 1) => Ok(State::Chunked(Chunk::Size { size: 0, digits: 0 })),
    }
}

/// `value` without leading and trailing spaces and tabs.
fn trim(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    &value[start..end]
}

/// A non-empty run of ASCII digits as a number (`None` on anything else or overflow).
fn decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
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
mod tests {
    use super::*;

    fn framer() -> Framer {
        Framer::new(FramingLimits {
            max_head: 256,
            max_request_line: 64,
            header_timeout: Duration::from_secs(1),
        })
    }

    /// Scans `input` in one piece.
    fn scan(input: &[u8]) -> Step {
        framer().scan(input)
    }

    /// Scans `input` cut into pieces of `size` bytes as [`FramedIo`] would feed them: a
    /// partial head is fed again from its first byte. Returns the steps that were not
    /// `Pass`, and the framed heads.
    fn scan_in_pieces(input: &[u8], size: usize) -> (Option<Refusal>, u64) {
        let mut f = framer();
        let mut partial: Vec<u8> = Vec::new();
        for piece in input.chunks(size) {
            partial.extend_from_slice(piece);
            match f.scan(&partial) {
                Step::Pass => partial.clear(),
                Step::Partial(n) => {
                    partial.drain(..n);
                }
                Step::Refuse(_, why) => return (Some(why), f.heads()),
            }
        }
        (None, f.heads())
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";

    #[test]
    fn ordinary_requests_pass_whole_or_byte_by_byte() {
        let mut many = Vec::new();
        many.extend_from_slice(GET);
        many.extend_from_slice(
            b"\r\nPOST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        );
        many.extend_from_slice(
            b"PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n",
        );
        many.extend_from_slice(GET);
        assert_eq!(scan(&many), Step::Pass);
        for size in [1, 2, 3, 7, 64] {
            assert_eq!(scan_in_pieces(&many, size), (None, 4), "pieces of {size}");
        }
    }

    #[test]
    fn an_incomplete_head_is_partial_from_its_first_byte() {
        let mut input = Vec::from(GET);
        input.extend_from_slice(b"GET /next HTTP/1.1\r\nHo");
        assert_eq!(scan(&input), Step::Partial(GET.len()));
        let mut f = framer();
        assert_eq!(
            f.scan(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nab"),
            Step::Pass
        );
        assert_eq!(f.scan(b"cGET"), Step::Partial(1));
    }

    #[test]
    fn ambiguous_framing_is_refused_where_the_head_starts() {
        let cases: &[(&[u8], Refusal)] = &[
            (
                b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
                Refusal::LengthAndChunked,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\ncontent-length: 4\r\n\r\n",
                Refusal::LengthAndChunked,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                Refusal::DuplicateLength,
            ),
            (b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", Refusal::InvalidLength),
            (b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", Refusal::InvalidLength),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
                Refusal::InvalidLength,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
                Refusal::InvalidTransferEncoding,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                Refusal::InvalidTransferEncoding,
            ),
            (
                b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                Refusal::InvalidTransferEncoding,
            ),
            (b"GET / HTTP/1.1\nHost: a\n\n", Refusal::BareLf),
            (b"GET / HTTP/1.1\r\nHost: a\n\r\n", Refusal::BareLf),
            (b"GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n", Refusal::ObsFold),
        ];
        for (head, why) in cases {
            let mut input = Vec::from(GET);
            input.extend_from_slice(head);
            assert_eq!(scan(&input), Step::Refuse(GET.len(), *why), "{head:?}");
            assert_eq!(scan_in_pieces(&input, 3), (Some(*why), 1), "{head:?}");
        }
    }

    #[test]
    fn sizes_give_414_for_the_request_line_and_431_for_the_head() {
        let long_line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(70));
        assert_eq!(
            scan(long_line.as_bytes()),
            Step::Refuse(0, Refusal::RequestLineTooLong)
        );
        // Refused before the line ends: a client cannot make the proxy hold a long line.
        let unfinished = format!("GET /{}", "a".repeat(70));
        assert_eq!(
            scan(unfinished.as_bytes()),
            Step::Refuse(0, Refusal::RequestLineTooLong)
        );
        let big_head = format!("GET / HTTP/1.1\r\nX-A: {}\r\n\r\n", "a".repeat(250));
        assert_eq!(
            scan(big_head.as_bytes()),
            Step::Refuse(0, Refusal::HeadTooLarge)
        );
        let unfinished = format!("GET / HTTP/1.1\r\nX-A: {}", "a".repeat(250));
        assert_eq!(
            scan(unfinished.as_bytes()),
            Step::Refuse(0, Refusal::HeadTooLarge)
        );
        assert_eq!(
            scan_in_pieces(big_head.as_bytes(), 5).0,
            Some(Refusal::HeadTooLarge)
        );
    }

    #[test]
    fn a_body_is_skipped_even_when_it_looks_like_a_bad_head() {
        let input = b"POST / HTTP/1.1\r\nContent-Length: 28\r\n\r\nGET / HTTP/1.1\nX: \n\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        assert_eq!(scan(input), Step::Pass);
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
            a\r\nGET /\n\n\n\n\n\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let mut f = framer();
        assert_eq!(f.scan(chunked), Step::Pass);
        assert!(!f.is_off());
        assert_eq!(f.heads(), 2);
        assert_eq!(scan_in_pieces(chunked, 1), (None, 2));
    }

    #[test]
    fn broken_chunk_framing_turns_the_check_off() {
        for body in [
            &b"zz\r\n"[..],
            b"5\nhello\n",
            b"\r\n",
            b"10000000000000005\r\n",
            b"5\r\nhelloX",
        ] {
            let mut f = framer();
            let mut input =
                Vec::from(&b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..]);
            input.extend_from_slice(body);
            input.extend_from_slice(b"GET / HTTP/1.1\nbare LF, not checked\n\n");
            assert_eq!(f.scan(&input), Step::Pass, "{body:?}");
            assert!(f.is_off(), "{body:?}");
        }
    }

    #[test]
    fn http2_and_upgrades_turn_the_check_off() {
        let mut f = framer();
        assert_eq!(f.scan(b"PRI * HTTP/2"), Step::Partial(0));
        assert_eq!(f.scan(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0"), Step::Pass);
        assert!(f.is_off());
        // A GET that only starts like the preface is an HTTP/1 head.
        assert_eq!(scan(b"P"), Step::Partial(0));
        assert_eq!(
            scan(b"PUT / HTTP/1.1\n\n"),
            Step::Refuse(0, Refusal::BareLf)
        );

        let upgrade = b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n";
        let mut f = framer();
        assert_eq!(f.scan(upgrade), Step::Pass);
        assert!(f.after_upgrade());
        f.resume(false);
        assert!(f.is_off());
        let mut f = framer();
        assert_eq!(f.scan(upgrade), Step::Pass);
        f.resume(true);
        assert_eq!(
            f.scan(b"GET / HTTP/1.1\n\n"),
            Step::Refuse(0, Refusal::BareLf)
        );
        assert_eq!(f.heads(), 1);
    }

    #[test]
    fn refusals_round_trip_through_their_codes() {
        for code in 0..=255u8 {
            if let Some(r) = Refusal::from_code(code) {
                assert_eq!(r.code(), code);
                assert!(r.text().starts_with(r.status().as_str()));
            }
        }
        assert_eq!(Refusal::from_code(0), None);
        assert_eq!(
            Refusal::from_code(Refusal::HeadTooLarge.code()),
            Some(Refusal::HeadTooLarge)
        );
    }
}
