//! A fuzzed backend set: addresses of every form (IPv4, IPv6, Unix, parsed text), configured
//! names that may repeat or be empty, weights from 1 to `u32::MAX`, nginx configuration
//! order metadata, and runtime state (health, operator flags, in-flight requests).

use std::num::NonZeroU32;

use arbitrary::Arbitrary;
use lb_core::{Backend, BackendSet, ConfigOrder, Health, InFlight, Metadata};

/// One backend as discovery or configuration could report it.
#[derive(Debug, Arbitrary)]
pub struct FuzzBackend {
    addr: Addr,
    name: Option<Name>,
    weight: Weight,
    order: Option<u32>,
}

/// The address.
#[derive(Debug, Arbitrary)]
enum Addr {
    V4([u8; 4], u16),
    V6([u8; 16], u16),
    Unix(String),
    Text(String),
}

/// A configured name (what the hashing algorithms hash): few distinct ones, so that
/// duplicates are common, or any text.
#[derive(Debug, Arbitrary)]
enum Name {
    Few(u8),
    Any(String),
}

/// The weight.
#[derive(Debug, Arbitrary)]
enum Weight {
    One,
    Small(u8),
    Any(u32),
}

/// A change of one backend's runtime state (index taken modulo the set size).
#[derive(Debug, Arbitrary)]
pub struct StateOp {
    index: u16,
    op: Op,
}

/// What changes.
#[derive(Debug, Arbitrary)]
enum Op {
    Health(u8),
    Enabled(bool),
    Maintenance(bool),
    Ejected(bool),
    Backup(bool),
    /// Start this many requests (at most 63) and keep them in flight.
    Requests(u8),
}

impl FuzzBackend {
    /// The backend, weight at most `max_weight`; `None` for an address text that does not
    /// parse.
    pub fn backend(&self, max_weight: u32) -> Option<Backend> {
        let mut b = match &self.addr {
            Addr::V4(ip, port) => Backend::new(std::net::SocketAddr::from((*ip, *port))),
            Addr::V6(ip, port) => Backend::new(std::net::SocketAddr::from((*ip, *port))),
            Addr::Unix(path) => Backend::parse(&format!("unix:{path}")).ok()?,
            Addr::Text(text) => Backend::parse(text).ok()?,
        };
        match &self.name {
            None => {}
            Some(Name::Few(n)) => b = b.with_name(format!("backend-{}", n % 4)),
            Some(Name::Any(s)) => b = b.with_name(s.as_str()),
        }
        let weight = match self.weight {
            Weight::One => None,
            Weight::Small(w) => NonZeroU32::new(u32::from(w)),
            Weight::Any(w) => NonZeroU32::new(w),
        };
        if let Some(w) = weight.map(|w| w.min(NonZeroU32::new(max_weight).unwrap_or(w))) {
            b = b.with_weight(w);
        }
        if let Some(order) = self.order {
            b = b.with_metadata(Metadata::new().with(ConfigOrder(order)));
        }
        Some(b)
    }
}

/// The backends that parse, in input order, weights at most `max_weight`.
pub fn backends(list: &[FuzzBackend], max_weight: u32) -> Vec<Backend> {
    list.iter().filter_map(|b| b.backend(max_weight)).collect()
}

/// Applies `ops` to the backends of `set`; returns the in-flight guards to keep alive.
pub fn apply(ops: &[StateOp], set: &BackendSet) -> Vec<InFlight> {
    let mut guards = Vec::new();
    if set.is_empty() {
        return guards;
    }
    for op in ops {
        let b = &set[usize::from(op.index) % set.len()];
        let state = b.state();
        match op.op {
            Op::Health(h) => {
                state.set_health(match h % 3 {
                    0 => Health::Unknown,
                    1 => Health::Healthy,
                    _ => Health::Unhealthy,
                });
            }
            Op::Enabled(on) => {
                state.set_enabled(on);
            }
            Op::Maintenance(on) => {
                state.set_maintenance(on);
            }
            Op::Ejected(on) => {
                state.set_ejected(on);
            }
            Op::Backup(on) => {
                state.set_backup(on);
            }
            Op::Requests(n) => guards.extend((0..n % 64).map(|_| b.begin_request())),
        }
    }
    guards
}
