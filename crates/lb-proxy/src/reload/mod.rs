//! Hot reload: a new configuration applied to the running proxy (SIGHUP, `POST /reload`,
//! or [`RunningProxy::reload`](crate::RunningProxy::reload)) without closing a listening
//! socket or failing a request.
//!
//! A reload first builds everything the new configuration needs: the upstreams that
//! changed (see [`UpstreamChanges`]: each is kept whole, given its new backend list, or
//! rebuilt with its backends' state carried over), the routes, the access log, and the listeners,
//! which take the running sockets of the addresses that stay (so the kernel's accept
//! queues are never closed) and bind the new ones. Any error there leaves the running
//! configuration untouched. Then it applies: one atomic swap makes the new generation
//! serve every request that starts from then on, requests in flight finish on the
//! generation they started with, new accept loops start and the old ones stop, and the
//! sockets of removed addresses close.
//!
//! TLS certificates are read again on every reload, and `[admin]` is applied too (a new
//! address, token, or the listener turned on or off; see `reload/admin.rs`). Settings of the
//! process itself (`threads`, `pid_file`, `error_log`, `upgrade_sock`, `log_format`)
//! need a restart or a binary upgrade: a reload that changes them applies the rest, names
//! each in a warning and counts it in `lb_config_reloads_total{result="not_applied"}`.

mod admin;
mod settings;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Weak};

use arc_swap::ArcSwap;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::control::Control;
use crate::admin::http::Token;
use crate::admin::{AdminListener, AdminState};
pub use crate::changes::{Reloaded, UpstreamChanges};
use crate::config::{AdminConfig, Config, ServerConfig};
pub use crate::error::ReloadError;
use crate::error::StartError;
use crate::error_chain::error_chain;
use crate::generation::{self, Slot};
use crate::listener::{self, Builders, Listener, Serving};
use crate::live::LiveProxy;
use crate::sockets::{Inherited, ListenerKind};
use crate::stats::ProcessCounters;
use crate::upstream::HealthHook;

/// The bound listener addresses: plain ones first, then TLS ones, and the admin listener's.
#[derive(Debug, Default)]
pub(crate) struct Bound {
    pub(crate) addrs: Vec<SocketAddr>,
    /// How many of `addrs` (the first ones) are plain.
    pub(crate) plain: usize,
    /// The admin listener's, when `[admin]` is configured.
    pub(crate) admin: Option<SocketAddr>,
}

impl Bound {
    /// What the listener at position `i` of `addrs` is.
    fn kind(&self, i: usize) -> ListenerKind {
        if i < self.plain {
            ListenerKind::Http
        } else {
            ListenerKind::Tls
        }
    }
}

/// The listeners of one generation.
#[derive(Debug)]
pub(crate) struct Listeners {
    /// Duplicates of the listening sockets: handed over on upgrade, and kept open across
    /// reloads; closed when the proxy stops or drains.
    pub(crate) fds: Vec<OwnedFd>,
    /// The accept loops.
    pub(crate) accepting: Vec<JoinHandle<()>>,
    /// Ends these accept loops (a reload replaced them).
    retire: watch::Sender<bool>,
}

/// The running configuration and what it started (one reload at a time).
#[derive(Debug)]
pub(crate) struct Applied {
    pub(crate) config: Config,
    pub(crate) upstreams: BTreeMap<String, Slot>,
    pub(crate) listeners: Listeners,
    /// The admin listener, when `[admin]` is configured.
    pub(crate) admin: Option<admin::RunningAdmin>,
}

