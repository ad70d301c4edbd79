//! [`Server`]: runs any [`ProxyHttp`] implementation on plain HTTP listeners, for users who
//! embed the library (the TOML-driven proxy is started by [`Proxy`](crate::Proxy)).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::watch;

use crate::config::ServerLimits;
use crate::hooks::ProxyHttp;
use crate::listener::{accept_loop, Builders, Listener, Serving};
use crate::worker::Workers;

/// Serves HTTP/1.1 and HTTP/2 (h2c) with the decisions of `H`, like Pingora's
/// `http_proxy_service`.
///
/// ```no_run
/// # use lb_proxy_core::hooks::{LocalResponse, Peer, ProxyHttp, Session};
/// # struct MyProxy;
/// # impl ProxyHttp for MyProxy {
/// #     type Ctx = ();
/// #     fn new_ctx(&self) {}
/// #     async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Peer, LocalResponse> {
/// #         Err(LocalResponse::no_backend())
/// #     }
/// # }
/// # async fn demo() -> std::io::Result<()> {
/// let server = lb_proxy_core::Server::new(MyProxy).bind("127.0.0.1:6188").await?;
/// server.run(async { let _ = tokio::signal::ctrl_c().await; }).await;
/// # Ok(()) }
/// ```
pub struct Server<H> {
    hooks: Arc<H>,
    listeners: Vec<TcpListener>,
    grace_period: Duration,
    limits: ServerLimits,
}

impl<H> std::fmt::Debug for Server<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listeners", &self.listeners)
            .field("grace_period", &self.grace_period)
            .finish_non_exhaustive()
    }
}

impl<H: ProxyHttp> Server<H> {
    /// A server running `hooks`, with no listener yet and a 10-second grace period.
    pub fn new(hooks: H) -> Self {
        Self {
            hooks: Arc::new(hooks),
            listeners: Vec::new(),
            grace_period: Duration::from_secs(10),
            limits: ServerLimits::default(),
        }
    }

    /// What each client may cost: connections, head and body sizes, timeouts, HTTP/2
    /// stream limits (the TOML file's `[server.limits]`). The defaults apply otherwise.
    #[must_use]
    pub fn limits(mut self, limits: ServerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Adds a listener bound to `addr` (port 0 picks a free port).
    pub async fn bind(mut self, addr: impl ToSocketAddrs) -> io::Result<Self> {
        self.listeners.push(TcpListener::bind(addr).await?);
        Ok(self)
    }

    /// How long in-flight requests may take to finish once `run`'s shutdown future ends.
    #[must_use]
    pub fn grace_period(mut self, grace_period: Duration) -> Self {
        self.grace_period = grace_period;
        self
    }

    /// The bound addresses.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Serves until `shutdown` completes, then stops accepting and waits for in-flight
    /// requests, at most the grace period. Returns `true` when all finished in time.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> bool {
        let (stop_tx, stop_rx) = watch::channel(false);
        let graceful = Arc::new(GracefulShutdown::new());
        // Never set: a `Server` has no binary upgrade and no reload.
        let (_drain_tx, drain_rx) = watch::channel(false);
        let (_retire_tx, retire_rx) = watch::channel(false);
        let serving = Serving {
            hooks: self.hooks.clone(),
            builders: Arc::new(Builders::with_limits(&self.limits)),
            stop: stop_rx,
            drain: drain_rx,
            // The caller's runtime serves everything.
            workers: Workers::single(),
        };
        let mut tasks = Vec::with_capacity(self.listeners.len());
        for tcp in self.listeners {
            match Listener::plain(tcp) {
                Ok(listener) => tasks.push(tokio::spawn(accept_loop(
                    listener,
                    serving.clone(),
                    graceful.clone(),
                    retire_rx.clone(),
                    0,
                ))),
                Err(error) => tracing::warn!(%error, "listener without an address; skipped"),
            }
        }
        shutdown.await;
        let _ = stop_tx.send(true);
        for task in tasks {
            let _ = task.await;
        }
        let Ok(graceful) = Arc::try_unwrap(graceful) else {
            return false;
        };
        tokio::time::timeout(self.grace_period, graceful.shutdown())
            .await
            .is_ok()
    }
}
