//! What a discovery source answers ([`Discovered`]) and how it fails ([`DiscoveryError`]).
//!
//! A [`Discovered`] is always a whole set, never a delta: a consumer installs it as is and
//! matches backends to its previous set by address, so health and load carry over. The
//! `backups` set carries the priority tiers of DNS SRV records (RFC 2782: "a client MUST
//! attempt to contact the target host with the lowest-numbered priority it can reach");
//! `disabled` carries the `enabled: false` of registries and files.

use std::collections::HashSet;
use std::error::Error as StdError;

use lb_core::{BackendAddr, BackendSet};

/// One answer of a discovery source: the whole set, not a change.
///
/// `disabled` and `backups` only name addresses that are in `backends`; an address in
/// them that is not in `backends` means nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Discovered {
    /// Every backend the source knows of.
    pub backends: BackendSet,
    /// Addresses the source wants kept in the set but given no new traffic (for example an
    /// etcd value or a file entry with `enabled: false`).
    pub disabled: HashSet<BackendAddr>,
    /// Addresses to use only when no other backend of the set is usable: the DNS SRV
    /// targets whose priority number is higher than the lowest one in the answer (all
    /// higher tiers together). Empty for sources without priorities.
    pub backups: HashSet<BackendAddr>,
}

impl Discovered {
    /// All of `backends`, none disabled, no backups.
    pub fn new(backends: BackendSet) -> Self {
        Self {
            backends,
            disabled: HashSet::new(),
            backups: HashSet::new(),
        }
    }

    /// This answer with `disabled` as the disabled addresses.
    #[must_use]
    pub fn with_disabled(mut self, disabled: HashSet<BackendAddr>) -> Self {
        self.disabled = disabled;
        self
    }

    /// This answer with `backups` as the backup addresses.
    #[must_use]
    pub fn with_backups(mut self, backups: HashSet<BackendAddr>) -> Self {
        self.backups = backups;
        self
    }

    /// True when `addr` should get new traffic (it is not disabled). Whether it is a
    /// backup is a separate question: see [`is_backup`](Self::is_backup).
    pub fn is_enabled(&self, addr: &BackendAddr) -> bool {
        !self.disabled.contains(addr)
    }

    /// True when `addr` is only to be used when no primary backend is usable.
    pub fn is_backup(&self, addr: &BackendAddr) -> bool {
        self.backups.contains(addr)
    }
}

/// Why discovery failed this time. The consumer logs it and keeps the last good set.
///
/// The message names the source (`dns _http._tcp.example`, `etcd /services/web/`,
/// `file /etc/lb/web.toml`); the [`source`](StdError::source) chain says what went wrong
/// (a source-specific error such as `dns::DnsError`, which keeps
/// the underlying resolver, gRPC or I/O error as its own source).
#[derive(Debug, thiserror::Error)]
#[error("discovery from {source_name} failed")]
pub struct DiscoveryError {
    source_name: String,
    #[source]
    cause: Box<dyn StdError + Send + Sync>,
}

impl DiscoveryError {
    /// An error of the source named `source_name` (for logs: `dns`, `etcd`, a file path...).
    pub fn new(
        source_name: impl Into<String>,
        cause: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        Self {
            source_name: source_name.into(),
            cause: cause.into(),
        }
    }

    /// The name of the source that failed.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// The source-specific error, to inspect with `downcast_ref` (for example to a
    /// `file::FileError`).
    pub fn cause(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.cause
    }

    /// The whole chain as one line, `a: b: c`, for logs and assertions.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut next = StdError::source(self);
        while let Some(e) = next {
            out.push_str(": ");
            out.push_str(&e.to_string());
            next = e.source();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_core::Backend;

    #[test]
    fn chain_names_every_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = DiscoveryError::new("file /x.toml", io);
        assert_eq!(
            err.chain(),
            "discovery from file /x.toml failed: no such file"
        );
        assert!(err.cause().downcast_ref::<std::io::Error>().is_some());
    }

    #[test]
    fn flags_are_per_address() {
        let a = Backend::parse("10.0.0.1:80").unwrap();
        let b = Backend::parse("10.0.0.2:80").unwrap();
        let d = Discovered::new([a.clone(), b.clone()].into_iter().collect())
            .with_disabled([a.addr().clone()].into())
            .with_backups([b.addr().clone()].into());
        assert!(!d.is_enabled(a.addr()) && !d.is_backup(a.addr()));
        assert!(d.is_enabled(b.addr()) && d.is_backup(b.addr()));
    }
}