/// Applies configurations to the running proxy; shared by [`RunningProxy`](crate::RunningProxy)
/// and the admin listener.
pub(crate) struct Reloader {
    pub(crate) live: Arc<LiveProxy>,
    /// This reloader, for the admin listeners it starts (their `POST /reload`).
    me: Weak<Reloader>,
    /// Operator holds and state-change times, for the admin listener.
    control: Arc<Control>,
    /// The admin token, read by every admin connection at each request.
    admin_token: Arc<Token>,
    /// The embedder's health callback, subscribed to the monitor of every upstream a
    /// reload builds.
    hook: Option<HealthHook>,
    path: Option<PathBuf>,
    pub(crate) process: Arc<ProcessCounters>,
    pub(crate) bound: ArcSwap<Bound>,
    /// What the current accept loops serve with (its `hooks` is `live`); a reload makes
    /// a new one with the new `[server.limits]`.
    serving: parking_lot::Mutex<Serving<LiveProxy>>,
    /// The connections of every listener (weak: shutdown takes it back).
    connections: Weak<GracefulShutdown>,
    /// Held while a reload, shutdown, drain or hand-over runs (control plane only; the
    /// request path never touches it).
    pub(crate) applied: tokio::sync::Mutex<Applied>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("path", &self.path)
            .field("bound", &self.bound)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl crate::admin::Reload for Reloader {
    async fn reload_file(&self) -> Result<Reloaded, ReloadError> {
        Reloader::reload_file(self).await
    }

    fn workers(&self) -> crate::worker::Workers {
        Reloader::workers(self)
    }
}

/// What [`Reloader::new`] needs besides the first generation.
pub(crate) struct Parts {
    pub(crate) live: Arc<LiveProxy>,
    pub(crate) control: Arc<Control>,
    pub(crate) hook: Option<HealthHook>,
    pub(crate) path: Option<PathBuf>,
    pub(crate) process: Arc<ProcessCounters>,
    pub(crate) serving: Serving<LiveProxy>,
    pub(crate) connections: Weak<GracefulShutdown>,
}

impl Listeners {
    /// Starts accept loops on `bound`; returns them with their addresses.
    fn start(
        bound: Vec<Listener>,
        serving: &Serving<LiveProxy>,
        connections: &Arc<GracefulShutdown>,
    ) -> Result<(Self, Bound), StartError> {
        let mut fds = Vec::with_capacity(bound.len());
        for l in &bound {
            let fd = l
                .as_fd()
                .try_clone_to_owned()
                .map_err(|source| StartError::Listen {
                    addr: l.local_addr(),
                    source,
                })?;
            fds.push(fd);
        }
        let addrs = bound.iter().map(Listener::local_addr).collect();
        let plain = bound.iter().filter(|l| !l.is_tls()).count();
        let (retire, retired) = watch::channel(false);
        let mut accepting = Vec::with_capacity(bound.len() * serving.workers.count());
        for l in bound {
            // One accept loop per worker.
            match listener::spawn_accept_loops(l, serving, connections, &retired) {
                Ok(loops) => accepting.extend(loops),
                Err(error) => {
                    // The loops already started end (their sockets stay in `fds`, dropped).
                    let _ = retire.send(true);
                    return Err(error.into());
                }
            }
        }
        Ok((
            Self {
                fds,
                accepting,
                retire,
            },
            Bound {
                addrs,
                plain,
                admin: None,
            },
        ))
    }

    /// Ends the accept loops (the sockets stay open while `fds` holds them).
    async fn retire(self) -> Vec<OwnedFd> {
        let _ = self.retire.send(true);
        for task in self.accepting {
            let _ = task.await;
        }
        self.fds
    }
}

impl Reloader {
    /// The control plane of a proxy started with `config` on `bound` listeners, the
    /// `upstreams` of its first generation, and its admin listener (bound, not serving).
    pub(crate) async fn start(
        parts: Parts,
        config: Config,
        upstreams: BTreeMap<String, Slot>,
        bound: Vec<Listener>,
        admin: Option<AdminListener>,
    ) -> Result<Arc<Self>, StartError> {
        let connections = parts.connections.upgrade().ok_or(StartError::Stopping)?;
        let (listeners, addrs) = Listeners::start(bound, &parts.serving, &connections)?;
        let admin_config = config.admin.clone();
        let reloader = Arc::new_cyclic(|me| Self {
            live: parts.live,
            me: me.clone(),
            control: parts.control,
            admin_token: Arc::default(),
            hook: parts.hook,
            path: parts.path,
            process: parts.process,
            bound: ArcSwap::from_pointee(addrs),
            serving: parking_lot::Mutex::new(parts.serving),
            connections: parts.connections,
            applied: tokio::sync::Mutex::new(Applied {
                config,
                upstreams,
                listeners,
                admin: None,
            }),
        });
        if let (Some(listener), Some(c)) = (admin, admin_config) {
            let running = reloader.start_admin(listener, c)?;
            reloader.admin_token.set(running.token());
            reloader.publish_admin(Some(running.local));
            reloader.applied.lock().await.admin = Some(running);
        }
        Ok(reloader)
    }

