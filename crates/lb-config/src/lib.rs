//! `lb-config`: the TOML configuration of `lb-proxy`: schema, loading and validation.
//!
//! The serde types of every table, their checks, the route condition types (host, path,
//! method, header, cookie and query conditions, header rules) with their matching, the
//! `hash_key` type, CIDRs, and the PEM files the configuration names (read while loading).
//! Nothing here runs: the proxy builds its router, clients and listeners from these values.
//!
//! Loading is strict: an unknown key, a malformed value or a reference to something that
//! is not defined is an error that names the file, the line and column, and the key
//! (`lb.toml:7:12: upstreams.web.health_check.interval: invalid duration "1x" ...`).
//! Backend addresses are parsed (and host names resolved) while loading, so `lb-proxy -t`
//! reports a bad backend the way nginx does.
//!
//! ```
//! let config = lb_config::Config::from_toml_str(r#"
//!     [server]
//!     listen = ["127.0.0.1:8080"]
//!
//!     [upstreams.web]
//!     backends = ["127.0.0.1:9001", { addr = "127.0.0.1:9002", weight = 2 }]
//!
//!     [upstreams.web.health_check]
//!     interval = "1s"
//!
//!     [[routes]]
//!     upstream = "web"
//! "#, "example.toml")?;
//! assert_eq!(config.upstreams["web"].backends.len(), 2);
//! # Ok::<(), lb_config::ConfigError>(())
//! ```

mod admin;
mod backends;
mod cidr;
mod discovery;
mod duration;
mod error;
mod error_chain;
mod hash_key;
mod headers;
mod health;
mod on_change;
mod paths;
mod peer;
pub mod pem;
mod process;
mod retry;
mod routes;
mod selection;
mod server;
mod server_limits;
mod tls;

pub use admin::{AccessLogConfig, AccessLogFormat, AdminConfig};
pub use backends::{BackendList, Backup};
pub use cidr::{Cidr, InvalidCidr};
pub use discovery::{DiscoveryConfig, DiscoveryKind, Resolver};
pub use duration::{ConfigDuration, PositiveDuration};
pub use error::ConfigError;
pub use error_chain::error_chain;
pub use hash_key::{HashKey, InvalidHashKey};
pub use headers::{ForwardingConfig, HostHeader, Via, DEFAULT_VIA_NAME};
pub use health::{
    HealthCheckConfig, HealthCheckKind, InitialHealth, Jitter, PassiveHealthConfig, Statuses,
};
pub use on_change::{OnChangeConfig, WebhookUrl};
pub use peer::{ClientCertFiles, UpstreamTlsConfig};
pub use pem::{load_certs, load_key, PemError};
pub use process::LogFormat;
pub use retry::{ByteSize, LimitsConfig, RetryConfig, RetryOn};
pub use routes::{
    request_host, CookieMatch, HeaderMatch, HeaderRules, HostList, HostPattern, InvalidCondition,
    InvalidHost, InvalidMethods, InvalidRules, Methods, PathConflict, PathMatch, Pattern,
    QueryMatch, RouteConfig, UriPath, ValueTest,
};
pub use selection::{Factor, Percent, SelectionKind, TableSize};
pub use server::ServerConfig;
pub use server_limits::ServerLimits;
pub use tls::{
    check_listener, Alpn, CertificateConfig, CheckedListener, ClientAuthConfig, ServerNamePattern,
    TlsError, TlsListenerConfig, TlsVersion,
};

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listeners and process settings.
    pub server: ServerConfig,
    /// Named groups of backends.
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// Ordered routing rules; the first that matches a request wins.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// `[admin]`: metrics, status page and runtime API; no admin listener when absent.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// `[access_log]`: one line per request; off when absent.
    #[serde(default)]
    pub access_log: Option<AccessLogConfig>,
    /// The file's tables as written, for a reload to tell which upstreams changed; empty
    /// for a configuration made in code.
    #[serde(skip)]
    #[doc(hidden)]
    pub written: Written,
}

/// The tables of a configuration file as written (values compared, not positions).
#[derive(Clone, Default)]
pub struct Written(Option<std::sync::Arc<toml::Table>>);

