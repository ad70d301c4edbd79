//! What a request declares about its body, read from its head and its body's hints
//! ([`Declared::of`]): how the body is delimited on the wire, the header line the head
//! must add for it, and whether the request expects `100 Continue` or an upgrade. The
//! rules are in the parent module's doc.

use http::header::{HeaderMap, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING, UPGRADE};
use http::{Method, Request};
use http_body::Body;

use crate::error::Kind;
use crate::UpstreamError;

/// How the request body is delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
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

/// A request's declaration of its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Declared {
    pub(crate) framing: Framing,
    /// What the head adds to the request's header fields.
    pub(crate) added: Added,
    /// Whether `Content-Length` lines of the request are left out (it has
    /// `Transfer-Encoding`).
    pub(crate) drop_length: bool,
    /// `Expect: 100-continue`.
    pub(crate) expect: bool,
    /// Whether the request asks for a protocol upgrade (`Upgrade`).
    pub(crate) upgrade: bool,
}

impl Declared {
    /// No body, nothing added.
    pub(crate) const NONE: Self = Self {
        framing: Framing::Empty,
        added: Added::Nothing,
        drop_length: false,
        expect: false,
        upgrade: false,
    };

    /// What `req` declares; an error for a `Transfer-Encoding` that does not end in
    /// `chunked` or a `Content-Length` that is not one number.
    pub(crate) fn of<B: Body>(req: &Request<B>) -> Result<Self, UpstreamError> {
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
        Ok(Self {
            framing,
            added,
            drop_length,
            expect,
            upgrade,
        })
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
