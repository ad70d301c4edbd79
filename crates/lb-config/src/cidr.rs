//! CIDR networks (`10.0.0.0/8`, `::1/128`) for `trusted_proxies`, parsed at load time into
//! an address and a prefix length, matched with two masks.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::de::{self, Deserializer};
use serde::Deserialize;

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
}
