//! Upstreams: a named load balancer built from configuration.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use http::request::Parts;
use lb_balancer::{LoadBalancer, SlowStart};
use lb_core::InFlight;
use lb_discovery::ServiceDiscovery;
use lb_health::{CheckParams, HealthCheck, HealthCheckExt, StatusChange, TcpHealthCheck};
use lb_selection::{
    BackendSelection, Consistent, ConsistentConfig, FnvHash, IpHash, LeastConn, Maglev,
    MaglevConfig, NginxHash, P2c, Random, RoundRobin, DEFAULT_TABLE_SIZE,
};

use crate::config::{HealthCheckKind, SelectionKind, UpstreamConfig};
use crate::discovery::{self, SourceError};
use crate::hash_key::{self, HashKey};

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

    /// Asks discovery for the current backends now; see [`LoadBalancer::update`].
    pub async fn update(&self) -> Result<lb_balancer::SetChange, lb_discovery::DiscoveryError> {
        each!(self, lb => lb.update().await)
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
    is_static: bool,
    connect_timeout: Duration,
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
        let (discovery, is_static) = discovery::source(name, config)?;
        let name: Arc<str> = name.into();
        let factor = config.balance_factor.as_ref().map(|f| f.get_ref().0);
        let b = Builder {
            name: &name,
            discovery,
            is_static,
            config,
            hook,
        };
        let balancer = match config.selection {
            SelectionKind::RoundRobin => Balancer::RoundRobin(b.build(())),
            SelectionKind::Random => Balancer::Random(b.build(())),
            SelectionKind::P2c => Balancer::P2c(b.build(())),
            SelectionKind::LeastConn => Balancer::LeastConn(b.build(())),
            SelectionKind::Fnv => Balancer::Fnv(b.build(())),
            SelectionKind::Hash => Balancer::Hash(b.build(())),
            SelectionKind::IpHash => Balancer::IpHash(b.build(())),
            SelectionKind::Consistent => Balancer::Consistent(b.build(ConsistentConfig {
                balance_factor: factor,
            })),
            SelectionKind::Maglev => Balancer::Maglev(
                b.build(MaglevConfig {
                    table_size: config
                        .maglev_table_size
                        .as_ref()
                        .map_or(DEFAULT_TABLE_SIZE, |t| t.get_ref().0),
                    balance_factor: factor,
                }),
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
        Ok(Self {
            name,
            balancer,
            key,
            is_static,
            connect_timeout: config.connect_timeout.get(),
        })
    }

    /// True when the backends are listed in the configuration (no discovery to wait for).
    pub fn is_static(&self) -> bool {
        self.is_static
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
        self.connect_timeout
    }

    /// Picks a backend for a request from `client` (hashing its key if the algorithm does).
    #[inline]
    pub(crate) fn select(&self, parts: &Parts, client: IpAddr) -> Option<InFlight> {
        let mut scratch = [0u8; 16];
        let key: &[u8] = match &self.key {
            KeySource::None => b"",
            KeySource::Key(HashKey::ClientIp) => hash_key::client_ip(client, &mut scratch),
            KeySource::Key(k) => k.extract(parts, client, &mut scratch),
        };
        self.balancer.select(key)
    }
}

/// Builds the `LoadBalancer` of one upstream for any selection algorithm.
struct Builder<'a> {
    name: &'a Arc<str>,
    discovery: Arc<dyn ServiceDiscovery>,
    is_static: bool,
    config: &'a UpstreamConfig,
    hook: Option<HealthHook>,
}

impl Builder<'_> {
    fn build<S: BackendSelection>(self, selection: S::Config) -> LoadBalancer<S> {
        let mut lb = LoadBalancer::<S>::with_config(self.discovery.clone(), selection);
        if let Some(hc) = &self.config.health_check {
            lb.set_initial_health(hc.initial.into());
            let params = CheckParams {
                rise: hc.rise,
                fall: hc.fall,
                timeout: hc.timeout.get(),
            };
            let check = match hc.kind {
                HealthCheckKind::Tcp => TcpHealthCheck::new(params),
            };
            lb.set_health_check(with_hook(check, self.name.clone(), self.hook));
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
        if self.is_static {
            // The list is known now: install it without waiting for the first refresh.
            if let Some(Ok(found)) = self.discovery.discover().now_or_never() {
                lb.set_discovered(found);
            }
        }
        lb
    }
}

fn with_hook(
    check: impl HealthCheck,
    upstream: Arc<str>,
    hook: Option<HealthHook>,
) -> impl HealthCheck {
    check.on_status_change(move |change| {
        if let Some(hook) = &hook {
            hook(&upstream, change);
        }
    })
}
