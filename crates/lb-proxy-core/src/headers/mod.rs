//! Request and response header rewriting: hop-by-hop removal, the forwarding headers
//! (`X-Forwarded-*`, `X-Real-IP`, `Forwarded`, `Via`), `Host`, and who the client is.
//!
//! The crate-internal API, used by the request path:
//! - [`Forwarding::client`] works out the [`ClientAddr`] of a request (the peer, or the
//!   client a trusted proxy vouches for), before a backend is selected;
//! - [`Forwarding::rewrite_request`] rewrites the request headers for the backend;
//! - [`strip_hop_by_hop`] cleans a response.

mod client_ip;
mod forwarding;
mod text;

pub(crate) use client_ip::ClientAddr;
pub(crate) use forwarding::Forwarding;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Hop-by-hop fields of RFC 9110 §7.6.1, plus the legacy ones proxies still see.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Index in [`HOP_BY_HOP`] of a field name (lower case, as `HeaderName::as_str` gives it);
/// `CLOSE` for a field named `close` (never hop-by-hop itself, but `Connection: close` names
/// it).
#[inline]
fn hop_index(name: &str) -> Option<u32> {
    Some(match name {
        "connection" => 0,
        "te" => 1,
        "trailer" => 2,
        "transfer-encoding" => 3,
        "upgrade" => 4,
        "proxy-authenticate" => 5,
        "proxy-authorization" => 6,
        "keep-alive" => 7,
        "proxy-connection" => 8,
        "close" => CLOSE,
        _ => return None,
    })
}

/// The bit [`hop_index`] gives a field named `close`.
const CLOSE: u32 = 9;

/// The name [`hop_index`] maps to `i`.
fn hop_name(i: u32) -> &'static str {
    usize::try_from(i)
        .ok()
        .and_then(|i| HOP_BY_HOP.get(i))
        .map_or("close", HeaderName::as_str)
}

/// Removes hop-by-hop fields, including every field the `Connection` header names.
///
/// Allocation-free. One pass over the fields (names matched as strings, no hashing) finds
/// which of them are present and reads the `Connection` values on the way; only the
/// fields present are removed. Most requests carry none; most HTTP/1.1 responses carry
/// only `Connection: keep-alive` or `Connection: close`, whose tokens name fields that are
/// either hop-by-hop already or absent: then nothing else is looked up. Otherwise each
/// `Connection` value is cloned (a reference count) before the fields it names are
/// removed.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let Scan { present, names } = scan(headers);
    if present == 0 {
        return;
    }
    // `HOP_BY_HOP[0]` is `Connection`: the fields it names go too.
    let close_present = present & (1 << CLOSE) != 0;
    if names.other || (names.close && close_present) {
        let mut i = 0;
        while let Some(value) = headers.get_all(header::CONNECTION).iter().nth(i).cloned() {
            i += 1;
            let Ok(names) = value.to_str() else {
                continue;
            };
            for name in connection_tokens(names) {
                // `Connection: connection` would remove the field being walked; it goes below.
                if !name.eq_ignore_ascii_case("connection") {
                    headers.remove(name);
                }
            }
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

/// What one pass over a header map found for [`strip_hop_by_hop`].
struct Scan {
    /// A bit per [`hop_index`] of the names present.
    present: u32,
    /// What the `Connection` values name.
    names: Named,
}

/// The kinds of field the `Connection` values name.
#[derive(Default)]
struct Named {
    /// A field that is neither hop-by-hop nor `close`.
    other: bool,
    /// A field called `close` (as `Connection: close` does).
    close: bool,
}

/// One pass over the fields of `headers` (every value, so that each `Connection` value is
/// read without a lookup).
fn scan(headers: &HeaderMap) -> Scan {
    let mut found = Scan {
        present: 0,
        names: Named::default(),
    };
    for (name, value) in headers {
        let Some(i) = hop_index(name.as_str()) else {
            continue;
        };
        found.present |= 1 << i;
        if i == 0 && !found.names.other {
            connection_names(value, &mut found.names);
        }
    }
    found
}

/// The field names a `Connection` value lists.
fn connection_tokens(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|n| !n.is_empty())
}

/// Adds what the `Connection` value `value` names to `named` (a value that is not text
/// names nothing).
fn connection_names(value: &HeaderValue, named: &mut Named) {
    let Ok(names) = value.to_str() else {
        return;
    };
    for name in connection_tokens(names) {
        // Tokens are usually lower case already (`keep-alive`, `close`).
        let index = hop_index(name)
            .or_else(|| (0..=CLOSE).find(|&i| hop_name(i).eq_ignore_ascii_case(name)));
        match index {
            Some(CLOSE) => named.close = true,
            Some(_) => {}
            None => named.other = true,
        }
    }
}

/// A bit per index (below 32) that `index_of` gives one of the names in `headers`, found in
/// one pass over its distinct names. `index_of` sees each name in lower case (a `match` on
/// string literals is cheaper than comparing `HeaderName`s one by one).
#[inline]
pub(crate) fn present(headers: &HeaderMap, index_of: impl Fn(&str) -> Option<u32>) -> u32 {
    let mut found = 0;
    for key in headers.keys() {
        if let Some(i) = index_of(key.as_str()) {
            found |= 1 << i;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use http::HeaderValue;

    use super::*;

    #[test]
    fn strips_standard_and_connection_named_fields() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, X-Secret, connection, ,"),
        );
        h.append("connection", HeaderValue::from_static("x-other"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("x-other", HeaderValue::from_static("1"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("upgrade", HeaderValue::from_static("h2c"));
        h.insert("proxy-connection", HeaderValue::from_static("close"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn the_index_matches_the_table() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_index(name.as_str()), Some(u32::try_from(i).unwrap()));
        }
        assert_eq!(hop_index("close"), Some(CLOSE));
        for i in 0..=CLOSE {
            assert_eq!(hop_index(hop_name(i)), Some(i));
        }
        assert_eq!(hop_index("x-kept"), None);
    }

    #[test]
    fn connection_naming_only_hop_by_hop_or_absent_fields_is_dropped_alone() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("Keep-Alive, close, TE"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn a_field_named_close_goes_when_connection_names_it() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close"));
        h.insert("close", HeaderValue::from_static("1"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn a_value_that_is_not_text_names_nothing() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_bytes(b"x-a\xff").unwrap());
        h.append("connection", HeaderValue::from_static("x-b"));
        h.insert("x-a", HeaderValue::from_static("1"));
        h.insert("x-b", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-a"));
    }
}
