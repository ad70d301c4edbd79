//! Graceful binary upgrade: handing the listening sockets from the running process to a new
//! one over a Unix socket (`server.upgrade_sock`), with `SCM_RIGHTS`, as Pingora does.
//!
//! The order of the dance:
//! 1. the new binary starts with `--upgrade`: [`receive`] binds `upgrade_sock` and waits;
//! 2. the running process gets SIGQUIT: [`send`] connects to `upgrade_sock` (retrying for a
//!    while, so the two steps may also come the other way round), sends every listening
//!    socket in one message and waits for the new process's acknowledgement;
//! 3. the new process starts serving on the sockets it received (matched to its
//!    configuration by address, plain and TLS alike), binding only addresses it did not
//!    receive; the old one stops accepting, drains and exits.
//!
//! The sockets themselves are never closed: both processes hold them for a moment, and a
//! connection waiting in the accept queue is taken by whichever accepts first. So no client
//! sees a refused connection.
//!
//! This is the only module of the crate that needs `unsafe`: taking ownership of the file
//! descriptors that arrive in the control message.

use std::collections::HashMap;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    getsockopt, recvmsg, sendmsg, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
};

/// At most this many listening sockets are handed over (more is refused by [`send`]).
pub const MAX_LISTENERS: usize = 64;

/// How often [`send`] retries connecting while the new process is not listening yet.
const CONNECT_RETRY: Duration = Duration::from_millis(100);

/// The acknowledgement the new process writes once it holds the sockets.
const ACK: &[u8; 2] = b"ok";

/// Why a hand-over failed.
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
    /// Nothing arrived (or no peer listened) in time.
    #[error("upgrade socket {path}: nothing after {waited:?}")]
    Timeout {
        /// `server.upgrade_sock`.
        path: PathBuf,
        /// How long it waited.
        waited: Duration,
    },
    /// The message was not a hand-over (wrong size, truncated, no or too many sockets).
    #[error("upgrade socket {path}: {reason}")]
    Protocol {
        /// `server.upgrade_sock`.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

/// Listening sockets received from the previous process, by bound address.
#[derive(Debug, Default)]
pub struct Inherited {
    listeners: HashMap<SocketAddr, TcpListener>,
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
    pub(crate) fn own(listeners: impl IntoIterator<Item = (SocketAddr, TcpListener)>) -> Self {
        Self {
            listeners: listeners.into_iter().collect(),
        }
    }

    /// The socket bound to exactly `addr`, if one was received (and not yet taken).
    pub(crate) fn take(&mut self, addr: SocketAddr) -> Option<TcpListener> {
        self.listeners.remove(&addr)
    }

    /// The addresses of the sockets left.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.listeners.keys().copied().collect()
    }
}

/// The new process's side: binds `path` (replacing a stale socket file), waits at most
/// `timeout` for the running process to connect and send its listening sockets,
/// acknowledges them and removes `path`. Blocking; call it before starting the runtime or
/// from `spawn_blocking`.
pub fn receive(path: &Path, timeout: Duration) -> Result<Inherited, HandoverError> {
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
        let inherited = receive_on(&stream, path)?;
        stream.write_all(ACK).map_err(socket_error)?;
        Ok(inherited)
    });
    let _ = std::fs::remove_file(path);
    result
}

/// The running process's side: connects to `path` (retrying until `timeout` while nobody
/// listens there yet), sends `listeners` in one message and waits for the acknowledgement,
/// all within `timeout`. After `Ok`, the new process holds the sockets.
pub async fn send(
    path: &Path,
    listeners: Vec<OwnedFd>,
    timeout: Duration,
) -> Result<(), HandoverError> {
    let socket_error = |source| HandoverError::Socket {
        path: path.to_owned(),
        source,
    };
    if listeners.is_empty() || listeners.len() > MAX_LISTENERS {
        return Err(HandoverError::Protocol {
            path: path.to_owned(),
            reason: format!(
                "{} listening sockets; 1 to {MAX_LISTENERS} can be handed over",
                listeners.len()
            ),
        });
    }
    let deadline = tokio::time::Instant::now() + timeout;
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
    let stream = stream.into_std().map_err(socket_error)?;
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let owned_path = path.to_owned();
    tokio::task::spawn_blocking(move || send_on(stream, &listeners, left, &owned_path))
        .await
        .map_err(|join| socket_error(io::Error::other(join)))?
}

/// Sends the count and the sockets on the connected `stream`, then reads the
/// acknowledgement within `left`. Blocking.
fn send_on(
    mut stream: UnixStream,
    listeners: &[OwnedFd],
    left: Duration,
    path: &Path,
) -> Result<(), HandoverError> {
    let socket_error = |source| HandoverError::Socket {
        path: path.to_owned(),
        source,
    };
    stream.set_nonblocking(false).map_err(socket_error)?;
    stream
        .set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .map_err(socket_error)?;
    let fds: Vec<RawFd> = listeners.iter().map(AsRawFd::as_raw_fd).collect();
    let count = u32::try_from(fds.len()).unwrap_or(u32::MAX).to_le_bytes();
    sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(&count)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| socket_error(e.into()))?;
    let mut ack = [0_u8; ACK.len()];
    match stream.read_exact(&mut ack) {
        Ok(()) if &ack == ACK => Ok(()),
        Ok(()) => Err(HandoverError::Protocol {
            path: path.to_owned(),
            reason: format!("unexpected acknowledgement {ack:?}"),
        }),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Err(HandoverError::Timeout {
                path: path.to_owned(),
                waited: left,
            })
        }
        Err(e) => Err(socket_error(e)),
    }
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
    let millis = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HandoverError::Timeout {
                path: path.to_owned(),
                waited: timeout,
            });
        }
        let wait = u16::try_from(left.as_millis()).unwrap_or(millis).max(1);
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

