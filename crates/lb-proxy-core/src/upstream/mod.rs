//! Upstreams: a named load balancer built from configuration.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use http::request::Parts;
use lb_balancer::{LoadBalancer, SlowStart};
use lb_core::InFlight;
use lb_discovery::{ServiceDiscovery, Static};
use lb_health::{Schedule, StatusChange};
use lb_selection::{
    BackendSelection, Consistent, ConsistentConfig, FnvHash, IpHash, LeastConn, Maglev,
    MaglevConfig, NginxHash, P2c, Random, RoundRobin, DEFAULT_TABLE_SIZE,
};

use crate::client::UpstreamClient;
use crate::config::{PositiveDuration, SelectionKind, UpstreamConfig};
use crate::discovery::{self, SourceError};
use crate::hash_key::{self, Extract as _, HashKey};
use crate::hooks::{LocalResponse, Peer, Session};
use crate::limits::{Limits, Refused};
use crate::retry::RetryPolicy;

mod checks;

use checks::{health_check, with_hook};

/// How many candidates one selection may try before answering 503.
pub(crate) const MAX_CANDIDATES: usize = 256;

/// A hook told about every health transition of every upstream: `(upstream, change)`.
pub type HealthHook = Arc<dyn Fn(&str, &StatusChange<'_>) + Send + Sync>;

/// The balancer of one upstream, with the algorithm chosen by configuration.
///
/// An enum rather than a trait object so that `select` is statically dispatched.
#[derive(Debug)]
#[non_exhaustive]
pub enum Balancer {
    /// `selection = "round_robin"`.
    RoundRobin(LoadBalancer<RoundRobin>),
    /// `selection = "random"`.
    Random(LoadBalancer<Random>),
    /// `selection = "p2c"`.
    P2c(LoadBalancer<P2c>),
    /// `selection = "least_conn"`.
    LeastConn(LoadBalancer<LeastConn>),
    /// `selection = "fnv"`.
    Fnv(LoadBalancer<FnvHash>),
    /// `selection = "consistent"`.
    Consistent(LoadBalancer<Consistent>),
    /// `selection = "hash"`.
    Hash(LoadBalancer<NginxHash>),
    /// `selection = "ip_hash"`.
    IpHash(LoadBalancer<IpHash>),
    /// `selection = "maglev"`.
    Maglev(LoadBalancer<Maglev>),
}

macro_rules! each {
    ($self:expr, $lb:ident => $body:expr) => {
        match $self {
            Balancer::RoundRobin($lb) => $body,
            Balancer::Random($lb) => $body,
            Balancer::P2c($lb) => $body,
            Balancer::LeastConn($lb) => $body,
            Balancer::Fnv($lb) => $body,
            Balancer::Consistent($lb) => $body,
            Balancer::Hash($lb) => $body,
            Balancer::IpHash($lb) => $body,
            Balancer::Maglev($lb) => $body,
        }
    };
}

impl Balancer {
    /// Picks a usable backend for hash key `key`; see [`LoadBalancer::select`].
    #[inline]
    pub fn select(&self, key: &[u8]) -> Option<InFlight> {
        each!(self, lb => lb.select(key, MAX_CANDIDATES))
    }

    /// Like [`select`](Self::select), skipping the backends `accept` refuses; see
    /// [`LoadBalancer::select_with`].
    #[inline]
    pub fn select_with(
        &self,
        key: &[u8],
        accept: impl FnMut(&lb_core::Backend) -> bool,
    ) -> Option<InFlight> {
        each!(self, lb => lb.select_with(key, MAX_CANDIDATES, accept))
    }

    /// Installs `found` as the backend set now; see [`LoadBalancer::set_discovered`].
    pub fn set_discovered(&self, found: lb_discovery::Discovered) -> lb_balancer::SetChange {
        each!(self, lb => lb.set_discovered(found))
    }

    /// Asks discovery for the current backends now; see [`LoadBalancer::update`].
    pub async fn update(&self) -> Result<lb_balancer::SetChange, lb_discovery::DiscoveryError> {
        each!(self, lb => lb.update().await)
    }

    /// Records the outcome of one request for passive health; see [`LoadBalancer::report`].
    #[inline]
    pub fn report(&self, backend: &lb_core::Backend, outcome: lb_health::Outcome) {
        each!(self, lb => lb.report(backend, outcome))
    }

    /// Runs one round of health checks now (also driven by the background task).
    pub async fn run_health_check(&self) {
        each!(self, lb => lb.run_health_check().await)
    }

    /// Follows the backend set; see [`LoadBalancer::watch_backends`].
    pub fn watch_backends(&self) -> tokio::sync::watch::Receiver<lb_core::BackendSet> {
        each!(self, lb => lb.watch_backends())
    }

    /// The current backends.
    pub fn backends(&self) -> lb_core::BackendSet {
        each!(self, lb => lb.backends())
    }

    /// The active health checks' monitor, if the upstream has checks (for the admin
    /// listener's status page and metrics).
    pub fn health_monitor(&self) -> Option<&lb_health::HealthMonitor> {
        each!(self, lb => lb.health_monitor())
    }

    /// Passive health, if the upstream has it.
    pub fn passive_health(&self) -> Option<&Arc<lb_health::PassiveHealth>> {
        each!(self, lb => lb.passive_health())
    }

    /// Runs discovery refreshes and health checks until `shutdown` resolves.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        each!(self, lb => lb.run(shutdown).await)
    }
}

