//! The running process's side of a hand-over: offer every listening socket, wait for
//! `held` then `ready`, and commit.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

use tokio::io::BufReader;

use super::lines::{next_line, unexpected, write_line};
use super::wire::{Header, Line};
use super::{fds, HandoverError, ListenerKind, SendTimeouts, MAX_LISTENERS};

/// The least time [`send`] gives the new process to answer `held` once it has the offer.
const HELD_FLOOR: Duration = Duration::from_secs(5);

/// How often [`send`] retries connecting while the new process is not listening yet.
const CONNECT_RETRY: Duration = Duration::from_millis(100);

/// The running process's side: connects to `path` (retrying while nobody listens there
/// yet), offers `sockets`, waits for the new process to hold them and then to start, and
/// commits. `Ok` means the new process is in charge: stop accepting and drain. Any error
/// means nothing changed hands: serve on.
pub async fn send(
    path: &Path,
    sockets: Vec<(ListenerKind, SocketAddr, OwnedFd)>,
    timeouts: SendTimeouts,
) -> Result<(), HandoverError> {
    let socket_error = |source| HandoverError::Socket {
        path: path.to_owned(),
        source,
    };
    if sockets.is_empty() || sockets.len() > MAX_LISTENERS {
        return Err(HandoverError::Protocol {
            path: path.to_owned(),
            reason: format!(
                "{} listening sockets; 1 to {MAX_LISTENERS} can be handed over",
                sockets.len()
            ),
        });
    }
    let started = tokio::time::Instant::now();
    let deadline = started + timeouts.connect;
    let stream = loop {
        match tokio::net::UnixStream::connect(path).await {
            Ok(stream) => break stream,
            // Not there yet, or a stale file: the new process may still be starting.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) && tokio::time::Instant::now() + CONNECT_RETRY < deadline =>
            {
                tokio::time::sleep(CONNECT_RETRY).await;
            }
            Err(e) => return Err(socket_error(e)),
        }
    };
    let mut std_stream = stream.into_std().map_err(socket_error)?;
    std_stream.set_nonblocking(false).map_err(socket_error)?;
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    std_stream
        .set_write_timeout(Some(left.max(Duration::from_millis(100))))
        .map_err(socket_error)?;
    let manifest: Vec<(ListenerKind, SocketAddr)> = sockets
        .iter()
        .map(|(kind, addr, _)| (*kind, *addr))
        .collect();
    let offer = Header::encode(&manifest);
    let owned_path = path.to_owned();
    let std_stream = tokio::task::spawn_blocking(move || {
        let fds: Vec<RawFd> = sockets.iter().map(|(_, _, fd)| fd.as_raw_fd()).collect();
        fds::send(&mut std_stream, &offer, &fds).map(|()| std_stream)
    })
    .await
    .map_err(|join| socket_error(io::Error::other(join)))?
    .map_err(|source| HandoverError::Socket {
        path: owned_path,
        source,
    })?;
    std_stream.set_nonblocking(true).map_err(socket_error)?;
    let stream = tokio::net::UnixStream::from_std(std_stream).map_err(socket_error)?;
    let mut reader = BufReader::new(stream);
    // The new process checks the sockets at once; a connect that took long leaves a floor.
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    expect(&mut reader, Line::Held, left.max(HELD_FLOOR), path, "held").await?;
    tracing::info!(upgrade_sock = %path.display(), waiting = ?timeouts.start, "the new process holds the listening sockets; serving on until it has started");
    expect(&mut reader, Line::Ready, timeouts.start, path, "ready").await?;
    write_line(reader.get_mut(), &Line::Commit, path).await
}

/// Waits for `want`; a `failed` line, another line or the end is an error.
async fn expect(
    reader: &mut BufReader<tokio::net::UnixStream>,
    want: Line,
    timeout: Duration,
    path: &Path,
    waiting_for: &'static str,
) -> Result<(), HandoverError> {
    match next_line(reader, timeout, path, waiting_for).await? {
        line if line == want => Ok(()),
        Line::Failed(reason) => Err(HandoverError::Failed { reason }),
        other => Err(unexpected(path, &other, waiting_for)),
    }
}