    /// Serves the admin endpoints on `listener` with `config`.
    fn start_admin(
        &self,
        listener: AdminListener,
        config: AdminConfig,
    ) -> Result<admin::RunningAdmin, StartError> {
        let reloader = self.me.upgrade().ok_or(StartError::Stopping)?;
        let state = AdminState {
            live: self.live.clone(),
            control: self.control.clone(),
            connections: self.connections.clone(),
            token: self.admin_token.clone(),
            reloader,
        };
        let stop = self.serving.lock().stop.clone();
        admin::RunningAdmin::start(listener, config, state, stop)
    }

    /// Records the admin listener's address for [`RunningProxy::admin_addr`](crate::RunningProxy::admin_addr).
    fn publish_admin(&self, admin: Option<SocketAddr>) {
        let bound = self.bound.load();
        self.bound.store(Arc::new(Bound {
            addrs: bound.addrs.clone(),
            plain: bound.plain,
            admin,
        }));
    }

    /// Duplicates of every listening socket, with what each is for and its address: the
    /// offer of a binary upgrade.
    pub(crate) async fn sockets(
        &self,
    ) -> std::io::Result<Vec<(ListenerKind, SocketAddr, OwnedFd)>> {
        let applied = self.applied.lock().await;
        let bound = self.bound.load();
        let mut sockets = Vec::with_capacity(applied.listeners.fds.len() + 1);
        for (i, (fd, addr)) in applied.listeners.fds.iter().zip(&bound.addrs).enumerate() {
            sockets.push((bound.kind(i), *addr, fd.try_clone()?));
        }
        if let Some(admin) = &applied.admin {
            sockets.push((ListenerKind::Admin, admin.local, admin.fd.try_clone()?));
        }
        Ok(sockets)
    }

    /// The workers serving the listeners.
    pub(crate) fn workers(&self) -> crate::worker::Workers {
        self.serving.lock().workers.clone()
    }

    /// Reads the configuration file again and applies it; see [`reload`](Self::reload).
    pub(crate) async fn reload_file(&self) -> Result<Reloaded, ReloadError> {
        let loaded = match &self.path {
            None => Err(ReloadError::NoFile),
            Some(path) => Config::load(path).map_err(ReloadError::from),
        };
        match loaded {
            Ok(config) => self.reload(config).await,
            Err(error) => Err(self.refused(error)),
        }
    }

    /// Applies `config`, or changes nothing and says why. Logs and counts the outcome.
    pub(crate) async fn reload(&self, config: Config) -> Result<Reloaded, ReloadError> {
        match self.apply(config).await {
            Ok(done) => {
                self.process.record_reload(true);
                let u = &done.upstreams;
                tracing::info!(
                    kept = ?u.kept,
                    relisted = ?u.relisted,
                    rebuilt = ?u.rebuilt,
                    added = ?u.added,
                    removed = ?u.removed,
                    listen = ?done.listening,
                    admin = ?done.admin,
                    "configuration reloaded"
                );
                for setting in &done.not_applied {
                    tracing::warn!(
                        setting,
                        "not applied: changed, but takes effect only after a restart or binary upgrade"
                    );
                }
                self.process.record_not_applied(&done.not_applied);
                Ok(done)
            }
            Err(error) => Err(self.refused(error)),
        }
    }

