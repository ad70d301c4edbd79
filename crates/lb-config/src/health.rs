//! `[upstreams.NAME.health_check]` and `[upstreams.NAME.passive]`.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use lb_core::Health;
use lb_health::StatusSet;
use serde::Deserialize;

use super::PositiveDuration;

/// The kind of active health check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheckKind {
    /// A TCP (or Unix socket) connection opens within the timeout.
    #[default]
    Tcp,
    /// TCP plus a full TLS handshake with certificate verification.
    Tls,
    /// An HTTP request (over TLS with `tls = true`) whose status (and body) is checked.
    Http,
}

impl HealthCheckKind {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Http => "http",
        }
    }
}

/// The initial health of backends, before their first check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitialHealth {
    /// Usable at once; the first check result decides (and is reported as a transition).
    #[default]
    Unknown,
    /// Healthy until `fall` checks fail.
    Healthy,
    /// No traffic until `rise` checks pass.
    Unhealthy,
}

impl From<InitialHealth> for Health {
    fn from(value: InitialHealth) -> Self {
        match value {
            InitialHealth::Unknown => Health::Unknown,
            InitialHealth::Healthy => Health::Healthy,
            InitialHealth::Unhealthy => Health::Unhealthy,
        }
    }
}

/// A `expect_status` value such as `"2xx,3xx"` or `"200,204"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Statuses(pub StatusSet);

impl<'de> Deserialize<'de> for Statuses {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map(Statuses).map_err(serde::de::Error::custom)
    }
}

/// A jitter fraction from 0 to 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Jitter(pub f64);

impl<'de> Deserialize<'de> for Jitter {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(deserializer)?;
        if !(0.0..=1.0).contains(&v) {
            return Err(serde::de::Error::custom(format!(
                "jitter is a fraction of the interval from 0.0 to 1.0, got {v}"
            )));
        }
        Ok(Jitter(v))
    }
}

/// `[upstreams.NAME.health_check]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// What to check.
    #[serde(default)]
    pub kind: HealthCheckKind,
    /// Time between checks of one backend.
    #[serde(default = "default_interval")]
    pub interval: PositiveDuration,
    /// Time between checks of an unhealthy backend (HAProxy `downinter`); `interval` when absent.
    #[serde(default)]
    pub unhealthy_interval: Option<PositiveDuration>,
    /// Each wait varies by up to ± half this fraction of the interval, spreading checks out.
    #[serde(default = "default_jitter")]
    pub jitter: Jitter,
    /// How long one check may take.
    #[serde(default = "default_timeout")]
    pub timeout: PositiveDuration,
    /// Consecutive passes that make an unhealthy backend healthy.
    #[serde(default = "default_rise")]
    pub rise: NonZeroU32,
    /// Consecutive failures that make a healthy backend unhealthy.
    #[serde(default = "default_fall")]
    pub fall: NonZeroU32,
    /// Health of a backend before its first check.
    #[serde(default)]
    pub initial: InitialHealth,
    /// Check another port than the backend's (tls, http).
    #[serde(default)]
    pub port: Option<u16>,
    /// `http`: the request method (default GET).
    #[serde(default)]
    pub method: Option<String>,
    /// `http`: the request path (default `/`).
    #[serde(default)]
    pub path: Option<String>,
    /// `http`: the `Host` header (default the backend's configured host).
    #[serde(default)]
    pub host: Option<String>,
    /// `http`: extra request headers.
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    /// `http`: statuses that pass, such as `"2xx,3xx"` (the default) or `"200,204"`.
    #[serde(default)]
    pub expect_status: Option<Statuses>,
    /// `http`: text the body must contain (the first 64 KiB are read).
    #[serde(default)]
    pub expect_body: Option<String>,
    /// `http`: a regular expression the body must match.
    #[serde(default)]
    pub expect_body_regex: Option<String>,
    /// `http`: keep one connection per backend across checks.
    #[serde(default)]
    pub reuse_connection: Option<bool>,
    /// `http`: speak TLS (HTTPS) to the backend.
    #[serde(default)]
    pub tls: Option<bool>,
    /// `tls`, `http` with TLS: the server name sent and verified (default the configured host).
    #[serde(default)]
    pub sni: Option<String>,
    /// `tls`, `http` with TLS: verify the certificate (default true).
    #[serde(default)]
    pub verify: Option<bool>,
    /// `tls`, `http` with TLS: trust these CA certificates (PEM) instead of the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `tls`, `http` with TLS: a client certificate (PEM), with `client_key`, for mTLS.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// `tls`, `http` with TLS: the client certificate's private key (PEM).
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// `tls`: ALPN protocols to offer; a server that agrees on none fails the check.
    #[serde(default)]
    pub alpn: Option<Vec<String>>,
    /// At most this many checks of the upstream run at once (default 256).
    #[serde(default)]
    pub max_concurrency: Option<NonZeroU32>,
    /// Operator hooks run on every transition (a webhook and/or a command); see
    /// [`OnChangeConfig`](super::OnChangeConfig).
    #[serde(default)]
    pub on_change: Option<super::OnChangeConfig>,
}

fn default_interval() -> PositiveDuration {
    PositiveDuration(Duration::from_secs(1))
}
fn default_timeout() -> PositiveDuration {
    PositiveDuration(Duration::from_secs(1))
}
fn default_jitter() -> Jitter {
    Jitter(0.1)
}
fn default_rise() -> NonZeroU32 {
    NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN)
}
fn default_fall() -> NonZeroU32 {
    NonZeroU32::new(3).unwrap_or(NonZeroU32::MIN)
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            kind: HealthCheckKind::Tcp,
            interval: default_interval(),
            unhealthy_interval: None,
            jitter: default_jitter(),
            timeout: default_timeout(),
            rise: default_rise(),
            fall: default_fall(),
            initial: InitialHealth::Unknown,
            port: None,
            method: None,
            path: None,
            host: None,
            headers: None,
            expect_status: None,
            expect_body: None,
            expect_body_regex: None,
            reuse_connection: None,
            tls: None,
            sni: None,
            verify: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            alpn: None,
            max_concurrency: None,
            on_change: None,
        }
    }
}

