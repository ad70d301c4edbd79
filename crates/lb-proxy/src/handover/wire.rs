//! The bytes of the hand-over protocol: the offer the running process sends with its
//! sockets, and the one-line messages both sides answer with.
//!
//! **Offer** (running process to new process), one `sendmsg` whose control message
//! carries the descriptors (`SCM_RIGHTS`):
//!
//! ```text
//! "LBHO"  version (1 byte, 2)  3 zero bytes  count (u32 LE)  manifest length (u32 LE)
//! manifest: one line per descriptor, in the order of the descriptors: "KIND ADDR\n"
//!           KIND = http | tls | admin, ADDR = the address the socket is bound to
//! ```
//!
//! **Lines** afterwards, at most [`MAX_LINE`] bytes each: the new process sends `held`
//! (it owns the sockets and checked them against the manifest), then `ready` (it started
//! everything) or `failed REASON`; the running process answers `ready` with `commit`.
//!
//! The first hand-over (before version 2) sent a bare 4-byte count and took an `ok`
//! as the end of it; [`Header::parse`] recognises it, so a new binary refuses an old
//! one's offer by name instead of misreading it (the old process then times out and goes
//! on serving).

use crate::sockets::ListenerKind;
use std::fmt;
use std::net::SocketAddr;

/// The first bytes of a version 2 offer.
const MAGIC: &[u8; 4] = b"LBHO";

/// The protocol version this build speaks.
pub(super) const VERSION: u8 = 2;

/// The size of the fixed part of an offer.
pub(super) const HEADER_LEN: usize = 16;

/// The longest line either side sends (a `failed` reason is cut to fit).
pub(super) const MAX_LINE: usize = 1024;

/// The fixed part of an offer.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Header {
    /// How many descriptors (and manifest lines) follow.
    pub(super) count: usize,
    /// The manifest's length in bytes.
    pub(super) manifest_len: usize,
}

/// Why an offer's fixed part is not one this build reads.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum HeaderError {
    /// Four bytes only: the first hand-over protocol, of an older lb-proxy.
    Version1,
    /// A version 2 magic with another version number.
    Version(u8),
    /// Not an offer at all.
    Garbage,
}

/// A line after the offer.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Line {
    /// The new process holds the sockets.
    Held,
    /// The new process has started everything.
    Ready,
    /// The new process could not start, and why.
    Failed(String),
    /// The running process stops accepting: the new one is in charge.
    Commit,
}

