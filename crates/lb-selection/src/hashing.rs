//! The hash functions, fixed so that every process maps a key the same way.
//!
//! No function here takes a random seed: many proxy instances in front of the same
//! backends must agree on where a key goes without talking to each other.

/// CRC-32 (IEEE 802.3, as zlib and nginx's `ngx_crc32_*`).
#[inline]
pub(crate) fn crc32(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

/// 64-bit FNV-1a (Fowler–Noll–Vo), as Pingora's `FnvHash` uses.
#[inline]
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// xxHash64 with a fixed seed, as Envoy's Maglev uses (seeds 0 and 1 for offset and skip).
#[inline]
pub(crate) fn xxh64(bytes: &[u8], seed: u64) -> u64 {
    xxhash_rust::xxh64::xxh64(bytes, seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(
            crc32(&[b"123456789"]),
            0xcbf4_3926,
            "CRC-32/ISO-HDLC check value"
        );
        assert_eq!(
            crc32(&[b"1234", b"56789"]),
            0xcbf4_3926,
            "streaming equals one shot"
        );
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(xxh64(b"", 0), 0xef46_db37_51d8_e999);
    }
}
