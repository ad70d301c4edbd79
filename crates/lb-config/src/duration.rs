//! Durations written as text: `"500ms"`, `"1s"`, `"1m30s"`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A duration in configuration, written like `"500ms"`, `"2s"` or `"1m 30s"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigDuration(pub Duration);

/// A duration that must be greater than zero (intervals and timeouts: zero would mean
/// "never" or "always fail", which no one means).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PositiveDuration(pub Duration);

impl PositiveDuration {
    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl<'de> Deserialize<'de> for PositiveDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let ConfigDuration(d) = ConfigDuration::deserialize(deserializer)?;
        if d.is_zero() {
            return Err(de::Error::custom("must be greater than zero"));
        }
        Ok(Self(d))
    }
}

impl ConfigDuration {
    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ConfigDuration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a duration such as "500ms", "2s" or "1m30s""#)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ConfigDuration, E> {
                humantime::parse_duration(v)
                    .map(ConfigDuration)
                    .map_err(|e| E::custom(format!("invalid duration {v:?} ({e}); write it like \"500ms\", \"2s\" or \"1m30s\"")))
            }
        }
        deserializer.deserialize_str(V)
    }
}
