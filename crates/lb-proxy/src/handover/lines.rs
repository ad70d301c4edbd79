//! Reading and writing the one-line messages of the hand-over ([`Line`]), bounded in
//! length and time.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::wire::{Line, MAX_LINE};
use super::HandoverError;

/// The error for `line` arriving while waiting for something else.
pub(super) fn unexpected(path: &Path, line: &Line, waiting_for: &str) -> HandoverError {
    HandoverError::Protocol {
        path: path.to_owned(),
        reason: format!(
            "got {:?} while waiting for {waiting_for}",
            line.encode().trim_end()
        ),
    }
}

/// The next line, within `timeout`.
pub(super) async fn next_line(
    reader: &mut BufReader<tokio::net::UnixStream>,
    timeout: Duration,
    path: &Path,
    waiting_for: &'static str,
) -> Result<Line, HandoverError> {
    let mut buf = Vec::new();
    let mut limited = (&mut *reader).take(MAX_LINE as u64 + 1);
    let read = limited.read_until(b'\n', &mut buf);
    let n = tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| HandoverError::Timeout {
            path: path.to_owned(),
            waiting_for,
            waited: timeout,
        })?
        .map_err(|source| HandoverError::Socket {
            path: path.to_owned(),
            source,
        })?;
    if n == 0 {
        return Err(HandoverError::Closed {
            path: path.to_owned(),
            waiting_for,
        });
    }
    let protocol = |reason: String| HandoverError::Protocol {
        path: path.to_owned(),
        reason,
    };
    let Some(line) = buf.strip_suffix(b"\n") else {
        return Err(protocol(format!(
            "a line over {MAX_LINE} bytes, or cut, while waiting for {waiting_for}"
        )));
    };
    let line =
        std::str::from_utf8(line).map_err(|_| protocol("a line that is not UTF-8".to_owned()))?;
    Line::parse(line).ok_or_else(|| {
        protocol(format!(
            "unknown line {line:?} while waiting for {waiting_for}"
        ))
    })
}

/// Sends `line`.
pub(super) async fn write_line(
    stream: &mut tokio::net::UnixStream,
    line: &Line,
    path: &Path,
) -> Result<(), HandoverError> {
    stream
        .write_all(line.encode().as_bytes())
        .await
        .map_err(|source| HandoverError::Socket {
            path: path.to_owned(),
            source,
        })
}
