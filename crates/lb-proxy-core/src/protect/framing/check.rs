//! [`FramingCheck`]: the scanner as the fuzz target `fuzz/fuzz_targets/framing.rs` drives it.

use std::time::Duration;

use super::{Framer, FramingLimits, Step};

/// The scanner for the fuzz target `fuzz/fuzz_targets/framing.rs`; not a stable API.
#[doc(hidden)]
#[derive(Debug)]
pub struct FramingCheck(Framer);

impl FramingCheck {
    /// A scanner with these limits (`header_read_timeout` plays no part in scanning).
    pub fn new(max_header_size: usize, max_uri_length: usize) -> Self {
        Self(Framer::new(FramingLimits::new(
            max_header_size,
            max_uri_length,
            Duration::ZERO,
        )))
    }

    /// Scans `input` (after a partial head, again from its first byte): `Ok(None)` when all
    /// is framed, `Ok(Some(n))` when a head starting at `n` is incomplete, `Err((n,
    /// status))` when the head at `n` is refused with `status`.
    pub fn scan(&mut self, input: &[u8]) -> Result<Option<usize>, (usize, u16)> {
        match self.0.scan(input) {
            Step::Pass => Ok(None),
            Step::Partial(n) => Ok(Some(n)),
            Step::Refuse(n, why) => Err((n, why.status().as_u16())),
        }
    }

    /// Complete heads framed so far.
    pub fn heads(&self) -> u64 {
        self.0.heads()
    }

    /// True when the scanner stopped checking (HTTP/2, an upgrade, broken chunk framing).
    pub fn is_off(&self) -> bool {
        self.0.is_off()
    }

    /// True after an `Upgrade` or `CONNECT` head (the caller decides with `resume`).
    pub fn after_upgrade(&self) -> bool {
        self.0.after_upgrade()
    }

    /// See `Framer::resume`.
    pub fn resume(&mut self, idle: bool) {
        self.0.resume(idle);
    }
}
