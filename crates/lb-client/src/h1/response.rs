//! A backend's HTTP/1.x response head: parsed with `httparse` in the connection's read
//! buffer, then built into an `http` response over one shared copy of its bytes (and of
//! the body, when it is short and already read), so that header values point into that
//! copy instead of being copied one by one, and the read buffer is never shared.
//!
//! The parse also decides what follows the head (RFC 9112 §6.3, message body length) and
//! whether the connection may carry another request (§9.3, persistence), the way hyper's
//! client does: a `HEAD` answer and 1xx/204/304 have no body; `Transfer-Encoding` ending in
//! `chunked` is chunked, any other `Transfer-Encoding` reads to the close; then
//! `Content-Length` (several lines or a list only when every value is equal; anything else
//! is an invalid response); else the body runs to the close.

use std::ops::Range;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode, Version};

/// The most header lines a response head may have (hyper's client default).
pub(crate) const MAX_HEADERS: usize = 100;

/// The largest response head accepted, in bytes.
pub(crate) const MAX_HEAD: usize = 64 * 1024;

/// How the body after a head is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body: `HEAD`, 204, 304.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the backend closes the connection.
    Close,
}

/// Why a response head is refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeadError {
    /// Not HTTP/1.x syntax.
    #[error("malformed response head: {0}")]
    Syntax(#[from] httparse::Error),
    /// The head is larger than [`MAX_HEAD`].
    #[error("response head larger than {MAX_HEAD} bytes")]
    TooLarge,
    /// A status code outside 100-999 or a header name `http` refuses.
    #[error("invalid status code or header name")]
    Invalid,
    /// `Content-Length` is not one decimal number (or equal repeats of it).
    #[error("invalid Content-Length")]
    ContentLength,
    /// `Transfer-Encoding` on an HTTP/1.0 response.
    #[error("Transfer-Encoding on an HTTP/1.0 response")]
    TransferEncoding,
    /// `101 Switching Protocols` to a request that asked for no upgrade.
    #[error("101 Switching Protocols without an upgrade request")]
    UnexpectedUpgrade,
}

/// A complete final response head.
#[derive(Debug)]
pub(crate) struct Head {
    /// The head's length in the buffer, up to and including the empty line.
    pub(crate) len: usize,
    /// Status, version, headers (sharing one copy of the head's bytes) and, when the
    /// reason phrase is not the status's canonical one, hyper's `ReasonPhrase` extension.
    pub(crate) response: Response<()>,
    /// What follows the head.
    pub(crate) framing: Framing,
    /// Whether the connection may carry another request after this response.
    pub(crate) keep_alive: bool,
    /// The whole body, when it has a length and was in the buffer behind the head (it
    /// shares the copy of the head's bytes).
    pub(crate) body: Option<Bytes>,
}

/// What the bytes at the start of the read buffer are.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// Not a complete head yet.
    Partial,
    /// A complete 1xx head (not 101) of `len` bytes, to skip; `go_ahead` for
    /// `100 Continue`, which tells a request that waits for it to send its body.
    Informational { len: usize, go_ahead: bool },
    /// A complete final head.
    Complete(Head),
}

