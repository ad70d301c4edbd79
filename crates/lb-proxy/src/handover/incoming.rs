//! The new process's side of a hand-over: wait on `upgrade_sock`, take the offer, check
//! every socket against its manifest line, answer `held`; later confirm (`ready`, then
//! wait for `commit`) or abort (`failed REASON`).

use std::collections::HashMap;
use std::io::{self, Write as _};
use std::net::TcpListener;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{getsockopt, sockopt};
use tokio::io::BufReader;

use super::lines::{next_line, unexpected, write_line};
use super::wire::{self, Header, Line};
use super::{fds, Handover, HandoverError, Inherited, MAX_LISTENERS};

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
    Ok(Inherited::received(listeners))
}
