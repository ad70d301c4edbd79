//! Graceful binary upgrade: handing every listening socket from the running process to a
//! new one over a Unix socket (`server.upgrade_sock`), with `SCM_RIGHTS`, and changing
//! hands only once the new process has started completely.
//!
//! The dance, in the order nginx (`USR2` then `QUIT`) and HAProxy (`-sf` with
//! `expose-fd listeners`) keep:
//!
//! 1. the new binary starts with `--upgrade`: [`receive`] binds `upgrade_sock` and waits;
//! 2. the running process gets SIGQUIT: [`send`] connects to `upgrade_sock` (retrying for a
//!    while, so the two steps may also come the other way round) and offers every
//!    listening socket (HTTP, TLS, admin), each named with what it is for and its address;
//! 3. the new process checks each socket against that manifest and answers `held`;
//! 4. it starts everything: upstreams (first discovery answers), listeners (the received
//!    sockets by address, binding only addresses it did not receive), admin, health
//!    checks. Meanwhile the running process goes on accepting on the same sockets;
//! 5. the new process answers `ready` ([`Handover::confirm`]), or `failed REASON` if any
//!    step failed ([`Handover::abort`]), or nothing because it died;
//! 6. on `ready` the running process answers `commit`, stops accepting and drains. On
//!    anything else (a failure, the connection closed, no `ready` within its start
//!    timeout) it keeps every listener, logs why, and serves on;
//! 7. a new process that gets no `commit` (the running one gave up meanwhile) stops.
//!
//! The sockets themselves are never closed: both processes hold them until one lets go,
//! and a connection waiting in the accept queue is taken by whichever accepts first. So no
//! client sees a refused connection, whichever way the upgrade ends. The byte format is
//! in [`wire`]; the descriptors' passage in [`fds`].

mod fds;
mod wire;