impl HealthCheckConfig {
    /// True when the check speaks TLS.
    pub fn uses_tls(&self) -> bool {
        self.kind == HealthCheckKind::Tls
            || (self.kind == HealthCheckKind::Http && self.tls == Some(true))
    }

    /// Refuses keys that do not apply to the kind; the message names the key.
    pub(crate) fn check(&self) -> Result<(), String> {
        let kind = self.kind.as_str();
        let http_only = [
            ("method", self.method.is_some()),
            ("path", self.path.is_some()),
            ("host", self.host.is_some()),
            ("headers", self.headers.is_some()),
            ("expect_status", self.expect_status.is_some()),
            ("expect_body", self.expect_body.is_some()),
            ("expect_body_regex", self.expect_body_regex.is_some()),
            ("reuse_connection", self.reuse_connection.is_some()),
            ("tls", self.tls.is_some()),
        ];
        let tls_only = [
            ("sni", self.sni.is_some()),
            ("verify", self.verify.is_some()),
            ("ca_file", self.ca_file.is_some()),
            ("client_cert", self.client_cert.is_some()),
            ("client_key", self.client_key.is_some()),
        ];
        if self.kind != HealthCheckKind::Http {
            if let Some((key, _)) = http_only.iter().find(|(_, set)| *set) {
                return Err(format!(
                    "`{key}` applies to kind = \"http\" only, not \"{kind}\""
                ));
            }
        }
        if !self.uses_tls() {
            if let Some((key, _)) = tls_only.iter().find(|(_, set)| *set) {
                return Err(format!(
                    "`{key}` applies to TLS checks only (kind = \"tls\", or \"http\" with tls = true)"
                ));
            }
        }
        if self.alpn.is_some() && self.kind != HealthCheckKind::Tls {
            return Err("`alpn` applies to kind = \"tls\" only".into());
        }
        if self.port.is_some() && self.kind == HealthCheckKind::Tcp {
            return Err("`port` applies to tls and http checks".into());
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err("`client_cert` and `client_key` go together".into());
        }
        if self.verify == Some(false) && (self.ca_file.is_some() || self.sni.is_some()) {
            return Err(
                "`verify = false` ignores `ca_file` and `sni`; remove them or verify".into(),
            );
        }
        Ok(())
    }
}

/// `[upstreams.NAME.passive]`: ejection driven by the outcomes of real requests.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveHealthConfig {
    /// nginx `max_fails`: failed attempts within `fail_timeout` that eject for `fail_timeout`.
    #[serde(default)]
    pub max_fails: Option<NonZeroU32>,
    /// nginx `fail_timeout` (default 10s).
    #[serde(default)]
    pub fail_timeout: Option<PositiveDuration>,
    /// Statuses that count as failed attempts for `max_fails` (default `"502-504"`; errors and
    /// timeouts always count).
    #[serde(default)]
    pub fail_statuses: Option<Statuses>,
    /// Envoy `consecutive_5xx`: this many 5xx answers (or gateway failures) in a row eject.
    #[serde(default)]
    pub consecutive_5xx: Option<NonZeroU32>,
    /// Envoy `consecutive_gateway_failure`: this many 502/503/504 or connect failures in a row eject.
    #[serde(default)]
    pub consecutive_gateway_failure: Option<NonZeroU32>,
    /// Envoy `base_ejection_time` (default 30s), multiplied by the number of recent ejections.
    #[serde(default)]
    pub base_ejection_time: Option<PositiveDuration>,
    /// The longest ejection (default 300s).
    #[serde(default)]
    pub max_ejection_time: Option<PositiveDuration>,
    /// At most this percentage of the upstream is ejected at once (default 10; at least one backend).
    #[serde(default)]
    pub max_ejection_percent: Option<u8>,
    /// Let an ejected backend back as soon as an active check passes (default false).
    #[serde(default)]
    pub return_on_active_pass: Option<bool>,
}

impl PassiveHealthConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.max_fails.is_none()
            && self.consecutive_5xx.is_none()
            && self.consecutive_gateway_failure.is_none()
        {
            return Err("set `max_fails`, `consecutive_5xx` or `consecutive_gateway_failure`: nothing would eject".into());
        }
        if self.max_ejection_percent.is_some_and(|p| p > 100) {
            return Err("`max_ejection_percent` is a percentage (0 to 100)".into());
        }
        Ok(())
    }

    /// The library configuration.
    pub fn to_passive(&self) -> lb_health::PassiveConfig {
        let mut c = lb_health::PassiveConfig::default();
        c.max_fails = self.max_fails;
        if let Some(t) = self.fail_timeout {
            c.fail_timeout = t.get();
        }
        if let Some(s) = self.fail_statuses {
            c.fail_statuses = s.0;
        }
        c.consecutive_5xx = self.consecutive_5xx;
        c.consecutive_gateway_failure = self.consecutive_gateway_failure;
        if let Some(t) = self.base_ejection_time {
            c.base_ejection_time = t.get();
        }
        if let Some(t) = self.max_ejection_time {
            c.max_ejection_time = t.get();
        }
        if let Some(p) = self.max_ejection_percent {
            c.max_ejection_percent = p;
        }
        if let Some(r) = self.return_on_active_pass {
            c.return_on_active_pass = r;
        }
        c
    }
}