/// What an upstream's selection hashes.
#[derive(Clone, Debug)]
enum KeySource {
    /// The algorithm does not hash.
    None,
    /// `hash_key`.
    Key(HashKey),
}

/// One `[upstreams.NAME]`.
#[derive(Debug)]
pub struct Upstream {
    name: Arc<str>,
    balancer: Balancer,
    key: KeySource,
    /// The configured list, when the backends are listed (a reload replaces it).
    list: Option<Arc<Static>>,
    client: Arc<UpstreamClient>,
    retry: RetryPolicy,
    limits: Option<Arc<Limits>>,
    /// `host`: the `Host` sent to the backends instead of the client's.
    host: Option<http::HeaderValue>,
    /// `upgrade_idle_timeout`, when the upstream sets its own.
    upgrade_idle_timeout: Option<Duration>,
}

impl Upstream {
    /// Builds the upstream `name` from its configuration; `hook` hears its health transitions.
    /// Fails when its discovery source cannot be built (an invalid DNS name, a file of an
    /// unknown format, ...); nothing is contacted yet.
    pub fn new(
        name: &str,
        config: &UpstreamConfig,
        hook: Option<HealthHook>,
    ) -> Result<Self, SourceError> {
        Self::replacing(name, config, hook, None)
    }

    /// Like [`new`](Self::new), for an upstream that replaces one whose backends were
    /// `previous` (a reload): backends at the same addresses keep their state (health,
    /// in-flight requests, operator holds, ejection).
    pub fn replacing(
        name: &str,
        config: &UpstreamConfig,
        hook: Option<HealthHook>,
        previous: Option<&lb_core::BackendSet>,
    ) -> Result<Self, SourceError> {
        let (discovery, list) = discovery::source(name, config)?;
        let name: Arc<str> = name.into();
        let factor = config.balance_factor.as_ref().map(|f| f.get_ref().0);
        let b = Builder {
            name: &name,
            discovery,
            is_static: list.is_some(),
            config,
            hook,
            previous,
        };
        let balancer = match config.selection {
            SelectionKind::RoundRobin => Balancer::RoundRobin(b.build(())?),
            SelectionKind::Random => Balancer::Random(b.build(())?),
            SelectionKind::P2c => Balancer::P2c(b.build(())?),
            SelectionKind::LeastConn => Balancer::LeastConn(b.build(())?),
            SelectionKind::Fnv => Balancer::Fnv(b.build(())?),
            SelectionKind::Hash => Balancer::Hash(b.build(())?),
            SelectionKind::IpHash => Balancer::IpHash(b.build(())?),
            SelectionKind::Consistent => Balancer::Consistent(b.build(ConsistentConfig {
                balance_factor: factor,
            })?),
            SelectionKind::Maglev => Balancer::Maglev(
                b.build(MaglevConfig {
                    table_size: config
                        .maglev_table_size
                        .as_ref()
                        .map_or(DEFAULT_TABLE_SIZE, |t| t.get_ref().0),
                    balance_factor: factor,
                })?,
            ),
        };
        let key = match config.selection {
            SelectionKind::IpHash => KeySource::Key(HashKey::ClientIp),
            kind if kind.hashes_key() => KeySource::Key(
                config
                    .hash_key
                    .as_ref()
                    .map_or(HashKey::Uri, |k| k.get_ref().clone()),
            ),
            _ => KeySource::None,
        };
        // The client to its backends (TLS, timeouts, pool), from the connection keys.
        let client = UpstreamClient::new(crate::peer_options(config))
            .map_err(|e| SourceError::new(&name, "upstream client", e))?;
        if client.options().tls.as_ref().is_some_and(|t| !t.verify) {
            tracing::warn!(upstream = %name, "TLS certificate verification to backends is off (tls.verify = false)");
        }
        let retry = config
            .retry
            .as_ref()
            .map_or_else(RetryPolicy::default, |r| RetryPolicy::new(r.get_ref()));
        let limits = config
            .limits
            .as_ref()
            .and_then(|l| Limits::new(l.get_ref()));
        Ok(Self {
            name,
            balancer,
            key,
            list,
            client: Arc::new(client),
            retry,
            limits,
            host: config.host.as_ref().map(|h| h.value().clone()),
            upgrade_idle_timeout: config.upgrade_idle_timeout.map(PositiveDuration::get),
        })
    }