impl std::fmt::Debug for Written {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never printed: the text holds secrets (the admin token).
        f.write_str(if self.0.is_some() {
            "Written(..)"
        } else {
            "Written(None)"
        })
    }
}

impl Written {
    /// The table of upstream `name`, when the configuration came from a file.
    pub fn upstream(&self, name: &str) -> Option<&toml::Value> {
        self.0.as_ref()?.get("upstreams")?.get(name)
    }
}

/// `[upstreams.NAME]`: a group of backends and how to balance over them.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The selection algorithm.
    #[serde(default)]
    pub selection: SelectionKind,
    /// What `fnv`, `consistent`, `hash` and `maglev` hash; default `"uri"`.
    #[serde(default)]
    pub hash_key: Option<Spanned<HashKey>>,
    /// Bounded loads for `consistent` and `maglev`: no backend takes more than this factor
    /// times the average in-flight load.
    #[serde(default)]
    pub balance_factor: Option<Spanned<Factor>>,
    /// Maglev lookup table size (a prime); default 65537.
    #[serde(default)]
    pub maglev_table_size: Option<Spanned<TableSize>>,
    /// Slow start for `round_robin`, `random`, `p2c` and `least_conn`: a backend that
    /// recovers, or is added, ramps its weight up from `slow_start_min_percent` over this window.
    #[serde(default)]
    pub slow_start: Option<Spanned<PositiveDuration>>,
    /// The weight a slow-starting backend starts from, in percent of its full weight (1–100).
    #[serde(default = "selection::default_min_percent")]
    pub slow_start_min_percent: Percent,
    /// The backends: `"host:port"` strings or `{ addr = "host:port", weight = N }` tables.
    /// Either this or `discovery`.
    #[serde(default)]
    pub backends: BackendList,
    /// Where the backends come from when they are not listed: DNS, DNS SRV, etcd or a file.
    #[serde(default)]
    pub discovery: Option<Spanned<DiscoveryConfig>>,
    /// Active health checking; none when absent (every backend is always usable).
    #[serde(default)]
    pub health_check: Option<Spanned<HealthCheckConfig>>,
    /// Passive health: ejection on the outcomes of real requests; none when absent.
    #[serde(default)]
    pub passive: Option<Spanned<PassiveHealthConfig>>,
    /// How long to wait for a TCP connection to a backend.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: PositiveDuration,
    /// When failed attempts are retried on another backend; nginx's defaults when absent.
    #[serde(default)]
    pub retry: Option<Spanned<RetryConfig>>,
    /// Per-backend and per-upstream load limits; none when absent.
    #[serde(default)]
    pub limits: Option<Spanned<LimitsConfig>>,
    /// The `Host` sent to this upstream's backends instead of the client's.
    #[serde(default)]
    pub host: Option<HostHeader>,
    /// `[server] upgrade_idle_timeout` for this upstream's upgraded connections.
    #[serde(default)]
    pub upgrade_idle_timeout: Option<PositiveDuration>,
    // Connection keys below: see `peer.rs` and the proxy's client options.
    /// How long the TCP connect and the TLS handshake may take together (TLS only).
    #[serde(default)]
    pub total_connection_timeout: Option<Spanned<PositiveDuration>>,
    /// How long to wait for the response head, and between two reads of its body.
    #[serde(default = "peer::default_read_timeout")]
    pub read_timeout: PositiveDuration,
    /// How long a write to a backend may make no progress.
    #[serde(default = "peer::default_write_timeout")]
    pub write_timeout: PositiveDuration,
    /// How long an idle keep-alive connection is kept.
    #[serde(default = "peer::default_idle_timeout")]
    pub idle_timeout: PositiveDuration,
    /// Idle keep-alive connections kept per backend (0: no reuse).
    #[serde(default = "peer::default_pool_max_idle")]
    pub pool_max_idle: u32,
    /// The local address connections to backends come from.
    #[serde(default)]
    pub bind: Option<Spanned<IpAddr>>,
    /// HTTPS to the backends; plain HTTP when absent.
    #[serde(default)]
    pub tls: Option<Spanned<UpstreamTlsConfig>>,
}

