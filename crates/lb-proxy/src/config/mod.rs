//! The TOML configuration: schema, loading and validation.
//!
//! Loading is strict: an unknown key, a malformed value or a reference to something that
//! is not defined is an error that names the file, the line and column, and the key
//! (`lb.toml:7:12: upstreams.web.health_check.interval: invalid duration "1x" ...`).
//! Backend addresses are parsed (and host names resolved) while loading, so `lb-proxy -t`
//! reports a bad backend the way nginx does.
//!
//! ```
//! let config = lb_proxy::config::Config::from_toml_str(r#"
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
//! # Ok::<(), lb_proxy::config::ConfigError>(())
//! ```

mod backends;
mod duration;
mod error;

pub use backends::BackendList;
pub use duration::{ConfigDuration, PositiveDuration};
pub use error::ConfigError;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;

use lb_core::Health;
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
}

/// `[server]`: listeners and process settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Addresses to accept HTTP/1.1 and HTTP/2 (h2c) connections on; at least one.
    #[serde(deserialize_with = "non_empty")]
    pub listen: Vec<SocketAddr>,
    /// Worker threads; defaults to the number of CPUs.
    #[serde(default)]
    pub threads: Option<NonZeroU32>,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    #[serde(default = "default_grace_period")]
    pub grace_period: ConfigDuration,
}

fn default_grace_period() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(10))
}

/// The selection algorithm of an upstream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SelectionKind {
    /// Round robin; nginx's smooth weighted round robin when weights differ.
    #[default]
    RoundRobin,
}

/// `[upstreams.NAME]`: a group of backends and how to balance over them.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The selection algorithm.
    #[serde(default)]
    pub selection: SelectionKind,
    /// The backends: `"host:port"` strings or `{ addr = "host:port", weight = N }` tables.
    pub backends: BackendList,
    /// Active health checking; none when absent (every backend is always usable).
    #[serde(default)]
    pub health_check: Option<HealthCheckConfig>,
    /// How long to wait for a TCP connection to a backend.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: PositiveDuration,
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

/// The kind of active health check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HealthCheckKind {
    /// A TCP connection opens within the timeout.
    #[default]
    Tcp,
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
}

fn default_interval() -> PositiveDuration {
    PositiveDuration(Duration::from_secs(1))
}
fn default_timeout() -> PositiveDuration {
    PositiveDuration(Duration::from_secs(1))
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
            timeout: default_timeout(),
            rise: default_rise(),
            fall: default_fall(),
            initial: InitialHealth::Unknown,
        }
    }
}

/// `[[routes]]`: which upstream a request goes to.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The name of an `[upstreams.NAME]` table.
    pub upstream: Spanned<String>,
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
        let config: Config = serde_path_to_error::deserialize(deserializer)
            .map_err(|e| ConfigError::from_toml(origin, text, e))?;
        config.validate(text, origin)?;
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
                backends,
                health_check: Some(HealthCheckConfig::default()),
                connect_timeout: default_connect_timeout(),
            },
        );
        Self {
            server: ServerConfig {
                listen,
                threads: None,
                grace_period: default_grace_period(),
            },
            upstreams,
            routes: vec![RouteConfig {
                upstream: Spanned::new(0..0, "default".to_owned()),
            }],
        }
    }

    fn validate(&self, text: &str, origin: &Path) -> Result<(), ConfigError> {
        let at = |offset: usize, key: String, message: String| {
            ConfigError::at(origin, text, offset, key, message)
        };
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
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
