//! Host conditions: `host = "api.example.com"` or `host = ["*.example.com", ...]`.
//!
//! Patterns are lowercased when loaded; the request's host is compared without allocating
//! (ASCII case-insensitive), after its port, any userinfo and one trailing dot are removed.

use std::fmt;
use std::str::FromStr;

use http::header::HOST;
use http::request::Parts;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

/// One host pattern: an exact name or a wildcard suffix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// `"api.example.com"`: that host only (lowercase).
    Exact(Box<str>),
    /// `"*.example.com"`: any host ending in the stored suffix (`".example.com"`,
    /// lowercase) with at least one character before it; `example.com` itself does not match.
    Suffix(Box<str>),
}

/// A host pattern that cannot match anything sensible.
#[derive(Debug, thiserror::Error)]
#[error("invalid host pattern `{pattern}`: {reason}")]
pub struct InvalidHost {
    pattern: String,
    reason: &'static str,
}

/// `host = "..."` or `host = ["...", ...]`: the request matches if its host matches any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostList(pub Vec<HostPattern>);

impl FromStr for HostPattern {
    type Err = InvalidHost;

    fn from_str(s: &str) -> Result<Self, InvalidHost> {
        let bad = |reason| InvalidHost {
            pattern: s.to_owned(),
            reason,
        };
        let (wildcard, name) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        if s == "*" {
            return Err(bad("leave `host` out to match every host"));
        }
        if name.is_empty() {
            return Err(bad("empty host name"));
        }
        if name.contains('*') {
            return Err(bad(
                "`*` is only allowed as a whole first label, as in `*.example.com`",
            ));
        }
        if name.starts_with('.') || name.contains("..") {
            return Err(bad("empty label"));
        }
        if name.bytes().any(|b| {
            b.is_ascii_whitespace() || b.is_ascii_control() || matches!(b, b'/' | b'@' | b'?')
        }) {
            return Err(bad("a host name has no spaces, `/`, `@` or `?`"));
        }
        let bracketed = name.starts_with('[') && name.ends_with(']');
        if name.contains(':') && !bracketed {
            return Err(bad(
                "a host pattern has no port (the request's port is ignored); write IPv6 as [::1]",
            ));
        }
        if wildcard && bracketed {
            return Err(bad("an IPv6 address cannot have a wildcard"));
        }
        let lower = name.to_ascii_lowercase();
        Ok(if wildcard {
            Self::Suffix(format!(".{lower}").into())
        } else {
            Self::Exact(lower.into())
        })
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name),
            Self::Suffix(suffix) => write!(f, "*{suffix}"),
        }
    }
}

impl<'de> Deserialize<'de> for HostPattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for HostList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrMany;

        impl<'de> Visitor<'de> for OneOrMany {
            type Value = HostList;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a host pattern or a list of them")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<HostList, E> {
                v.parse()
                    .map(|p| HostList(vec![p]))
                    .map_err(de::Error::custom)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<HostList, A::Error> {
                let mut patterns = Vec::new();
                while let Some(p) = seq.next_element::<HostPattern>()? {
                    patterns.push(p);
                }
                if patterns.is_empty() {
                    return Err(de::Error::custom(
                        "an empty list matches no request; leave `host` out to match every host",
                    ));
                }
                Ok(HostList(patterns))
            }
        }

        deserializer.deserialize_any(OneOrMany)
    }
}

impl HostPattern {
    /// True if `host` (without port, any case) matches.
    #[inline]
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(name) => host.eq_ignore_ascii_case(name),
            Self::Suffix(suffix) => {
                let (host, suffix) = (host.as_bytes(), suffix.as_bytes());
                host.len() > suffix.len()
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }
}

impl HostList {
    /// True if `host` matches any pattern.
    #[inline]
    pub fn matches(&self, host: &str) -> bool {
        self.0.iter().any(|p| p.matches(host))
    }
}

/// The host a request is for, without port, userinfo or trailing dot: the URI authority
/// when the request has one (HTTP/2 `:authority`, or an HTTP/1.1 absolute-form target,
/// which RFC 9112 §3.2.2 says takes precedence), else the `Host` header.
///
/// `None`, so that no host condition matches, when there is neither, when `Host` is
/// repeated or not text, or when `Host` names another host than the authority (RFC 9113
/// §8.3.1 calls that malformed; the backend would see one host and the router another).
#[inline]
pub fn request_host(parts: &Parts) -> Option<&str> {
    let mut fields = parts.headers.get_all(HOST).iter();
    let header = match (fields.next(), fields.next()) {
        (None, _) => None,
        (Some(v), None) => Some(bare_host(v.to_str().ok()?)),
        (Some(_), Some(_)) => return None,
    };
    match (parts.uri.authority().map(|a| bare_host(a.as_str())), header) {
        (Some(authority), Some(header)) => {
            authority.eq_ignore_ascii_case(header).then_some(authority)
        }
        (authority, header) => authority.or(header),
    }
}

