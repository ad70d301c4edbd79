//! The `backends = [...]` list: strings or `{ addr, weight }` tables.

use std::fmt;
use std::num::NonZeroU32;
use std::ops::Deref;

use lb_core::Backend;
use serde::de::{self, value::MapAccessDeserializer, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// The backends of one upstream, parsed and resolved while the configuration loads.
///
/// Each entry is `"host:port"` (also `"[ipv6]:port"` and `"unix:/path"`) or a table
/// `{ addr = "host:port", weight = 2, backup = true }`. A name that resolves to several addresses gives one
/// backend per address, each keeping the configured name.
#[derive(Clone, Debug, Default)]
pub struct BackendList(pub Vec<Backend>);

impl Deref for BackendList {
    type Target = [Backend];

    fn deref(&self) -> &[Backend] {
        &self.0
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    addr: String,
    #[serde(default = "one")]
    weight: NonZeroU32,
    #[serde(default)]
    backup: bool,
}

/// Marks a backend listed with `backup = true` (in its metadata): it gets traffic only
/// when no other backend of its upstream is usable, as nginx's `backup` parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backup;

fn one() -> NonZeroU32 {
    NonZeroU32::MIN
}

fn resolve<E: de::Error>(addr: &str, weight: NonZeroU32) -> Result<Vec<Backend>, E> {
    Backend::resolve(addr)
        .map(|v| v.into_iter().map(|b| b.with_weight(weight)).collect())
        .map_err(|e| {
            let cause = std::error::Error::source(&e)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            E::custom(format!("{e}{cause}"))
        })
}

/// One entry of the list.
struct OneEntry(Vec<Backend>);

impl<'de> Deserialize<'de> for OneEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneEntry;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#""host:port" or { addr = "host:port", weight = N, backup = false }"#)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneEntry, E> {
                resolve(v, NonZeroU32::MIN).map(OneEntry)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<OneEntry, A::Error> {
                let entry = Entry::deserialize(MapAccessDeserializer::new(map))?;
                let mut found = resolve(&entry.addr, entry.weight)?;
                if entry.backup {
                    for b in &mut found {
                        *b = b.with_metadata(b.metadata().with(Backup));
                    }
                }
                Ok(OneEntry(found))
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for BackendList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BackendList;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of backends")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<BackendList, A::Error> {
                let mut all: Vec<Backend> = Vec::new();
                while let Some(OneEntry(found)) = seq.next_element()? {
                    for b in found {
                        if let Some(prev) = all.iter().find(|p| p.addr() == b.addr()) {
                            return Err(de::Error::custom(format!(
                                "`{}` is the same address as `{}` ({}); list each backend once",
                                b.name(),
                                prev.name(),
                                b.addr()
                            )));
                        }
                        all.push(b);
                    }
                }
                if all.is_empty() {
                    return Err(de::Error::custom("needs at least one backend"));
                }
                Ok(BackendList(all))
            }
        }
        deserializer.deserialize_seq(V)
    }
}
