//! Listeners, connections and graceful shutdown.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use lb_health::StatusChange;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::config::Config;
use crate::discovery::SourceError;
use crate::router::{Router, RouterError};
use crate::service::{self, Shared};
use crate::upstream::{HealthHook, Upstream};

/// How long start-up waits for the first answer of a discovery source.
const INITIAL_DISCOVERY: Duration = Duration::from_secs(5);

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// An upstream's discovery source could not be built.
    #[error(transparent)]
    Upstream(#[from] SourceError),
    /// The routes could not be built (a configuration made in code naming an unknown
    /// upstream, or with two path conditions on one route).
    #[error(transparent)]
    Routes(#[from] RouterError),
}

/// Back-off after an accept error (for instance out of file descriptors), so the loop does
/// not spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// A proxy built from a [`Config`], ready to [`start`](Proxy::start).
///
/// ```no_run
/// # async fn demo() -> anyhow::Result<()> {
/// let config = lb_proxy::config::Config::load("lb.toml")?;
/// let running = lb_proxy::Proxy::new(config).start().await?;
/// println!("listening on {:?}", running.local_addrs());
/// lb_proxy::signals::terminated().await?;
/// running.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Proxy {
    config: Config,
    hook: Option<HealthHook>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// A proxy for `config`.
    pub fn new(config: Config) -> Self {
        Self { config, hook: None }
    }

    /// Calls `hook(upstream, change)` on every health transition of every backend,
    /// including the first one after start-up (in addition to the log line).
    #[must_use]
    pub fn on_health_change(
        mut self,
        hook: impl Fn(&str, &StatusChange<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.hook = Some(Arc::new(hook));
        self
    }

    /// Builds the upstreams, binds every listener (failing before serving anything if one
    /// cannot be bound), waits a bounded time for the first answer of each discovery source,
    /// then starts health checks and accepting connections.
    pub async fn start(self) -> Result<RunningProxy, StartError> {
        let mut index = HashMap::new();
        let mut upstreams = Vec::with_capacity(self.config.upstreams.len());
        for (name, cfg) in &self.config.upstreams {
            index.insert(name.as_str(), upstreams.len());
            upstreams.push(Upstream::new(name, cfg, self.hook.clone())?);
        }
        let router = Router::new(&self.config.routes, |name| index.get(name).copied())?;
        let mut listeners = Vec::with_capacity(self.config.server.listen.len());
        let mut local_addrs = Vec::with_capacity(listeners.capacity());
        for addr in &self.config.server.listen {
            let bound = match TcpListener::bind(addr).await {
                Ok(listener) => listener.local_addr().map(|local| (listener, local)),
                Err(e) => Err(e),
            };
            let (listener, local) = bound.map_err(|source| StartError::Listen {
                addr: *addr,
                source,
            })?;
            listeners.push(listener);
            local_addrs.push(local);
        }
        for u in upstreams.iter().filter(|u| !u.is_static()) {
            match tokio::time::timeout(INITIAL_DISCOVERY, u.balancer().update()).await {
                Ok(Ok(change)) => {
                    tracing::info!(
                        upstream = u.name(),
                        backends = change.added.len(),
                        "discovered"
                    );
                }
                Ok(Err(error)) => tracing::warn!(
                    upstream = u.name(),
                    error = &error as &dyn std::error::Error,
                    "first discovery failed; answering 503 until it succeeds"
                ),
                Err(_) => tracing::warn!(
                    upstream = u.name(),
                    timeout = ?INITIAL_DISCOVERY,
                    "first discovery is slow; answering 503 until it succeeds"
                ),
            }
        }
        let shared = Arc::new(Shared::new(upstreams, router));

        let (stop_tx, stop_rx) = watch::channel(false);
        let mut background = Vec::new();
        for i in 0..shared.upstreams.len() {
            let shared = shared.clone();
            let mut stop = stop_rx.clone();
            let span = tracing::info_span!("upstream", name = shared.upstreams[i].name());
            background.push(tokio::spawn(
                async move {
                    let stopped = async move {
                        let _ = stop.wait_for(|s| *s).await;
                    };
                    shared.upstreams[i].balancer().run(stopped).await;
                }
                .instrument(span),
            ));
        }

        let graceful = Arc::new(GracefulShutdown::new());
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(hyper_util::rt::TokioTimer::new());
        builder.http2().timer(hyper_util::rt::TokioTimer::new());
        let accepting = listeners
            .into_iter()
            .map(|listener| {
                tokio::spawn(accept_loop(
                    listener,
                    shared.clone(),
                    builder.clone(),
                    graceful.clone(),
                    stop_rx.clone(),
                ))
            })
            .collect();
        tracing::info!(listen = ?local_addrs, upstreams = shared.upstreams.len(), "lb-proxy started");
        Ok(RunningProxy {
            local_addrs,
            shared,
            stop: stop_tx,
            accepting,
            background,
            graceful,
            grace_period: self.config.server.grace_period.get(),
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    builder: auto::Builder<TokioExecutor>,
    graceful: Arc<GracefulShutdown>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(error) => {
                tracing::warn!(%error, "accept failed; retrying");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, %peer, "cannot set TCP_NODELAY");
        }
        let shared = shared.clone();
        let svc = hyper::service::service_fn(move |req| service::handle(shared.clone(), peer, req));
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), svc)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%peer, error = &*error as &dyn std::error::Error, "connection ended with an error");
            }
        });
    }
    // The listener is dropped here: new connections are refused from now on.
}

/// A started proxy. Dropping it without [`shutdown`](Self::shutdown) stops nothing; the
/// tasks end with the runtime.
#[derive(Debug)]
pub struct RunningProxy {
    local_addrs: Vec<SocketAddr>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    accepting: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
    graceful: Arc<GracefulShutdown>,
    grace_period: Duration,
}

impl RunningProxy {
    /// The bound listener addresses (with real ports where the config said port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The upstream called `name`.
    pub fn upstream(&self, name: &str) -> Option<&Upstream> {
        self.shared.upstreams.iter().find(|u| u.name() == name)
    }

    /// Stops accepting (listeners close at once), stops health checks, and waits for
    /// in-flight requests to finish, at most the configured grace period. Returns `true`
    /// when every connection finished in time.
    pub async fn shutdown(self) -> bool {
        let _ = self.stop.send(true);
        for task in self.accepting.into_iter().chain(self.background) {
            let _ = task.await;
        }
        let Ok(graceful) = Arc::try_unwrap(self.graceful) else {
            return false;
        };
        let open = graceful.count();
        tracing::info!(open_connections = open, grace_period = ?self.grace_period, "shutting down");
        match tokio::time::timeout(self.grace_period, graceful.shutdown()).await {
            Ok(()) => true,
            Err(_) => {
                tracing::warn!(grace_period = ?self.grace_period, "grace period over; closing remaining connections");
                false
            }
        }
    }
}
