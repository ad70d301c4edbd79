//! [`RunError`]: why [`run`](super::run) stopped the process with a failure. The binary
//! prints it with every cause ([`error_chain`](crate::config::error_chain)) and exits 1.

use std::io;
use std::num::TryFromIntError;
use std::path::PathBuf;

use crate::config::ConfigError;
use crate::process::daemon::DaemonError;
use crate::process::logging::LoggingError;
use crate::{HandoverError, SourceError, StartError};

/// Why the proxy process could not start, or stopped with a failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// `-c`: the configuration file cannot be read, parsed or validated.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `-t`: an upstream of the configuration cannot be built.
    #[error(transparent)]
    Check(#[from] SourceError),
    /// `--upgrade` without `upgrade_sock` in `[server]`.
    #[error("--upgrade needs `upgrade_sock` in [server] of the configuration file")]
    UpgradeNeedsSock,
    /// `-d`: the background process could not be started.
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    /// The background process could not start a session of its own, or point its output
    /// to `/dev/null`.
    #[error("cannot detach")]
    Detach(#[source] io::Error),
    /// The error log cannot be opened, or logging was already set up.
    #[error(transparent)]
    Logging(#[from] LoggingError),
    /// The main thread's runtime cannot be built.
    #[error("cannot start the runtime")]
    Runtime(#[source] io::Error),
    /// `--threads` or `server.threads` does not fit this platform's `usize`.
    #[error("server.threads")]
    Threads(#[source] TryFromIntError),
    /// The worker threads cannot be started.
    #[error("cannot start the worker threads")]
    Workers(#[source] io::Error),
    /// The demo backends cannot listen on loopback.
    #[error(transparent)]
    Demo(io::Error),
    /// A `--backend` address cannot be parsed or resolved.
    #[error("--backend {text}")]
    Backend {
        /// The address as given.
        text: String,
        /// Why.
        #[source]
        source: lb_core::Error,
    },
    /// The signal handlers cannot be registered.
    #[error("cannot handle signals")]
    Signals(#[source] io::Error),
    /// `--upgrade`: the task receiving the sockets of the previous process failed.
    #[error("upgrade")]
    UpgradeTask(#[source] tokio::task::JoinError),
    /// `--upgrade`: the sockets of the previous process cannot be received.
    #[error(transparent)]
    Handover(#[from] HandoverError),
    /// The proxy cannot start (bind, TLS, upstreams, admin listener).
    #[error(transparent)]
    Start(#[from] StartError),
    /// `--upgrade`: the previous process did not commit the hand-over; it serves on.
    #[error("upgrade not committed")]
    NotCommitted(#[source] HandoverError),
    /// The pid file cannot be written.
    #[error("cannot write the pid file {}", path.display())]
    PidFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}
