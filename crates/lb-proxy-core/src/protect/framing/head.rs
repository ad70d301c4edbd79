//! A request head, line by line: the request line, the three fields that decide the
//! framing (`Content-Length`, `Transfer-Encoding`, `Upgrade`), and the sizes.

use super::{Framer, Refusal, State};
use lb_client::chunk::Chunk;

/// What is known of the head being scanned, line by line.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Head {
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

impl Framer {
    /// Scans the head that starts at `input[0]` from where it stopped: `Some(len)` when
    /// it is complete and framed (the state is then its body's), `None` when more bytes are
    /// needed.
    pub(super) fn head(&mut self, mut head: Head, input: &[u8]) -> Result<Option<usize>, Refusal> {
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
