//! Listeners, connections, graceful shutdown, and both sides of a graceful binary upgrade
//! ([`Proxy::inherit`], [`RunningProxy::hand_over`], [`RunningProxy::drain`]).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use lb_health::StatusChange;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::access_log::{AccessLog, AccessLogError, Names};
use crate::admin::control::Control;
use crate::admin::{AdminListener, AdminState};
use crate::config::Config;
use crate::config_proxy::ConfigProxy;
use crate::discovery::SourceError;
use crate::handover::{self, HandoverError, Inherited};
use crate::listener;
use crate::router::{Router, RouterError};
use crate::upstream::{HealthHook, Upstream};

/// How long start-up waits for the first answer of a discovery source.
const INITIAL_DISCOVERY: Duration = Duration::from_secs(5);

/// How often [`RunningProxy::drain`] looks whether every connection has closed.
const DRAIN_POLL: Duration = Duration::from_millis(50);

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
    /// The certificates or settings of `[[server.tls]]` table `index` cannot be used.
    #[error("TLS listener {index}")]
    Tls {
        /// Which `[[server.tls]]` table (from 0).
        index: usize,
        /// Why.
        #[source]
        source: crate::tls::TlsError,
    },
    /// An upstream's discovery source could not be built.
    #[error(transparent)]
    Upstream(#[from] SourceError),
    /// The routes could not be built (a configuration made in code naming an unknown
    /// upstream, or with two path conditions on one route).
    #[error(transparent)]
    Routes(#[from] RouterError),
    /// The access log file cannot be opened.
    #[error(transparent)]
    AccessLog(#[from] AccessLogError),
}

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
    inherited: Inherited,
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
        Self {
            config,
            hook: None,
            inherited: Inherited::default(),
        }
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

    /// Serves on the listening sockets received from the previous process
    /// ([`handover::receive`], binary upgrade) instead of binding their addresses: each
    /// configured address (plain or TLS) takes the received socket bound to the same
    /// address. Received sockets the configuration no longer lists are closed at start.
    #[must_use]
    pub fn inherit(mut self, inherited: Inherited) -> Self {
        self.inherited = inherited;
        self
    }

    /// Builds the upstreams, binds every listener (failing before serving anything if one
    /// cannot be bound), waits a bounded time for the first answer of each discovery source,
    /// then starts health checks and accepting connections.
    pub async fn start(mut self) -> Result<RunningProxy, StartError> {
        let mut index = HashMap::new();
        let mut upstreams = Vec::with_capacity(self.config.upstreams.len());
        // Admin: health transitions also record "since when" for the status page.
        let control = Arc::new(Control::new());
        let hook = Some(control.hook(self.hook.clone()));
        for (name, cfg) in &self.config.upstreams {
            index.insert(name.as_str(), upstreams.len());
            upstreams.push(Upstream::new(name, cfg, hook.clone())?);
        }
        let router = Router::new(&self.config.routes, |name| index.get(name).copied())?;
        // Plain listeners first, then TLS ones (their certificates are loaded first).
        let listeners = listener::bind_all(&self.config.server, &mut self.inherited).await?;
        if !self.inherited.is_empty() {
            tracing::warn!(addrs = ?self.inherited.addrs(), "closing inherited sockets the configuration no longer lists");
        }
        // Copies of the listening sockets, for a later hand-over to a new binary.
        let mut listen_fds = Vec::with_capacity(listeners.len());
        for l in &listeners {
            let fd = l
                .as_fd()
                .try_clone_to_owned()
                .map_err(|source| StartError::Listen {
                    addr: l.local_addr(),
                    source,
                })?;
            listen_fds.push(fd);
        }
        let local_addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr()).collect();
        let plain = listeners.iter().filter(|l| !l.is_tls()).count();
        let admin = match &self.config.admin {
            Some(c) => Some(AdminListener::bind(c).await?),
            None => None,
        };
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
        let proxy = ConfigProxy::new(upstreams, router, &self.config.server);
        let access_log = match &self.config.access_log {
            Some(c) => Some(AccessLog::start(c, Names::of(&proxy), proxy.stats.clone()).await?),
            None => None,
        };
        let shared = Arc::new(proxy.with_access_log(access_log));

        let (stop_tx, stop_rx) = watch::channel(false);
        let (drain_tx, drain_rx) = watch::channel(false);
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

        // Admin: per-backend counters follow the backend sets.
        for i in 0..shared.upstreams.len() {
            let set = shared.upstreams[i].balancer().watch_backends();
            background.push(tokio::spawn(shared.stats.clone().follow(
                i,
                set,
                stop_rx.clone(),
            )));
        }

        let graceful = Arc::new(GracefulShutdown::new());
        let admin_addr = admin.as_ref().map(AdminListener::local_addr);
        if let (Some(listener), Some(c)) = (admin, &self.config.admin) {
            let state = AdminState {
                proxy: shared.clone(),
                control,
                connections: Arc::downgrade(&graceful),
            };
            background.push(listener.spawn(state, c, stop_rx.clone()));
        }
        let serving = listener::Serving {
            hooks: shared.clone(),
            // [server.limits] (protect/): hyper's limits, max_connections, timers.
            builders: Arc::new(listener::Builders::with_limits(&self.config.server.limits)),
            stop: stop_rx.clone(),
            drain: drain_rx,
        };
        let accepting = listeners
            .into_iter()
            .map(|l| tokio::spawn(listener::accept_loop(l, serving.clone(), graceful.clone())))
            .collect();
        tracing::info!(listen = ?&local_addrs[..plain], tls = ?&local_addrs[plain..], upstreams = shared.upstreams.len(), "lb-proxy started");
        Ok(RunningProxy {
            admin_addr,
            local_addrs,
            plain,
            shared,
            stop: stop_tx,
            drain: drain_tx,
            listen_fds,
            accepting,
            background,
            graceful,
            grace_period: self.config.server.grace_period.get(),
        })
    }
}

