//! A fast, fixed hasher for maps keyed by backend address, looked up on the request path
//! ([`super`]: one lookup per attempt).
//!
//! The standard `RandomState` (SipHash-1-3) costs a few hundred instructions per lookup;
//! its protection against chosen keys is not needed here: the keys come from the
//! configuration and from discovery, never from a client. This is the multiply-and-add
//! scheme of `rustc-hash` (FxHash, version 2), whose final rotation feeds the high bits
//! that `hashbrown` reads for its control bytes.

use std::hash::{BuildHasherDefault, Hasher};

/// Builds [`AddrHasher`]s (all alike: the hash of a key is the same in every process).
pub type AddrHash = BuildHasherDefault<AddrHasher>;

/// The hasher behind [`AddrHash`].
#[derive(Clone, Copy, Debug, Default)]
pub struct AddrHasher {
    hash: u64,
}

/// An odd multiplier with well spread bits (`rustc-hash` 2's).
const K: u64 = 0xf135_7aea_2e62_a9c5;

impl AddrHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = self.hash.wrapping_add(word).wrapping_mul(K);
    }
}

impl Hasher for AddrHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0; 8];
            word[..rest.len()].copy_from_slice(rest);
            // The length keeps "a" and "a\0" apart.
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash.rotate_left(26)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::{HashMap, HashSet};
    use std::hash::BuildHasher;
    use std::net::SocketAddr;
    use std::sync::Arc;

    use lb_core::BackendAddr;

    use super::*;

    #[test]
    fn addresses_hash_apart_and_are_found() {
        let addrs: Vec<BackendAddr> = (0..200u16)
            .map(|i| {
                BackendAddr::Inet(SocketAddr::from((
                    [10, 0, (i / 100) as u8, i as u8],
                    8000 + i,
                )))
            })
            .chain([
                BackendAddr::Unix(Arc::from(std::path::Path::new("/run/a.sock"))),
                BackendAddr::Unix(Arc::from(std::path::Path::new("/run/a.sock\0"))),
                BackendAddr::Inet("[2001:db8::1]:80".parse().unwrap()),
            ])
            .collect();
        let hashes: HashSet<u64> = addrs
            .iter()
            .map(|a| AddrHash::default().hash_one(a))
            .collect();
        assert_eq!(hashes.len(), addrs.len());
        let map: HashMap<&BackendAddr, usize, AddrHash> =
            addrs.iter().enumerate().map(|(i, a)| (a, i)).collect();
        for (i, a) in addrs.iter().enumerate() {
            assert_eq!(map.get(a), Some(&i));
        }
    }

    #[test]
    fn the_hash_is_the_same_every_time() {
        let a = BackendAddr::Inet("127.0.0.1:9000".parse().unwrap());
        assert_eq!(
            AddrHash::default().hash_one(&a),
            AddrHash::default().hash_one(&a)
        );
    }
}
