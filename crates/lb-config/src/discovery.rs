//! `discovery = { kind = ... }`: where an upstream's backends come from.
//!
//! One flat table per upstream, with the keys each kind needs; a key that does not apply to
//! the kind, or a missing required key, is an error at the table's line.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;

use super::{BackendList, PositiveDuration};

/// The kind of discovery source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscoveryKind {
    /// A fixed list: `backends = [...]` (the same as `backends` on the upstream).
    Static,
    /// A host name's A and AAAA records, with `port`.
    Dns,
    /// SRV records (`_http._tcp.name`): ports, weights, priority tiers (higher ones as backups).
    DnsSrv,
    /// Keys under `prefix` in an etcd cluster at `endpoints`, watched.
    Etcd,
    /// A TOML or JSON file at `path`, reloaded when it changes.
    File,
}

impl DiscoveryKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Static => "static",
            Self::Dns => "dns",
            Self::DnsSrv => "dns_srv",
            Self::Etcd => "etcd",
            Self::File => "file",
        }
    }
}

/// A DNS server: `"ip:port"` (UDP) or `"tcp://ip:port"` / `"udp://ip:port"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolver {
    /// The server.
    pub addr: SocketAddr,
    /// True for TCP.
    pub tcp: bool,
}

impl FromStr for Resolver {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (tcp, rest) = match s.split_once("://") {
            Some(("tcp", rest)) => (true, rest),
            Some(("udp", rest)) => (false, rest),
            Some((scheme, _)) => {
                return Err(format!(
                    "unknown resolver scheme `{scheme}` (use udp:// or tcp://)"
                ))
            }
            None => (false, s),
        };
        let addr = rest.parse().map_err(|_| {
            format!("resolver `{s}` is not ip:port, tcp://ip:port or udp://ip:port")
        })?;
        Ok(Self { addr, tcp })
    }
}

impl<'de> Deserialize<'de> for Resolver {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}",
            if self.tcp { "tcp" } else { "udp" },
            self.addr
        )
    }
}

/// `[upstreams.NAME.discovery]` (or the inline `discovery = { ... }`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// The source.
    pub kind: DiscoveryKind,
    /// `static`: the backends.
    #[serde(default)]
    pub backends: Option<BackendList>,
    /// `dns`: the host name; `dns_srv`: the SRV name (`_http._tcp.app.internal`).
    #[serde(default)]
    pub name: Option<String>,
    /// `dns`: the port of every resolved address.
    #[serde(default)]
    pub port: Option<u16>,
    /// `dns`, `dns_srv`: the DNS server; the system's configuration when absent.
    #[serde(default)]
    pub resolver: Option<Resolver>,
    /// `dns`, `dns_srv`: the shortest time between resolutions, whatever the TTL (default 1s).
    #[serde(default)]
    pub min_refresh: Option<PositiveDuration>,
    /// `dns`, `dns_srv`: the longest time between resolutions, whatever the TTL (default 60s).
    #[serde(default)]
    pub max_refresh: Option<PositiveDuration>,
    /// `etcd`: client URLs, `http://host:2379`.
    #[serde(default)]
    pub endpoints: Option<Vec<String>>,
    /// `etcd`: the key prefix backends are registered under.
    #[serde(default)]
    pub prefix: Option<String>,
    /// `file`: the TOML or JSON file.
    #[serde(default)]
    pub path: Option<PathBuf>,
}

impl DiscoveryConfig {
    /// Checks that the kind's required keys are present and no other key is set; the error
    /// message names the offending key.
    pub(crate) fn check(&self) -> Result<(), String> {
        let kind = self.kind;
        let set = [
            ("backends", self.backends.is_some()),
            ("name", self.name.is_some()),
            ("port", self.port.is_some()),
            ("resolver", self.resolver.is_some()),
            ("min_refresh", self.min_refresh.is_some()),
            ("max_refresh", self.max_refresh.is_some()),
            ("endpoints", self.endpoints.is_some()),
            ("prefix", self.prefix.is_some()),
            ("path", self.path.is_some()),
        ];
        let (required, optional): (&[&str], &[&str]) = match kind {
            DiscoveryKind::Static => (&["backends"], &[]),
            DiscoveryKind::Dns => (
                &["name", "port"],
                &["resolver", "min_refresh", "max_refresh"],
            ),
            DiscoveryKind::DnsSrv => (&["name"], &["resolver", "min_refresh", "max_refresh"]),
            DiscoveryKind::Etcd => (&["endpoints", "prefix"], &[]),
            DiscoveryKind::File => (&["path"], &[]),
        };
        for (key, present) in set {
            if required.contains(&key) && !present {
                return Err(format!("kind = \"{}\" needs `{key}`", kind.as_str()));
            }
            if present && !required.contains(&key) && !optional.contains(&key) {
                return Err(format!(
                    "`{key}` does not apply to kind = \"{}\"",
                    kind.as_str()
                ));
            }
        }
        if let (Some(min), Some(max)) = (self.min_refresh, self.max_refresh) {
            if min > max {
                return Err("`min_refresh` is longer than `max_refresh`".into());
            }
        }
        if self.endpoints.as_ref().is_some_and(Vec::is_empty) {
            return Err("`endpoints` needs at least one URL".into());
        }
        if self.prefix.as_ref().is_some_and(String::is_empty) {
            return Err(
                "`prefix` must not be empty (it would take every key of the cluster)".into(),
            );
        }
        Ok(())
    }
}
