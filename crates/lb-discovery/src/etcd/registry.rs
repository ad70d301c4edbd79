//! The registry as last read from etcd: one entry per key under the prefix.
//!
//! Each key holds a JSON [`BackendEntry`] (`{"addr": "10.0.0.1:8080", "weight": 2,
//! "enabled": true}`, or just `"10.0.0.1:8080"`). A value that does not parse, or whose
//! address does not resolve, is skipped with a warning naming the key: one bad registration
//! must not take the others down. Keys are applied in etcd's order (byte order), and when
//! two keys name the same address the first key wins.

use std::collections::{BTreeMap, HashSet};

use lb_core::{Backend, BackendSet};

use crate::{BackendEntry, Discovered};

/// What one key registered.
#[derive(Debug)]
struct Registered {
    backends: Vec<Backend>,
    enabled: bool,
}

/// The backends registered under the prefix, by key.
#[derive(Debug, Default)]
pub(super) struct Registry {
    keys: BTreeMap<String, Registered>,
}

impl Registry {
    /// Records `value` under `key`, replacing what the key held; an invalid value removes
    /// the key's backend (it is no longer a valid registration) and logs why.
    pub(super) async fn put(&mut self, key: &str, value: &[u8]) {
        match parse(key, value).await {
            Some(registered) => {
                self.keys.insert(key.to_owned(), registered);
            }
            None => {
                self.keys.remove(key);
            }
        }
    }

    /// Forgets `key` (deleted, or its lease expired).
    pub(super) fn delete(&mut self, key: &str) {
        self.keys.remove(key);
    }

    /// The answer: every backend of every key, the first key of an address winning.
    pub(super) fn discovered(&self) -> Discovered {
        let mut seen = HashSet::new();
        let mut backends = Vec::new();
        let mut disabled = HashSet::new();
        for (key, registered) in &self.keys {
            for b in &registered.backends {
                if !seen.insert(b.addr().clone()) {
                    tracing::debug!(key = %key, addr = %b.addr(), "address registered by an earlier key too; ignored");
                    continue;
                }
                if !registered.enabled {
                    disabled.insert(b.addr().clone());
                }
                backends.push(b.clone());
            }
        }
        let backends: BackendSet = backends.into_iter().collect();
        Discovered::new(backends).with_disabled(disabled)
    }
}

async fn parse(key: &str, value: &[u8]) -> Option<Registered> {
    let entry: BackendEntry = match serde_json::from_slice(value) {
        Ok(entry) => entry,
        Err(error) => {
            tracing::warn!(key = %key, error = %error, "invalid etcd backend value; key skipped");
            return None;
        }
    };
    match entry.resolve().await {
        Ok(backends) => Some(Registered {
            backends,
            enabled: entry.enabled,
        }),
        Err(error) => {
            tracing::warn!(key = %key, error = %error, "etcd backend address does not resolve; key skipped");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn values_are_parsed_skipped_and_deduplicated() {
        let mut r = Registry::default();
        r.put("/s/a", br#"{"addr": "10.0.0.1:80", "weight": 2}"#)
            .await;
        r.put("/s/b", br#""10.0.0.2:80""#).await;
        r.put("/s/c", br#"{"addr": "10.0.0.3:80", "enabled": false}"#)
            .await;
        r.put("/s/d", b"not json").await;
        r.put("/s/e", br#"{"addr": "10.0.0.1:80", "weight": 7}"#)
            .await;
        let d = r.discovered();
        let names: Vec<_> = d
            .backends
            .iter()
            .map(|b| (b.name().to_owned(), b.weight().get()))
            .collect();
        assert_eq!(
            names,
            [
                ("10.0.0.1:80".to_owned(), 2),
                ("10.0.0.2:80".to_owned(), 1),
                ("10.0.0.3:80".to_owned(), 1)
            ]
        );
        assert_eq!(d.disabled.len(), 1);

        r.put("/s/a", b"{}").await; // now invalid: a's backend goes, e's takes the address
        r.delete("/s/b");
        let d = r.discovered();
        assert_eq!(d.backends.len(), 2);
        assert_eq!(d.backends[0].weight().get(), 7);
    }
}
