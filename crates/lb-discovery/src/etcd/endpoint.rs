//! An etcd client URL (`http://host:port`), checked once when discovery is built.
//!
//! The JSON gateway is plain HTTP/1.1 on the client port. `https://` is refused with a
//! clear error rather than sent in cleartext: TLS to etcd is not supported yet. A URL
//! without a port gets etcd's client port, 2379.

use std::fmt;

use http::HeaderValue;

/// etcd's registered client port, used when a URL names none.
const DEFAULT_PORT: u16 = 2379;

/// Where one cluster member's gateway listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Endpoint {
    /// The host name or address, as written (brackets removed from an IPv6 literal).
    pub(super) host: String,
    /// The port.
    pub(super) port: u16,
    /// `host:port` as written in the URL.
    pub(super) authority: String,
    /// The `Host` header of every request: the authority.
    pub(super) host_header: HeaderValue,
}

/// Why a URL is not a usable endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EndpointError {
    /// Not `http://` (`https://` included: TLS to etcd is not supported yet).
    Scheme,
    /// No host after the scheme, or more than a host and a port (a path, user info).
    NoHost,
    /// The port is not a number from 1 to 65535.
    Port,
}

impl EndpointError {
    /// The problem, for [`EtcdError::InvalidEndpoint`](super::EtcdError::InvalidEndpoint).
    pub(super) fn reason(self) -> &'static str {
        match self {
            Self::Scheme => "expected http://host:port (TLS to etcd is not supported yet)",
            Self::NoHost => "expected http://host:port, with no path",
            Self::Port => "the port is not a number from 1 to 65535",
        }
    }
}

impl Endpoint {
    /// Parses `http://host[:port][/]`.
    pub(super) fn parse(url: &str) -> Result<Self, EndpointError> {
        let rest = url.strip_prefix("http://").ok_or(EndpointError::Scheme)?;
        let authority = rest.trim_end_matches('/');
        let host_header = HeaderValue::from_str(authority).map_err(|_| EndpointError::NoHost)?;
        if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
            return Err(EndpointError::NoHost);
        }
        let (host, port) = match authority.strip_prefix('[') {
            // [v6] or [v6]:port
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or(EndpointError::NoHost)?;
                match after {
                    "" => (host, None),
                    _ => (
                        host,
                        Some(after.strip_prefix(':').ok_or(EndpointError::Port)?),
                    ),
                }
            }
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        if host.is_empty() {
            return Err(EndpointError::NoHost);
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or(EndpointError::Port)?,
        };
        Ok(Self {
            host: host.to_owned(),
            port,
            authority: authority.to_owned(),
            host_header,
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}", self.authority)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_parsed() {
        let e = Endpoint::parse("http://127.0.0.1:2379").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 2379));
        assert_eq!(e.to_string(), "http://127.0.0.1:2379");
        let e = Endpoint::parse("http://etcd-0.etcd/").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.authority.as_str()),
            ("etcd-0.etcd", 2379, "etcd-0.etcd")
        );
        let e = Endpoint::parse("http://[::1]:23790").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 23790));
        assert_eq!(Endpoint::parse("http://[::1]").unwrap().port, 2379);
    }

    #[test]
    fn bad_urls_say_why() {
        for (url, why) in [
            ("https://e:2379", EndpointError::Scheme),
            ("e:2379", EndpointError::Scheme),
            ("http://", EndpointError::NoHost),
            ("http://:2379", EndpointError::NoHost),
            ("http://e:2379/v3", EndpointError::NoHost),
            ("http://e:0", EndpointError::Port),
            ("http://e:99999", EndpointError::Port),
            ("http://[::1]x", EndpointError::Port),
        ] {
            assert_eq!(Endpoint::parse(url), Err(why), "{url}");
        }
    }
}
