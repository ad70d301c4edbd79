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

use http::header::{self, HeaderMap, HeaderName};

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

/// Removes hop-by-hop fields, including every field the `Connection` header names.
///
/// Allocation-free: each `Connection` value is cloned (a reference count) before the
/// fields it names are removed. One pass over the names (compared by their interned
/// representation, no hashing) finds which of the fields are present; only those are
/// removed. Most requests carry none; most HTTP/1.1 responses carry only `Connection`.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let present = present(headers, &HOP_BY_HOP);
    if present == 0 {
        return;
    }
    // `HOP_BY_HOP[0]` is `Connection`: the fields it names go too.
    if present & 1 != 0 {
        let mut i = 0;
        while let Some(value) = headers.get_all(header::CONNECTION).iter().nth(i).cloned() {
            i += 1;
            let Ok(names) = value.to_str() else {
                continue;
            };
            for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
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

/// A bit per entry of `names` (at most 32) that `headers` contains, found in one pass over
/// its distinct names.
pub(crate) fn present(headers: &HeaderMap, names: &[HeaderName]) -> u32 {
    let mut found = 0;
    for key in headers.keys() {
        if let Some(i) = names.iter().position(|n| n == key) {
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
}
