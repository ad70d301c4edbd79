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
//! TLS certificates are read again on every reload. Settings of the process itself
//! (`threads`, `pid_file`, `error_log`, `upgrade_sock`, `log_format`, `[admin]`) need a
//! restart or a binary upgrade; a reload that changes them says so in the log.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Weak};

use arc_swap::ArcSwap;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::stats::ProcessCounters;
use crate::config::{Config, ConfigError, ServerConfig};
pub use crate::generation::UpstreamChanges;
use crate::generation::{self, Slot};
use crate::handover::Inherited;
use crate::listener::{self, Builders, Listener, Serving};
use crate::live::LiveProxy;
use crate::server::StartError;
use crate::upstream::HealthHook;

/// Why a reload was refused; the running configuration is unchanged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The proxy was not started from a file ([`Proxy::config_file`](crate::Proxy::config_file)).
    #[error("no configuration file to read again (the proxy was configured in code)")]
    NoFile,
    /// The file cannot be read or is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The configuration is valid but cannot be applied (a listener cannot be bound, a
    /// certificate or discovery source cannot be loaded, ...).
    #[error(transparent)]
    Start(#[from] StartError),
}

/// What a reload changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reloaded {
    /// The upstreams, by what happened to each.
    pub upstreams: UpstreamChanges,
    /// The listener addresses now, plain ones first (as
    /// [`RunningProxy::local_addrs`](crate::RunningProxy::local_addrs)).
    pub listening: Vec<SocketAddr>,
    /// Changed settings that a reload cannot apply (they need a restart or an upgrade).
    pub not_applied: Vec<&'static str>,
}

/// The bound listener addresses: plain ones first, then TLS ones.
#[derive(Debug, Default)]
pub(crate) struct Bound {
    pub(crate) addrs: Vec<SocketAddr>,
    /// How many of `addrs` (the first ones) are plain.
    pub(crate) plain: usize,
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
}

/// Applies configurations to the running proxy; shared by [`RunningProxy`](crate::RunningProxy)
/// and the admin listener.
pub(crate) struct Reloader {
    pub(crate) live: Arc<LiveProxy>,
    hook: HealthHook,
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

/// What [`Reloader::new`] needs besides the first generation.
pub(crate) struct Parts {
    pub(crate) live: Arc<LiveProxy>,
    pub(crate) hook: HealthHook,
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
                    return Err(error);
                }
            }
        }
        Ok((
            Self {
                fds,
                accepting,
                retire,
            },
            Bound { addrs, plain },
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
    /// The control plane of a proxy started with `config` on `bound` listeners and the
    /// `upstreams` of its first generation.
    pub(crate) fn new(
        parts: Parts,
        config: Config,
        upstreams: BTreeMap<String, Slot>,
        bound: Vec<Listener>,
    ) -> Result<Self, StartError> {
        let connections = parts.connections.upgrade().ok_or(StartError::Stopping)?;
        let (listeners, addrs) = Listeners::start(bound, &parts.serving, &connections)?;
        Ok(Self {
            live: parts.live,
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
            }),
        })
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
                    "configuration reloaded"
                );
                for setting in &done.not_applied {
                    tracing::warn!(
                        setting,
                        "changed, but takes effect only after a restart or binary upgrade"
                    );
                }
                Ok(done)
            }
            Err(error) => Err(self.refused(error)),
        }
    }

    fn refused(&self, error: ReloadError) -> ReloadError {
        self.process.record_reload(false);
        tracing::error!(
            error = %chain(&error),
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
        let prepared = generation::prepare(
            &config,
            &applied.upstreams,
            Some(&before),
            &self.hook,
            &self.process,
        )
        .await?;
        let bound = self.bind(&applied, &config.server).await?;
        // Apply: nothing below can fail, but the duplicated sockets.
        let serving = Serving {
            builders: Arc::new(Builders::reloaded(
                &config.server.limits,
                &previous.builders,
            )),
            ..previous
        };
        let (listeners, addrs) = Listeners::start(bound, &serving, &connections)?;
        *self.serving.lock() = serving;
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
        let not_applied = not_applied(&applied.config, &config);
        applied.config = config;
        let listening = addrs.addrs.clone();
        self.bound.store(Arc::new(addrs));
        Ok(Reloaded {
            upstreams: changes,
            listening,
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
        for (fd, addr) in applied.listeners.fds.iter().zip(&bound.addrs) {
            let dup = fd.try_clone().map_err(|source| StartError::Listen {
                addr: *addr,
                source,
            })?;
            own.push((*addr, std::net::TcpListener::from(dup)));
        }
        let mut inherited = Inherited::own(own);
        let server = pin_ephemeral(&applied.config.server, &bound.addrs, server);
        listener::bind_all(&server, &mut inherited).await
    }
}

/// `new` with each port-0 address that `old` also had at the same position replaced by the
/// address it was bound to (`bound`, in listener order).
fn pin_ephemeral(old: &ServerConfig, bound: &[SocketAddr], new: &ServerConfig) -> ServerConfig {
    let configured: Vec<SocketAddr> = listen_order(old).copied().collect();
    let mut pinned = new.clone();
    let slots = pinned
        .listen
        .iter_mut()
        .chain(pinned.tls.iter_mut().flat_map(|t| t.listen.iter_mut()));
    for (i, addr) in slots.enumerate() {
        if addr.port() == 0 && configured.get(i) == Some(addr) {
            if let Some(actual) = bound.get(i) {
                *addr = *actual;
            }
        }
    }
    pinned
}

/// Every listener address in the order listeners are bound: plain, then TLS tables.
fn listen_order(server: &ServerConfig) -> impl Iterator<Item = &SocketAddr> {
    server
        .listen
        .iter()
        .chain(server.tls.iter().flat_map(|t| t.listen.iter()))
}

/// `error` and its sources, joined by ": ".
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// The process settings that differ between `old` and `new`.
fn not_applied(old: &Config, new: &Config) -> Vec<&'static str> {
    let (o, n) = (&old.server, &new.server);
    let mut changed = Vec::new();
    let mut check = |name, differs: bool| {
        if differs {
            changed.push(name);
        }
    };
    check("server.threads", o.threads != n.threads);
    check("server.pid_file", o.pid_file != n.pid_file);
    check("server.error_log", o.error_log != n.error_log);
    check("server.upgrade_sock", o.upgrade_sock != n.upgrade_sock);
    check("server.log_format", o.log_format != n.log_format);
    check(
        "admin",
        old.written.table("admin") != new.written.table("admin"),
    );
    changed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn server(text: &str) -> ServerConfig {
        let text = format!(
            "{text}[upstreams.web]\nbackends = [\"127.0.0.1:1\"]\n[[routes]]\nupstream = \"web\"\n"
        );
        Config::from_toml_str(&text, "lb.toml").unwrap().server
    }

    #[test]
    fn ephemeral_ports_stay_where_they_were() {
        let old = server("[server]\nlisten = [\"127.0.0.1:0\", \"127.0.0.1:0\"]\n");
        let bound: Vec<SocketAddr> = vec![
            "127.0.0.1:4001".parse().unwrap(),
            "127.0.0.1:4002".parse().unwrap(),
        ];
        let new =
            server("[server]\nlisten = [\"127.0.0.1:0\", \"127.0.0.1:7000\", \"127.0.0.1:0\"]\n");
        let pinned = pin_ephemeral(&old, &bound, &new);
        let want: Vec<SocketAddr> = ["127.0.0.1:4001", "127.0.0.1:7000", "127.0.0.1:0"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(pinned.listen, want);
    }
}