/// Reads the one hand-over message on `stream`: a little-endian `u32` count and that many
/// listening sockets.
fn receive_on(stream: &UnixStream, path: &Path) -> Result<Inherited, HandoverError> {
    let protocol = |reason: String| HandoverError::Protocol {
        path: path.to_owned(),
        reason,
    };
    let mut count = [0_u8; 4];
    let mut cmsg = nix::cmsg_space!([RawFd; MAX_LISTENERS]);
    let (bytes, flags, raw) = {
        let mut iov = [IoSliceMut::new(&mut count)];
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| match io::Error::from(e) {
            e if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
            {
                protocol("the peer connected but sent no hand-over in time".to_owned())
            }
            source => HandoverError::Socket {
                path: path.to_owned(),
                source,
            },
        })?;
        let mut raw = Vec::new();
        for c in msg
            .cmsgs()
            .map_err(|e| protocol(format!("bad control message: {e}")))?
        {
            if let ControlMessageOwned::ScmRights(fds) = c {
                raw.extend(fds);
            }
        }
        (msg.bytes, msg.flags, raw)
    };
    // Own every descriptor at once, so each is closed whatever goes wrong below.
    let fds: Vec<OwnedFd> = raw.into_iter().map(own).collect();
    if flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(protocol(format!(
            "more than {MAX_LISTENERS} sockets sent; control message truncated"
        )));
    }
    let expected = u32::from_le_bytes(count) as usize;
    if bytes != count.len() || expected != fds.len() || fds.is_empty() {
        return Err(protocol(format!(
            "expected a count and its sockets, got {bytes} bytes announcing {expected} and {} sockets",
            fds.len()
        )));
    }
    let mut listeners = HashMap::with_capacity(fds.len());
    for fd in fds {
        let listening = getsockopt(&fd, sockopt::AcceptConn)
            .map_err(|e| protocol(format!("received a descriptor that is not a socket: {e}")))?;
        if !listening {
            return Err(protocol("received a socket that is not listening".into()));
        }
        let tcp = TcpListener::from(fd);
        let addr = tcp
            .local_addr()
            .map_err(|e| protocol(format!("received a socket with no address: {e}")))?;
        listeners.insert(addr, tcp);
    }
    Ok(Inherited { listeners })
}

/// Takes ownership of a descriptor received in an `SCM_RIGHTS` message.
#[allow(unsafe_code)] // The one unsafe operation of the crate.
fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just created in this process by the kernel for the SCM_RIGHTS
    // message that `receive_on` read; nothing else refers to it, and `receive_on` passes
    // each one here exactly once, so the `OwnedFd` is its only owner and closes it once.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn dup(l: &TcpListener) -> OwnedFd {
        l.as_fd().try_clone_to_owned().unwrap()
    }

    #[tokio::test]
    async fn listening_sockets_cross_the_upgrade_socket_and_keep_their_queue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upgrade.sock");
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let b = TcpListener::bind("127.0.0.1:0").unwrap();
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        // A client queued on `a` before the hand-over is accepted by the receiver.
        let _client = std::net::TcpStream::connect(a_addr).unwrap();
        let receiver = {
            let path = path.clone();
            std::thread::spawn(move || receive(&path, Duration::from_secs(10)))
        };
        send(&path, vec![dup(&a), dup(&b)], Duration::from_secs(10))
            .await
            .unwrap();
        let mut inherited = receiver.join().unwrap().unwrap();
        assert_eq!(inherited.len(), 2);
        drop((a, b)); // The old process's copies close; the sockets stay open.
        let a2 = inherited.take(a_addr).unwrap();
        assert!(inherited.take(b_addr).is_some());
        assert!(inherited.is_empty());
        a2.accept().unwrap();
        assert!(std::net::TcpStream::connect(a_addr).is_ok());
        assert!(!path.exists(), "the receiver removes the socket file");
    }

    #[tokio::test]
    async fn send_times_out_without_a_receiver_and_refuses_nothing_to_send() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nobody.sock");
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let started = Instant::now();
        let err = send(&path, vec![dup(&a)], Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(err, HandoverError::Socket { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let err = send(&path, vec![], Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("0 listening sockets"), "{err}");
    }

    #[test]
    fn receive_times_out_when_nobody_sends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wait.sock");
        let err = receive(&path, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(err, HandoverError::Timeout { .. }), "{err}");
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn a_non_listening_descriptor_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.sock");
        let receiver = {
            let path = path.clone();
            std::thread::spawn(move || receive(&path, Duration::from_secs(10)))
        };
        let file = std::fs::File::open("/dev/null").unwrap();
        // The sender gets no acknowledgement: the receiver refuses and closes.
        let fd = file.as_fd().try_clone_to_owned().unwrap();
        let _ = send(&path, vec![fd], Duration::from_secs(10)).await;
        let err = receiver.join().unwrap().unwrap_err();
        assert!(err.to_string().contains("not a socket"), "{err}");
    }
}
