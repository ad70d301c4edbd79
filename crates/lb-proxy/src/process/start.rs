//! Becoming the process in charge: the signal handlers registered first, the listening
//! sockets taken over from the previous process (`--upgrade`) or bound, the proxy started
//! and the hand-over committed, then the pid file and the daemon's "ready". From there
//! [`supervise`](super::supervise) runs the signal loop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{daemon, notice, supervise, PidFile, RunError};
use crate::config::Config;
use crate::signals::Signals;
use crate::{handover, Proxy, Workers};

/// How long `--upgrade` waits for the running process to send its sockets (SIGQUIT).
const UPGRADE_WAIT: Duration = Duration::from_secs(60);

/// How long a new process that has started waits for the previous one's commit.
const COMMIT_WAIT: Duration = Duration::from_secs(10);

/// The process settings, from the command line over `[server]`.
#[derive(Debug, Default)]
pub(super) struct Settings {
    /// `-c`: what SIGHUP reads again.
    pub(super) config_file: Option<PathBuf>,
    /// `--pid-file` or `server.pid_file`.
    pub(super) pid_file: Option<PathBuf>,
    /// `server.upgrade_sock`: where a hand-over meets the other process.
    pub(super) upgrade_sock: Option<PathBuf>,
    /// `--upgrade`: take the sockets over instead of binding them.
    pub(super) upgrade: bool,
    /// This is the re-executed background process of `-d`.
    pub(super) daemon_child: bool,
}

/// Runs the proxy until SIGTERM/SIGINT (shutdown) or a committed SIGQUIT hand-over
/// (drain), then returns.
pub(super) async fn serve(
    config: Config,
    demo_backends: Option<&[SocketAddr]>,
    settings: &Settings,
    workers: &Workers,
) -> Result<(), RunError> {
    // Registered first: from here on SIGQUIT no longer kills the process (with a core).
    let signals = Signals::new().map_err(RunError::Signals)?;
    let mut proxy = Proxy::new(config).workers(workers);
    if let Some(path) = &settings.config_file {
        proxy = proxy.config_file(path);
    }
    let mut taking_over = None;
    if let (true, Some(sock)) = (settings.upgrade, &settings.upgrade_sock) {
        let sock = sock.clone();
        let mut handover =
            tokio::task::spawn_blocking(move || handover::receive(&sock, UPGRADE_WAIT))
                .await
                .map_err(RunError::UpgradeTask)??;
        let inherited = handover.take_sockets();
        tracing::info!(
            sockets = inherited.len(),
            "received the listening sockets of the previous process; it serves until this one has started"
        );
        proxy = proxy.inherit(inherited);
        taking_over = Some(handover);
    }
    let running = match proxy.start().await {
        Ok(running) => running,
        Err(error) => {
            let error = RunError::from(error);
            if let Some(handover) = taking_over {
                // The previous process keeps every listener and serves on.
                handover.abort(&crate::config::error_chain(&error)).await;
            }
            return Err(error);
        }
    };
    if let Some(handover) = taking_over {
        if let Err(error) = handover.confirm(COMMIT_WAIT).await {
            tracing::error!(
                error = &error as &dyn std::error::Error,
                "the previous process did not take the hand-over; it serves on, and this one stops"
            );
            running.shutdown().await;
            return Err(RunError::NotCommitted(error));
        }
        tracing::info!(
            "upgrade committed: the previous process stopped accepting; this one serves"
        );
    }
    // Written only once this process is in charge: a failed upgrade leaves the file alone.
    let _pid_file = match &settings.pid_file {
        Some(path) => {
            let file = PidFile::create(path).map_err(|source| RunError::PidFile {
                path: path.clone(),
                source,
            })?;
            tracing::info!(pid = std::process::id(), pid_file = %path.display(), "pid file written");
            Some(file)
        }
        None => None,
    };
    if let Some(backends) = demo_backends {
        notice::demo_banner(&running.local_addrs(), backends);
    }
    if settings.daemon_child {
        daemon::ready().map_err(RunError::Detach)?;
    }
    supervise::supervise(running, signals, settings.upgrade_sock.as_deref()).await;
    Ok(())
}
