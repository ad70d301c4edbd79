//! `hash_key = "..."`: which part of a request the hashing algorithms hash. The type and its
//! parsing; the proxy extracts the key bytes from a request.

use std::fmt;
use std::str::FromStr;

use http::header::HeaderName;
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

#[cfg(test)]
mod tests {
    use super::*;

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
