//! `[server.forwarding]` (which forwarding headers the proxy writes, and which peers it
//! believes), and the per-upstream `host` rewrite.
//!
//! Everything is parsed at load time (the CIDRs in `cidr.rs`, the `Via` pseudonym and the
//! `Host` value here, into header values), so the request path only compares and copies.

use std::fmt;
use std::str::FromStr;

use http::HeaderValue;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::Cidr;

/// The name `via = true` sends: `Via: 1.1 lb-proxy`.
pub const DEFAULT_VIA_NAME: &str = "lb-proxy";

/// `[server.forwarding]`: the headers that tell a backend who the client is, and which
/// connecting peers may tell the proxy the same.
///
/// Client-supplied `X-Forwarded-For`, `X-Real-IP`, `Forwarded`, `X-Forwarded-Proto` and
/// `X-Forwarded-Host` are believed only from a peer in `trusted_proxies`; from any other
/// peer they are removed (and replaced where the proxy writes its own).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardingConfig {
    /// Peers (CIDRs, IPv4 and IPv6) whose forwarding headers are believed; none by default.
    #[serde(default)]
    pub trusted_proxies: Vec<Cidr>,
    /// Append the peer address to `X-Forwarded-For` (default true).
    #[serde(default = "yes")]
    pub x_forwarded_for: bool,
    /// Send `X-Forwarded-Proto: http|https` (default true).
    #[serde(default = "yes")]
    pub x_forwarded_proto: bool,
    /// Send `X-Forwarded-Host` with the `Host` the client asked for (default false).
    #[serde(default)]
    pub x_forwarded_host: bool,
    /// Send `X-Real-IP` with the real client address (default true).
    #[serde(default = "yes")]
    pub x_real_ip: bool,
    /// Append an RFC 7239 `Forwarded: for=...;proto=...;host=...` element (default false).
    #[serde(default)]
    pub forwarded: bool,
    /// Append `Via: 1.1 NAME` to requests (default off).
    #[serde(default)]
    pub via: Via,
}

fn yes() -> bool {
    true
}

impl Default for ForwardingConfig {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            x_forwarded_for: true,
            x_forwarded_proto: true,
            x_forwarded_host: false,
            x_real_ip: true,
            forwarded: false,
            via: Via::default(),
        }
    }
}

/// `via`: off (`false`, the default), `true` for `Via: <version> lb-proxy`, or a pseudonym
/// (`"edge-1"`) to name this proxy instead.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Via {
    /// No `Via` header is added.
    #[default]
    Off,
    /// `Via: <version> NAME` is appended to the request.
    Named(Box<str>),
}

impl Via {
    /// The pseudonym to send, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::Off => None,
            Self::Named(name) => Some(name),
        }
    }
}

/// True for RFC 9110 `tchar`, plus `:`, `[` and `]` so `host:port` and IPv6 literals pass.
fn via_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:[]".contains(&b)
}

impl<'de> Deserialize<'de> for Via {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Via;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false, or a pseudonym such as \"edge-1\"")
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Via, E> {
                Ok(if v {
                    Via::Named(DEFAULT_VIA_NAME.into())
                } else {
                    Via::Off
                })
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Via, E> {
                if v.is_empty() || v.len() > 255 || !v.bytes().all(via_char) {
                    return Err(E::custom(format!(
                        "invalid Via pseudonym {v:?}: use 1 to 255 letters, digits or \
                         !#$%&'*+-.^_`|~ (or host:port), without spaces or commas"
                    )));
                }
                Ok(Via::Named(v.into()))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// `[upstreams.NAME] host`: the `Host` sent to the upstream's backends instead of the
/// client's (`"api.example.com"` or `"api.example.com:8443"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostHeader(HeaderValue);

impl HostHeader {
    /// The header value.
    pub fn value(&self) -> &HeaderValue {
        &self.0
    }
}

impl FromStr for HostHeader {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("invalid host {s:?}: expected a host name or address, with an optional :port, such as \"api.example.com\" or \"[::1]:8080\"")
        };
        let authority: http::uri::Authority = s.parse().map_err(|_| bad())?;
        let host = authority.host();
        // Without userinfo (refused), the authority is the host, then `:port` if any.
        let port_ok = match s.get(host.len()..) {
            Some("") => true,
            Some(rest) => rest
                .strip_prefix(':')
                .is_some_and(|p| p.parse::<u16>().is_ok()),
            None => false,
        };
        if s.contains('@') || host.is_empty() || !port_ok {
            return Err(bad());
        }
        HeaderValue::from_str(s).map(HostHeader).map_err(|_| bad())
    }
}