/// Parses the head at the start of `buf`. `head_request`: the request was `HEAD`, so the
/// answer has no body whatever its headers say. `upgrade`: the request asked for a
/// protocol upgrade, so `101 Switching Protocols` is its final answer (with no body, and
/// the connection is the new protocol's from then on); to any other request a 101 is an
/// invalid response.
///
/// The head, and its body when it has a length and is all in `buf`, are copied once into
/// a `Bytes` that the header values and the body share: one allocation, and `buf` stays
/// unshared for the next read.
pub(crate) fn parse(buf: &[u8], head_request: bool, upgrade: bool) -> Result<Parsed, HeadError> {
    let mut lines = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut lines);
    let len = match parsed.parse(buf)? {
        httparse::Status::Partial if buf.len() >= MAX_HEAD => return Err(HeadError::TooLarge),
        httparse::Status::Partial => return Ok(Parsed::Partial),
        httparse::Status::Complete(len) if len > MAX_HEAD => return Err(HeadError::TooLarge),
        httparse::Status::Complete(len) => len,
    };
    let code = parsed.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| HeadError::Invalid)?;
    match code {
        101 if !upgrade => return Err(HeadError::UnexpectedUpgrade),
        101 => {}
        100..=199 => {
            return Ok(Parsed::Informational {
                len,
                go_ahead: code == 100,
            })
        }
        _ => {}
    }
    let version = if parsed.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let mut length: Option<u64> = None;
    let mut bad_length = false;
    let mut chunked = None;
    let mut close = false;
    let mut keep_alive_token = false;
    for line in parsed.headers.iter() {
        let name = line.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            for item in line.value.split(|&b| b == b',') {
                match (parse_length(item.trim_ascii()), length) {
                    (Some(n), None) => length = Some(n),
                    (Some(n), Some(m)) if n == m => {}
                    _ => bad_length = true,
                }
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Only the last coding of the last line counts.
            let last = line.value.rsplit(|&b| b == b',').next().unwrap_or_default();
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in line.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let mut keep_alive = !close && (version == Version::HTTP_11 || keep_alive_token);
    let framing = if head_request || code == 101 || code == 204 || code == 304 {
        Framing::Empty
    } else if let Some(chunked) = chunked {
        if version == Version::HTTP_10 {
            return Err(HeadError::TransferEncoding);
        }
        // Both lengths: a sign of smuggling; read it chunked and close after it.
        keep_alive &= length.is_none() && !bad_length;
        if chunked {
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else if bad_length {
        return Err(HeadError::ContentLength);
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    keep_alive &= framing != Framing::Close && code != 101;
    let in_hand = match framing {
        Framing::Length(n) => usize::try_from(n)
            .ok()
            .and_then(|n| len.checked_add(n))
            .filter(|&end| end <= buf.len()),
        _ => None,
    };
    let bytes = Bytes::copy_from_slice(&buf[..in_hand.unwrap_or(len)]);
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    for line in parsed.headers.iter() {
        let name = HeaderName::from_bytes(line.name.as_bytes()).map_err(|_| HeadError::Invalid)?;
        // httparse allows only visible ASCII, obs-text, space and tab in values.
        let value = HeaderValue::from_maybe_shared(bytes.slice(offset(buf, line.value)))
            .map_err(|_| HeadError::Invalid)?;
        headers.append(name, value);
    }
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = headers;
    if let Some(reason) = parsed
        .reason
        .filter(|r| Some(*r) != status.canonical_reason())
    {
        // Kept as hyper's client keeps it, so the server side sends it on.
        let reason = bytes.slice(offset(buf, reason.as_bytes()));
        if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(reason) {
            response.extensions_mut().insert(reason);
        }
    }
    Ok(Parsed::Complete(Head {
        len,
        response,
        framing,
        keep_alive,
        body: in_hand.map(|end| bytes.slice(len..end)),
    }))
}

/// Where `part` (a sub-slice of `buf`) starts and ends in `buf`.
fn offset(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(buf.as_ptr() as usize);
    start..start + part.len()
}

/// One `Content-Length` value: decimal digits only, at most 19 of them.
fn parse_length(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 19 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(text.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn complete(text: &str, head_request: bool) -> Head {
        match parse(text.as_bytes(), head_request, false).unwrap() {
            Parsed::Complete(head) => head,
            other => panic!("not a complete final head: {text:?}: {other:?}"),
        }
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let cases = [
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                false,
                Framing::Length(5),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\nContent-Length: 5\r\n\r\n",
                false,
                Framing::Length(5),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                false,
                Framing::Chunked,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                false,
                Framing::Chunked,
                false,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                false,
                Framing::Close,
                false,
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", false, Framing::Close, false),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                true,
                Framing::Empty,
                true,
            ),
            (
                "HTTP/1.1 204 No Content\r\n\r\n",
                false,
                Framing::Empty,
                true,
            ),
            (
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                false,
                Framing::Empty,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n",
                false,
                Framing::Length(0),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
                false,
                Framing::Length(0),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
                false,
                Framing::Length(0),
                true,
            ),
        ];
        for (text, head_request, framing, keep_alive) in cases {
            let head = complete(text, head_request);
            assert_eq!(head.framing, framing, "{text:?}");
            assert_eq!(head.keep_alive, keep_alive, "{text:?}");
            assert_eq!(head.len, text.len());
        }
    }

    #[test]
    fn bad_heads_are_refused() {
        for text in [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTX/1.1 200 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        ] {
            assert!(
                parse(text.as_bytes(), false, false).is_err(),
                "accepted {text:?}"
            );
        }
        let huge = format!("HTTP/1.1 200 OK\r\nX: {}\r\n", "a".repeat(MAX_HEAD));
        assert!(matches!(
            parse(huge.as_bytes(), false, false),
            Err(HeadError::TooLarge)
        ));
    }

    #[test]
    fn partial_and_informational_heads() {
        assert!(matches!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Le", false, false),
            Ok(Parsed::Partial)
        ));
        let text = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\n";
        assert!(matches!(
            parse(text, false, false),
            Ok(Parsed::Informational {
                len: 40,
                go_ahead: false
            })
        ));
        let text = b"HTTP/1.1 100 Continue\r\n\r\n";
        assert!(matches!(
            parse(text, false, false),
            Ok(Parsed::Informational {
                len: 25,
                go_ahead: true
            })
        ));
    }

    #[test]
    fn switching_protocols_ends_the_head_only_for_an_upgrade_request() {
        let text = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nframes";
        assert!(matches!(
            parse(text, false, false),
            Err(HeadError::UnexpectedUpgrade)
        ));
        let Ok(Parsed::Complete(head)) = parse(text, false, true) else {
            panic!("a 101 to an upgrade request is its answer");
        };
        assert_eq!(head.response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!((head.framing, head.keep_alive), (Framing::Empty, false));
        assert_eq!(
            &text[head.len..],
            b"frames",
            "the new protocol's bytes stay unread"
        );
    }

    #[test]
    fn the_response_and_a_short_body_share_one_copy() {
        let text = "HTTP/1.1 404 Gone Fishing\r\nServer: nginx\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 5\r\n\r\nhello";
        let head = complete(text, false);
        assert_eq!(head.body.as_deref(), Some(&b"hello"[..]));
        let response = head.response;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.version(), Version::HTTP_11);
        assert_eq!(response.headers()["server"], "nginx");
        let values: Vec<_> = response.headers().get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "2"]);
        let reason = response
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .unwrap();
        assert_eq!(reason.as_bytes(), b"Gone Fishing");
        // A body not all read yet is not in the head.
        let partial = complete("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhel", false);
        assert!(partial.body.is_none());
        assert!(partial
            .response
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .is_none());
    }
}