impl Header {
    /// The bytes of an offer of `sockets`: the fixed part, then the manifest.
    pub(super) fn encode(sockets: &[(ListenerKind, SocketAddr)]) -> Vec<u8> {
        let manifest: String = sockets
            .iter()
            .map(|(kind, addr)| format!("{kind} {addr}\n"))
            .collect();
        let mut out = Vec::with_capacity(HEADER_LEN + manifest.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[VERSION, 0, 0, 0]);
        out.extend_from_slice(
            &u32::try_from(sockets.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        out.extend_from_slice(
            &u32::try_from(manifest.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        out.extend_from_slice(manifest.as_bytes());
        out
    }

    /// Reads the fixed part from the first `bytes` received.
    pub(super) fn parse(bytes: &[u8]) -> Result<Self, HeaderError> {
        if bytes.len() == 4 {
            return Err(HeaderError::Version1);
        }
        if bytes.len() != HEADER_LEN || &bytes[..4] != MAGIC {
            return Err(HeaderError::Garbage);
        }
        if bytes[4] != VERSION {
            return Err(HeaderError::Version(bytes[4]));
        }
        let word = |at: usize| {
            let mut w = [0; 4];
            w.copy_from_slice(&bytes[at..at + 4]);
            u32::from_le_bytes(w) as usize
        };
        Ok(Self {
            count: word(8),
            manifest_len: word(12),
        })
    }
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Version1 => f.write_str(
                "the running process speaks the first hand-over protocol (an lb-proxy older than \
                 this one): restart it instead, or upgrade it to a binary that speaks version 2 first",
            ),
            Self::Version(v) => write!(f, "hand-over protocol version {v}; this build speaks {VERSION}"),
            Self::Garbage => f.write_str("not a hand-over offer"),
        }
    }
}

/// The manifest's lines: what each descriptor is for, in order.
pub(super) fn parse_manifest(
    text: &[u8],
    count: usize,
) -> Result<Vec<(ListenerKind, SocketAddr)>, String> {
    let text = std::str::from_utf8(text).map_err(|_| "the manifest is not UTF-8".to_owned())?;
    let entries = text
        .lines()
        .map(|line| {
            let (kind, addr) = line
                .split_once(' ')
                .ok_or_else(|| format!("manifest line {line:?} is not `KIND ADDR`"))?;
            let kind = kind
                .parse()
                .map_err(|()| format!("manifest line {line:?}: unknown kind"))?;
            let addr = addr
                .parse()
                .map_err(|e| format!("manifest line {line:?}: {e}"))?;
            Ok((kind, addr))
        })
        .collect::<Result<Vec<_>, String>>()?;
    if entries.len() != count {
        return Err(format!(
            "the manifest names {} sockets, {count} were sent",
            entries.len()
        ));
    }
    Ok(entries)
}

impl Line {
    /// The line as sent, with its newline; a long reason is cut at a character boundary.
    pub(super) fn encode(&self) -> String {
        match self {
            Self::Held => "held\n".to_owned(),
            Self::Ready => "ready\n".to_owned(),
            Self::Commit => "commit\n".to_owned(),
            Self::Failed(reason) => {
                let one_line = reason.replace(['\n', '\r'], " ");
                let mut cut = MAX_LINE - "failed \n".len();
                while !one_line.is_char_boundary(cut.min(one_line.len())) {
                    cut -= 1;
                }
                format!("failed {}\n", &one_line[..cut.min(one_line.len())])
            }
        }
    }

    /// Reads one line (without its newline).
    pub(super) fn parse(line: &str) -> Option<Self> {
        match line {
            "held" => Some(Self::Held),
            "ready" => Some(Self::Ready),
            "commit" => Some(Self::Commit),
            _ => line
                .strip_prefix("failed ")
                .map(|reason| Self::Failed(reason.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn an_offer_round_trips() {
        let sockets = vec![
            (ListenerKind::Http, "127.0.0.1:8080".parse().unwrap()),
            (ListenerKind::Tls, "[::1]:8443".parse().unwrap()),
            (ListenerKind::Admin, "127.0.0.1:9901".parse().unwrap()),
        ];
        let bytes = Header::encode(&sockets);
        let header = Header::parse(&bytes[..HEADER_LEN]).unwrap();
        assert_eq!(header.count, 3);
        let manifest = &bytes[HEADER_LEN..];
        assert_eq!(header.manifest_len, manifest.len());
        assert_eq!(
            std::str::from_utf8(manifest).unwrap(),
            "http 127.0.0.1:8080\ntls [::1]:8443\nadmin 127.0.0.1:9901\n"
        );
        assert_eq!(parse_manifest(manifest, 3).unwrap(), sockets);
    }

    #[test]
    fn other_offers_are_named() {
        assert_eq!(Header::parse(&[1, 0, 0, 0]), Err(HeaderError::Version1));
        let mut v3 = Header::encode(&[]);
        v3[4] = 3;
        assert_eq!(Header::parse(&v3), Err(HeaderError::Version(3)));
        assert_eq!(
            Header::parse(b"GET / HTTP/1.1\r\n"),
            Err(HeaderError::Garbage)
        );
        assert!(HeaderError::Version1.to_string().contains("restart it"));
    }

    #[test]
    fn bad_manifests_say_why() {
        assert!(parse_manifest(b"http 127.0.0.1:1\n", 2)
            .unwrap_err()
            .contains("names 1 sockets, 2"));
        assert!(parse_manifest(b"udp 127.0.0.1:1\n", 1)
            .unwrap_err()
            .contains("unknown kind"));
        assert!(parse_manifest(b"http nowhere\n", 1)
            .unwrap_err()
            .contains("nowhere"));
        assert!(parse_manifest(b"\xff\n", 1).unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn lines_round_trip_and_reasons_stay_one_bounded_line() {
        for line in [
            Line::Held,
            Line::Ready,
            Line::Commit,
            Line::Failed("cannot listen on 127.0.0.1:9901".into()),
        ] {
            let text = line.encode();
            assert!(text.ends_with('\n'));
            assert_eq!(Line::parse(text.trim_end_matches('\n')), Some(line));
        }
        let long = Line::Failed(format!("a\nb{}", "é".repeat(2000))).encode();
        assert!(long.len() <= MAX_LINE, "{}", long.len());
        assert_eq!(long.matches('\n').count(), 1);
        assert_eq!(Line::parse("ok"), None);
    }
}
