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
//! The request path only ever touches [`crate::stats`]: counters created at start-up and
//! recorded with atomic additions from `ConfigProxy`'s `after_attempt` and `logging` hooks.

mod accept;
mod classic;
mod collect;
pub(crate) mod control;
mod families;
pub(crate) mod http;
mod page;
mod status;

use std::net::SocketAddr;
use std::os::fd::{AsFd as _, OwnedFd};
use std::sync::{Arc, Weak};
use std::time::Duration;

use ::http::header::{HeaderValue, CONNECTION};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::changes::Reloaded;
use crate::config::AdminConfig;
use crate::config_proxy::ConfigProxy;
use crate::error::{ReloadError, StartError};
use crate::live::LiveProxy;
use crate::sockets::Inherited;
use crate::worker::Workers;
use control::Control;

/// What the admin endpoints ask of the process around them: `POST /reload`, and the
/// workers for `/metrics`. The reloader (`crate::reload`, above this module) implements it.
#[async_trait::async_trait]
pub(crate) trait Reload: Send + Sync + std::fmt::Debug {
    /// Reads the configuration file again and applies it (as SIGHUP does).
    async fn reload_file(&self) -> Result<Reloaded, ReloadError>;

    /// The workers serving the proxy's listeners.
    fn workers(&self) -> Workers;
}

/// What the admin endpoints read and act on.
#[derive(Debug)]
pub(crate) struct AdminState {
    /// The running configuration: upstreams, routes and request counters.
    pub(crate) live: Arc<LiveProxy>,
    /// Applies `POST /reload`.
    pub(crate) reloader: Arc<dyn Reload>,
    /// Operator holds and state-change times.
    pub(crate) control: Arc<Control>,
    /// The proxy listeners' connections (weak: shutdown takes the `GracefulShutdown` back).
    pub(crate) connections: Weak<GracefulShutdown>,
    /// The token the endpoints ask for, the same for every admin listener of the process.
    pub(crate) token: Arc<http::Token>,
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
        let (tcp, local) = inherited
            .take_or_bind(addr)
            .await
            .map_err(|source| StartError::Listen { addr, source })?;
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
    /// replaced this listener, or the process drains after a hand-over) turns true. Open
    /// admin connections then finish what they were sent (answers say `Connection:
    /// close`; [`SETTLE`], then a graceful shutdown and at most [`LINGER`]), and the task
    /// returns once they have.
    pub(crate) fn spawn(
        self,
        state: AdminState,
        config: &AdminConfig,
        stop: watch::Receiver<bool>,
        retire: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let auth = config.token.is_some();
        let admin = Arc::new(http::Admin::new(Arc::new(state)));
        tracing::info!(listen = %self.local, auth, "admin listener started");
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new()).http1_only();
            let ending = Ending { stop, retire };
            // The open connections, awaited at the end: a process that exits right after
            // (a drain) would otherwise close one with its request unread (a reset).
            let mut connections = tokio::task::JoinSet::new();
            loop {
                while connections.try_join_next().is_some() {}
                let mut end = ending.clone();
                let accepted = tokio::select! {
                    biased;
                    () = end.wait() => break,
                    accepted = self.tcp.accept() => accepted,
                };
                match accepted {
                    Ok((stream, _)) => {
                        connections.spawn(serve_connection(
                            stream,
                            admin.clone(),
                            builder.clone(),
                            ending.clone(),
                        ));
                    }
                    Err(error) => {
                        tracing::warn!(%error, "admin accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            let local = self.local;
            drop(self.tcp);
            // Each ends within SETTLE + LINGER of the end (serve_connection).
            while connections.join_next().await.is_some() {}
            tracing::debug!(listen = %local, "admin listener stopped");
        })
    }
}

/// How long an admin connection is left alone once its listener stopped, so that a
/// request already sent on it is read (hyper's graceful shutdown closes a connection that
/// has read nothing yet as idle).
const SETTLE: Duration = Duration::from_millis(250);

/// Then, after the graceful shutdown (idle connections close at once), how long a request
/// in progress may take to be answered.
const LINGER: Duration = Duration::from_secs(2);

/// The two ways an admin listener ends.
#[derive(Clone)]
struct Ending {
    stop: watch::Receiver<bool>,
    retire: watch::Receiver<bool>,
}

impl Ending {
    /// True once either is set.
    fn ended(&self) -> bool {
        *self.stop.borrow() || *self.retire.borrow()
    }

    /// Returns once either is set.
    async fn wait(&mut self) {
        tokio::select! {
            _ = self.stop.wait_for(|s| *s) => {}
            _ = self.retire.wait_for(|s| *s) => {}
        }
    }
}

/// Serves one admin connection; see [`AdminListener::spawn`] for its end.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    admin: Arc<http::Admin>,
    builder: auto::Builder<TokioExecutor>,
    mut ending: Ending,
) {
    let closing = ending.clone();
    let svc = hyper::service::service_fn(move |req| {
        let (admin, closing) = (admin.clone(), closing.clone());
        async move {
            let mut resp = admin.handle(req).await?;
            if closing.ended() {
                resp.headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let done = tokio::select! {
        done = conn.as_mut() => Some(done),
        () = ending.wait() => None,
    };
    let done = match done {
        Some(done) => done,
        None => match tokio::time::timeout(SETTLE, conn.as_mut()).await {
            Ok(done) => done,
            Err(_) => {
                conn.as_mut().graceful_shutdown();
                tokio::time::timeout(LINGER, conn.as_mut())
                    .await
                    .unwrap_or(Ok(()))
            }
        },
    };
    if let Err(error) = done {
        tracing::debug!(
            error = &*error as &dyn std::error::Error,
            "admin connection ended with an error"
        );
    }
}
