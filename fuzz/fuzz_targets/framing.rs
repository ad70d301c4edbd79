//! The HTTP/1.x request framing check (`lb-proxy` `protect/framing.rs`): any bytes, fed
//! whole and cut into fuzzed pieces the way `FramedIo` feeds the scanner (a head that is not
//! complete is fed again from its first byte with the next piece), under fuzzed limits.
//!
//! Checks: nothing panics; every offset the scanner returns is inside its input; a refusal is
//! 400, 414 or 431; and the verdict does not depend on how the bytes were cut: the same
//! refused head (at the same offset, after the same number of framed heads), or none, and the
//! same heads counted. The reason may differ (a head refused as too large before its last
//! line arrives, or for that line when it arrives whole), so the status is not compared.
//! Inputs with an `Upgrade` or `CONNECT` head are compared only up to it: what follows it in
//! the same read passes unchecked by design, so cuts there legitimately change the verdict.

#![no_main]

use arbitrary::Arbitrary;
use lb_proxy::FramingCheck;
use libfuzzer_sys::fuzz_target;

/// The bytes, how to cut them, and the limits.
#[derive(Debug, Arbitrary)]
struct Input {
    bytes: Vec<u8>,
    /// Piece sizes, used in turn (0 counts as 1).
    cuts: Vec<u8>,
    /// `max_header_size` is 64 plus this (small, so the limits are reached).
    head: u16,
    /// `max_uri_length` is 16 plus this.
    uri: u16,
    /// After an upgrade head, whether the connection is idle when more bytes arrive.
    idle: bool,
}

/// What a run found.
#[derive(Debug, PartialEq, Eq)]
struct Verdict {
    /// Where the refused head started in the whole input, and the heads framed before it.
    refused: Option<(usize, u64)>,
    heads: u64,
    off: bool,
    upgrade: bool,
}

fn run(input: &Input, pieces: &mut dyn Iterator<Item = usize>) -> Verdict {
    let limits = (64 + usize::from(input.head), 16 + usize::from(input.uri));
    let mut check = FramingCheck::new(limits.0, limits.1);
    let bytes = &input.bytes;
    let mut partial: Vec<u8> = Vec::new();
    let mut partial_at = 0;
    let mut at = 0;
    let mut upgrade = false;
    while at < bytes.len() {
        let size = pieces.next().unwrap_or(bytes.len()).max(1);
        let piece = &bytes[at..bytes.len().min(at + size)];
        if check.after_upgrade() {
            upgrade = true;
            check.resume(input.idle);
        }
        let fed: &[u8] = if partial.is_empty() {
            partial_at = at;
            piece
        } else {
            partial.extend_from_slice(piece);
            &partial
        };
        let scanned = check.scan(fed);
        let fed_len = fed.len();
        match scanned {
            Ok(None) => partial.clear(),
            Ok(Some(n)) => {
                assert!(n <= fed_len, "partial at {n} of {fed_len}");
                if partial.is_empty() {
                    partial.extend_from_slice(&piece[n..]);
                } else {
                    partial.drain(..n);
                }
                partial_at += n;
            }
            Err((n, status)) => {
                assert!(n <= fed_len, "refused at {n} of {fed_len}");
                assert!(matches!(status, 400 | 414 | 431), "status {status}");
                return Verdict {
                    refused: Some((partial_at + n, check.heads())),
                    heads: check.heads(),
                    off: check.is_off(),
                    upgrade: upgrade || check.after_upgrade(),
                };
            }
        }
        at += piece.len();
    }
    Verdict {
        refused: None,
        heads: check.heads(),
        off: check.is_off(),
        upgrade: upgrade || check.after_upgrade(),
    }
}

fuzz_target!(|input: Input| {
    let whole = run(&input, &mut std::iter::empty());
    let cuts: Vec<usize> = input.cuts.iter().map(|&c| usize::from(c)).collect();
    let mut pieces = cuts.iter().copied().cycle();
    let cut = run(&input, &mut pieces);
    let mut one_by_one = std::iter::repeat(1);
    let bytes = run(&input, &mut one_by_one);
    if whole.upgrade || cut.upgrade || bytes.upgrade || whole.off || cut.off || bytes.off {
        // Past an upgrade head, or once the check is off (HTTP/2, broken chunk framing, an
        // upgrade), the bytes are hyper's alone.
        return;
    }
    assert_eq!(whole, cut, "whole against cut");
    assert_eq!(whole, bytes, "whole against byte by byte");
});
