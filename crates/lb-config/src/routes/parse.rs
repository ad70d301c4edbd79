//! Allocation-free readers for the parts of a request that conditions look into: cookies
//! (every `Cookie` header) and query parameters (with lazy percent-decoding).

use http::header::{HeaderMap, COOKIE};

/// Every `name=value` cookie of every `Cookie` header, in order, as raw bytes.
///
/// Pairs are separated by `;` with optional whitespace; names and values are trimmed, and a
/// value in double quotes (RFC 6265 `cookie-value`) loses its quotes. Values are not
/// decoded (cookies are opaque). Pieces without `=` or with an empty name are skipped.
pub(crate) fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .filter_map(|pair| {
            let eq = pair.iter().position(|&b| b == b'=')?;
            let (name, value) = (pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii());
            let value = match value {
                [b'"', inner @ .., b'"'] => inner,
                _ => value,
            };
            (!name.is_empty()).then_some((name, value))
        })
}

/// Every parameter of a query string (`a=1&b&c=`), in order, as raw (still encoded)
/// `(name, value)`; a parameter without `=` has an empty value. Empty pieces are skipped.
pub(crate) fn query_pairs(query: &str) -> impl Iterator<Item = (&[u8], &[u8])> {
    query
        .as_bytes()
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &b""[..]),
        })
}

/// The bytes of a form-encoded query component, decoded as they are read: `%XX` is one
/// byte and `+` a space; a `%` not followed by two hex digits stays as it is.
#[derive(Clone, Debug)]
pub(crate) struct Decoded<'a>(&'a [u8]);

impl Iterator for Decoded<'_> {
    type Item = u8;

    #[inline]
    fn next(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        match (b, rest) {
            (b'%', [hi, lo, tail @ ..]) => match (hex(*hi), hex(*lo)) {
                (Some(hi), Some(lo)) => {
                    self.0 = tail;
                    Some(hi << 4 | lo)
                }
                _ => {
                    self.0 = rest;
                    Some(b'%')
                }
            },
            (b'+', _) => {
                self.0 = rest;
                Some(b' ')
            }
            _ => {
                self.0 = rest;
                Some(b)
            }
        }
    }
}

/// The decoded bytes of `raw`, lazily.
#[inline]
pub(crate) fn decode(raw: &[u8]) -> Decoded<'_> {
    Decoded(raw)
}

/// Escaped values up to this length are decoded on the stack.
const STACK_DECODE: usize = 256;

/// Calls `f` with `raw` decoded: `raw` itself when it has no escape or `+`, else a copy
/// decoded into a stack buffer, or into a heap buffer for a value longer than 256 bytes
/// (the only case that allocates).
#[inline]
pub(crate) fn with_decoded<R>(raw: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
    if !raw.iter().any(|&b| b == b'%' || b == b'+') {
        return f(raw);
    }
    if raw.len() > STACK_DECODE {
        let mut heap = Vec::with_capacity(raw.len());
        heap.extend(decode(raw));
        return f(&heap);
    }
    let mut buf = [0u8; STACK_DECODE];
    // Decoding never lengthens: every output byte consumes at least one input byte.
    let mut len = 0;
    for (slot, b) in buf.iter_mut().zip(decode(raw)) {
        *slot = b;
        len += 1;
    }
    f(&buf[..len])
}

/// True if `raw` decodes to exactly `expected`, without allocating.
#[inline]
pub(crate) fn decodes_to(raw: &[u8], expected: &[u8]) -> bool {
    decode(raw).eq(expected.iter().copied())
}

