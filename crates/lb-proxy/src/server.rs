//! Starting the TOML-driven proxy, and what an operator does to it while it runs: hot
//! reload ([`RunningProxy::reload`], in [`crate::reload`]), graceful shutdown, and both
//! sides of a graceful binary upgrade ([`Proxy::inherit`], [`RunningProxy::hand_over`],
//! [`RunningProxy::drain`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use lb_health::StatusChange;
use tokio::sync::watch;

use crate::admin::control::Control;
use crate::admin::AdminListener;
use crate::changes::Reloaded;
use crate::config::Config;
use crate::error::{ReloadError, StartError};
use crate::generation;
use crate::handover::{self, HandoverError};
use crate::listener;
use crate::live::LiveProxy;
use crate::reload::{self, Reloader};
use crate::sockets::Inherited;
use crate::stats::ProcessCounters;
use crate::upstream::{HealthHook, Upstream};
use crate::worker::{WorkerStats, Workers};

/// How often [`RunningProxy::drain`] looks whether every connection has closed.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// A proxy built from a [`Config`], ready to [`start`](Proxy::start).
///
/// ```no_run
/// # async fn demo() -> anyhow::Result<()> {
/// let config = lb_proxy::config::Config::load("lb.toml")?;
/// let running = lb_proxy::Proxy::new(config)
///     .config_file("lb.toml")
///     .start()
///     .await?;
/// println!("listening on {:?}", running.local_addrs());
/// lb_proxy::signals::terminated().await?;
/// running.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Proxy {
    config: Config,
    hook: Option<HealthHook>,
    inherited: Inherited,
    path: Option<PathBuf>,
    workers: Option<Workers>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("config", &self.config)
            .field("path", &self.path)
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
            path: None,
            workers: None,
        }
    }

    /// Accepts and serves connections on every one of `workers` (each listener gets an
    /// accept loop per worker; see [`Workers`]). [`start`](Self::start) must then run on
    /// worker 0's runtime, the one [`Workers::start`] was called on, which also runs the
    /// control plane. Without this, the runtime that calls `start` serves everything.
    #[must_use]
    pub fn workers(mut self, workers: &Workers) -> Self {
        self.workers = Some(workers.clone());
        self
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

    /// The file the configuration came from: what [`RunningProxy::reload_file`] (SIGHUP,
    /// `POST /reload`) reads again.
    #[must_use]
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.path = Some(path.into());
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

    /// Builds the upstreams (waiting a bounded time for the first answer of each
    /// discovery source), binds every listener (failing before serving anything if one
    /// cannot be bound), then starts health checks and accepting connections.
    pub async fn start(mut self) -> Result<RunningProxy, StartError> {
        let control = Arc::new(Control::new());
        let process = Arc::new(ProcessCounters::default());
        let prepared = generation::prepare(&self.config, &BTreeMap::new(), None, &process).await?;
        // The embedder's callback hears the monitors of the upstreams (and, through the
        // reloader, of those a reload builds).
        if let Some(hook) = &self.hook {
            for upstream in prepared.built() {
                upstream.on_health_change(hook.clone());
            }
        }
        // Plain listeners first, then TLS ones (their certificates are loaded first).
        let listeners = listener::bind_all(&self.config.server, &mut self.inherited).await?;
        let admin = match &self.config.admin {
            Some(c) => Some(AdminListener::bind(c, &mut self.inherited).await?),
            None => None,
        };
        if !self.inherited.is_empty() {
            tracing::warn!(addrs = ?self.inherited.addrs(), "closing inherited sockets the configuration no longer lists");
        }
        let first = prepared.commit(BTreeMap::new());
        let upstreams = first.slots;
        let live = Arc::new(LiveProxy::new(first.proxy));
        let (stop, stop_rx) = watch::channel(false);
        let (drain, drain_rx) = watch::channel(false);
        let graceful = Arc::new(GracefulShutdown::new());
        let serving = listener::Serving {
            hooks: live.clone(),
            // [server.limits] (protect/): hyper's limits, max_connections, timers.
            builders: Arc::new(listener::Builders::with_limits(&self.config.server.limits)),
            stop: stop_rx,
            drain: drain_rx,
            workers: self.workers.take().unwrap_or_else(Workers::single),
        };
        let parts = reload::Parts {
            live,
            control,
            hook: self.hook,
            path: self.path,
            process,
            serving,
            connections: Arc::downgrade(&graceful),
        };
        let upstream_count = upstreams.len();
        let reloader = Reloader::start(parts, self.config, upstreams, listeners, admin).await?;
        let bound = reloader.bound.load();
        tracing::info!(listen = ?&bound.addrs[..bound.plain], tls = ?&bound.addrs[bound.plain..], admin = ?bound.admin, upstreams = upstream_count, "lb-proxy started");
        Ok(RunningProxy {
            reloader,
            stop,
            drain,
            graceful,
        })
    }
}

/// A started proxy. Dropping it without [`shutdown`](Self::shutdown) stops nothing; the
/// tasks end with the runtime.
#[derive(Debug)]
pub struct RunningProxy {
    /// The running configuration, its listeners, admin listener and upstreams.
    reloader: Arc<Reloader>,
    stop: watch::Sender<bool>,
    /// Set when draining after a hand-over (see `listener`).
    drain: watch::Sender<bool>,
    graceful: Arc<GracefulShutdown>,
}