    /// True when the backends are listed in the configuration (no discovery to wait for).
    pub fn is_static(&self) -> bool {
        self.list.is_some()
    }

    /// Replaces the configured list of a static upstream (a reload that changed only
    /// `backends`): backends that stay keep their state, new ones start as configured,
    /// removed ones get no new requests. Returns `false` (and changes nothing) for an
    /// upstream fed by discovery.
    pub fn relist(&self, found: lb_discovery::Discovered) -> bool {
        let Some(list) = &self.list else {
            return false;
        };
        // Installed now rather than when the background task hears of it, so the reload
        // is complete when it reports; the task then sees the same set and changes nothing.
        list.set_discovered(found.clone());
        self.balancer.set_discovered(found);
        true
    }

    /// The configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The balancer.
    pub fn balancer(&self) -> &Balancer {
        &self.balancer
    }

    /// How long a TCP connect to one of its backends may take.
    pub fn connect_timeout(&self) -> Duration {
        self.client.options().connect_timeout
    }

    /// The client that reaches its backends: with a selected backend, a peer.
    pub fn client(&self) -> &Arc<UpstreamClient> {
        &self.client
    }

    /// The `Host` its backends get instead of the client's (`host = "..."`), if any.
    pub fn host_header(&self) -> Option<&http::HeaderValue> {
        self.host.as_ref()
    }

    /// How long its upgraded connections may stay silent, when it overrides
    /// `[server] upgrade_idle_timeout`.
    pub fn upgrade_idle_timeout(&self) -> Option<Duration> {
        self.upgrade_idle_timeout
    }

    /// Requests waiting for a backend with room (0 without `limits`).
    pub fn queued(&self) -> usize {
        self.limits.as_ref().map_or(0, |l| l.queued())
    }

