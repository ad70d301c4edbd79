//! nginx's two other hash balancers, `hash $key` (without `consistent`) and `ip_hash`, for
//! users migrating sticky mappings they cannot break.
//!
//! Both pick a point in the weighted list of servers **in configuration order** (attach
//! [`ConfigOrder`](lb_core::ConfigOrder) metadata to the backends; without it the set order is used) and, when
//! that server is unusable, compute a new point and try again, at most 20 times more, as
//! `ngx_http_upstream_hash_module.c` and `ngx_http_upstream_ip_hash_module.c` do:
//!
//! - `hash` (compatible with Cache::Memcached): `hash += (crc32([rehash] key) >> 16) & 0x7fff`,
//!   where `rehash` is the try number in decimal, omitted on the first try; the point is
//!   `hash % total_weight`.
//! - `ip_hash`: starting from 89, `hash = (hash * 113 + byte) % 6271` over the first three
//!   octets of an IPv4 client address or all sixteen of an IPv6 one, again on every try; the
//!   point is `hash % total_weight`. The key is the address octets (4 or 16 bytes); an
//!   empty key stands for a client without an IP address and hashes three zero octets, as
//!   nginx does; other lengths are hashed whole.
//!
//! With a single server, or an empty `hash` key, nginx balances round robin instead of
//! hashing; so does the mapping here (smooth weighted, as nginx). After the tries,
//! nginx falls back to round robin; here the remaining backends follow in set order from a
//! position derived from the key, so the fallback stays deterministic.

use lb_core::{Backend, BackendSet};

use crate::candidates::{Candidates, Preference, WalkOrPicks};
use crate::hashing::crc32;
use crate::{weighted, BackendSelection, RoundRobin};

/// Hash steps per request: the first try and 20 more, as nginx.
const TRIES: usize = 21;

/// Servers in configuration order with their cumulative weights.
#[derive(Debug)]
struct Weighted {
    /// Set indices in configuration order.
    order: Box<[u32]>,
    /// `cumulative[p]` = sum of the weights of configuration positions `0..=p`.
    cumulative: Box<[u64]>,
}

impl Weighted {
    fn new(backends: &[Backend]) -> Self {
        let order = weighted::config_order(backends);
        let mut sum = 0u64;
        let cumulative = order
            .iter()
            .map(|&i| {
                sum += u64::from(backends[i as usize].weight().get());
                sum
            })
            .collect();
        Self {
            order: order.into(),
            cumulative,
        }
    }

    fn total(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// The set index of the server owning weighted point `w` (< total).
    #[inline]
    fn at(&self, w: u64) -> usize {
        let p = self.cumulative.partition_point(|&c| c <= w);
        self.order[p.min(self.order.len() - 1)] as usize
    }
}

/// nginx's `hash $key` (not consistent); see the [module docs](self).
#[derive(Debug)]
pub struct NginxHash {
    backends: BackendSet,
    weighted: Weighted,
    /// For empty keys, as nginx.
    rr: RoundRobin,
}

/// nginx's `ip_hash`; see the [module docs](self).
#[derive(Debug)]
pub struct IpHash {
    backends: BackendSet,
    weighted: Weighted,
}

/// The sequence of points `hash $key` tries.
#[derive(Debug)]
pub struct RehashWalk<'a> {
    weighted: &'a Weighted,
    key: &'a [u8],
    hash: u32,
    rehash: u32,
}

impl Preference for RehashWalk<'_> {
    #[inline]
    fn next_index(&mut self) -> Option<usize> {
        let crc = if self.rehash == 0 {
            crc32(&[self.key])
        } else {
            let mut digits = [0u8; 10];
            crc32(&[decimal(self.rehash, &mut digits), self.key])
        };
        self.hash = self.hash.wrapping_add((crc >> 16) & 0x7fff);
        self.rehash += 1;
        Some(
            self.weighted
                .at(u64::from(self.hash) % self.weighted.total()),
        )
    }
}

/// `n` in decimal ASCII, written into `buf` (no allocation).
fn decimal(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// The sequence of points `ip_hash` tries.
#[derive(Debug)]
pub struct IpWalk<'a> {
    weighted: &'a Weighted,
    octets: &'a [u8],
    hash: u64,
}

impl Preference for IpWalk<'_> {
    #[inline]
    fn next_index(&mut self) -> Option<usize> {
        for &b in self.octets {
            self.hash = (self.hash * 113 + u64::from(b)) % 6271;
        }
        Some(self.weighted.at(self.hash % self.weighted.total()))
    }
}

impl BackendSelection for NginxHash {
    type Config = ();
    type Iter<'a> = Candidates<'a, WalkOrPicks<RehashWalk<'a>>>;

