//! `Algorithm`: the nine selection algorithms, named at run time (from a configuration
//! file, a command line), with the options of those that have any.

use std::fmt;

use lb_selection::{ConsistentConfig, MaglevConfig};

/// A selection algorithm chosen at run time, for [`AnyLoadBalancer`](crate::AnyLoadBalancer).
///
/// The names ([`name`](Self::name)) are those `lb-proxy`'s `selection` key takes.
///
/// ```
/// use lb_balancer::Algorithm;
///
/// assert_eq!(Algorithm::RoundRobin.name(), "round_robin");
/// assert!(Algorithm::IpHash.hashes_key());
/// assert!(!Algorithm::LeastConn.hashes_key());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub enum Algorithm {
    /// Smooth weighted round robin ([`RoundRobin`](lb_selection::RoundRobin)).
    #[default]
    RoundRobin,
    /// Weighted random ([`Random`](lb_selection::Random)).
    Random,
    /// Power of two choices ([`P2c`](lb_selection::P2c)).
    P2c,
    /// Fewest requests in flight ([`LeastConn`](lb_selection::LeastConn)).
    LeastConn,
    /// FNV hash of the key over the backends ([`FnvHash`](lb_selection::FnvHash)).
    Fnv,
    /// A consistent-hash ring ([`Consistent`](lb_selection::Consistent)).
    Consistent(ConsistentConfig),
    /// nginx's `hash` ([`NginxHash`](lb_selection::NginxHash)).
    Hash,
    /// nginx's `ip_hash` ([`IpHash`](lb_selection::IpHash)).
    IpHash,
    /// Maglev's lookup table ([`Maglev`](lb_selection::Maglev)).
    Maglev(MaglevConfig),
}

impl Algorithm {
    /// Its name: `round_robin`, `random`, `p2c`, `least_conn`, `fnv`, `consistent`,
    /// `hash`, `ip_hash` or `maglev`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::RoundRobin => "round_robin",
            Self::Random => "random",
            Self::P2c => "p2c",
            Self::LeastConn => "least_conn",
            Self::Fnv => "fnv",
            Self::Consistent(_) => "consistent",
            Self::Hash => "hash",
            Self::IpHash => "ip_hash",
            Self::Maglev(_) => "maglev",
        }
    }

    /// True when the algorithm picks by the request's hash key (the others ignore it).
    pub fn hashes_key(&self) -> bool {
        matches!(
            self,
            Self::Fnv | Self::Consistent(_) | Self::Hash | Self::IpHash | Self::Maglev(_)
        )
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
