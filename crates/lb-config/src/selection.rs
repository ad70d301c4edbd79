//! How an upstream selects: the algorithm (`selection`) and the checked numbers its
//! options take (`balance_factor`, percentages, `maglev_table_size`).

use lb_selection::{is_prime, BalanceFactor, MAX_TABLE_SIZE};
use serde::Deserialize;

/// The selection algorithm of an upstream; see `docs/algorithms.md`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelectionKind {
    /// Round robin; nginx's smooth weighted round robin when weights differ.
    #[default]
    RoundRobin,
    /// Weighted random.
    Random,
    /// Power of two choices: the less loaded of two weighted-random backends.
    P2c,
    /// Fewest in-flight requests per unit of weight (nginx `least_conn`).
    LeastConn,
    /// FNV-1a hash of `hash_key` modulo weighted slots.
    Fnv,
    /// Ketama consistent hashing of `hash_key`, as nginx `hash $key consistent`.
    Consistent,
    /// nginx `hash $key` (not consistent).
    Hash,
    /// nginx `ip_hash`: the client address.
    IpHash,
    /// Maglev consistent hashing of `hash_key`.
    Maglev,
}

impl SelectionKind {
    /// True for the algorithms that hash a request key (`hash_key` applies).
    pub fn hashes_key(self) -> bool {
        matches!(
            self,
            Self::Fnv | Self::Consistent | Self::Hash | Self::Maglev
        )
    }

    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoundRobin => "round_robin",
            Self::Random => "random",
            Self::P2c => "p2c",
            Self::LeastConn => "least_conn",
            Self::Fnv => "fnv",
            Self::Consistent => "consistent",
            Self::Hash => "hash",
            Self::IpHash => "ip_hash",
            Self::Maglev => "maglev",
        }
    }
}

/// A `balance_factor` value: a finite number above 1.0.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Factor(pub BalanceFactor);

impl<'de> Deserialize<'de> for Factor {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(deserializer)?;
        BalanceFactor::new(v)
            .map(Factor)
            .map_err(serde::de::Error::custom)
    }
}

/// A percentage from 1 to 100.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Percent(pub u8);

pub(super) fn default_min_percent() -> Percent {
    Percent(10)
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let v = u8::deserialize(deserializer)?;
        if !(1..=100).contains(&v) {
            return Err(serde::de::Error::custom(format!(
                "{v} is not a percentage from 1 to 100"
            )));
        }
        Ok(Percent(v))
    }
}

/// A `maglev_table_size` value: a prime number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableSize(pub u32);

impl<'de> Deserialize<'de> for TableSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let v = u32::deserialize(deserializer)?;
        if v > MAX_TABLE_SIZE {
            return Err(serde::de::Error::custom(format!(
                "{v} is larger than the largest table, {MAX_TABLE_SIZE} (64 MiB)"
            )));
        }
        if !is_prime(u64::from(v)) {
            return Err(serde::de::Error::custom(format!(
                "{v} is not a prime number (Maglev needs a prime table size, such as 65537)"
            )));
        }
        Ok(TableSize(v))
    }
}
