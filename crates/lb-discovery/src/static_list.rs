//! A backend list given in code or configuration, changeable at run time.

use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use lb_core::{Backend, BackendSet, Error};

use crate::{Discovered, DiscoveryError, ServiceDiscovery};

/// Discovery from a fixed list that code may replace, extend or shrink at any time; the load
/// balancer picks the change up at its next discovery refresh.
#[derive(Debug, Default)]
pub struct Static {
    backends: ArcSwap<BackendSet>,
}

impl Static {
    /// Discovery that always answers `backends`.
    pub fn new(backends: BackendSet) -> Self {
        Self {
            backends: ArcSwap::from_pointee(backends),
        }
    }

    /// Parses and resolves `host:port`, `[ipv6]:port` or `unix:/path` texts (a name resolves
    /// with the system resolver, once, here; use DNS discovery for names that change).
    pub fn try_from_iter<I, S>(addrs: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut all = Vec::new();
        for addr in addrs {
            all.extend(Backend::resolve(addr.as_ref())?);
        }
        Ok(Self::new(all.into_iter().collect()))
    }

    /// The current list.
    pub fn get(&self) -> BackendSet {
        BackendSet::clone(&self.backends.load())
    }

    /// Replaces the whole list.
    pub fn set(&self, backends: BackendSet) {
        self.backends.store(Arc::new(backends));
    }

    /// Adds one backend.
    pub fn add(&self, backend: Backend) {
        self.backends.rcu(|cur| {
            cur.iter()
                .cloned()
                .chain(std::iter::once(backend.clone()))
                .collect::<BackendSet>()
        });
    }

    /// Removes one backend (compared by identity: address, name and weight).
    pub fn remove(&self, backend: &Backend) {
        self.backends.rcu(|cur| {
            cur.iter()
                .filter(|b| *b != backend)
                .cloned()
                .collect::<BackendSet>()
        });
    }
}

#[async_trait]
impl ServiceDiscovery for Static {
    async fn discover(&self) -> Result<Discovered, DiscoveryError> {
        Ok(Discovered::new(self.get()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn changes_are_seen_by_the_next_discovery() {
        let s = Static::try_from_iter(["10.0.0.1:80", "10.0.0.2:80"]).unwrap();
        let extra = Backend::parse("10.0.0.3:80").unwrap();
        s.add(extra.clone());
        assert_eq!(s.discover().await.unwrap().backends.len(), 3);
        s.remove(&extra);
        s.remove(&Backend::parse("10.0.0.1:80").unwrap());
        let left = s.discover().await.unwrap().backends;
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].name(), "10.0.0.2:80");
    }

    #[test]
    fn bad_addresses_are_errors() {
        let err = Static::try_from_iter(["10.0.0.1:80", "nope"]).unwrap_err();
        assert!(err.to_string().contains("`nope`"), "{err}");
    }
}
