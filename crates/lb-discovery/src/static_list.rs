//! [`Static`]: a backend list given in code or configuration, changeable at run time.
//!
//! The list lives in a `tokio::sync::watch` channel, so a change made through the API both
//! answers the next [`discover`](ServiceDiscovery::discover) and wakes every
//! [`watch`](ServiceDiscovery::watch) stream at once: a consumer that uses the stream sees
//! `add`, `remove` and `set` without a polling interval.

use std::collections::HashSet;

use async_trait::async_trait;
use lb_core::{Backend, BackendAddr, BackendSet, Error};
use tokio::sync::watch;

use crate::{BackendEntry, Discovered, DiscoveryError, DiscoveryStream, ServiceDiscovery};

/// Discovery from a list that code may replace, extend or shrink at any time.
///
/// Changes are seen by the next [`discover`](ServiceDiscovery::discover) and pushed to every
/// stream from [`watch`](ServiceDiscovery::watch); a stream ends when its `Static` is
/// dropped. Changes that leave the answer as it was wake no one.
#[derive(Debug)]
pub struct Static {
    current: watch::Sender<Discovered>,
}

impl Default for Static {
    fn default() -> Self {
        Self::from_discovered(Discovered::default())
    }
}

impl Static {
    /// Discovery that answers `backends`, all enabled.
    pub fn new(backends: BackendSet) -> Self {
        Self::from_discovered(Discovered::new(backends))
    }

    /// Discovery that answers `found` (with its disabled and backup addresses).
    pub fn from_discovered(found: Discovered) -> Self {
        Self {
            current: watch::Sender::new(found),
        }
    }

    /// Parses and resolves `host:port`, `[ipv6]:port` or `unix:/path` texts (a name resolves
    /// with the system resolver, once, here; use DNS discovery for names that change).
    pub fn try_from_iter<I, S>(addrs: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::try_from_entries(addrs.into_iter().map(|a| BackendEntry::new(a.as_ref())))
    }

    /// Builds the list from configuration entries (address, weight, enabled), resolving
    /// names with the system resolver, blocking, once, here. Entries with `enabled = false`
    /// are in the set but disabled.
    pub fn try_from_entries<I>(entries: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = BackendEntry>,
    {
        let mut all = Vec::new();
        let mut disabled = HashSet::new();
        for entry in entries {
            for b in entry.resolve_blocking()? {
                if !entry.enabled {
                    disabled.insert(b.addr().clone());
                }
                all.push(b);
            }
        }
        Ok(Self::from_discovered(
            Discovered::new(all.into_iter().collect()).with_disabled(disabled),
        ))
    }

    /// The current list.
    pub fn get(&self) -> BackendSet {
        self.current.borrow().backends.clone()
    }

    /// The current answer (backends, disabled and backup addresses).
    pub fn discovered(&self) -> Discovered {
        self.current.borrow().clone()
    }

    /// Replaces the whole list; disabled and backup marks stay for addresses still listed.
    pub fn set(&self, backends: BackendSet) {
        self.update(|d| d.backends = backends);
    }

    /// Replaces the whole answer.
    pub fn set_discovered(&self, found: Discovered) {
        self.update(|d| *d = found);
    }

    /// Adds one backend (a backend already at that address stays: one backend per address).
    pub fn add(&self, backend: Backend) {
        self.update(|d| {
            d.backends = d
                .backends
                .iter()
                .cloned()
                .chain(std::iter::once(backend))
                .collect();
        });
    }

    /// Removes one backend (compared by identity: address, name and weight).
    pub fn remove(&self, backend: &Backend) {
        self.update(|d| {
            d.backends = d
                .backends
                .iter()
                .filter(|b| *b != backend)
                .cloned()
                .collect();
        });
    }

    /// Enables or disables new traffic to the backend at `addr`.
    pub fn set_enabled(&self, addr: &BackendAddr, enabled: bool) {
        self.update(|d| {
            if enabled {
                d.disabled.remove(addr);
            } else {
                d.disabled.insert(addr.clone());
            }
        });
    }

    /// Applies `change`, drops marks of addresses no longer listed, and wakes the streams
    /// only if the answer changed.
    fn update(&self, change: impl FnOnce(&mut Discovered)) {
        self.current.send_if_modified(|d| {
            let before = d.clone();
            change(d);
            let listed: HashSet<&BackendAddr> = d.backends.iter().map(Backend::addr).collect();
            d.disabled.retain(|a| listed.contains(a));
            d.backups.retain(|a| listed.contains(a));
            *d != before
        });
    }
}

#[async_trait]
impl ServiceDiscovery for Static {
    async fn discover(&self) -> Result<Discovered, DiscoveryError> {
        Ok(self.discovered())
    }

    fn watch(&self) -> Option<DiscoveryStream> {
        let mut rx = self.current.subscribe();
        rx.mark_changed();
        Some(Box::pin(futures_util::stream::unfold(
            rx,
            |mut rx| async move {
                rx.changed().await.ok()?;
                let found = rx.borrow_and_update().clone();
                Some((Ok(found), rx))
            },
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

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

    #[tokio::test]
    async fn streams_get_the_current_set_then_each_change_then_end() {
        let mut off = BackendEntry::new("10.0.0.2:80");
        off.enabled = false;
        let s = Static::try_from_entries([BackendEntry::new("10.0.0.1:80"), off]).unwrap();
        let mut stream = s.watch().unwrap();
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(first.backends.len(), 2);
        assert_eq!(first.disabled.len(), 1);

        let b2 = Backend::parse("10.0.0.2:80").unwrap();
        s.set_enabled(b2.addr(), false); // no change: no wake-up
        s.set_enabled(b2.addr(), true);
        let next = stream.next().await.unwrap().unwrap();
        assert!(next.disabled.is_empty());

        s.remove(&b2);
        assert_eq!(stream.next().await.unwrap().unwrap().backends.len(), 1);
        drop(s);
        assert!(
            stream.next().await.is_none(),
            "ends when the source is gone"
        );
    }
}
