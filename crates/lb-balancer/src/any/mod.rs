//! `AnyLoadBalancer`: a [`LoadBalancer`] whose selection algorithm is chosen at run time.
//!
//! The type's own documentation explains the design and carries the example (this module is
//! private; the type is re-exported at the crate root).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lb_core::{Backend, BackendSet, Health, InFlight};
use lb_discovery::{Discovered, DiscoveryError, ServiceDiscovery, Static};
use lb_health::{HealthCheck, HealthMonitor, Outcome, PassiveConfig, PassiveHealth, Schedule};
use lb_selection::{
    Consistent, FnvHash, IpHash, LeastConn, Maglev, NginxHash, P2c, Random, RoundRobin,
};

use crate::{LoadBalancer, SetChange, SlowStart};

mod algorithm;

pub use algorithm::Algorithm;

/// The nine balancers.
enum Inner {
    RoundRobin(LoadBalancer<RoundRobin>),
    Random(LoadBalancer<Random>),
    P2c(LoadBalancer<P2c>),
    LeastConn(LoadBalancer<LeastConn>),
    Fnv(LoadBalancer<FnvHash>),
    Consistent(LoadBalancer<Consistent>),
    Hash(LoadBalancer<NginxHash>),
    IpHash(LoadBalancer<IpHash>),
    Maglev(LoadBalancer<Maglev>),
}

/// Runs `$body` with `$lb` bound to the balancer inside `$inner`, whichever it is.
macro_rules! each {
    ($inner:expr, $lb:ident => $body:expr) => {
        match $inner {
            Inner::RoundRobin($lb) => $body,
            Inner::Random($lb) => $body,
            Inner::P2c($lb) => $body,
            Inner::LeastConn($lb) => $body,
            Inner::Fnv($lb) => $body,
            Inner::Consistent($lb) => $body,
            Inner::Hash($lb) => $body,
            Inner::IpHash($lb) => $body,
            Inner::Maglev($lb) => $body,
        }
    };
}

/// A [`LoadBalancer`] over any of the nine algorithms, chosen at run time. Every method does
/// what the `LoadBalancer` method of the same name does.
///
/// [`LoadBalancer<S>`] is generic over its algorithm, so `select` is statically dispatched
/// and inlined. A program that reads the algorithm from its configuration needs one type
/// for all nine: this is an enum over the nine `LoadBalancer`s, and every method is one
/// `match` that forwards to the balancer inside (no allocation, no dynamic dispatch, one
/// predictable branch per call). The forwarding is written once, in one private macro.
///
/// ```
/// use std::sync::Arc;
/// use lb_balancer::{Algorithm, AnyLoadBalancer};
/// use lb_discovery::Static;
///
/// # fn demo() -> Result<(), lb_core::Error> {
/// let algorithm = match std::env::var("SELECTION").as_deref() {
///     Ok("least_conn") => Algorithm::LeastConn,
///     Ok("maglev") => Algorithm::Maglev(Default::default()),
///     _ => Algorithm::RoundRobin,
/// };
/// let lb = AnyLoadBalancer::try_from_iter(["127.0.0.1:9001", "127.0.0.1:9002"], algorithm)?;
/// assert_eq!(lb.algorithm(), algorithm);
/// let picked = lb.select(b"/some/key", 256).expect("two usable backends");
/// assert!(picked.addr().to_string().starts_with("127.0.0.1:900"));
/// # let _ = AnyLoadBalancer::new(Arc::new(Static::default()), Algorithm::Hash);
/// # Ok(()) }
/// # demo().unwrap();
/// ```
pub struct AnyLoadBalancer {
    algorithm: Algorithm,
    inner: Inner,
}

impl std::fmt::Debug for AnyLoadBalancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnyLoadBalancer")
            .field("algorithm", &self.algorithm)
            .field(
                "balancer",
                each!(&self.inner, lb => lb as &dyn std::fmt::Debug),
            )
            .finish()
    }
}

impl AnyLoadBalancer {
    /// A balancer running `algorithm`, fed by `discovery`, empty until the first
    /// [`update`](Self::update); see [`LoadBalancer::with_config`].
    pub fn new(discovery: Arc<dyn ServiceDiscovery>, algorithm: Algorithm) -> Self {
        let d = discovery;
        let inner = match algorithm {
            Algorithm::RoundRobin => Inner::RoundRobin(LoadBalancer::with_config(d, ())),
            Algorithm::Random => Inner::Random(LoadBalancer::with_config(d, ())),
            Algorithm::P2c => Inner::P2c(LoadBalancer::with_config(d, ())),
            Algorithm::LeastConn => Inner::LeastConn(LoadBalancer::with_config(d, ())),
            Algorithm::Fnv => Inner::Fnv(LoadBalancer::with_config(d, ())),
            Algorithm::Consistent(c) => Inner::Consistent(LoadBalancer::with_config(d, c)),
            Algorithm::Hash => Inner::Hash(LoadBalancer::with_config(d, ())),
            Algorithm::IpHash => Inner::IpHash(LoadBalancer::with_config(d, ())),
            Algorithm::Maglev(c) => Inner::Maglev(LoadBalancer::with_config(d, c)),
        };
        Self { algorithm, inner }
    }