use std::collections::HashMap;
use std::io::{self, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{getsockopt, sockopt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

pub use wire::ListenerKind;
use wire::{Header, Line, MAX_LINE};

/// At most this many listening sockets are handed over (more is refused by [`send`]).
pub const MAX_LISTENERS: usize = 64;

/// The least time [`send`] gives the new process to answer `held` once it has the offer.
const HELD_FLOOR: Duration = Duration::from_secs(5);

/// How often [`send`] retries connecting while the new process is not listening yet.
const CONNECT_RETRY: Duration = Duration::from_millis(100);

/// Why a hand-over failed. On the running side every one of them leaves the process
/// serving on all its listeners.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandoverError {
    /// The upgrade socket could not be bound, connected to or used.
    #[error("upgrade socket {path}: {source}")]
    Socket {
        /// `server.upgrade_sock`.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The other side did not do its part in time.
    #[error("upgrade socket {path}: no {waiting_for} within {waited:?}")]
    Timeout {
        /// `server.upgrade_sock`.
        path: PathBuf,
        /// What did not come (`connection`, `offer`, `held`, `ready`, `commit`).
        waiting_for: &'static str,
        /// How long it waited.
        waited: Duration,
    },
    /// The message was not a hand-over (wrong version, truncated, no or too many
    /// sockets, a socket that does not match its manifest line).
    #[error("upgrade socket {path}: {reason}")]
    Protocol {
        /// `server.upgrade_sock`.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The new process could not start, and said why.
    #[error("the new process failed to start: {reason}")]
    Failed {
        /// Its reason (its start error).
        reason: String,
    },
    /// The other side closed the upgrade socket before its part: the new process exited
    /// or was killed during its start, or the running process gave the upgrade up.
    #[error("upgrade socket {path}: the other process closed it while waiting for {waiting_for}")]
    Closed {
        /// `server.upgrade_sock`.
        path: PathBuf,
        /// What did not come.
        waiting_for: &'static str,
    },
}

/// How long the running side of a hand-over waits for each step.
#[derive(Clone, Copy, Debug)]
pub struct SendTimeouts {
    /// For the new process to listen on `upgrade_sock` and take the sockets (`held`).
    pub connect: Duration,
    /// Then for it to start everything (`ready`).
    pub start: Duration,
}

/// Listening sockets received from the previous process, by bound address.
#[derive(Debug, Default)]
pub struct Inherited {
    listeners: HashMap<SocketAddr, (ListenerKind, TcpListener)>,
    /// Received in a hand-over (not a reload's own sockets).
    received: bool,
}

/// The new process's side of a hand-over in progress: it holds the sockets; the previous
/// process serves on until [`confirm`](Self::confirm). Dropped without it, the previous
/// process sees the socket close and keeps serving.
#[derive(Debug)]
pub struct Handover {
    inherited: Option<Inherited>,
    stream: UnixStream,
    path: PathBuf,
}

impl Inherited {
    /// How many sockets are left (not yet taken by a listener of the new configuration).
    pub fn len(&self) -> usize {
        self.listeners.len()
    }

    /// True when no socket is left.
    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty()
    }

    /// The sockets of this process's own listeners (duplicates), for a reload to serve the
    /// new configuration's listeners on them instead of binding again.
    pub(crate) fn own(
        listeners: impl IntoIterator<Item = (SocketAddr, ListenerKind, TcpListener)>,
    ) -> Self {
        Self {
            listeners: listeners
                .into_iter()
                .map(|(addr, kind, l)| (addr, (kind, l)))
                .collect(),
            received: false,
        }
    }

    /// True for sockets received from the previous process, false for a reload's own.
    pub(crate) fn is_from_previous_process(&self) -> bool {
        self.received
    }

    /// The socket bound to exactly `addr`, if one was received (and not yet taken), with
    /// what the previous process used it for.
    pub(crate) fn take(&mut self, addr: SocketAddr) -> Option<(ListenerKind, TcpListener)> {
        self.listeners.remove(&addr)
    }

    /// The addresses of the sockets left.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.listeners.keys().copied().collect()
    }
}

impl Handover {
    /// The received sockets, for [`Proxy::inherit`](crate::Proxy::inherit) (empty the
    /// second time).
    pub fn take_sockets(&mut self) -> Inherited {
        self.inherited.take().unwrap_or_default()
    }

    /// Tells the previous process that this one has started everything, and waits at most
    /// `timeout` for its `commit`: on `Ok` the previous process has stopped accepting and
    /// this one is in charge. An error means the previous process gave the upgrade up (it
    /// timed out, or failed): it keeps serving, and this process should stop.
    pub async fn confirm(self, timeout: Duration) -> Result<(), HandoverError> {
        let path = self.path.clone();
        let mut stream = self.into_async()?;
        write_line(&mut stream, &Line::Ready, &path).await?;
        let mut reader = BufReader::new(stream);
        match next_line(&mut reader, timeout, &path, "commit").await? {
            Line::Commit => Ok(()),
            other => Err(unexpected(&path, &other, "commit")),
        }
    }

    /// Tells the previous process that this one cannot start, and why (best effort: it
    /// sees the socket close anyway).
    pub async fn abort(self, reason: &str) {
        let path = self.path.clone();
        if let Ok(mut stream) = self.into_async() {
            let line = Line::Failed(reason.to_owned());
            let said = write_line(&mut stream, &line, &path);
            let _ = tokio::time::timeout(Duration::from_secs(1), said).await;
        }
    }

    fn into_async(self) -> Result<tokio::net::UnixStream, HandoverError> {
        let Self { stream, path, .. } = self;
        stream
            .set_nonblocking(true)
            .and_then(|()| tokio::net::UnixStream::from_std(stream))
            .map_err(|source| HandoverError::Socket { path, source })
    }
}

/// The new process's side: binds `path` (replacing a stale socket file), waits at most
/// `timeout` for the running process to connect and offer its listening sockets, checks
/// each against the offer's manifest, answers `held` and removes `path`. Blocking; call it
/// before starting the runtime or from `spawn_blocking`.
pub fn receive(path: &Path, timeout: Duration) -> Result<Handover, HandoverError> {
    let socket_error = |source| HandoverError::Socket {
        path: path.to_owned(),
        source,
    };
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(socket_error(e)),
        _ => {}
    }
    let listener = UnixListener::bind(path).map_err(socket_error)?;
    tracing::info!(upgrade_sock = %path.display(), ?timeout, "waiting for the listening sockets of the running process (send it SIGQUIT)");
    let result = accept_within(&listener, timeout, path).and_then(|mut stream| {
        let inherited = receive_on(&mut stream, path)?;
        stream
            .write_all(Line::Held.encode().as_bytes())
            .map_err(socket_error)?;
        Ok(Handover {
            inherited: Some(inherited),
            stream,
            path: path.to_owned(),
        })
    });
    let _ = std::fs::remove_file(path);
    result
}

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