#[inline]
fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn jar(headers: &[&str]) -> Vec<(String, String)> {
        let mut map = HeaderMap::new();
        for h in headers {
            map.append(COOKIE, HeaderValue::from_str(h).unwrap());
        }
        cookies(&map)
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn cookie_pairs_are_split_trimmed_and_unquoted() {
        assert_eq!(jar(&["a=1; b=2"]), pairs(&[("a", "1"), ("b", "2")]));
        assert_eq!(
            jar(&["a=1;b=2 ;  c = 3 "]),
            pairs(&[("a", "1"), ("b", "2"), ("c", "3")])
        );
        assert_eq!(
            jar(&["s=\"quoted value\""]),
            pairs(&[("s", "quoted value")])
        );
        assert_eq!(jar(&["s=\"\""]), pairs(&[("s", "")]));
        assert_eq!(
            jar(&["s=\"half"]),
            pairs(&[("s", "\"half")]),
            "unbalanced quote kept"
        );
        assert_eq!(jar(&["e=; f="]), pairs(&[("e", ""), ("f", "")]));
        assert_eq!(
            jar(&["t=a=b"]),
            pairs(&[("t", "a=b")]),
            "split at the first `=`"
        );
    }

    #[test]
    fn every_cookie_header_is_read_and_junk_skipped() {
        assert_eq!(
            jar(&["a=1", "b=2; c=3", "a=4"]),
            pairs(&[("a", "1"), ("b", "2"), ("c", "3"), ("a", "4")])
        );
        assert_eq!(jar(&[";; =x; noequals; ; g=7;"]), pairs(&[("g", "7")]));
        assert!(jar(&[""]).is_empty());
        assert!(jar(&[]).is_empty());
    }

    #[test]
    fn non_utf8_cookie_bytes_do_not_break_parsing() {
        let mut map = HeaderMap::new();
        map.insert(COOKIE, HeaderValue::from_bytes(b"x=\xff\xfe; y=2").unwrap());
        let all: Vec<_> = cookies(&map).collect();
        assert_eq!(all, [(&b"x"[..], &b"\xff\xfe"[..]), (b"y", b"2")]);
    }

    #[test]
    fn query_pairs_keep_raw_text_and_empty_values() {
        let q: Vec<_> = query_pairs("a=1&b&c=&&d=x%3Dy&=v").collect();
        assert_eq!(
            q,
            [
                (&b"a"[..], &b"1"[..]),
                (b"b", b""),
                (b"c", b""),
                (b"d", b"x%3Dy"),
                (b"", b"v")
            ]
        );
        assert_eq!(query_pairs("").count(), 0);
    }

    #[test]
    fn escapes_decode_lazily() {
        let decoded = |raw: &[u8]| with_decoded(raw, <[u8]>::to_vec);
        assert_eq!(decoded(b"plain"), b"plain");
        assert_eq!(decoded(b"a%20b+c"), b"a b c");
        assert_eq!(decoded("%E2%9C%93".as_bytes()), "✓".as_bytes());
        assert_eq!(decoded(b"100%"), b"100%", "a lone % stays");
        assert_eq!(decoded(b"%zz%4"), b"%zz%4", "bad escapes stay");
        assert_eq!(decoded(b"%41%6a"), b"Aj", "either case of hex");
        assert!(decodes_to(b"al%69ce", b"alice"));
        assert!(decodes_to(b"", b""));
        assert!(!decodes_to(b"alic", b"alice"));
        assert!(!decodes_to(b"alice%20", b"alice"));
    }

    #[test]
    fn long_values_decode_on_the_heap_short_ones_on_the_stack() {
        for n in [
            STACK_DECODE / 3,
            STACK_DECODE / 3 + 1,
            STACK_DECODE,
            STACK_DECODE + 1,
        ] {
            let raw = "%41".repeat(n / 3) + &"b".repeat(n % 3);
            let expected = "A".repeat(n / 3) + &"b".repeat(n % 3);
            assert_eq!(raw.len(), n);
            assert_eq!(
                with_decoded(raw.as_bytes(), <[u8]>::to_vec),
                expected.as_bytes()
            );
        }
        let full = "+".repeat(STACK_DECODE);
        assert_eq!(with_decoded(full.as_bytes(), <[u8]>::len), STACK_DECODE);
    }
}
