//! `retry = { ... }` and the load limits of an upstream: nginx `proxy_next_upstream`, Envoy
//! and Linkerd retry budgets, nginx `max_conns` / HAProxy `maxqueue`.

use std::num::NonZeroU32;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigDuration, PositiveDuration};

/// One `retry.on` condition, as nginx's `proxy_next_upstream` spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RetryOn {
    /// The connection failed, or broke before a response head arrived.
    Error,
    /// Connecting or waiting for the response head timed out.
    Timeout,
    /// The backend answered something that is not valid HTTP.
    InvalidHeader,
    /// The backend answered 500.
    #[serde(rename = "http_500")]
    Http500,
    /// 502.
    #[serde(rename = "http_502")]
    Http502,
    /// 503.
    #[serde(rename = "http_503")]
    Http503,
    /// 504.
    #[serde(rename = "http_504")]
    Http504,
    /// 403.
    #[serde(rename = "http_403")]
    Http403,
    /// 404.
    #[serde(rename = "http_404")]
    Http404,
    /// 429.
    #[serde(rename = "http_429")]
    Http429,
}

impl RetryOn {
    /// The status this condition matches, for the `http_*` ones.
    pub fn status(self) -> Option<u16> {
        Some(match self {
            Self::Http500 => 500,
            Self::Http502 => 502,
            Self::Http503 => 503,
            Self::Http504 => 504,
            Self::Http403 => 403,
            Self::Http404 => 404,
            Self::Http429 => 429,
            Self::Error | Self::Timeout | Self::InvalidHeader => return None,
        })
    }

    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Timeout => "timeout",
            Self::InvalidHeader => "invalid_header",
            Self::Http500 => "http_500",
            Self::Http502 => "http_502",
            Self::Http503 => "http_503",
            Self::Http504 => "http_504",
            Self::Http403 => "http_403",
            Self::Http404 => "http_404",
            Self::Http429 => "http_429",
        }
    }
}

/// `[upstreams.NAME.retry]`: when a failed attempt is tried again on another backend.
///
/// The defaults are nginx's: retry on `error` and `timeout`, as many tries as there are
/// backends, no time limit, never a non-idempotent request that may have reached the
/// backend; plus a retry budget, which nginx lacks.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// The conditions that trigger a retry; `[]` disables retries.
    #[serde(default = "default_on")]
    pub on: Vec<RetryOn>,
    /// Attempts in total, the first included (`proxy_next_upstream_tries`); 0 means as many as
    /// there are backends.
    #[serde(default)]
    pub tries: u32,
    /// No retry starts after this long since the request arrived
    /// (`proxy_next_upstream_timeout`); 0 means no limit.
    #[serde(default)]
    pub timeout: ConfigDuration,
    /// Also retry POST, PATCH and LOCK requests that may have reached the backend. A request
    /// that provably never reached it (the connection failed) is always retried.
    #[serde(default)]
    pub non_idempotent: bool,
    /// Request bodies up to this many bytes are kept so that they can be sent again; a
    /// larger body is streamed and its request retried only if none of it was sent.
    #[serde(default = "default_buffer")]
    pub buffer: ByteSize,
    /// Retries may add at most this fraction of the live requests (Envoy/Linkerd retry
    /// budget), so a failing upstream does not see its load multiplied.
    #[serde(default = "default_budget_ratio")]
    pub budget_ratio: f64,
    /// Retries always allowed per second, whatever the ratio, so a quiet upstream can retry.
    #[serde(default = "default_budget_min")]
    pub budget_min_per_sec: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            on: default_on(),
            tries: 0,
            timeout: ConfigDuration::default(),
            non_idempotent: false,
            buffer: default_buffer(),
            budget_ratio: default_budget_ratio(),
            budget_min_per_sec: default_budget_min(),
        }
    }
}

impl RetryConfig {
    /// Checks the values serde cannot.
    pub(crate) fn check(&self) -> Result<(), String> {
        if !(0.0..=10.0).contains(&self.budget_ratio) || self.budget_ratio.is_nan() {
            return Err(format!(
                "budget_ratio {} must be between 0.0 and 10.0 (0.2 lets retries add 20% load)",
                self.budget_ratio
            ));
        }
        if self.tries == 1 {
            return Err("tries = 1 allows no retry; use `on = []` to disable retries".into());
        }
        Ok(())
    }

    /// The retry time limit, if any.
    pub fn time_limit(&self) -> Option<Duration> {
        Some(self.timeout.0).filter(|d| !d.is_zero())
    }
}

fn default_on() -> Vec<RetryOn> {
    vec![RetryOn::Error, RetryOn::Timeout]
}

fn default_buffer() -> ByteSize {
    ByteSize(64 * 1024)
}

/// Half the live requests: enough to mask one dead backend in three (a third of the
/// requests retried) with room to spare, while an outage of the whole upstream at most
/// multiplies its load by 1.5 instead of by `tries`.
fn default_budget_ratio() -> f64 {
    0.5
}

fn default_budget_min() -> u32 {
    10
}

/// A size in bytes: a number, or a string with a unit (`"64KiB"`, `"1MiB"`, `"10MB"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(t) => parse_size(&t).map(ByteSize).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "invalid size {t:?}: expected bytes such as 65536, \"64KiB\", \"1MiB\" or \"1GB\""
                ))
            }),
        }
    }
}

fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// `[upstreams.NAME.limits]`: circuit breaking by load (nginx `max_conns` + `queue`,
/// HAProxy `maxconn` / `maxqueue` / `timeout queue`, Envoy's circuit-breaker thresholds).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Requests in flight at once per backend; a full backend is skipped by selection.
    #[serde(default)]
    pub max_conns: Option<NonZeroU32>,
    /// Requests that may wait for a backend with room when all are full; beyond, 503 at
    /// once. Default 0: no queue.
    #[serde(default)]
    pub max_queue: u32,
    /// How long a queued request waits before 503.
    #[serde(default = "default_queue_timeout")]
    pub queue_timeout: PositiveDuration,
    /// Requests in flight at once on the whole upstream; beyond, 503 at once.
    #[serde(default)]
    pub max_active: Option<NonZeroU32>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_conns: None,
            max_queue: 0,
            queue_timeout: default_queue_timeout(),
            max_active: None,
        }
    }
}

fn default_queue_timeout() -> PositiveDuration {
    PositiveDuration(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_and_without_units() {
        assert_eq!(parse_size("65536"), Some(65536));
        assert_eq!(parse_size("64KiB"), Some(65536));
        assert_eq!(parse_size("1 MiB"), Some(1 << 20));
        assert_eq!(parse_size("10MB"), Some(10_000_000));
        assert_eq!(parse_size("2gib"), Some(2 << 30));
        assert_eq!(parse_size("1.5MiB"), None);
        assert_eq!(parse_size("MiB"), None);
        assert_eq!(parse_size("99999999999999999999GiB"), None);
    }
}
