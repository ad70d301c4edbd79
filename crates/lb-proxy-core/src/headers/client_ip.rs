//! Who the client is: the connecting peer, or, when the peer is a trusted proxy, the
//! right-most address of the `X-Forwarded-For` chain that is not a trusted proxy (nginx
//! `real_ip_header X-Forwarded-For; real_ip_recursive on;`).
//!
//! The walk borrows the header text and allocates nothing.

use std::net::IpAddr;

use http::header::HeaderMap;

use super::{X_FORWARDED_FOR, X_REAL_IP};
use crate::config::Cidr;

/// Who sent a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ClientAddr {
    /// The connecting peer (IPv4-mapped IPv6 addresses shown as IPv4).
    pub(crate) peer: IpAddr,
    /// The client the proxy believes in: the peer, or an address a trusted peer vouched for.
    pub(crate) ip: IpAddr,
    /// True when the peer is in `trusted_proxies`, so its forwarding headers are kept.
    pub(crate) trusted: bool,
}

/// True when `ip` is in one of the `trusted` networks.
#[inline]
pub(crate) fn is_trusted(trusted: &[Cidr], ip: IpAddr) -> bool {
    trusted.iter().any(|net| net.contains(ip))
}

/// Works out the client of a request from `peer` with `headers`.
///
/// From an untrusted peer, the client is the peer. From a trusted one, the chain
/// `X-Forwarded-For` + peer is walked from the right, skipping trusted proxies: the first
/// address that is not trusted is the client; if all are trusted, the left-most one is. An
/// entry that is not an address (`unknown`, an obfuscated name) stops the walk at the
/// address to its right, as nginx does. Without `X-Forwarded-For`, a trusted peer's
/// `X-Real-IP` names the client.
pub(crate) fn client_addr(trusted: &[Cidr], peer: IpAddr, headers: &HeaderMap) -> ClientAddr {
    let peer = peer.to_canonical();
    if !is_trusted(trusted, peer) {
        return ClientAddr {
            peer,
            ip: peer,
            trusted: false,
        };
    }
    let mut ip = peer;
    let mut chain = false;
    'walk: for field in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
        let Ok(text) = field.to_str() else {
            break;
        };
        for entry in text.rsplit(',').map(str::trim).filter(|e| !e.is_empty()) {
            chain = true;
            let Some(addr) = parse_entry(entry) else {
                break 'walk;
            };
            ip = addr;
            if !is_trusted(trusted, addr) {
                break 'walk;
            }
        }
    }
    if !chain {
        if let Some(real) = headers
            .get(&X_REAL_IP)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_entry(v.trim()))
        {
            ip = real;
        }
    }
    ClientAddr {
        peer,
        ip,
        trusted: true,
    }
}