    fn build(backends: &BackendSet, _config: &()) -> Self {
        Self {
            rr: RoundRobin::build(backends, &()),
            weighted: Weighted::new(backends),
            backends: backends.clone(),
        }
    }

    #[inline]
    fn iter<'a>(&'a self, key: &'a [u8]) -> Self::Iter<'a> {
        let walk = RehashWalk {
            weighted: &self.weighted,
            key,
            hash: 0,
            rehash: 0,
        };
        if key.is_empty() {
            if let Some((picks, steps, rest)) = self.rr.picks() {
                return Candidates::new(&self.backends, WalkOrPicks::Picks(picks), steps, rest);
            }
        }
        let n = self.backends.len();
        let tries = if n > 1 { TRIES } else { 0 };
        Candidates::new(
            &self.backends,
            WalkOrPicks::Walk(walk),
            tries,
            crc32(&[key]) as usize,
        )
    }
}

impl BackendSelection for IpHash {
    type Config = ();
    type Iter<'a> = Candidates<'a, IpWalk<'a>>;

    fn build(backends: &BackendSet, _config: &()) -> Self {
        Self {
            weighted: Weighted::new(backends),
            backends: backends.clone(),
        }
    }

    #[inline]
    fn iter<'a>(&'a self, key: &'a [u8]) -> Self::Iter<'a> {
        // nginx hashes three zero octets for clients without an IP address (Unix sockets).
        let octets = match key.len() {
            0 => &[0u8; 3][..],
            4 => &key[..3],
            _ => key,
        };
        let walk = IpWalk {
            weighted: &self.weighted,
            octets,
            hash: 89,
        };
        let n = self.backends.len();
        let tries = if n > 1 { TRIES } else { 0 };
        let rest = octets.iter().fold(0usize, |h, &b| {
            h.wrapping_mul(31).wrapping_add(usize::from(b))
        });
        Candidates::new(&self.backends, walk, tries, rest)
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use lb_core::{ConfigOrder, Metadata};

    use super::*;

    /// Backends whose configuration order is the reverse of their address order.
    fn reversed(weights: &[u32]) -> BackendSet {
        let n = weights.len();
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                Backend::parse(&format!("10.8.0.{}:80", n - i))
                    .unwrap()
                    .with_weight(NonZeroU32::new(*w).unwrap())
                    .with_metadata(Metadata::new().with(ConfigOrder(i as u32)))
            })
            .collect()
    }

    #[test]
    fn decimal_digits() {
        let mut b = [0u8; 10];
        assert_eq!(decimal(0, &mut b), b"0");
        assert_eq!(decimal(20, &mut b), b"20");
        assert_eq!(decimal(u32::MAX, &mut b), b"4294967295");
    }

    #[test]
    fn configuration_order_not_address_order() {
        let s = reversed(&[1, 2, 3]);
        let w = Weighted::new(&s);
        // Configuration position 0 is the highest address.
        assert_eq!(s[w.at(0)].name(), "10.8.0.3:80");
        assert_eq!(s[w.at(1)].name(), "10.8.0.2:80");
        assert_eq!(s[w.at(2)].name(), "10.8.0.2:80");
        assert_eq!(s[w.at(5)].name(), "10.8.0.1:80");
    }

    #[test]
    fn ip_hash_uses_three_octets_of_ipv4() {
        let s = reversed(&[1, 1, 1, 1, 1]);
        let ip = IpHash::build(&s, &());
        for last in 0..=255u8 {
            assert_eq!(
                ip.iter(&[192, 0, 2, last]).next(),
                ip.iter(&[192, 0, 2, 0]).next(),
                "same /24, same backend"
            );
        }
    }

    #[test]
    fn ip_hash_first_pick_matches_the_formula() {
        let s = reversed(&[1, 2, 1]);
        let ip = IpHash::build(&s, &());
        let mut h: u64 = 89;
        for b in [198u64, 51, 100] {
            h = (h * 113 + b) % 6271;
        }
        let expected = Weighted::new(&s).at(h % 4);
        assert_eq!(ip.iter(&[198, 51, 100, 7]).next().unwrap(), &s[expected]);
    }

    #[test]
    fn every_backend_once_even_after_the_tries() {
        let s = reversed(&[1, 1, 1, 1, 1, 1, 1, 1]);
        let h = NginxHash::build(&s, &());
        for k in 0..100u32 {
            assert_eq!(h.iter(k.to_string().as_bytes()).count(), 8);
        }
        let single = NginxHash::build(&reversed(&[3]), &());
        assert_eq!(single.iter(b"x").count(), 1);
    }
}
