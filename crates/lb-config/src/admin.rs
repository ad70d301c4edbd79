//! `[admin]` (the admin listener: metrics, status page, runtime API) and `[access_log]`.

use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::paths;

/// `[admin]`: the admin listener. No admin listener runs when the table is absent.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Where it listens; `127.0.0.1:9901` (loopback only) by default.
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
    /// When set, every endpoint but `/healthz` needs `Authorization: Bearer TOKEN`.
    #[serde(default, deserialize_with = "token")]
    pub token: Option<String>,
}

/// Never prints the token (configurations are logged in debug output).
impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A token: printable ASCII without spaces (it travels in a header), not empty.
fn token<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let t = String::deserialize(deserializer)?;
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(serde::de::Error::custom(
            "the token must be non-empty printable ASCII without spaces",
        ));
    }
    Ok(Some(t))
}

impl AdminConfig {
    /// Secure default: an admin listener reachable from other machines must require a
    /// token, since whoever reaches it can disable backends and read the topology.
    pub(crate) fn check(&self) -> Result<(), String> {
        let ip = self.listen.ip().to_canonical();
        if !ip.is_loopback() && self.token.is_none() {
            return Err(format!(
                "{} is not a loopback address: set `token` as well (anyone who can reach the \
                 admin listener can disable backends), or listen on 127.0.0.1",
                self.listen
            ));
        }
        Ok(())
    }
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 9901))
}

/// `[access_log]`: one line per request. Off when the table is absent.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// The file lines are appended to (relative to the configuration file), or `"-"` for
    /// standard output.
    pub path: PathBuf,
    /// The line format.
    #[serde(default)]
    pub format: AccessLogFormat,
    /// Lines queued for the writer before new ones are dropped (and counted).
    #[serde(default = "default_buffer")]
    pub buffer: NonZeroUsize,
}

fn default_buffer() -> NonZeroUsize {
    NonZeroUsize::new(4096).unwrap_or(NonZeroUsize::MIN)
}

/// The format of access log lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AccessLogFormat {
    /// nginx's `combined` line followed by `key=value` fields (route, upstream, ...).
    #[default]
    Combined,
    /// One JSON object per line.
    Json,
}

impl AccessLogConfig {
    /// True when the log goes to standard output (`path = "-"`).
    pub fn is_stdout(&self) -> bool {
        self.path == Path::new("-")
    }

    /// Makes a relative `path` relative to the configuration file read from `origin`.
    pub(crate) fn resolve(&mut self, origin: &Path) {
        if !self.is_stdout() {
            self.path = paths::resolve(origin, &self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use crate::Config;

    const BASE: &str = "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstreams.web]\n\
        backends = [\"127.0.0.1:9001\"]\n[[routes]]\nupstream = \"web\"\n";

    #[test]
    fn admin_defaults_to_loopback_and_is_off_without_its_table() {
        let c = Config::from_toml_str(BASE, "lb.toml").unwrap();
        assert!(c.admin.is_none() && c.access_log.is_none());
        let c = Config::from_toml_str(&format!("{BASE}[admin]\n"), "lb.toml").unwrap();
        let admin = c.admin.unwrap();
        assert_eq!(admin.listen.to_string(), "127.0.0.1:9901");
        assert_eq!(admin.token, None);
    }

    #[test]
    fn access_log_path_follows_the_config_file() {
        let text = format!("{BASE}[access_log]\npath = \"logs/access.log\"\nformat = \"json\"\n");
        let c = Config::from_toml_str(&text, "/etc/lb/lb.toml").unwrap();
        let log = c.access_log.unwrap();
        assert_eq!(log.path.to_str(), Some("/etc/lb/logs/access.log"));
        assert_eq!(log.format, super::AccessLogFormat::Json);
        let text = format!("{BASE}[access_log]\npath = \"-\"\n");
        let c = Config::from_toml_str(&text, "/etc/lb/lb.toml").unwrap();
        assert!(c.access_log.unwrap().is_stdout());
    }

    #[test]
    fn bad_admin_keys_are_named() {
        let text = format!("{BASE}[admin]\nlisten = \"nowhere\"\n");
        let e = Config::from_toml_str(&text, "lb.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("lb.toml:8") && e.contains("admin.listen"), "{e}");
        let text = format!("{BASE}[admin]\ntoken = \"two words\"\n");
        let e = Config::from_toml_str(&text, "lb.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("admin.token") && e.contains("printable"), "{e}");
        let text = format!("{BASE}[admin]\ntoken = \"s3cret\"\n");
        let c = Config::from_toml_str(&text, "lb.toml").unwrap();
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "the token is never printed"
        );
        let text = format!("{BASE}[access_log]\npath = \"-\"\nformat = \"xml\"\n");
        let e = Config::from_toml_str(&text, "lb.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("access_log.format"), "{e}");
    }
}