impl<'de> Deserialize<'de> for HostHeader {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const BASE: &str = "[server]\nlisten = [\"127.0.0.1:8080\"]\n\n[server.forwarding]\n";
    const TAIL: &str =
        "\n\n[upstreams.web]\nbackends = [\"127.0.0.1:9001\"]\nUPSTREAM\n\n[[routes]]\nupstream = \"web\"\n";

    fn load(forwarding: &str, upstream: &str) -> Result<crate::Config, String> {
        let text = format!("{BASE}{forwarding}{}", TAIL.replace("UPSTREAM", upstream));
        crate::Config::from_toml_str(&text, "lb.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_a_full_table_load() {
        let c = load("", "").unwrap();
        let f = &c.server.forwarding;
        assert!(f.trusted_proxies.is_empty());
        assert!(f.x_forwarded_for && f.x_forwarded_proto && f.x_real_ip);
        assert!(!f.x_forwarded_host && !f.forwarded);
        assert_eq!(f.via, Via::Off);
        assert_eq!(c.server.upgrade_idle_timeout.get().as_secs(), 3600);
        assert!(c.upstreams["web"].host.is_none());

        let c = load(
            "trusted_proxies = [\"10.0.0.0/8\", \"::1/128\"]\nx_forwarded_host = true\n\
             forwarded = true\nvia = true",
            "host = \"api.example.com\"\nupgrade_idle_timeout = \"5m\"",
        )
        .unwrap();
        let f = &c.server.forwarding;
        assert_eq!(f.trusted_proxies.len(), 2);
        assert_eq!(f.via.name(), Some(DEFAULT_VIA_NAME));
        let web = &c.upstreams["web"];
        assert_eq!(web.host.as_ref().unwrap().value(), "api.example.com");
        assert_eq!(web.upgrade_idle_timeout.unwrap().get().as_secs(), 300);
        let c = load("via = \"edge-1:8080\"", "").unwrap();
        assert_eq!(c.server.forwarding.via.name(), Some("edge-1:8080"));
        assert_eq!(
            load("via = false", "").unwrap().server.forwarding.via,
            Via::Off
        );
    }

    #[test]
    fn bad_values_name_line_column_and_key() {
        let e = load("trusted_proxies = [\"10.0.0.0/8\", \"10.0.0.1/8\"]", "").unwrap_err();
        assert!(
            e.starts_with("lb.toml:5:19: server.forwarding.trusted_proxies[1]: invalid CIDR"),
            "{e}"
        );
        assert!(e.contains("the network is 10.0.0.0/8"), "{e}");
        let e = load("via = \"two words\"", "").unwrap_err();
        assert!(
            e.starts_with("lb.toml:5:7: server.forwarding.via: invalid Via pseudonym"),
            "{e}"
        );
        let e = load("via = 3", "").unwrap_err();
        assert!(e.contains("server.forwarding.via"), "{e}");
        let e = load("x_forwarded_for = \"yes\"", "").unwrap_err();
        assert!(e.contains("server.forwarding.x_forwarded_for"), "{e}");
        let e = load("x_forwarded_fro = true", "").unwrap_err();
        assert!(e.contains("unknown field `x_forwarded_fro`"), "{e}");
        let e = load("", "host = \"http://api/\"").unwrap_err();
        assert!(
            e.starts_with("lb.toml:9:8: upstreams.web.host: invalid host"),
            "{e}"
        );
        let e = load("", "upgrade_idle_timeout = \"0s\"").unwrap_err();
        assert!(
            e.contains("upstreams.web.upgrade_idle_timeout: must be greater than zero"),
            "{e}"
        );
    }

    #[test]
    fn host_values_are_authorities() {
        assert!("api.example.com".parse::<HostHeader>().is_ok());
        assert!("api.example.com:8443".parse::<HostHeader>().is_ok());
        assert!("[::1]:80".parse::<HostHeader>().is_ok());
        for bad in [
            "",
            "a b",
            "user@host",
            "http://x/",
            "host:port",
            "host:",
            "h:99999",
        ] {
            assert!(bad.parse::<HostHeader>().is_err(), "{bad}");
        }
    }
}
