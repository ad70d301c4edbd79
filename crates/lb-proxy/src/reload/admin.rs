//! The admin listener as part of the running configuration: started with the proxy, and
//! changed by a reload that changes `[admin]` (a new address, a new token, turned on or
//! off) without a restart.
//!
//! A reload decides first ([`plan`], which binds a new address and so can fail, changing
//! nothing), then applies: the new listener starts, the token changes for every admin
//! connection at once (it is read per request), and the listener it replaces stops
//! accepting; its open connections finish what they were sent and close. The same
//! address keeps its socket, so a reload that only changes the token never refuses a
//! connection.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{AdminListener, AdminState};
use crate::config::AdminConfig;
use crate::error::StartError;
use crate::sockets::{Inherited, ListenerKind};

/// The admin listener serving now.
#[derive(Debug)]
pub(crate) struct RunningAdmin {
    /// The bound address.
    pub(crate) local: SocketAddr,
    /// Its settings, as configured.
    config: AdminConfig,
    /// A duplicate of its socket: handed over on upgrade, and taken again by a reload that
    /// keeps the address.
    pub(crate) fd: OwnedFd,
    retire: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// What a reload does to the admin listener.
#[derive(Debug)]
pub(crate) enum Plan {
    /// `[admin]` is unchanged (or absent before and after).
    Keep,
    /// `[admin]` was removed.
    Stop,
    /// A listener with these settings replaces the running one (if any) on this socket.
    Start(AdminListener, AdminConfig),
}

impl RunningAdmin {
    /// Serves `listener` with `config` until `stop` or [`retire`](Self::retire).
    pub(crate) fn start(
        listener: AdminListener,
        config: AdminConfig,
        state: AdminState,
        stop: watch::Receiver<bool>,
    ) -> Result<Self, StartError> {
        let fd = listener.duplicate()?;
        let local = listener.local_addr();
        let (retire, retired) = watch::channel(false);
        let task = listener.spawn(state, &config, stop, retired);
        Ok(Self {
            local,
            config,
            fd,
            retire,
            task,
        })
    }

    /// Stops accepting, closes its connections, and waits for its task.
    pub(crate) async fn retire(self) {
        let _ = self.retire.send(true);
        let _ = self.task.await;
    }

    /// The token its settings ask for.
    pub(crate) fn token(&self) -> Option<&str> {
        self.config.token.as_deref()
    }

    /// Waits for its task (after the proxy's `stop`).
    pub(crate) async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// Decides what `next` does to `current`; binds a new address when one is needed (the only
/// step that can fail).
pub(crate) async fn plan(
    current: Option<&RunningAdmin>,
    next: Option<&AdminConfig>,
) -> Result<Plan, StartError> {
    match (current, next) {
        (None, None) => Ok(Plan::Keep),
        (Some(_), None) => Ok(Plan::Stop),
        (Some(running), Some(next)) if running.config == *next => Ok(Plan::Keep),
        (current, Some(next)) => {
            // The same configured address keeps the running socket.
            let mut own = match current {
                Some(running) if running.config.listen == next.listen => {
                    let dup = running
                        .fd
                        .try_clone()
                        .map_err(|source| StartError::Listen {
                            addr: running.local,
                            source,
                        })?;
                    Inherited::own([(next.listen, ListenerKind::Admin, dup.into())])
                }
                _ => Inherited::default(),
            };
            let listener = AdminListener::bind(next, &mut own).await?;
            Ok(Plan::Start(listener, next.clone()))
        }
    }
}