fn default_connect_timeout() -> PositiveDuration {
    PositiveDuration(Duration::from_secs(3))
}

fn non_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    let v = Vec::<T>::deserialize(deserializer)?;
    if v.is_empty() {
        return Err(serde::de::Error::custom("needs at least one address"));
    }
    Ok(v)
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text, path)
    }

    /// Parses and validates `text`; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let origin = origin.as_ref();
        let deserializer = toml::Deserializer::new(text);
        let mut config: Config = serde_path_to_error::deserialize(deserializer)
            .map_err(|e| ConfigError::from_toml(origin, text, e))?;
        config.validate(text, origin)?;
        // Parsed a second time as plain tables: `deserialize` above proved the syntax.
        config.written = Written(toml::from_str(text).ok().map(std::sync::Arc::new));
        // Listeners: at least one; TLS files resolved against `origin` and loaded.
        tls::validate(&mut config.server, text, origin)?;
        // Upstream connection keys checked, TLS files read (relative to `origin`).
        peer::load(&mut config.upstreams, text, origin)?;
        // Health-check TLS files, relative to `origin` like every other file.
        for u in config.upstreams.values_mut() {
            if let Some(hc) = u.health_check.as_mut() {
                let hc = hc.get_mut();
                for file in [&mut hc.ca_file, &mut hc.client_cert, &mut hc.client_key] {
                    if let Some(f) = file.as_mut() {
                        *f = paths::resolve(origin, f);
                    }
                }
            }
        }
        if let Some(log) = &mut config.access_log {
            log.resolve(origin);
        }
        // The pid file, error log and upgrade socket, relative to `origin`.
        process::resolve(&mut config.server, origin);
        Ok(config)
    }

    /// The configuration `lb-proxy --listen ADDR --backend ADDR...` runs: one round-robin
    /// upstream with TCP checks every second, and one route to it.
    pub fn quick(listen: Vec<SocketAddr>, backends: BackendList) -> Self {
        let mut upstreams = BTreeMap::new();
        upstreams.insert(
            "default".to_owned(),
            UpstreamConfig {
                selection: SelectionKind::RoundRobin,
                hash_key: None,
                balance_factor: None,
                maglev_table_size: None,
                slow_start: None,
                slow_start_min_percent: selection::default_min_percent(),
                backends,
                discovery: None,
                health_check: Some(Spanned::new(0..0, HealthCheckConfig::default())),
                passive: None,
                connect_timeout: default_connect_timeout(),
                retry: None,
                limits: None,
                host: None,
                upgrade_idle_timeout: None,
                total_connection_timeout: None,
                read_timeout: peer::default_read_timeout(),
                write_timeout: peer::default_write_timeout(),
                idle_timeout: peer::default_idle_timeout(),
                pool_max_idle: peer::default_pool_max_idle(),
                bind: None,
                tls: None,
            },
        );
        Self {
            server: ServerConfig {
                listen,
                tls: Vec::new(),
                threads: None,
                grace_period: server::default_grace_period(),
                forwarding: ForwardingConfig::default(),
                upgrade_idle_timeout: server::default_upgrade_idle_timeout(),
                pid_file: None,
                error_log: None,
                upgrade_sock: None,
                upgrade_timeout: process::default_upgrade_timeout(),
                log_format: LogFormat::Text,
                limits: ServerLimits::default(),
            },
            upstreams,
            routes: vec![RouteConfig::new("default")],
            admin: None,
            access_log: None,
            written: Written::default(),
        }
    }

    fn validate(&self, text: &str, origin: &Path) -> Result<(), ConfigError> {
        let at = |offset: usize, key: String, message: String| {
            ConfigError::at(origin, text, offset, key, message)
        };
        // `[server.limits]` values against each other (hostile input, docs/security.md).
        if let Err((offset, key, message)) = self.server.limits.check() {
            return Err(at(offset, key.into(), message));
        }
        if let Some(Err(message)) = self.admin.as_ref().map(AdminConfig::check) {
            let offset = text.find("[admin]").unwrap_or(0);
            return Err(at(offset, "admin.listen".into(), message));
        }
        for (name, u) in &self.upstreams {
            if let Some(hc) = &u.health_check {
                if let Err(message) = hc.get_ref().check() {
                    return Err(at(
                        hc.span().start,
                        format!("upstreams.{name}.health_check"),
                        message,
                    ));
                }
            }
            if let Some(r) = &u.retry {
                if let Err(message) = r.get_ref().check() {
                    return Err(at(
                        r.span().start,
                        format!("upstreams.{name}.retry"),
                        message,
                    ));
                }
            }
            if let Some(p) = &u.passive {
                if let Err(message) = p.get_ref().check() {
                    return Err(at(
                        p.span().start,
                        format!("upstreams.{name}.passive"),
                        message,
                    ));
                }
            }
            match (&u.discovery, u.backends.is_empty()) {
                (None, true) => {
                    let offset = text.find(&format!("[upstreams.{name}]")).unwrap_or(0);
                    return Err(at(
                        offset,
                        format!("upstreams.{name}"),
                        "needs `backends` or `discovery`".into(),
                    ));
                }
                (Some(d), false) => {
                    return Err(at(
                        d.span().start,
                        format!("upstreams.{name}.discovery"),
                        "set either `backends` or `discovery`, not both".into(),
                    ));
                }
                (Some(d), true) => {
                    if let Err(message) = d.get_ref().check() {
                        return Err(at(
                            d.span().start,
                            format!("upstreams.{name}.discovery"),
                            message,
                        ));
                    }
                }
                (None, false) => {}
            }
            let kind = u.selection.as_str();
            if let Some(k) = u.hash_key.as_ref().filter(|_| !u.selection.hashes_key()) {
                let hint = if u.selection == SelectionKind::IpHash {
                    "ip_hash always hashes the client address"
                } else {
                    "use fnv, consistent, hash or maglev to hash a key"
                };
                return Err(at(
                    k.span().start,
                    format!("upstreams.{name}.hash_key"),
                    format!("has no effect with selection `{kind}`: {hint}"),
                ));
            }
            let bounded = matches!(
                u.selection,
                SelectionKind::Consistent | SelectionKind::Maglev
            );
            if let Some(f) = u.balance_factor.as_ref().filter(|_| !bounded) {
                return Err(at(
                    f.span().start,
                    format!("upstreams.{name}.balance_factor"),
                    format!("has no effect with selection `{kind}`: only consistent and maglev bound loads"),
                ));
            }
            let hashed = u.selection.hashes_key() || u.selection == SelectionKind::IpHash;
            if let Some(w) = u.slow_start.as_ref().filter(|_| hashed) {
                return Err(at(
                    w.span().start,
                    format!("upstreams.{name}.slow_start"),
                    format!(
                        "not available with selection `{kind}`: ramping a hashed backend's \
                         share would move its keys; use round_robin, random, p2c or least_conn"
                    ),
                ));
            }
            if let Some(t) = u
                .maglev_table_size
                .as_ref()
                .filter(|_| u.selection != SelectionKind::Maglev)
            {
                return Err(at(
                    t.span().start,
                    format!("upstreams.{name}.maglev_table_size"),
                    format!("has no effect with selection `{kind}`"),
                ));
            }
        }
        if self.routes.is_empty() {
            return Err(at(
                text.len(),
                "routes".into(),
                "no [[routes]] defined: every request would get 404".into(),
            ));
        }
        for (i, route) in self.routes.iter().enumerate() {
            let name = route.upstream.get_ref();
            if !self.upstreams.contains_key(name) {
                let known: Vec<&str> = self.upstreams.keys().map(String::as_str).collect();
                return Err(at(
                    route.upstream.span().start,
                    format!("routes[{i}].upstream"),
                    format!("upstream `{name}` is not defined (defined: {known:?})"),
                ));
            }
            if let Err(conflict) = route.path_match() {
                let key = format!("routes[{i}].{}", conflict.key);
                return Err(at(conflict.offset, key, conflict.to_string()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