/// One `X-Forwarded-For` entry: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:4711`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    let (host, port) = match entry.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest.split_once(']')?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':')?)),
            }
        }
        None => {
            let (host, port) = entry.split_once(':')?;
            (host, Some(port))
        }
    };
    if let Some(port) = port {
        port.parse::<u16>().ok()?;
    }
    let ip: IpAddr = host.parse().ok()?;
    // `[1.2.3.4]` and `::1:80`-style ambiguity: brackets are for IPv6 only.
    if entry.starts_with('[') != ip.is_ipv6() {
        return None;
    }
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use http::HeaderValue;

    use super::*;

    fn nets(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(&X_FORWARDED_FOR, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn entries_parse_with_and_without_ports() {
        assert_eq!(parse_entry("192.0.2.1"), Some(ip("192.0.2.1")));
        assert_eq!(parse_entry("192.0.2.1:4711"), Some(ip("192.0.2.1")));
        assert_eq!(parse_entry("2001:db8::1"), Some(ip("2001:db8::1")));
        assert_eq!(parse_entry("[2001:db8::1]"), Some(ip("2001:db8::1")));
        assert_eq!(parse_entry("[2001:db8::1]:4711"), Some(ip("2001:db8::1")));
        assert_eq!(parse_entry("::ffff:192.0.2.9"), Some(ip("192.0.2.9")));
        for bad in [
            "unknown",
            "_hidden",
            "192.0.2.1:port",
            "192.0.2.1:99999",
            "[192.0.2.1]",
            "[::1",
            "[::1]x",
            "",
        ] {
            assert_eq!(parse_entry(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = xff(&["203.0.113.9"]);
        let c = client_addr(&trusted, ip("198.51.100.1"), &h);
        assert_eq!((c.ip, c.trusted), (ip("198.51.100.1"), false));
        let c = client_addr(&[], ip("10.0.0.1"), &h);
        assert_eq!(
            (c.ip, c.trusted),
            (ip("10.0.0.1"), false),
            "nothing trusted"
        );
    }

    #[test]
    fn the_right_most_untrusted_address_is_the_client() {
        let trusted = nets(&["10.0.0.0/8", "192.168.0.0/16"]);
        // client, spoofed by client, real client, then two of our proxies.
        let h = xff(&["1.1.1.1, 203.0.113.7", "10.1.1.1"]);
        let c = client_addr(&trusted, ip("192.168.1.1"), &h);
        assert_eq!((c.ip, c.trusted), (ip("203.0.113.7"), true));
        assert_eq!(c.peer, ip("192.168.1.1"));
        // Only the peer is trusted: the last entry is the client.
        let c = client_addr(&nets(&["192.168.0.0/16"]), ip("192.168.1.1"), &h);
        assert_eq!(c.ip, ip("10.1.1.1"));
    }

    #[test]
    fn an_all_trusted_chain_gives_its_left_most_address() {
        let trusted = nets(&["10.0.0.0/8"]);
        let c = client_addr(&trusted, ip("10.0.0.1"), &xff(&["10.9.9.9, 10.0.0.2"]));
        assert_eq!(c.ip, ip("10.9.9.9"));
    }

    #[test]
    fn garbage_stops_the_walk_at_the_address_to_its_right() {
        let trusted = nets(&["10.0.0.0/8"]);
        let c = client_addr(
            &trusted,
            ip("10.0.0.1"),
            &xff(&["1.2.3.4, unknown, 10.0.0.5"]),
        );
        assert_eq!(c.ip, ip("10.0.0.5"));
        let c = client_addr(&trusted, ip("10.0.0.1"), &xff(&["1.2.3.4, nonsense"]));
        assert_eq!(c.ip, ip("10.0.0.1"));
        // Empty entries and stray commas are skipped.
        let c = client_addr(&trusted, ip("10.0.0.1"), &xff(&[" 1.2.3.4 ,, ", ""]));
        assert_eq!(c.ip, ip("1.2.3.4"));
    }

    #[test]
    fn ipv6_chains_and_mapped_peers() {
        let trusted = nets(&["::1/128", "fd00::/8", "127.0.0.0/8"]);
        let h = xff(&["[2001:db8::17]:4711, fd00::5"]);
        let c = client_addr(&trusted, ip("::1"), &h);
        assert_eq!(c.ip, ip("2001:db8::17"));
        // A dual-stack listener reports IPv4 peers as IPv4-mapped IPv6.
        let c = client_addr(&trusted, ip("::ffff:127.0.0.1"), &h);
        assert_eq!((c.peer, c.ip), (ip("127.0.0.1"), ip("2001:db8::17")));
    }

    #[test]
    fn a_trusted_peer_may_name_the_client_in_x_real_ip() {
        let trusted = nets(&["10.0.0.0/8"]);
        let mut h = HeaderMap::new();
        h.insert(&X_REAL_IP, HeaderValue::from_static("203.0.113.1"));
        assert_eq!(
            client_addr(&trusted, ip("10.0.0.1"), &h).ip,
            ip("203.0.113.1")
        );
        assert_eq!(
            client_addr(&[], ip("10.0.0.1"), &h).ip,
            ip("10.0.0.1"),
            "not from an untrusted peer"
        );
        // X-Forwarded-For wins when both are there.
        h.insert(&X_FORWARDED_FOR, HeaderValue::from_static("198.51.100.2"));
        assert_eq!(
            client_addr(&trusted, ip("10.0.0.1"), &h).ip,
            ip("198.51.100.2")
        );
    }
}