    /// A balancer running `algorithm` over a fixed list of addresses, usable at once; see
    /// [`LoadBalancer::try_from_iter`].
    pub fn try_from_iter<I, A>(addrs: I, algorithm: Algorithm) -> Result<Self, lb_core::Error>
    where
        I: IntoIterator<Item = A>,
        A: AsRef<str>,
    {
        let discovery = Static::try_from_iter(addrs)?;
        let initial = discovery.get();
        let lb = Self::new(Arc::new(discovery), algorithm);
        lb.set_discovered(Discovered::new(initial));
        Ok(lb)
    }

    /// The algorithm it runs.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// See [`LoadBalancer::set_health_check`].
    pub fn set_health_check(&mut self, check: impl HealthCheck) {
        each!(&mut self.inner, lb => lb.set_health_check(check))
    }

    /// See [`LoadBalancer::set_health_schedule`].
    pub fn set_health_schedule(&mut self, schedule: Schedule) {
        each!(&mut self.inner, lb => lb.set_health_schedule(schedule))
    }

    /// Sets [`LoadBalancer::health_check_frequency`].
    pub fn set_health_check_frequency(&mut self, every: Option<Duration>) {
        each!(&mut self.inner, lb => lb.health_check_frequency = every)
    }

    /// [`LoadBalancer::health_check_frequency`].
    pub fn health_check_frequency(&self) -> Option<Duration> {
        each!(&self.inner, lb => lb.health_check_frequency)
    }

    /// Sets [`LoadBalancer::update_frequency`].
    pub fn set_update_frequency(&mut self, every: Option<Duration>) {
        each!(&mut self.inner, lb => lb.update_frequency = every)
    }

    /// [`LoadBalancer::update_frequency`].
    pub fn update_frequency(&self) -> Option<Duration> {
        each!(&self.inner, lb => lb.update_frequency)
    }

    /// See [`LoadBalancer::set_passive_health`].
    pub fn set_passive_health(&mut self, config: PassiveConfig) {
        each!(&mut self.inner, lb => lb.set_passive_health(config))
    }

    /// See [`LoadBalancer::set_initial_health`].
    pub fn set_initial_health(&mut self, initial: Health) {
        each!(&mut self.inner, lb => lb.set_initial_health(initial))
    }

    /// See [`LoadBalancer::set_slow_start`].
    pub fn set_slow_start(&mut self, slow_start: SlowStart) {
        each!(&mut self.inner, lb => lb.set_slow_start(slow_start))
    }

    /// See [`LoadBalancer::inherit_states`].
    pub fn inherit_states(&mut self, previous: &BackendSet) {
        each!(&mut self.inner, lb => lb.inherit_states(previous))
    }

    /// See [`LoadBalancer::report`].
    #[inline]
    pub fn report(&self, backend: &Backend, outcome: Outcome) {
        each!(&self.inner, lb => lb.report(backend, outcome))
    }

    /// See [`LoadBalancer::passive_health`].
    pub fn passive_health(&self) -> Option<&Arc<PassiveHealth>> {
        each!(&self.inner, lb => lb.passive_health())
    }

    /// See [`LoadBalancer::select`].
    #[inline]
    pub fn select(&self, key: &[u8], max_iterations: usize) -> Option<InFlight> {
        each!(&self.inner, lb => lb.select(key, max_iterations))
    }

    /// See [`LoadBalancer::select_with`].
    #[inline]
    pub fn select_with(
        &self,
        key: &[u8],
        max_iterations: usize,
        accept: impl FnMut(&Backend) -> bool,
    ) -> Option<InFlight> {
        each!(&self.inner, lb => lb.select_with(key, max_iterations, accept))
    }

    /// See [`LoadBalancer::backends`].
    pub fn backends(&self) -> BackendSet {
        each!(&self.inner, lb => lb.backends())
    }

    /// See [`LoadBalancer::watch_backends`].
    pub fn watch_backends(&self) -> tokio::sync::watch::Receiver<BackendSet> {
        each!(&self.inner, lb => lb.watch_backends())
    }

    /// See [`LoadBalancer::health_monitor`].
    pub fn health_monitor(&self) -> Option<&HealthMonitor> {
        each!(&self.inner, lb => lb.health_monitor())
    }

    /// See [`LoadBalancer::update`].
    pub async fn update(&self) -> Result<SetChange, DiscoveryError> {
        each!(&self.inner, lb => lb.update().await)
    }

    /// See [`LoadBalancer::set_discovered`].
    pub fn set_discovered(&self, found: Discovered) -> SetChange {
        each!(&self.inner, lb => lb.set_discovered(found))
    }

    /// See [`LoadBalancer::refresh`].
    pub async fn refresh(&self) {
        each!(&self.inner, lb => lb.refresh().await)
    }

    /// See [`LoadBalancer::run_health_check`].
    pub async fn run_health_check(&self) {
        each!(&self.inner, lb => lb.run_health_check().await)
    }

    /// See [`LoadBalancer::run`].
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        each!(&self.inner, lb => lb.run(shutdown).await)
    }
}

#[cfg(test)]
mod tests;
