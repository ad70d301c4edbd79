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
//! in `handover/wire.rs`; the descriptors' passage in `handover/fds.rs`.

mod fds;
mod incoming;
mod lines;
mod offer;
mod wire;

use std::io;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::sockets::{Inherited, ListenerKind};
pub use incoming::receive;
pub use offer::send;

/// At most this many listening sockets are handed over (more is refused by [`send`]).
pub const MAX_LISTENERS: usize = 64;

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

/// The new process's side of a hand-over in progress: it holds the sockets; the previous
/// process serves on until [`confirm`](Self::confirm). Dropped without it, the previous
/// process sees the socket close and keeps serving.
#[derive(Debug)]
pub struct Handover {
    inherited: Option<Inherited>,
    stream: UnixStream,
    path: PathBuf,
}

#[cfg(test)]
mod tests;
