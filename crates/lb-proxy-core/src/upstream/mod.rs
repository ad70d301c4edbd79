//! Upstreams: a named load balancer built from configuration, as the proxy runs it.
//!
//! The balancer is lb-balancer's [`AnyLoadBalancer`] (the `selection` key names its
//! [`Algorithm`]); `checks.rs` turns the `health_check` table into the probe. The upstream
//! adds what the proxy needs at run time: the hash key, the client to its backends,
//! retries, limits, and `Upstream::peer`, which picks the backend of the next attempt.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use http::request::Parts;
use lb_balancer::{Algorithm, AnyLoadBalancer, SlowStart};
use lb_core::InFlight;
use lb_discovery::{ServiceDiscovery, Static};
use lb_health::{HealthObserver, Schedule, StatusChange};
use lb_selection::{ConsistentConfig, MaglevConfig, DEFAULT_TABLE_SIZE};

use crate::client::UpstreamClient;
use crate::config::{PositiveDuration, SelectionKind, UpstreamConfig};
use crate::discovery::{self, SourceError};
use crate::hash_key::{self, Extract as _, HashKey};
use crate::hooks::Peer;
use crate::limits::{Limits, Refused};
use crate::retry::RetryPolicy;

mod checks;

use checks::health_check;

/// How many candidates one selection may try before answering 503.
pub(crate) const MAX_CANDIDATES: usize = 256;

/// A hook told about every health transition of every upstream: `(upstream, change)`.
pub type HealthHook = Arc<dyn Fn(&str, &StatusChange<'_>) + Send + Sync>;

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
    balancer: AnyLoadBalancer,
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
    /// Builds the upstream `name` from its configuration. Fails when its discovery source
    /// cannot be built (an invalid DNS name, a file of an unknown format, ...); nothing is
    /// contacted yet. Its health transitions reach its `on_change` hooks, and
    /// [`on_health_change`](Self::on_health_change) adds a callback.
    pub fn new(name: &str, config: &UpstreamConfig) -> Result<Self, SourceError> {
        Self::replacing(name, config, None)
    }

    /// Like [`new`](Self::new), for an upstream that replaces one whose backends were
    /// `previous` (a reload): backends at the same addresses keep their state (health,
    /// in-flight requests, operator holds, ejection).
    pub fn replacing(
        name: &str,
        config: &UpstreamConfig,
        previous: Option<&lb_core::BackendSet>,
    ) -> Result<Self, SourceError> {
        let (discovery, list) = discovery::source(name, config)?;
        let name: Arc<str> = name.into();
        let b = Builder {
            name: &name,
            discovery,
            is_static: list.is_some(),
            config,
            previous,
        };
        let balancer = b.build(algorithm(config))?;
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

    /// Calls `hook(name, change)` on every health transition of its backends from now on
    /// (a subscriber of its health monitor); does nothing for an upstream without
    /// `health_check`.
    pub fn on_health_change(&self, hook: HealthHook) {
        if let Some(monitor) = self.balancer.health_monitor() {
            monitor.subscribe(Arc::new(Named {
                upstream: self.name.clone(),
                hook,
            }));
        }
    }

    /// The configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The balancer.
    pub fn balancer(&self) -> &AnyLoadBalancer {
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
        self.balancer.select_with(key, MAX_CANDIDATES, accept)
    }

    /// The peer for the next attempt of a request (`parts`, from `client_ip`): a backend
    /// not in `tried`, with room under the upstream's limits (waiting in its queue while
    /// every backend is full). Knows nothing of HTTP responses: the caller answers a
    /// [`Refused`] as it sees fit.
    pub(crate) async fn peer(
        &self,
        parts: &Parts,
        client_ip: IpAddr,
        tried: &[lb_core::Backend],
    ) -> Result<Peer, Refused> {
        let fresh = |b: &lb_core::Backend| !tried.iter().any(|t| t.addr() == b.addr());
        let Some(limits) = &self.limits else {
            return self
                .select(parts, client_ip, fresh)
                .map(|in_flight| Peer::new(in_flight, self.client.clone()))
                .ok_or(Refused::NoBackend);
        };
        let acquired = limits
            .acquire(|limits, full| {
                self.select(parts, client_ip, |b| {
                    if !fresh(b) {
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
            Err(refused) => {
                if refused == Refused::Overloaded {
                    tracing::debug!(upstream = %self.name, "at capacity");
                }
                Err(refused)
            }
        }
    }
}

/// A [`HealthHook`] as a subscriber of one upstream's monitor.
struct Named {
    upstream: Arc<str>,
    hook: HealthHook,
}

impl HealthObserver for Named {
    fn status_changed(&self, change: &StatusChange<'_>) {
        (self.hook)(&self.upstream, change);
    }
}

/// The selection algorithm `config` names, with its options.
fn algorithm(config: &UpstreamConfig) -> Algorithm {
    let factor = config.balance_factor.as_ref().map(|f| f.get_ref().0);
    match config.selection {
        SelectionKind::RoundRobin => Algorithm::RoundRobin,
        SelectionKind::Random => Algorithm::Random,
        SelectionKind::P2c => Algorithm::P2c,
        SelectionKind::LeastConn => Algorithm::LeastConn,
        SelectionKind::Fnv => Algorithm::Fnv,
        SelectionKind::Hash => Algorithm::Hash,
        SelectionKind::IpHash => Algorithm::IpHash,
        SelectionKind::Consistent => Algorithm::Consistent(ConsistentConfig {
            balance_factor: factor,
        }),
        SelectionKind::Maglev => Algorithm::Maglev(MaglevConfig {
            table_size: config
                .maglev_table_size
                .as_ref()
                .map_or(DEFAULT_TABLE_SIZE, |t| t.get_ref().0),
            balance_factor: factor,
        }),
    }
}

/// Builds the balancer of one upstream.
struct Builder<'a> {
    name: &'a Arc<str>,
    discovery: Arc<dyn ServiceDiscovery>,
    is_static: bool,
    config: &'a UpstreamConfig,
    /// The backends of the upstream this one replaces, whose states carry over.
    previous: Option<&'a lb_core::BackendSet>,
}

impl Builder<'_> {
    fn build(self, algorithm: Algorithm) -> Result<AnyLoadBalancer, SourceError> {
        let mut lb = AnyLoadBalancer::new(self.discovery.clone(), algorithm);
        if let Some(p) = &self.config.passive {
            lb.set_passive_health(p.get_ref().to_passive());
        }
        if let Some(hc) = &self.config.health_check {
            let hc = hc.get_ref();
            lb.set_initial_health(hc.initial.into());
            lb.set_health_check(health_check(self.name, hc)?);
            if let (Some(on_change), Some(monitor)) = (&hc.on_change, lb.health_monitor()) {
                let notifier = crate::notify::Notifier::new(on_change);
                let upstream = self.name.clone();
                monitor.subscribe(Arc::new(move |change: &StatusChange<'_>| {
                    notifier.notify(&upstream, change);
                }));
            }
            let mut schedule = Schedule::new(hc.interval.get());
            schedule.jitter = hc.jitter.0;
            schedule.unhealthy_interval = hc.unhealthy_interval.map(PositiveDuration::get);
            if let Some(n) = hc.max_concurrency {
                schedule.max_concurrency = n.get() as usize;
            }
            lb.set_health_schedule(schedule);
            lb.set_health_check_frequency(Some(hc.interval.get()));
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