    fn refused(&self, error: ReloadError) -> ReloadError {
        self.process.record_reload(false);
        tracing::error!(
            error = %error_chain(&error),
            "reload refused; the running configuration is unchanged"
        );
        error
    }

    async fn apply(&self, config: Config) -> Result<Reloaded, ReloadError> {
        let mut applied = self.applied.lock().await;
        // Stopping, or draining after a hand-over: the listening sockets are closed here
        // (or belong to the new process); binding them again would take them back.
        let previous = self.serving.lock().clone();
        if *previous.stop.borrow() || *previous.drain.borrow() {
            return Err(StartError::Stopping.into());
        }
        let connections = self.connections.upgrade().ok_or(StartError::Stopping)?;
        // Build everything first: an error here changes nothing.
        let before = self.live.load();
        let prepared =
            generation::prepare(&config, &applied.upstreams, Some(&before), &self.process).await?;
        if let Some(hook) = &self.hook {
            for upstream in prepared.built() {
                upstream.on_health_change(hook.clone());
            }
        }
        let bound = self.bind(&applied, &config.server).await?;
        let admin_plan = admin::plan(applied.admin.as_ref(), config.admin.as_ref()).await?;
        // Apply: nothing below can fail, but the duplicated sockets.
        let new_admin = match admin_plan {
            admin::Plan::Start(listener, c) => Some(self.start_admin(listener, c)?),
            admin::Plan::Keep | admin::Plan::Stop => None,
        };
        let stop_admin = new_admin.is_some() || config.admin.is_none();
        let serving = Serving {
            builders: Arc::new(Builders::reloaded(
                &config.server.limits,
                &previous.builders,
            )),
            ..previous
        };
        let (listeners, mut addrs) = match Listeners::start(bound, &serving, &connections) {
            Ok(started) => started,
            Err(error) => {
                if let Some(admin) = new_admin {
                    admin.retire().await;
                }
                return Err(error.into());
            }
        };
        *self.serving.lock() = serving;
        if let Some(admin) = &new_admin {
            self.admin_token.set(admin.token());
        }
        let old_admin = if stop_admin {
            std::mem::replace(&mut applied.admin, new_admin)
        } else {
            None
        };
        addrs.admin = applied.admin.as_ref().map(|a| a.local);
        let old = std::mem::replace(&mut applied.listeners, listeners);
        let upstreams = std::mem::take(&mut applied.upstreams);
        let committed = prepared.commit(upstreams);
        self.live.store(committed.proxy);
        applied.upstreams = committed.slots;
        let changes = committed.changes;
        for slot in committed.retired {
            slot.stop().await;
        }
        drop(old.retire().await);
        if let Some(admin) = old_admin {
            admin.retire().await;
        }
        let not_applied = settings::not_applied(&applied.config, &config);
        applied.config = config;
        let listening = addrs.addrs.clone();
        self.bound.store(Arc::new(addrs));
        Ok(Reloaded {
            upstreams: changes,
            listening,
            admin: applied.admin.as_ref().map(|a| a.local),
            not_applied,
        })
    }

    /// The new configuration's listeners: addresses that stay keep their running socket;
    /// new ones are bound. A listener configured with port 0 that stays at the same place
    /// keeps the port it got.
    async fn bind(
        &self,
        applied: &Applied,
        server: &ServerConfig,
    ) -> Result<Vec<Listener>, StartError> {
        let bound = self.bound.load();
        let mut own = Vec::with_capacity(applied.listeners.fds.len());
        for (i, (fd, addr)) in applied.listeners.fds.iter().zip(&bound.addrs).enumerate() {
            let dup = fd.try_clone().map_err(|source| StartError::Listen {
                addr: *addr,
                source,
            })?;
            own.push((*addr, bound.kind(i), std::net::TcpListener::from(dup)));
        }
        let mut inherited = Inherited::own(own);
        let server = settings::pin_ephemeral(&applied.config.server, &bound.addrs, server);
        Ok(listener::bind_all(&server, &mut inherited).await?)
    }
}
