//! Which part of a request the hashing algorithms hash (`hash_key = "..."`).
//!
//! The extraction borrows from the request and never allocates. Values are taken raw, as
//! nginx's `$request_uri`, `$arg_NAME` and `$cookie_NAME` are (not percent-decoded), and
//! query and cookie names match case-insensitively, as nginx does, so a mapping migrated
//! from `hash $arg_user consistent` stays the same. A missing header, cookie or parameter
//! hashes the empty key.

use std::net::IpAddr;

use http::header::COOKIE;
use http::request::Parts;

pub use crate::config::{HashKey, InvalidHashKey};

/// The extraction of a [`HashKey`] from a request (a trait: the type is the configuration's).
pub trait Extract {
    /// The key bytes of a request from `client`; `ip` is scratch space for the address.
    ///
    /// Public only for the fuzz target `fuzz/fuzz_targets/hash_key.rs` (the proxy reaches
    /// it through an upstream's selection); not a stable API.
    #[doc(hidden)]
    fn extract<'r>(&self, parts: &'r Parts, client: IpAddr, ip: &'r mut [u8; 16]) -> &'r [u8];
}

impl Extract for HashKey {
    #[inline]
    fn extract<'r>(&self, parts: &'r Parts, client: IpAddr, ip: &'r mut [u8; 16]) -> &'r [u8] {
        match self {
            Self::Uri => parts
                .uri
                .path_and_query()
                .map_or(b"/", |pq| pq.as_str().as_bytes()),
            Self::Path => parts.uri.path().as_bytes(),
            Self::Header(name) => parts.headers.get(name).map_or(b"", |v| v.as_bytes()),
            Self::Query(name) => parts
                .uri
                .query()
                .and_then(|q| find_pair(q, '&', name))
                .unwrap_or(b""),
            Self::Cookie(name) => parts
                .headers
                .get_all(COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(|v| find_pair(v, ';', name))
                .unwrap_or(b""),
            Self::ClientIp => client_ip(client, ip),
        }
    }
}

/// The address octets of `client`, written into `buf`.
#[inline]
pub(crate) fn client_ip(client: IpAddr, buf: &mut [u8; 16]) -> &[u8] {
    match client {
        IpAddr::V4(v4) => {
            buf[..4].copy_from_slice(&v4.octets());
            &buf[..4]
        }
        IpAddr::V6(v6) => {
            *buf = v6.octets();
            &buf[..]
        }
    }
}

/// The raw value of `name` in `name=value` pairs separated by `sep` (case-insensitive name).
fn find_pair<'a>(text: &'a str, sep: char, name: &str) -> Option<&'a [u8]> {
    text.split(sep).find_map(|pair| {
        let (k, v) = pair.trim_start().split_once('=')?;
        k.eq_ignore_ascii_case(name).then_some(v.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::get(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn key(k: &str, p: &Parts) -> Vec<u8> {
        let mut ip = [0u8; 16];
        k.parse::<HashKey>()
            .unwrap()
            .extract(p, "192.0.2.9".parse().unwrap(), &mut ip)
            .to_vec()
    }

    #[test]
    fn every_form_extracts_raw_values() {
        let p = parts(
            "/a/b?x=1&User=al%20ice&y",
            &[
                ("x-tenant", "t7"),
                ("cookie", "a=1; Sess=abc"),
                ("cookie", "z=9"),
            ],
        );
        assert_eq!(key("uri", &p), b"/a/b?x=1&User=al%20ice&y");
        assert_eq!(key("path", &p), b"/a/b");
        assert_eq!(
            key("query:user", &p),
            b"al%20ice",
            "raw and case-insensitive, as $arg_"
        );
        assert_eq!(key("query:nope", &p), b"");
        assert_eq!(key("header:X-Tenant", &p), b"t7");
        assert_eq!(key("cookie:sess", &p), b"abc");
        assert_eq!(key("cookie:z", &p), b"9", "every Cookie header is searched");
        assert_eq!(key("client_ip", &p), [192, 0, 2, 9]);
    }
}
