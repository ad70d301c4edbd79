//! The signal loop of a serving process: SIGHUP reloads the configuration file, SIGTERM
//! and SIGINT stop gracefully, SIGQUIT hands the listening sockets over to a new binary
//! (`lb-proxy -u`) and, once it has taken them, drains. A hand-over runs beside the loop,
//! so the other signals are still handled during it.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use crate::signals::{Signal, Signals};
use crate::{HandoverError, RunningProxy};

/// How long the running process, on SIGQUIT, tries to reach the new one on `upgrade_sock`
/// (then `server.upgrade_timeout` for it to start).
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(30);

/// A hand-over in progress (`RunningProxy::hand_over`).
type Upgrading<'a> = Pin<Box<dyn Future<Output = Result<(), HandoverError>> + 'a>>;

/// Handles `signals` for `running` until it has stopped (SIGTERM/SIGINT) or handed over and
/// drained (SIGQUIT, with `upgrade_sock`).
pub(super) async fn supervise(
    running: RunningProxy,
    mut signals: Signals,
    upgrade_sock: Option<&Path>,
) {
    // A hand-over in progress: the proxy serves on while it runs.
    let mut upgrading: Option<Upgrading<'_>> = None;
    loop {
        let signal = match upgrading.as_mut() {
            Some(upgrade) => tokio::select! {
                signal = signals.recv() => signal,
                done = upgrade => {
                    upgrading = None;
                    match done {
                        Ok(()) => {
                            tracing::info!("the new process has started and took over; draining");
                            running.drain().await;
                            tracing::info!("drained; exiting");
                            return;
                        }
                        Err(error) => {
                            tracing::error!(
                                error = &error as &dyn std::error::Error,
                                "upgrade failed; still serving on every listener"
                            );
                            continue;
                        }
                    }
                }
            },
            None => signals.recv().await,
        };
        match signal {
            Signal::Upgrade => {
                let Some(sock) = upgrade_sock else {
                    tracing::warn!("SIGQUIT ignored: no upgrade_sock in [server]");
                    continue;
                };
                if upgrading.is_some() {
                    tracing::warn!("SIGQUIT ignored: an upgrade is already in progress");
                    continue;
                }
                tracing::info!(upgrade_sock = %sock.display(), "SIGQUIT: offering the listening sockets to the new process");
                upgrading = Some(Box::pin(running.hand_over(sock, HANDOVER_TIMEOUT)));
            }
            Signal::Reload => {
                // Logged and counted by the reload itself, whatever the outcome.
                let _ = running.reload_file().await;
            }
            // Signal::Terminate (the enum is non-exhaustive).
            _ => {
                // An upgrade in progress is given up: the new process sees the socket close.
                drop(upgrading);
                running.shutdown().await;
                tracing::info!("stopped");
                return;
            }
        }
    }
}
