//! Process signals: SIGTERM and SIGINT stop the proxy gracefully, SIGQUIT starts a graceful
//! binary upgrade (the listening sockets go to a process started with `--upgrade`), SIGHUP
//! is logged and ignored until configuration reload exists.

use tokio::signal::unix::{signal, Signal as Stream, SignalKind};

/// What a signal asks the proxy to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Signal {
    /// SIGTERM or SIGINT: stop accepting, drain, exit.
    Terminate,
    /// SIGQUIT: hand the listening sockets to the new binary, then drain and exit.
    Upgrade,
    /// SIGHUP: read the configuration file again and apply it (hot reload).
    Reload,
}

/// The signals the proxy handles, registered once (so none is lost between two waits).
#[derive(Debug)]
pub struct Signals {
    term: Stream,
    int: Stream,
    quit: Stream,
    hup: Stream,
}

impl Signals {
    /// Registers the handlers; from then on those signals no longer kill the process.
    /// Needs a tokio runtime.
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            quit: signal(SignalKind::quit())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next signal.
    pub async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => {
                tracing::info!("SIGTERM received");
                Signal::Terminate
            }
            _ = self.int.recv() => {
                tracing::info!("SIGINT received");
                Signal::Terminate
            }
            _ = self.quit.recv() => {
                tracing::info!("SIGQUIT received");
                Signal::Upgrade
            }
            _ = self.hup.recv() => {
                tracing::info!("SIGHUP received");
                Signal::Reload
            }
        }
    }
}

/// Resolves on the first SIGTERM or SIGINT.
pub async fn terminated() -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    Ok(())
}