/// `raw` (an authority) without userinfo, port and one trailing dot.
#[inline]
fn bare_host(raw: &str) -> &str {
    let raw = raw.rsplit_once('@').map_or(raw, |(_, host)| host);
    let host = if raw.starts_with('[') {
        raw.find(']').map_or(raw, |end| &raw[..=end])
    } else {
        raw.split_once(':').map_or(raw, |(host, _)| host)
    };
    host.strip_suffix('.').unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> HostPattern {
        s.parse().unwrap()
    }

    fn parts(uri: &str, hosts: &[&str]) -> Parts {
        let mut b = http::Request::get(uri);
        for h in hosts {
            b = b.header(HOST, *h);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn exact_names_ignore_case() {
        assert!(p("api.example.com").matches("api.example.com"));
        assert!(p("API.Example.com").matches("api.EXAMPLE.com"));
        assert!(!p("api.example.com").matches("api.example.co"));
        assert!(!p("api.example.com").matches("x.api.example.com"));
        assert!(p("[::1]").matches("[::1]"));
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let w = p("*.Example.com");
        assert_eq!(w, HostPattern::Suffix(".example.com".into()));
        assert!(w.matches("a.example.com"));
        assert!(w.matches("a.b.example.com"));
        assert!(w.matches("A.EXAMPLE.COM"));
        assert!(!w.matches("example.com"));
        assert!(!w.matches(".example.com"), "nothing before the dot");
        assert!(!w.matches("aexample.com"));
        assert!(!w.matches("a.example.com.evil"));
        assert!(!w.matches(""));
        // Multi-byte text never splits a character: the comparison is on bytes.
        assert!(!w.matches("é.example.co"));
        assert_eq!(w.to_string(), "*.example.com");
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in [
            "",
            "*",
            "*.",
            "a.*.com",
            "**.com",
            "*example.com",
            "example.com:8080",
            "a b",
            "a/b",
            "a..b",
            ".a",
            "*.[::1]",
            "::1",
        ] {
            assert!(bad.parse::<HostPattern>().is_err(), "{bad:?} accepted");
        }
        assert_eq!(p("example.com."), p("example.com"), "trailing dot dropped");
    }

    #[test]
    fn the_request_host_drops_port_userinfo_and_trailing_dot() {
        let host = |uri: &str, hosts: &[&str]| request_host(&parts(uri, hosts)).map(str::to_owned);
        assert_eq!(
            host("/", &["a.example.com:8080"]).as_deref(),
            Some("a.example.com")
        );
        assert_eq!(
            host("/", &["A.Example.COM."]).as_deref(),
            Some("A.Example.COM")
        );
        assert_eq!(host("/", &["[::1]:8080"]).as_deref(), Some("[::1]"));
        assert_eq!(host("/", &["[::1]"]).as_deref(), Some("[::1]"));
        assert_eq!(host("/", &["plain"]).as_deref(), Some("plain"));
        assert_eq!(host("/", &[]), None);
        assert_eq!(host("/", &["a", "b"]), None, "repeated Host is ambiguous");
        // HTTP/2 (:authority) and absolute-form targets: the URI authority, which a Host
        // header, if any, must agree with (ports aside).
        assert_eq!(
            host("http://user@api.example.com:8443/x", &[]).as_deref(),
            Some("api.example.com")
        );
        assert_eq!(
            host("http://api.example.com:8443/x", &["API.example.com"]).as_deref(),
            Some("api.example.com")
        );
        assert_eq!(
            host("http://api.example.com/x", &["admin.example.com"]),
            None
        );
        assert_eq!(host("http://api.example.com/x", &["a", "a"]), None);
        assert_eq!(
            host("http://[2001:db8::1]/", &[]).as_deref(),
            Some("[2001:db8::1]")
        );
    }

    #[test]
    fn lists_deserialize_from_one_or_many() {
        #[derive(Deserialize)]
        struct T {
            host: HostList,
        }
        let one: T = toml::from_str(r#"host = "a.com""#).unwrap();
        assert_eq!(one.host.0.len(), 1);
        let many: T = toml::from_str(r#"host = ["a.com", "*.b.com"]"#).unwrap();
        assert!(many.host.matches("x.b.com") && many.host.matches("a.com"));
        assert!(!many.host.matches("b.com"));
        let empty = toml::from_str::<T>("host = []").err().unwrap().to_string();
        assert!(empty.contains("empty list"), "{empty}");
        assert!(toml::from_str::<T>("host = 3").is_err());
    }
}
