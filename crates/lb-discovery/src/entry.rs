//! [`BackendEntry`]: one backend as operators write it, in a file, an etcd value or a
//! configuration: `"host:port"` or `{ addr = "host:port", weight = 2, enabled = false }`.
//!
//! The shape is the one `lb-proxy`'s `backends = [...]` already takes (and nginx's
//! `server host:port weight=2 down;`), so a list can move between the proxy's
//! configuration, a discovery file and an etcd registry unchanged. Weights start at 1, as in
//! nginx; unknown keys are errors, so a typo (`wieght`) is caught instead of ignored.

use std::fmt;
use std::num::NonZeroU32;

use lb_core::{Backend, Error};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// One backend as written by an operator: the address text, its weight and whether it
/// takes new traffic.
///
/// Deserializes from a string (`"10.0.0.1:80"`, weight 1, enabled) or from a map with
/// `addr` and optional `weight` (at least 1, default 1) and `enabled` (default `true`).
///
/// ```
/// use lb_discovery::BackendEntry;
///
/// let e: BackendEntry = serde_json::from_str(r#"{"addr": "10.0.0.1:80", "weight": 2}"#)?;
/// assert_eq!((e.addr.as_str(), e.weight.get(), e.enabled), ("10.0.0.1:80", 2, true));
/// let e: BackendEntry = serde_json::from_str(r#""unix:/run/app.sock""#)?;
/// assert_eq!(e.weight.get(), 1);
/// assert!(serde_json::from_str::<BackendEntry>(r#"{"addr": "x:1", "weight": 0}"#).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BackendEntry {
    /// `ip:port`, `[ipv6]:port`, `host:port` or `unix:/path`, as written: it becomes the
    /// backend's configured name.
    pub addr: String,
    /// The relative share of traffic.
    pub weight: NonZeroU32,
    /// `false` keeps the backend in the set but gives it no new traffic.
    pub enabled: bool,
}

impl BackendEntry {
    /// `addr` with weight 1, enabled.
    pub fn new(addr: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            weight: NonZeroU32::MIN,
            enabled: true,
        }
    }

    /// The backends this entry stands for, resolving a host name without blocking
    /// (`tokio::net::lookup_host`). A name with several addresses gives one backend per
    /// address; each keeps the entry's text as its name and the entry's weight.
    pub async fn resolve(&self) -> Result<Vec<Backend>, Error> {
        match Backend::parse(&self.addr) {
            Ok(b) => Ok(vec![b.with_weight(self.weight)]),
            Err(Error::InvalidAddress { .. }) if has_port(&self.addr) => {
                let found =
                    tokio::net::lookup_host(self.addr.as_str())
                        .await
                        .map_err(|source| Error::Resolve {
                            addr: self.addr.clone(),
                            source,
                        })?;
                let mut out: Vec<Backend> = found
                    .map(|a| {
                        Backend::new(a)
                            .with_name(self.addr.as_str())
                            .with_weight(self.weight)
                    })
                    .collect();
                out.sort();
                out.dedup();
                if out.is_empty() {
                    return Err(Error::NoAddress {
                        addr: self.addr.clone(),
                    });
                }
                Ok(out)
            }
            Err(e) => Err(e),
        }
    }

    /// Like [`resolve`](Self::resolve), with the system resolver, blocking: for
    /// configuration loading, not for a runtime thread.
    pub fn resolve_blocking(&self) -> Result<Vec<Backend>, Error> {
        Ok(Backend::resolve(&self.addr)?
            .into_iter()
            .map(|b| b.with_weight(self.weight))
            .collect())
    }
}

fn has_port(text: &str) -> bool {
    text.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

impl<'de> Deserialize<'de> for BackendEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(EntryVisitor)
    }
}

struct EntryVisitor;

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = BackendEntry;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"host:port\" or { addr = \"host:port\", weight = N, enabled = BOOL }")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<BackendEntry, E> {
        Ok(BackendEntry::new(v))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BackendEntry, A::Error> {
        let mut addr: Option<String> = None;
        let mut weight: Option<u32> = None;
        let mut enabled: Option<bool> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "addr" if addr.is_none() => addr = Some(map.next_value()?),
                "weight" if weight.is_none() => weight = Some(map.next_value()?),
                "enabled" if enabled.is_none() => enabled = Some(map.next_value()?),
                "addr" | "weight" | "enabled" => {
                    return Err(de::Error::custom(format_args!("duplicate key `{key}`")))
                }
                other => {
                    return Err(de::Error::unknown_field(
                        other,
                        &["addr", "weight", "enabled"],
                    ))
                }
            }
        }
        let addr = addr.ok_or_else(|| de::Error::missing_field("addr"))?;
        let weight = match weight {
            None => NonZeroU32::MIN,
            Some(w) => NonZeroU32::new(w).ok_or_else(|| {
                de::Error::custom(format_args!(
                    "backend `{addr}` has weight 0; weights start at 1"
                ))
            })?,
        };
        Ok(BackendEntry {
            addr,
            weight,
            enabled: enabled.unwrap_or(true),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Doc {
        backends: Vec<BackendEntry>,
    }

    #[test]
    fn both_shapes_and_strict_keys() {
        let doc: Doc = toml::from_str(
            r#"backends = ["10.0.0.1:80", { addr = "10.0.0.2:80", weight = 3, enabled = false }]"#,
        )
        .unwrap();
        assert_eq!(doc.backends[0], BackendEntry::new("10.0.0.1:80"));
        assert_eq!(doc.backends[1].weight.get(), 3);
        assert!(!doc.backends[1].enabled);
        let err = toml::from_str::<Doc>(r#"backends = [{ addr = "a:1", wieght = 2 }]"#)
            .err()
            .unwrap();
        assert!(err.to_string().contains("wieght"), "{err}");
        let err = toml::from_str::<Doc>(r#"backends = [{ weight = 2 }]"#)
            .err()
            .unwrap();
        assert!(err.to_string().contains("addr"), "{err}");
    }

    #[tokio::test]
    async fn names_resolve_keeping_text_and_weight() {
        let mut e = BackendEntry::new("localhost:8080");
        e.weight = NonZeroU32::new(4).unwrap();
        let all = e.resolve().await.unwrap();
        assert!(!all.is_empty());
        for b in &all {
            assert_eq!((b.name(), b.weight().get()), ("localhost:8080", 4));
        }
        assert!(BackendEntry::new("nope").resolve().await.is_err());
        assert_eq!(e.resolve_blocking().unwrap().len(), all.len());
    }
}