    /// Its retry policy.
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Picks a backend that `accept` takes for a request from `client` (hashing its key if
    /// the algorithm does).
    #[inline]
    pub(crate) fn select(
        &self,
        parts: &Parts,
        client: IpAddr,
        accept: impl FnMut(&lb_core::Backend) -> bool,
    ) -> Option<InFlight> {
        let mut scratch = [0u8; 16];
        let key: &[u8] = match &self.key {
            KeySource::None => b"",
            KeySource::Key(HashKey::ClientIp) => hash_key::client_ip(client, &mut scratch),
            KeySource::Key(k) => k.extract(parts, client, &mut scratch),
        };
        self.balancer.select_with(key, accept)
    }

    /// The peer for the next attempt of `session`: a backend it has not tried, with room
    /// under the upstream's limits (waiting in its queue while every backend is full).
    pub(crate) async fn peer(&self, session: &Session, ip: IpAddr) -> Result<Peer, LocalResponse> {
        let req = session.req_header();
        let Some(limits) = &self.limits else {
            return self
                .select(req, ip, |b| !session.has_tried(b))
                .map(|in_flight| Peer::new(in_flight, self.client.clone()))
                .ok_or_else(LocalResponse::no_backend);
        };
        let acquired = limits
            .acquire(|limits, full| {
                self.select(req, ip, |b| {
                    if session.has_tried(b) {
                        return false;
                    }
                    let room = limits.has_room(b);
                    *full |= !room;
                    room
                })
            })
            .await;
        match acquired {
            Ok((in_flight, release)) => {
                Ok(Peer::new(in_flight, self.client.clone()).with_release(release))
            }
            Err(Refused::NoBackend) => Err(LocalResponse::no_backend()),
            Err(Refused::Overloaded) => {
                tracing::debug!(upstream = %self.name, "at capacity");
                Err(LocalResponse::overloaded())
            }
        }
    }
}

/// Builds the `LoadBalancer` of one upstream for any selection algorithm.
struct Builder<'a> {
    name: &'a Arc<str>,
    discovery: Arc<dyn ServiceDiscovery>,
    is_static: bool,
    config: &'a UpstreamConfig,
    hook: Option<HealthHook>,
    /// The backends of the upstream this one replaces, whose states carry over.
    previous: Option<&'a lb_core::BackendSet>,
}

impl Builder<'_> {
    fn build<S: BackendSelection>(
        self,
        selection: S::Config,
    ) -> Result<LoadBalancer<S>, SourceError> {
        let mut lb = LoadBalancer::<S>::with_config(self.discovery.clone(), selection);
        if let Some(p) = &self.config.passive {
            lb.set_passive_health(p.get_ref().to_passive());
        }
        if let Some(hc) = &self.config.health_check {
            let hc = hc.get_ref();
            lb.set_initial_health(hc.initial.into());
            let check = health_check(self.name, hc)?;
            let notifier = hc.on_change.as_ref().map(crate::notify::Notifier::new);
            lb.set_health_check(with_hook(check, self.name.clone(), self.hook, notifier));
            let mut schedule = Schedule::new(hc.interval.get());
            schedule.jitter = hc.jitter.0;
            schedule.unhealthy_interval = hc.unhealthy_interval.map(PositiveDuration::get);
            if let Some(n) = hc.max_concurrency {
                schedule.max_concurrency = n.get() as usize;
            }
            lb.set_health_schedule(schedule);
            lb.health_check_frequency = Some(hc.interval.get());
        }
        if let Some(window) = &self.config.slow_start {
            // Both values were validated when the configuration loaded.
            if let Ok(slow) =
                SlowStart::new(window.get_ref().get(), self.config.slow_start_min_percent.0)
            {
                lb.set_slow_start(slow);
            }
        }
        if let Some(previous) = self.previous {
            lb.inherit_states(previous);
        }
        if self.is_static {
            // The list is known now: install it without waiting for the first refresh.
            if let Some(Ok(found)) = self.discovery.discover().now_or_never() {
                lb.set_discovered(found);
            }
        }
        Ok(lb)
    }
}
