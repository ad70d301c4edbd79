//! The chunked transfer coding's grammar (RFC 9112 section 7.1), one byte at a time, as
//! hyper's decoder reads it: a chunk size of hex digits (no overflow), optional whitespace
//! and extensions, CRLF, the data, CRLF; after the last (zero-size) chunk, trailer fields
//! and the final CRLF. A bare LF is refused everywhere.
//!
//! One grammar for both directions: the request framing check (`protect/framing.rs`)
//! follows a client's chunked body with it to find the next head, and the own HTTP/1.1
//! client (`client/h1/chunked.rs`) decodes a backend's chunked response with it. The
//! data bytes themselves are the callers' to consume: [`Chunk::Data`] says how many.

/// The chunked-body grammar, as hyper's decoder reads it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Chunk {
    /// In the size; `digits` read so far.
    Size { size: u64, digits: u8 },
    /// Whitespace after the size.
    SizeLws(u64),
    /// A chunk extension.
    Extension(u64),
    /// The LF ending the size line.
    SizeLf(u64),
    /// This many data bytes left.
    Data(u64),
    /// The CR after the data.
    DataCr,
    /// The LF after the data.
    DataLf,
    /// After the last chunk: CR (the end) or a trailer field.
    EndCr,
    /// In a trailer field.
    Trailer,
    /// The LF ending a trailer field.
    TrailerLf,
    /// The final LF.
    EndLf,
}

/// How a chunk byte moved the grammar: the next state, the end of the body (after the
/// final CRLF), or a byte the grammar does not allow.
pub(crate) enum ChunkStep {
    Next(Chunk),
    Done,
    Invalid,
}

/// One byte of chunked framing (not data), following hyper's decoder.
pub(crate) fn chunk_byte(chunk: Chunk, byte: u8) -> ChunkStep {
    use ChunkStep::{Invalid, Next};
    match (chunk, byte) {
        (Chunk::Size { size, digits }, _) if byte.is_ascii_hexdigit() => {
            let digit = u64::from((byte as char).to_digit(16).unwrap_or(0));
            match size.checked_mul(16).and_then(|s| s.checked_add(digit)) {
                Some(size) => Next(Chunk::Size {
                    size,
                    digits: digits.saturating_add(1),
                }),
                None => Invalid,
            }
        }
        (Chunk::Size { digits: 0, .. }, _) => Invalid,
        (Chunk::Size { size, .. } | Chunk::SizeLws(size), b' ' | b'\t') => {
            Next(Chunk::SizeLws(size))
        }
        (Chunk::Size { size, .. } | Chunk::SizeLws(size) | Chunk::Extension(size), b'\r') => {
            Next(Chunk::SizeLf(size))
        }
        (Chunk::Size { size, .. } | Chunk::SizeLws(size), b';') => Next(Chunk::Extension(size)),
        (Chunk::Extension(_), b'\n') => Invalid,
        (Chunk::Extension(size), _) => Next(Chunk::Extension(size)),
        (Chunk::SizeLf(0), b'\n') => Next(Chunk::EndCr),
        (Chunk::SizeLf(size), b'\n') => Next(Chunk::Data(size)),
        (Chunk::DataCr, b'\r') => Next(Chunk::DataLf),
        (Chunk::DataLf, b'\n') => Next(Chunk::Size { size: 0, digits: 0 }),
        (Chunk::EndCr, b'\r') => Next(Chunk::EndLf),
        (Chunk::EndCr | Chunk::Trailer, b'\n') => Invalid,
        (Chunk::Trailer, b'\r') => Next(Chunk::TrailerLf),
        (Chunk::EndCr | Chunk::Trailer, _) => Next(Chunk::Trailer),
        (Chunk::TrailerLf, b'\n') => Next(Chunk::EndCr),
        (Chunk::EndLf, b'\n') => ChunkStep::Done,
        _ => Invalid,
    }
}