impl RunningProxy {
    /// The bound listener addresses (with real ports where the config said port 0): the
    /// plain ones (`server.listen`) first, then those of each `[[server.tls]]` in order.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.reloader.bound.load().addrs.clone()
    }

    /// The bound admin listener address (`[admin] listen`, with the real port where it said
    /// port 0), when there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.reloader.bound.load().admin
    }

    /// The bound TLS listener addresses, in `[[server.tls]]` order.
    pub fn tls_addrs(&self) -> Vec<SocketAddr> {
        let bound = self.reloader.bound.load();
        bound.addrs[bound.plain..].to_vec()
    }

    /// What each worker has served (connections, requests), by worker index; one entry
    /// when the proxy was started without [`Proxy::workers`].
    pub fn worker_stats(&self) -> Vec<WorkerStats> {
        self.reloader.workers().stats()
    }

    /// The upstream called `name` in the current configuration.
    pub fn upstream(&self, name: &str) -> Option<Arc<Upstream>> {
        let proxy = self.reloader.live.load();
        proxy.upstreams.iter().find(|u| u.name() == name).cloned()
    }

    /// Hot reload: applies `config` to the running proxy, or changes nothing and says why
    /// (also logged, and counted in `lb_config_reloads_total`). See [`crate::reload`] for
    /// what is kept: listening sockets are never closed, requests in flight finish on the
    /// configuration they started with, unchanged backends keep their health.
    pub async fn reload(&self, config: Config) -> Result<Reloaded, ReloadError> {
        self.reloader.reload(config).await
    }

    /// Hot reload from the file given to [`Proxy::config_file`] (what SIGHUP and
    /// `POST /reload` do); see [`reload`](Self::reload).
    pub async fn reload_file(&self) -> Result<Reloaded, ReloadError> {
        self.reloader.reload_file().await
    }

    /// Stops accepting (listeners close at once), stops health checks, and waits for
    /// in-flight requests to finish, at most the configured grace period. Returns `true`
    /// when every connection finished in time.
    pub async fn shutdown(self) -> bool {
        self.shutdown_within(None).await
    }

    async fn shutdown_within(self, grace: Option<Duration>) -> bool {
        let mut applied = self.reloader.applied.lock().await;
        // Close the duplicates first so the sockets close with the accept loops.
        applied.listeners.fds.clear();
        let _ = self.stop.send(true);
        for task in applied.listeners.accepting.drain(..) {
            let _ = task.await;
        }
        for slot in std::mem::take(&mut applied.upstreams).into_values() {
            slot.stop().await;
        }
        if let Some(admin) = applied.admin.take() {
            admin.stopped().await;
        }
        let grace_period = grace.unwrap_or_else(|| applied.config.server.grace_period.get());
        drop(applied);
        let Ok(graceful) = Arc::try_unwrap(self.graceful) else {
            return false;
        };
        let open = graceful.count();
        tracing::info!(open_connections = open, ?grace_period, "shutting down");
        match tokio::time::timeout(grace_period, graceful.shutdown()).await {
            Ok(()) => true,
            Err(_) => {
                tracing::warn!(
                    ?grace_period,
                    "grace period over; closing remaining connections"
                );
                false
            }
        }
    }

    /// The running side of a graceful binary upgrade (SIGQUIT): offers duplicates of every
    /// listening socket (HTTP, TLS, admin) over the Unix socket at `upgrade_sock` to a
    /// process started with `--upgrade`, and waits for it to start completely (at most
    /// `server.upgrade_timeout`) and confirm; see [`handover`]. This process serves on
    /// meanwhile. On `Ok` the new process is in charge and this one should
    /// [`drain`](Self::drain); on an error nothing changed hands and this process goes on
    /// serving on all its listeners.
    pub async fn hand_over(
        &self,
        upgrade_sock: &Path,
        connect_timeout: Duration,
    ) -> Result<(), HandoverError> {
        let sockets = self
            .reloader
            .sockets()
            .await
            .map_err(|source| HandoverError::Socket {
                path: upgrade_sock.to_owned(),
                source,
            })?;
        let start = self
            .reloader
            .applied
            .lock()
            .await
            .config
            .server
            .upgrade_timeout
            .get();
        let timeouts = handover::SendTimeouts {
            connect: connect_timeout,
            start,
        };
        handover::send(upgrade_sock, sockets, timeouts).await
    }

    /// After a successful [`hand_over`](Self::hand_over): stops accepting (the sockets stay
    /// open in the new process), answers every further HTTP/1.x request with
    /// `Connection: close` so clients move to the new process, waits for the connections to
    /// close by themselves for up to half the grace period, then shuts down as
    /// [`shutdown`](Self::shutdown) does with the other half (HTTP/2 clients get GOAWAY
    /// then, idle connections are closed). Returns `true` when every connection finished
    /// in time.
    pub async fn drain(self) -> bool {
        let _ = self.drain.send(true);
        let grace_period = {
            let mut applied = self.reloader.applied.lock().await;
            applied.listeners.fds.clear();
            for task in applied.listeners.accepting.drain(..) {
                let _ = task.await;
            }
            // The new process answers the admin endpoints from now on.
            if let Some(admin) = applied.admin.take() {
                admin.retire().await;
            }
            applied.config.server.grace_period.get()
        };
        let half = grace_period / 2;
        let open = self.graceful.count();
        tracing::info!(
            open_connections = open,
            ?grace_period,
            "draining after the hand-over"
        );
        // hyper reports no event when a connection ends: poll the count, bounded by `half`.
        let deadline = tokio::time::Instant::now() + half;
        while self.graceful.count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(DRAIN_POLL).await;
        }
        self.shutdown_within(Some(grace_period - half)).await
    }
}
