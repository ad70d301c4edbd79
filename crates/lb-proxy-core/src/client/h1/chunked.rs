//! The chunked transfer coding of a response body (RFC 9112 §7.1), decoded incrementally
//! from the connection's read buffer: chunk data is handed out without a copy
//! (`split_to(..).freeze()`), size lines and extensions are checked and dropped, and the
//! trailer section becomes a trailers frame.
//!
//! The grammar is the one the request framing check follows (`crate::chunk`, hyper's):
//! a chunk size that fits in 64 bits, CRLF at every line end; on top of it, a size line
//! (with its extensions) or the trailer section may not grow past a bound.

use bytes::{Buf, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

use super::response::MAX_HEADERS;
use crate::chunk::{chunk_byte, Chunk, ChunkStep};

/// The longest chunk-size line accepted, extensions included.
const MAX_SIZE_LINE: usize = 4096;

/// The largest trailer section accepted.
const MAX_TRAILERS: usize = 16 * 1024;

/// A chunked body decoder.
#[derive(Debug)]
pub(crate) struct Chunked {
    /// Where the grammar is.
    state: Chunk,
    /// Bytes of the current size line consumed so far.
    line: usize,
    /// The body has ended.
    done: bool,
}

/// What the buffer yielded.
#[derive(Debug)]
pub(crate) enum Step {
    /// Chunk data.
    Data(bytes::Bytes),
    /// The trailer section (the body ends after it).
    Trailers(HeaderMap),
    /// The body ended.
    End,
    /// More bytes are needed.
    More,
}

/// The chunked coding is broken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChunkError {
    /// A chunk-size line that is not hex digits, extensions and CRLF.
    #[error("invalid chunk size line")]
    Size,
    /// Chunk data not followed by CRLF.
    #[error("chunk data not followed by CRLF")]
    DataEnd,
    /// A chunk-size line or a trailer section past its bound, or a malformed trailer.
    #[error("invalid or oversized trailer section or chunk size line")]
    TooLong,
}

impl Chunked {
    /// A decoder at the start of a body.
    pub(crate) fn new() -> Self {
        Self {
            state: Chunk::Size { size: 0, digits: 0 },
            line: 0,
            done: false,
        }
    }

    /// Consumes what it can from `buf`: the next data, the trailers, the end, or `More`.
    pub(crate) fn step(&mut self, buf: &mut BytesMut) -> Result<Step, ChunkError> {
        // Bounded: each pass consumes at least one byte or returns.
        loop {
            if self.done {
                return Ok(Step::End);
            }
            match self.state {
                Chunk::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(n).freeze();
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(left)
                    };
                    return Ok(Step::Data(data));
                }
                // After the last chunk: the trailers are parsed whole, not byte by byte.
                Chunk::EndCr => return self.trailers(buf),
                _ => {}
            }
            let Some(&byte) = buf.first() else {
                return Ok(Step::More);
            };
            buf.advance(1);
            self.line += 1;
            if self.line > MAX_SIZE_LINE {
                return Err(ChunkError::TooLong);
            }
            match chunk_byte(self.state, byte) {
                ChunkStep::Next(next) => {
                    if matches!(next, Chunk::Data(_) | Chunk::EndCr) {
                        self.line = 0;
                    }
                    self.state = next;
                }
                // Only after trailers, which `trailers` reads.
                ChunkStep::Done => self.done = true,
                ChunkStep::Invalid if matches!(self.state, Chunk::DataCr | Chunk::DataLf) => {
                    return Err(ChunkError::DataEnd)
                }
                ChunkStep::Invalid => return Err(ChunkError::Size),
            }
        }
    }

    /// The trailer section: an empty line, or header lines then an empty line.
    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Step, ChunkError> {
        if buf.len() < 2 {
            return Ok(Step::More);
        }
        if buf.starts_with(b"\r\n") {
            buf.advance(2);
            self.done = true;
            return Ok(Step::End);
        }
        let mut lines = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match httparse::parse_headers(buf, &mut lines) {
            Ok(httparse::Status::Complete((len, fields))) => {
                let mut trailers = HeaderMap::with_capacity(fields.len());
                for field in fields {
                    let name = HeaderName::from_bytes(field.name.as_bytes())
                        .map_err(|_| ChunkError::TooLong)?;
                    let value =
                        HeaderValue::from_bytes(field.value).map_err(|_| ChunkError::TooLong)?;
                    trailers.append(name, value);
                }
                buf.advance(len);
                self.done = true;
                Ok(Step::Trailers(trailers))
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_TRAILERS => Ok(Step::More),
            _ => Err(ChunkError::TooLong),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Decodes `input` fed in pieces of `piece` bytes: the data, the trailers, whether it ended.
    fn decode(
        input: &[u8],
        piece: usize,
    ) -> Result<(Vec<u8>, Option<HeaderMap>, bool), ChunkError> {
        let mut decoder = Chunked::new();
        let mut buf = BytesMut::new();
        let (mut data, mut trailers) = (Vec::new(), None);
        for part in input.chunks(piece) {
            buf.extend_from_slice(part);
            loop {
                match decoder.step(&mut buf)? {
                    Step::Data(d) => data.extend_from_slice(&d),
                    Step::Trailers(t) => trailers = Some(t),
                    Step::End => return Ok((data, trailers, buf.is_empty())),
                    Step::More => break,
                }
            }
        }
        Ok((data, trailers, false))
    }

    #[test]
    fn decodes_whole_and_in_pieces() {
        let body = b"5\r\nhello\r\n1;ext=\"a b\"\r\n \r\nA \r\n0123456789\r\n0\r\n\r\n";
        for piece in [1, 2, 3, 7, body.len()] {
            let (data, trailers, clean) = decode(body, piece).unwrap();
            assert_eq!(data, b"hello 0123456789", "pieces of {piece}");
            assert!(trailers.is_none());
            assert!(clean, "nothing left after the end");
        }
    }

    #[test]
    fn trailers_become_a_frame() {
        let body = b"3\r\nabc\r\n0\r\nX-Sum: 1\r\nX-Other: two\r\n\r\n";
        for piece in [1, 5, body.len()] {
            let (data, trailers, clean) = decode(body, piece).unwrap();
            assert_eq!(data, b"abc");
            let trailers = trailers.unwrap();
            assert_eq!(trailers["x-sum"], "1");
            assert_eq!(trailers["x-other"], "two");
            assert!(clean);
        }
    }

    #[test]
    fn broken_codings_are_refused() {
        for body in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"11111111111111111\r\n",
            b"5;ext\nhello",
        ] {
            assert!(decode(body, 1).is_err(), "accepted {body:?}");
            assert!(decode(body, body.len()).is_err(), "accepted {body:?}");
        }
        let long_ext = format!("1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(MAX_SIZE_LINE));
        assert!(matches!(
            decode(long_ext.as_bytes(), 64),
            Err(ChunkError::TooLong)
        ));
    }

    #[test]
    fn largest_sizes_do_not_overflow() {
        let (data, _, _) = decode(b"FFFFFFFFFFFFFFFF\r\nab", 4).unwrap();
        assert_eq!(data, b"ab");
    }
}
