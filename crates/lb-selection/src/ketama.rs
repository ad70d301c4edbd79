//! Ketama consistent hashing, mapping keys exactly as nginx's `hash $key consistent`.
//!
//! nginx (`ngx_http_upstream_hash_module.c`, compatible with Cache::Memcached::Fast) puts
//! `160 * weight` points per server on a 32-bit ring. The server text as written in the
//! configuration is split at its last `:` followed only by digits into host and port (a
//! `unix:` prefix is dropped and the rest is the host), and point *j* hashes
//! `crc32(host "\0" port prev)` where `prev` is the previous point's hash as 4 little-endian
//! bytes (0 for the first). Points are sorted, equal hashes keep one. A key goes to the
//! first point at or after `crc32(key)`, wrapping around.
//!
//! Because the configured text is hashed, `localhost:8080` and `127.0.0.1:8080` give
//! different rings, and an IPv6 server keeps its brackets: [`Backend::name`] carries that
//! text. Adding or removing a server moves only the keys of the points it adds or removes.
//!
//! An empty key (the request has no such cookie, header or parameter) is balanced by
//! smooth weighted round robin instead of hashing, as nginx does (`hp->key.len == 0`), so
//! requests without a key do not all land on one backend.
//!
//! Fallback walks on along the ring to the next distinct backends (as nginx does when a
//! server is down), then the rest in set order. With a [`BalanceFactor`], backends over
//! their bounded load are passed over on the walk.
//!
//! Known difference: when one configured name resolves to several addresses, nginx rotates
//! among them with smooth weighted round robin at that name's points; here the points
//! belong to the first address in set order, and the others follow on the fallback walk.

use lb_core::{Backend, BackendSet};

use crate::bounded::{BalanceFactor, Bound};
use crate::candidates::{Candidates, WalkOrPicks};
use crate::hashing::crc32;
use crate::walk::CyclicWalk;
use crate::{BackendSelection, RoundRobin};

/// Points per unit of weight, as nginx.
const POINTS_PER_WEIGHT: u32 = 160;

/// The most points a ring holds (128 MiB). Beyond it, weights are scaled down
/// proportionally (no nginx configuration that fits in memory comes near it).
pub(crate) const MAX_POINTS: u64 = 1 << 24;

/// Options of [`Consistent`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ConsistentConfig {
    /// Bounded loads: no backend takes more than this factor times the average in-flight load.
    pub balance_factor: Option<BalanceFactor>,
}

/// nginx-compatible ketama consistent hashing; see the [module docs](self).
#[derive(Debug)]
pub struct Consistent {
    backends: BackendSet,
    /// `(point hash, backend index)`, sorted by hash, hashes unique.
    points: Box<[(u32, u32)]>,
    config: ConsistentConfig,
    total_weight: u64,
    /// For empty keys, as nginx.
    rr: RoundRobin,
}

/// nginx's split of a server text into the hashed host and port.
fn host_port(server: &str) -> (&[u8], &[u8]) {
    let bytes = server.as_bytes();
    if bytes.len() >= 5 && bytes[..5].eq_ignore_ascii_case(b"unix:") {
        return (&bytes[5..], b"");
    }
    for j in 0..bytes.len() {
        let c = bytes[bytes.len() - j - 1];
        if c == b':' {
            return (&bytes[..bytes.len() - j - 1], &bytes[bytes.len() - j..]);
        }
        if !c.is_ascii_digit() {
            break;
        }
    }
    (bytes, b"")
}

impl Consistent {
    fn ring(backends: &[Backend]) -> Box<[(u32, u32)]> {
        let total: u64 = backends.iter().map(|b| u64::from(b.weight().get())).sum();
        let budget = MAX_POINTS / u64::from(POINTS_PER_WEIGHT);
        let weight = |b: &Backend| {
            let w = u64::from(b.weight().get());
            if total <= budget {
                w
            } else {
                (w * budget / total).max(1)
            }
        };
        let points_total: u64 =
            backends.iter().map(weight).sum::<u64>() * u64::from(POINTS_PER_WEIGHT);
        let mut points = Vec::with_capacity(usize::try_from(points_total).unwrap_or(0));
        for (i, b) in backends.iter().enumerate() {
            let (host, port) = host_port(b.name());
            let mut prev = 0u32;
            for _ in 0..weight(b) * u64::from(POINTS_PER_WEIGHT) {
                let hash = crc32(&[host, b"\0", port, &prev.to_le_bytes()]);
                points.push((hash, i as u32));
                prev = hash;
            }
        }
        // Stable sort: among equal hashes (rare; the same name twice) the first backend stays.
        points.sort_by_key(|&(hash, _)| hash);
        points.dedup_by_key(|&mut (hash, _)| hash);
        points.into_boxed_slice()
    }

    /// The index of the first point at or after `hash` (may equal the length: wraps to 0).
    #[inline]
    fn find(&self, hash: u32) -> usize {
        self.points.partition_point(|&(h, _)| h < hash)
    }
}

impl BackendSelection for Consistent {
    type Config = ConsistentConfig;
    type Iter<'a> = Candidates<'a, WalkOrPicks<RingWalk<'a>>>;

    fn build(backends: &BackendSet, config: &ConsistentConfig) -> Self {
        Self {
            rr: RoundRobin::build(backends, &()),
            points: Self::ring(backends),
            backends: backends.clone(),
            config: *config,
            total_weight: backends.total_weight(),
        }
    }

