//! `[server.forwarding]` (which forwarding headers the proxy writes, and which peers it
//! believes), and the per-upstream `host` rewrite.
//!
//! Everything is parsed here, at load time: CIDRs into prefix masks, the `Via` pseudonym and
//! the `Host` value into header values, so the request path only compares and copies.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use http::HeaderValue;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

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

/// A network in CIDR notation (`10.0.0.0/8`, `::1/128`); a bare address is a /32 or /128.
///
/// IPv4-mapped IPv6 networks (`::ffff:10.0.0.0/104`) are stored as the IPv4 network they
/// denote, and [`contains`](Self::contains) maps an IPv4-mapped address the same way, so a
/// dual-stack listener sees IPv4 clients as IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// A `trusted_proxies` entry that is not a CIDR.
#[derive(Debug, thiserror::Error)]
#[error("invalid CIDR `{text}`: {reason}")]
pub struct InvalidCidr {
    text: String,
    reason: String,
}

impl Cidr {
    /// The network `addr/prefix`; fails when the prefix is too long or `addr` has bits set
    /// past the prefix.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, InvalidCidr> {
        let text = format!("{addr}/{prefix}");
        let bad = |reason: String| InvalidCidr {
            text: text.clone(),
            reason,
        };
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if prefix >= 96 => (IpAddr::V4(v4), prefix - 96),
                _ => (addr, prefix),
            },
            IpAddr::V4(_) => (addr, prefix),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad(format!("the prefix length is at most {max}")));
        }
        if bits(addr) & !mask(max, prefix) != 0 {
            return Err(bad(format!(
                "the address has bits set past the /{prefix} prefix (the network is {}/{prefix})",
                from_bits(addr, bits(addr) & mask(max, prefix))
            )));
        }
        Ok(Self { addr, prefix })
    }

    /// True when `ip` is in this network (an IPv4-mapped IPv6 address counts as IPv4).
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.contains_exact(ip.to_canonical())
    }

    fn contains_exact(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let m = mask(max, self.prefix);
                bits(ip) & m == bits(self.addr) & m
            }
            _ => false,
        }
    }
}

/// The address as a 128-bit number (IPv4 in the low 32 bits).
fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_bits(like: IpAddr, b: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::try_from(b).unwrap_or(0))),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(b)),
    }
}

/// The network mask of a `prefix` in a `max`-bit address, as a 128-bit number.
fn mask(max: u8, prefix: u8) -> u128 {
    let all: u128 = if max == 32 {
        u128::from(u32::MAX)
    } else {
        u128::MAX
    };
    match u32::from(max - prefix.min(max)) {
        128 => 0,
        host => all & !((1u128 << host) - 1),
    }
}

impl FromStr for Cidr {
    type Err = InvalidCidr;

    fn from_str(s: &str) -> Result<Self, InvalidCidr> {
        let bad = |reason: &str| InvalidCidr {
            text: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, prefix)) => (ip, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = ip
            .parse()
            .map_err(|_| bad("expected an IP address such as 10.0.0.0/8 or ::1/128"))?;
        let prefix = match prefix {
            None if addr.is_ipv4() => 32,
            None => 128,
            Some(p) => p
                .parse::<u8>()
                .map_err(|_| bad("the prefix length is not a number"))?,
        };
        Self::new(addr, prefix).map_err(|e| InvalidCidr {
            text: s.to_owned(),
            reason: e.reason,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
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

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_contain_their_addresses_only() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.255.1.2")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(!net.contains(ip("::1")));
        assert!(
            net.contains(ip("::ffff:10.1.2.3")),
            "IPv4-mapped counts as IPv4"
        );
        let one: Cidr = "::1".parse().unwrap();
        assert_eq!(one.to_string(), "::1/128");
        assert!(one.contains(ip("::1")));
        assert!(!one.contains(ip("::2")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("1.2.3.4")) && !all.contains(ip("::2")));
        let all6: Cidr = "::/0".parse().unwrap();
        assert!(all6.contains(ip("fe80::1")) && !all6.contains(ip("1.2.3.4")));
        let host: Cidr = "127.0.0.1".parse().unwrap();
        assert_eq!(host.to_string(), "127.0.0.1/32");
        let mapped: Cidr = "::ffff:192.168.0.0/112".parse().unwrap();
        assert_eq!(mapped.to_string(), "192.168.0.0/16");
        assert!(mapped.contains(ip("192.168.3.4")));
    }

    #[test]
    fn bad_cidrs_say_why() {
        let e = "10.0.0.1/8".parse::<Cidr>().unwrap_err().to_string();
        assert!(e.contains("the network is 10.0.0.0/8"), "{e}");
        let e = "10.0.0.0/33".parse::<Cidr>().unwrap_err().to_string();
        assert!(e.contains("at most 32"), "{e}");
        let e = "::/129".parse::<Cidr>().unwrap_err().to_string();
        assert!(e.contains("at most 128"), "{e}");
        let e = "ten/8".parse::<Cidr>().unwrap_err().to_string();
        assert!(e.starts_with("invalid CIDR `ten/8`"), "{e}");
        assert!("10.0.0.0/x".parse::<Cidr>().is_err());
        assert!("10.0.0.0/".parse::<Cidr>().is_err());
    }

    const BASE: &str = "[server]\nlisten = [\"127.0.0.1:8080\"]\n\n[server.forwarding]\n";
    const TAIL: &str =
        "\n\n[upstreams.web]\nbackends = [\"127.0.0.1:9001\"]\nUPSTREAM\n\n[[routes]]\nupstream = \"web\"\n";

    fn load(forwarding: &str, upstream: &str) -> Result<crate::config::Config, String> {
        let text = format!("{BASE}{forwarding}{}", TAIL.replace("UPSTREAM", upstream));
        crate::config::Config::from_toml_str(&text, "lb.toml").map_err(|e| e.to_string())
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
