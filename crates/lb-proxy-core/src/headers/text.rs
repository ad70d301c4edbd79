//! Header text built without `format!`: addresses written into a stack buffer (a value
//! made of one is a single allocation that its clones share), and list values
//! (`X-Forwarded-For`, `Forwarded`, `Via`) assembled with one exact-size allocation, which
//! becomes the header value without another copy.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::net::IpAddr;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Longest text of an IP address (`ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255` is 45).
const IP_TEXT_MAX: usize = 48;

/// An IP address as text, on the stack.
#[derive(Clone, Copy)]
pub(crate) struct IpText {
    buf: [u8; IP_TEXT_MAX],
    len: usize,
}

impl IpText {
    /// The canonical text of `ip` (`192.0.2.1`, `2001:db8::1`).
    pub(crate) fn new(ip: IpAddr) -> Self {
        let mut text = Self {
            buf: [0; IP_TEXT_MAX],
            len: 0,
        };
        match ip {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.push(b'.');
                    }
                    if octet >= 100 {
                        text.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        text.push(b'0' + octet / 10 % 10);
                    }
                    text.push(b'0' + octet % 10);
                }
            }
            // The compression rules of RFC 5952 are the standard library's; its formatter
            // writes into the buffer without allocating. It cannot overflow (45 < 48).
            IpAddr::V6(v6) => {
                let _ = write!(text, "{v6}");
            }
        }
        text
    }

    fn push(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    /// The text.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl AsRef<[u8]> for IpText {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let slot = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// A piece of a header value being assembled.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Piece<'a> {
    /// Copied as is.
    Raw(&'a [u8]),
    /// An RFC 7239 parameter value: as is when it is a token, else as a quoted string
    /// with `"` and `\` escaped.
    Value(&'a [u8]),
}

impl Piece<'_> {
    fn len(&self) -> usize {
        match self {
            Self::Raw(b) => b.len(),
            Self::Value(b) if is_token(b) => b.len(),
            Self::Value(b) => 2 + b.len() + b.iter().filter(|&&c| needs_escape(c)).count(),
        }
    }

    fn put(&self, out: &mut BytesMut) {
        match self {
            Self::Raw(b) => out.put_slice(b),
            Self::Value(b) if is_token(b) => out.put_slice(b),
            Self::Value(b) => {
                out.put_u8(b'"');
                for &c in *b {
                    if needs_escape(c) {
                        out.put_u8(b'\\');
                    }
                    out.put_u8(c);
                }
                out.put_u8(b'"');
            }
        }
    }
}

/// RFC 9110 `token`: one or more `tchar`.
fn is_token(b: &[u8]) -> bool {
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(c))
}

fn needs_escape(c: u8) -> bool {
    c == b'"' || c == b'\\'
}

/// The header value of an address: one allocation that holds the text, whose clones share it
/// (a reference count, where a clone of a value from [`value`] allocates once more).
pub(crate) fn ip_value(ip: IpText) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(Bytes::from_owner(ip)).ok()
}

/// The header value of `ip` (as [`ip_value`]), from a one-entry cache per thread: the
/// requests a worker serves one after the other mostly come from the same client (its
/// keep-alive connection), so the text is written and allocated once, and each request's
/// value is a reference count on the same one. A different address replaces the entry.
pub(crate) fn peer_value(ip: IpAddr) -> Option<HeaderValue> {
    thread_local! {
        static LAST: RefCell<Option<(IpAddr, HeaderValue)>> = const { RefCell::new(None) };
    }
    LAST.try_with(|last| {
        let mut last = last.try_borrow_mut().ok()?;
        match &*last {
            Some((cached, value)) if *cached == ip => Some(value.clone()),
            _ => {
                let value = ip_value(IpText::new(ip))?;
                *last = Some((ip, value.clone()));
                Some(value)
            }
        }
    })
    .ok()
    .flatten()
    .or_else(|| ip_value(IpText::new(ip)))
}

/// Appends `pieces` as one more element of the list header `name`: every existing field
/// of that name and the new element become one field, joined by `", "` (many backends read
/// only the first field of a repeated header).
pub(crate) fn append_list(headers: &mut HeaderMap, name: &HeaderName, pieces: &[Piece<'_>]) {
    let tail: usize = pieces.iter().map(Piece::len).sum();
    let prior: usize = headers.get_all(name).iter().map(|v| v.len() + 2).sum();
    let mut out = BytesMut::with_capacity(prior + tail);
    for v in headers.get_all(name) {
        out.put_slice(v.as_bytes());
        out.put_slice(b", ");
    }
    for p in pieces {
        p.put(&mut out);
    }
    if let Ok(v) = HeaderValue::from_maybe_shared(out.freeze()) {
        headers.insert(name.clone(), v);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn addresses_print_as_the_standard_library_does() {
        for ip in [
            "0.0.0.0",
            "1.2.3.4",
            "10.0.100.255",
            "255.255.255.255",
            "::",
            "::1",
            "2001:db8::17",
            "fe80::1:2:3:4",
            "::ffff:1.2.3.4",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(IpText::new(ip).as_bytes(), ip.to_string().as_bytes());
        }
    }

    #[test]
    fn values_are_quoted_unless_tokens() {
        let name = HeaderName::from_static("forwarded");
        let mut h = HeaderMap::new();
        append_list(
            &mut h,
            &name,
            &[
                Piece::Raw(b"host="),
                Piece::Value(b"example.com"),
                Piece::Raw(b";x="),
                Piece::Value(b"a:8080"),
                Piece::Raw(b";y="),
                Piece::Value(br#"q"b\s"#),
                Piece::Raw(b";z="),
                Piece::Value(b""),
            ],
        );
        assert_eq!(h[&name], r#"host=example.com;x="a:8080";y="q\"b\\s";z="""#);
    }

    #[test]
    fn lists_merge_into_one_field() {
        let name = HeaderName::from_static("x-list");
        let mut h = HeaderMap::new();
        append_list(&mut h, &name, &[Piece::Raw(b"a")]);
        assert_eq!(h[&name], "a");
        h.append(&name, HeaderValue::from_static("b, c"));
        append_list(&mut h, &name, &[Piece::Raw(b"d")]);
        assert_eq!(h.get_all(&name).iter().count(), 1);
        assert_eq!(h[&name], "a, b, c, d");
    }

    #[test]
    fn the_cached_peer_value_follows_the_address() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        for ip in [a, a, b, a, b, b] {
            assert_eq!(peer_value(ip).unwrap(), ip.to_string().as_str());
        }
    }
}
