//! Where a backend listens: an IP socket address or a Unix domain socket path.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// The address the proxy connects to for one backend.
///
/// IP addresses order before Unix paths; both order naturally within their kind, so a
/// [`BackendSet`](crate::BackendSet) has one stable order in every process.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BackendAddr {
    /// A TCP endpoint.
    Inet(SocketAddr),
    /// A Unix domain socket (written `unix:/path` in configuration, as nginx does).
    Unix(Arc<Path>),
}

impl BackendAddr {
    /// The TCP socket address, if this is one.
    pub fn as_inet(&self) -> Option<SocketAddr> {
        match self {
            Self::Inet(addr) => Some(*addr),
            Self::Unix(_) => None,
        }
    }

    /// The socket path, if this is a Unix domain socket.
    pub fn as_unix(&self) -> Option<&Path> {
        match self {
            Self::Inet(_) => None,
            Self::Unix(path) => Some(path),
        }
    }
}

impl From<SocketAddr> for BackendAddr {
    fn from(addr: SocketAddr) -> Self {
        Self::Inet(addr)
    }
}

impl fmt::Display for BackendAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inet(addr) => addr.fmt(f),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}