fn unexpected(path: &Path, line: &Line, waiting_for: &str) -> HandoverError {
    HandoverError::Protocol {
        path: path.to_owned(),
        reason: format!(
            "got {:?} while waiting for {waiting_for}",
            line.encode().trim_end()
        ),
    }
}

/// The next line, within `timeout`.
async fn next_line(
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

async fn write_line(
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

/// Accepts one connection on `listener` within `timeout`.
fn accept_within(
    listener: &UnixListener,
    timeout: Duration,
    path: &Path,
) -> Result<UnixStream, HandoverError> {
    let socket_error = |source| HandoverError::Socket {
        path: path.to_owned(),
        source,
    };
    // std has no accept timeout: wait for the listener to become readable with poll(2).
    let mut ready = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HandoverError::Timeout {
                path: path.to_owned(),
                waiting_for: "connection",
                waited: timeout,
            });
        }
        let wait = u16::try_from(left.as_millis()).unwrap_or(u16::MAX).max(1);
        match poll(&mut ready, PollTimeout::from(wait)) {
            Ok(0) => continue,
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(socket_error(e.into())),
        }
    }
    let (stream, _) = listener.accept().map_err(socket_error)?;
    let left = deadline.saturating_duration_since(Instant::now());
    stream
        .set_read_timeout(Some(left.max(Duration::from_secs(1))))
        .map_err(socket_error)?;
    Ok(stream)
}

/// Reads the offer on `stream` and checks every socket against its manifest line: a
/// listening TCP socket bound to the address the line names.
fn receive_on(stream: &mut UnixStream, path: &Path) -> Result<Inherited, HandoverError> {
    let protocol = |reason: String| HandoverError::Protocol {
        path: path.to_owned(),
        reason,
    };
    let received = fds::receive(stream).map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            protocol("the peer connected but sent no hand-over in time".to_owned())
        }
        _ => HandoverError::Socket {
            path: path.to_owned(),
            source: e,
        },
    })?;
    let header = Header::parse(&received.header).map_err(|e| protocol(e.to_string()))?;
    if received.truncated {
        return Err(protocol(format!(
            "more than {MAX_LISTENERS} sockets sent; control message truncated"
        )));
    }
    if header.count != received.fds.len()
        || received.fds.is_empty()
        || header.manifest_len > MAX_LISTENERS * 80
    {
        return Err(protocol(format!(
            "an offer announcing {} sockets ({} bytes of manifest) came with {}",
            header.count,
            header.manifest_len,
            received.fds.len()
        )));
    }
    let mut manifest = vec![0; header.manifest_len];
    std::io::Read::read_exact(stream, &mut manifest)
        .map_err(|e| protocol(format!("the manifest did not arrive: {e}")))?;
    let entries = wire::parse_manifest(&manifest, header.count).map_err(protocol)?;
    let mut listeners = HashMap::with_capacity(entries.len());
    for (fd, (kind, addr)) in received.fds.into_iter().zip(entries) {
        let listening = getsockopt(&fd, sockopt::AcceptConn)
            .map_err(|e| protocol(format!("received a descriptor that is not a socket: {e}")))?;
        if !listening {
            return Err(protocol("received a socket that is not listening".into()));
        }
        let tcp = TcpListener::from(fd);
        let bound = tcp
            .local_addr()
            .map_err(|e| protocol(format!("received a socket with no address: {e}")))?;
        if bound != addr {
            return Err(protocol(format!(
                "the socket offered as {kind} {addr} is bound to {bound}"
            )));
        }
        listeners.insert(addr, (kind, tcp));
    }
    Ok(Inherited {
        listeners,
        received: true,
    })
}

#[cfg(test)]
mod tests;
