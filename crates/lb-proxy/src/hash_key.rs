//! Which part of a request the hashing algorithms hash (`hash_key = "..."`).
//!
//! The extraction borrows from the request and never allocates. Values are taken raw, as
//! nginx's `$request_uri`, `$arg_NAME` and `$cookie_NAME` are (not percent-decoded), and
//! query and cookie names match case-insensitively, as nginx does, so a mapping migrated
//! from `hash $arg_user consistent` stays the same. A missing header, cookie or parameter
//! hashes the empty key.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use http::header::{HeaderName, COOKIE};
use http::request::Parts;
use serde::de::{self, Deserializer};
use serde::Deserialize;

/// The request property a hashing algorithm maps to a backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashKey {
    /// The request target: path and query, as sent (nginx `$request_uri`).
    Uri,
    /// The path only.
    Path,
    /// The value of a request header (the first one when repeated).
    Header(HeaderName),
    /// The value of a cookie (nginx `$cookie_NAME`).
    Cookie(Box<str>),
    /// The value of a query parameter (nginx `$arg_NAME`).
    Query(Box<str>),
    /// The client address: 4 octets for IPv4, 16 for IPv6.
    ClientIp,
}

/// A `hash_key` that is none of the accepted forms.
#[derive(Debug, thiserror::Error)]
#[error("invalid hash key `{0}`: expected \"uri\", \"path\", \"client_ip\", \"header:NAME\", \"cookie:NAME\" or \"query:NAME\"")]
pub struct InvalidHashKey(String);

impl FromStr for HashKey {
    type Err = InvalidHashKey;

    fn from_str(s: &str) -> Result<Self, InvalidHashKey> {
        let bad = || InvalidHashKey(s.to_owned());
        match s {
            "uri" => return Ok(Self::Uri),
            "path" => return Ok(Self::Path),
            "client_ip" => return Ok(Self::ClientIp),
            _ => {}
        }
        let (kind, name) = s.split_once(':').ok_or_else(bad)?;
        if name.is_empty() {
            return Err(bad());
        }
        match kind {
            "header" => HeaderName::from_bytes(name.as_bytes())
                .map(Self::Header)
                .map_err(|_| bad()),
            "cookie" => Ok(Self::Cookie(name.into())),
            "query" => Ok(Self::Query(name.into())),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uri => f.write_str("uri"),
            Self::Path => f.write_str("path"),
            Self::ClientIp => f.write_str("client_ip"),
            Self::Header(h) => write!(f, "header:{h}"),
            Self::Cookie(c) => write!(f, "cookie:{c}"),
            Self::Query(q) => write!(f, "query:{q}"),
        }
    }
}

impl<'de> Deserialize<'de> for HashKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

impl HashKey {
    /// The key bytes of a request from `client`; `ip` is scratch space for the address.
    ///
    /// Public only for the fuzz target `fuzz/fuzz_targets/hash_key.rs` (the proxy reaches
    /// it through an upstream's selection); not a stable API.
    #[doc(hidden)]
    #[inline]
    pub fn extract<'r>(&self, parts: &'r Parts, client: IpAddr, ip: &'r mut [u8; 16]) -> &'r [u8] {
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

    #[test]
    fn bad_forms_are_refused() {
        for bad in ["", "url", "header:", "header:bad name", "body:x", "query"] {
            assert!(bad.parse::<HashKey>().is_err(), "{bad}");
        }
        assert_eq!(
            "cookie:s".parse::<HashKey>().unwrap().to_string(),
            "cookie:s"
        );
    }
}