    #[inline]
    fn iter<'a>(&'a self, key: &'a [u8]) -> Self::Iter<'a> {
        if self.points.is_empty() {
            return Candidates::empty(WalkOrPicks::Walk(CyclicWalk::empty(&self.points)));
        }
        if key.is_empty() {
            if let Some((picks, steps, rest)) = self.rr.picks() {
                return Candidates::new(&self.backends, WalkOrPicks::Picks(picks), steps, rest);
            }
        }
        let pos = self.find(crc32(&[key])) % self.points.len();
        let rest = self.points[pos].1 as usize;
        let bound = self
            .config
            .balance_factor
            .map(|f| Bound::new(&self.backends, f, self.total_weight));
        let walk = CyclicWalk::new(&self.points, pos, self.points.len(), bound, rest);
        Candidates::new(&self.backends, WalkOrPicks::Walk(walk), usize::MAX, rest)
    }
}

/// The walk along the ring from a key's point: one pass at most.
pub type RingWalk<'a> = CyclicWalk<'a, (u32, u32)>;

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn named(names: &[(&str, u32)]) -> BackendSet {
        names
            .iter()
            .enumerate()
            .map(|(i, (name, w))| {
                Backend::parse(&format!("10.9.{}.{}:80", i / 250, i % 250 + 1))
                    .unwrap()
                    .with_name(*name)
                    .with_weight(NonZeroU32::new(*w).unwrap())
            })
            .collect()
    }

    #[test]
    fn host_and_port_split_like_nginx() {
        assert_eq!(
            host_port("127.0.0.1:8080"),
            (&b"127.0.0.1"[..], &b"8080"[..])
        );
        assert_eq!(host_port("[::1]:80"), (&b"[::1]"[..], &b"80"[..]));
        assert_eq!(
            host_port("unix:/tmp/a.sock"),
            (&b"/tmp/a.sock"[..], &b""[..])
        );
        assert_eq!(host_port("backend"), (&b"backend"[..], &b""[..]));
        assert_eq!(host_port("host:http"), (&b"host:http"[..], &b""[..]));
    }

    #[test]
    fn absurd_weights_are_scaled_not_allocated() {
        let c = Consistent::build(
            &named(&[("a:1", u32::MAX), ("b:1", 1)]),
            &Default::default(),
        );
        assert!(c.points.len() as u64 <= MAX_POINTS);
        assert_eq!(c.iter(b"k").count(), 2);
    }

    #[test]
    fn ring_has_160_points_per_weight() {
        let c = Consistent::build(
            &named(&[("a:1", 1), ("b:2", 3)]),
            &ConsistentConfig::default(),
        );
        assert_eq!(c.points.len(), 640);
        assert!(c.points.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn the_configured_text_not_the_address_is_hashed() {
        let a = Consistent::build(
            &named(&[("localhost:8080", 1), ("b:1", 1)]),
            &Default::default(),
        );
        let b = Consistent::build(
            &named(&[("127.0.0.1:8080", 1), ("b:1", 1)]),
            &Default::default(),
        );
        assert_ne!(a.points, b.points);
    }

    #[test]
    fn removing_a_backend_moves_only_its_keys() {
        let all = named(&[("a:1", 1), ("b:1", 2), ("c:1", 1), ("d:1", 1)]);
        let without_c: BackendSet = all.iter().filter(|b| b.name() != "c:1").cloned().collect();
        let before = Consistent::build(&all, &Default::default());
        let after = Consistent::build(&without_c, &Default::default());
        for k in 0..5000u32 {
            let key = k.to_string();
            let was = before
                .iter(key.as_bytes())
                .next()
                .unwrap()
                .name()
                .to_owned();
            let now = after.iter(key.as_bytes()).next().unwrap().name().to_owned();
            if was != "c:1" {
                assert_eq!(was, now, "key {key} moved though its backend stayed");
            }
        }
    }

    #[test]
    fn fallback_follows_the_ring() {
        let s = named(&[("a:1", 1), ("b:1", 1), ("c:1", 1)]);
        let c = Consistent::build(&s, &Default::default());
        for k in 0..200u32 {
            let key = k.to_string();
            let order: Vec<_> = c.iter(key.as_bytes()).collect();
            assert_eq!(order.len(), 3);
            // The second candidate is the owner of the next point of another backend.
            let pos = c.find(crc32(&[key.as_bytes()])) % c.points.len();
            let first = c.points[pos].1;
            let next = (1..c.points.len())
                .map(|d| c.points[(pos + d) % c.points.len()].1)
                .find(|&i| i != first)
                .unwrap();
            assert_eq!(order[1], &s[next as usize]);
        }
    }

    #[test]
    fn bounded_load_walks_past_a_full_backend() {
        let s = named(&[("a:1", 1), ("b:1", 1), ("c:1", 1), ("d:1", 1)]);
        let cfg = ConsistentConfig {
            balance_factor: Some(BalanceFactor::new(1.25).unwrap()),
        };
        let c = Consistent::build(&s, &cfg);
        let owner = c.iter(b"hot").next().unwrap().clone();
        let _load: Vec<_> = (0..4).map(|_| owner.begin_request()).collect();
        // total 4, capacity ceil(1.25 * 5 / 4) = 2 < 4 in flight: the key walks on.
        let picked = c.iter(b"hot").next().unwrap();
        assert_ne!(picked, &owner);
        // The full backend is still a candidate, later.
        assert_eq!(c.iter(b"hot").count(), 4);
    }
}
