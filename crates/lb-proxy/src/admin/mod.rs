//! The admin listener (`[admin]`): Prometheus metrics, the status page, the runtime API
//! and the proxy's own health check.
//!
//! - `GET /healthz`: `200 ok` while the proxy runs (never needs the token);
//! - `GET /metrics`: OpenMetrics text ([`collect`]), or the classic Prometheus text format
//!   ([`classic`]) when the scraper's `Accept` prefers it ([`accept`]);
//! - `GET /status`: JSON, or the HTML page for `Accept: text/html` and `/status.html`
//!   ([`status`], [`page`]);
//! - `POST /backends/{upstream}/{addr}/disable|enable|drain`: HAProxy's runtime API
//!   ([`control`]);
//! - `POST /reload`: reads the configuration file again and applies it, as SIGHUP does
//!   ([`crate::reload`]); answers what changed, or why nothing did.
//!
//! With `token` set, every endpoint but `/healthz` needs `Authorization: Bearer TOKEN`
//! (compared in constant time). The listener speaks HTTP/1.1 and stops with the proxy.
//!
//! The request path only ever touches [`stats`]: counters created at start-up and
//! recorded with atomic additions from `ConfigProxy`'s `after_attempt` and `logging` hooks.

mod accept;
mod addr_hash;
mod classic;
mod collect;
pub(crate) mod control;
mod families;
mod histogram;
mod http;
mod page;
pub(crate) mod stats;
mod status;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::os::fd::{AsFd as _, OwnedFd};
use std::sync::{Arc, Weak};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::AdminConfig;
use crate::config_proxy::ConfigProxy;
use crate::handover::Inherited;
use crate::live::LiveProxy;
use crate::reload::Reloader;
use crate::server::StartError;
use control::Control;

/// What the admin endpoints read and act on.
#[derive(Debug)]
pub(crate) struct AdminState {
    /// The running configuration: upstreams, routes and request counters.
    pub(crate) live: Arc<LiveProxy>,
    /// Applies `POST /reload`.
    pub(crate) reloader: Arc<Reloader>,
    /// Operator holds and state-change times.
    pub(crate) control: Arc<Control>,
    /// The proxy listeners' connections (weak: shutdown takes the `GracefulShutdown` back).
    pub(crate) connections: Weak<GracefulShutdown>,
}

impl AdminState {
    /// The current configuration generation (load once per admin request, so that one
    /// answer describes one generation).
    pub(crate) fn proxy(&self) -> Arc<ConfigProxy> {
        self.live.load()
    }
}

/// A bound admin listener, not yet serving.
#[derive(Debug)]
pub(crate) struct AdminListener {
    tcp: TcpListener,
    local: SocketAddr,
}

impl AdminListener {
    /// The socket for `config.listen`: the one `inherited` holds for that address (from
    /// the previous process, or the running admin listener on reload), else a new one.
    pub(crate) async fn bind(
        config: &AdminConfig,
        inherited: &mut Inherited,
    ) -> Result<Self, StartError> {
        let addr = config.listen;
        let bound = match inherited.take(addr) {
            Some((was, std)) => {
                if inherited.is_from_previous_process() {
                    tracing::info!(%addr, %was, "admin listening on the socket of the previous process");
                }
                std.set_nonblocking(true)
                    .and_then(|()| TcpListener::from_std(std))
            }
            None => TcpListener::bind(addr).await,
        };
        let bound = bound.and_then(|tcp| tcp.local_addr().map(|local| (tcp, local)));
        let (tcp, local) = bound.map_err(|source| StartError::Listen { addr, source })?;
        Ok(Self { tcp, local })
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// A duplicate of the listening socket (for the hand-over, and for a reload that keeps
    /// the address).
    pub(crate) fn duplicate(&self) -> Result<OwnedFd, StartError> {
        self.tcp
            .as_fd()
            .try_clone_to_owned()
            .map_err(|source| StartError::Listen {
                addr: self.local,
                source,
            })
    }

    /// Serves the admin endpoints until `stop` (the proxy stops) or `retire` (a reload
    /// replaced this listener, or the process drains after a hand-over) turns true; open
    /// admin connections end then too, so none goes on with an old token.
    pub(crate) fn spawn(
        self,
        state: AdminState,
        config: &AdminConfig,
        stop: watch::Receiver<bool>,
        retire: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let state = Arc::new(state);
        let admin = Arc::new(http::Admin::new(state, config.token.as_deref()));
        tracing::info!(listen = %self.local, auth = config.token.is_some(), "admin listener started");
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new()).http1_only();
            let (mut stop, mut retire) = (stop, retire);
            loop {
                let accepted = tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => break,
                    _ = retire.wait_for(|s| *s) => break,
                    accepted = self.tcp.accept() => accepted,
                };
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        tracing::warn!(%error, "admin accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let admin = admin.clone();
                let builder = builder.clone();
                let (mut stop, mut retire) = (stop.clone(), retire.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let admin = admin.clone();
                        async move { admin.handle(req).await }
                    });
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    tokio::pin!(conn);
                    tokio::select! {
                        done = conn.as_mut() => if let Err(error) = done {
                            tracing::debug!(error = &*error as &dyn std::error::Error, "admin connection ended with an error");
                        },
                        _ = stop.wait_for(|s| *s) => {}
                        _ = retire.wait_for(|s| *s) => {}
                    }
                });
            }
            tracing::debug!(listen = %self.local, "admin listener stopped");
        })
    }
}