/// A started proxy. Dropping it without [`shutdown`](Self::shutdown) stops nothing; the
/// tasks end with the runtime.
#[derive(Debug)]
pub struct RunningProxy {
    /// The admin listener's address, when `[admin]` is configured.
    admin_addr: Option<SocketAddr>,
    local_addrs: Vec<SocketAddr>,
    /// How many of `local_addrs` (the first ones) are plain listeners.
    plain: usize,
    shared: Arc<ConfigProxy>,
    stop: watch::Sender<bool>,
    /// Set when draining after a hand-over (see `listener`).
    drain: watch::Sender<bool>,
    /// Duplicates of the listening sockets, handed over on upgrade; closed when the
    /// proxy stops or drains.
    listen_fds: Vec<OwnedFd>,
    accepting: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
    graceful: Arc<GracefulShutdown>,
    grace_period: Duration,
}

impl RunningProxy {
    /// The bound listener addresses (with real ports where the config said port 0): the
    /// plain ones (`server.listen`) first, then those of each `[[server.tls]]` in order.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The bound admin listener address (`[admin] listen`, with the real port where it said
    /// port 0), when there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The bound TLS listener addresses, in `[[server.tls]]` order.
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs[self.plain..]
    }

    /// The upstream called `name`.
    pub fn upstream(&self, name: &str) -> Option<&Upstream> {
        self.shared.upstreams.iter().find(|u| u.name() == name)
    }

    /// Stops accepting (listeners close at once), stops health checks, and waits for
    /// in-flight requests to finish, at most the configured grace period. Returns `true`
    /// when every connection finished in time.
    pub async fn shutdown(mut self) -> bool {
        // Close the duplicates first so the sockets close with the accept loops.
        self.listen_fds.clear();
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

    /// The running side of a graceful binary upgrade: sends duplicates of every listening
    /// socket over the Unix socket at `upgrade_sock` to a process started with `--upgrade`
    /// (see [`handover::send`]), within `timeout`. On `Ok` the new process holds them and
    /// this one should [`drain`](Self::drain); on an error nothing changed and this process
    /// goes on serving.
    pub async fn hand_over(
        &self,
        upgrade_sock: &Path,
        timeout: Duration,
    ) -> Result<(), HandoverError> {
        let mut fds = Vec::with_capacity(self.listen_fds.len());
        for fd in &self.listen_fds {
            fds.push(fd.try_clone().map_err(|source| HandoverError::Socket {
                path: upgrade_sock.to_owned(),
                source,
            })?);
        }
        handover::send(upgrade_sock, fds, timeout).await
    }

    /// After a successful [`hand_over`](Self::hand_over): stops accepting (the sockets stay
    /// open in the new process), answers every further HTTP/1.x request with
    /// `Connection: close` so clients move to the new process, waits for the connections to
    /// close by themselves for up to half the grace period, then shuts down as
    /// [`shutdown`](Self::shutdown) does with the other half (HTTP/2 clients get GOAWAY
    /// then, idle connections are closed). Returns `true` when every connection finished
    /// in time.
    pub async fn drain(mut self) -> bool {
        let _ = self.drain.send(true);
        self.listen_fds.clear();
        for task in self.accepting.drain(..) {
            let _ = task.await;
        }
        let half = self.grace_period / 2;
        let open = self.graceful.count();
        tracing::info!(open_connections = open, grace_period = ?self.grace_period, "draining after the hand-over");
        // hyper reports no event when a connection ends: poll the count, bounded by `half`.
        let deadline = tokio::time::Instant::now() + half;
        while self.graceful.count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(DRAIN_POLL).await;
        }
        self.grace_period -= half;
        self.shutdown().await
    }
}
