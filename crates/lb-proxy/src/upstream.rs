//! Upstreams: a named load balancer built from configuration.

use std::sync::Arc;
use std::time::Duration;

use lb_balancer::LoadBalancer;
use lb_core::InFlight;
use lb_discovery::{Discovered, Static};
use lb_health::{CheckParams, HealthCheck, HealthCheckExt, StatusChange, TcpHealthCheck};
use lb_selection::RoundRobin;

use crate::config::{HealthCheckKind, SelectionKind, UpstreamConfig};
use crate::connector;

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
}

macro_rules! each {
    ($self:expr, $lb:ident => $body:expr) => {
        match $self {
            Balancer::RoundRobin($lb) => $body,
        }
    };
}

impl Balancer {
    /// Picks a usable backend; see [`LoadBalancer::select`].
    #[inline]
    pub fn select(&self, key: &[u8]) -> Option<InFlight> {
        each!(self, lb => lb.select(key, MAX_CANDIDATES))
    }

    /// Runs one round of health checks now (also driven by the background task).
    pub async fn run_health_check(&self) {
        each!(self, lb => lb.run_health_check().await)
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

/// One `[upstreams.NAME]`.
#[derive(Debug)]
pub struct Upstream {
    name: Arc<str>,
    balancer: Balancer,
    connect_timeout: Duration,
}

impl Upstream {
    /// Builds the upstream `name` from its configuration; `hook` hears its health transitions.
    pub fn new(name: &str, config: &UpstreamConfig, hook: Option<HealthHook>) -> Self {
        let name: Arc<str> = name.into();
        let backends = config
            .backends
            .iter()
            .map(connector::with_authority)
            .collect();
        let discovery = Arc::new(Static::new(backends));
        let balancer = match config.selection {
            SelectionKind::RoundRobin => {
                Balancer::RoundRobin(build(&name, discovery, config, hook))
            }
        };
        Self {
            name,
            balancer,
            connect_timeout: config.connect_timeout.get(),
        }
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
}

fn build<S: lb_selection::BackendSelection>(
    name: &Arc<str>,
    discovery: Arc<Static>,
    config: &UpstreamConfig,
    hook: Option<HealthHook>,
) -> LoadBalancer<S> {
    let mut lb = LoadBalancer::<S>::from_discovery(discovery.clone());
    if let Some(hc) = &config.health_check {
        lb.set_initial_health(hc.initial.into());
        let params = CheckParams {
            rise: hc.rise,
            fall: hc.fall,
            timeout: hc.timeout.get(),
        };
        let check = match hc.kind {
            HealthCheckKind::Tcp => TcpHealthCheck::new(params),
        };
        lb.set_health_check(with_hook(check, name.clone(), hook));
        lb.health_check_frequency = Some(hc.interval.get());
    }
    // The static list is known now: install it without waiting for the first refresh.
    lb.set_discovered(Discovered::new(discovery.get()));
    lb
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
