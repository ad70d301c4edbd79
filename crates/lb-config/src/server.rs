//! `[server]`: the listeners and the settings of the process (threads, grace period,
//! pid file, logs, binary upgrade), with their defaults.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{
    process, ConfigDuration, ForwardingConfig, LogFormat, PositiveDuration, ServerLimits,
    TlsListenerConfig,
};

/// `[server]`: listeners and process settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Addresses to accept plain HTTP/1.1 and HTTP/2 (h2c) connections on. May be empty
    /// when there is a TLS listener; validation requires at least one listener overall.
    #[serde(default)]
    pub listen: Vec<SocketAddr>,
    /// `[[server.tls]]`: TLS listeners (HTTP/1.1, or HTTP/2 through ALPN).
    #[serde(default)]
    pub tls: Vec<TlsListenerConfig>,
    /// Worker threads; defaults to the number of CPUs.
    #[serde(default)]
    pub threads: Option<NonZeroU32>,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    #[serde(default = "default_grace_period")]
    pub grace_period: ConfigDuration,
    /// `[server.forwarding]`: forwarding headers and trusted proxies.
    #[serde(default)]
    pub forwarding: ForwardingConfig,
    /// How long an upgraded connection (WebSocket) may stay silent both ways before it is
    /// closed; an upstream's own `upgrade_idle_timeout` wins.
    #[serde(default = "default_upgrade_idle_timeout")]
    pub upgrade_idle_timeout: PositiveDuration,
    /// Where the running process writes its pid (`--pid-file` wins); removed on exit.
    #[serde(default = "process::no_path")]
    pub pid_file: Option<PathBuf>,
    /// The file logs are appended to instead of stderr (`--error-log` wins).
    #[serde(default = "process::no_path")]
    pub error_log: Option<PathBuf>,
    /// The Unix socket over which a process started with `--upgrade` receives the
    /// listening sockets of the running one on SIGQUIT (graceful binary upgrade).
    #[serde(default = "process::no_path")]
    pub upgrade_sock: Option<PathBuf>,
    /// How long the running process, once the new one holds the listening sockets, waits
    /// for it to start completely and confirm before giving the upgrade up and serving on.
    #[serde(default = "process::default_upgrade_timeout")]
    pub upgrade_timeout: PositiveDuration,
    /// `text` (default) or `json` log lines.
    #[serde(default = "process::default_log_format")]
    pub log_format: LogFormat,
    /// `[server.limits]`: what one client may cost (connections, sizes, timeouts, HTTP/2
    /// abuse); on by default, see `docs/security.md`.
    #[serde(default)]
    pub limits: ServerLimits,
}

pub(super) fn default_upgrade_idle_timeout() -> PositiveDuration {
    PositiveDuration(Duration::from_secs(3600))
}

pub(super) fn default_grace_period() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(10))
}
