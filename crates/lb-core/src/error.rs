//! Errors of the core types.

/// Why a backend could not be built from its description.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The address text is neither `ip:port`, `[ipv6]:port`, `host:port` nor `unix:/path`.
    #[error("invalid backend address `{addr}`: {reason}")]
    InvalidAddress {
        /// The text as given.
        addr: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A host name did not resolve.
    #[error("cannot resolve backend `{addr}`")]
    Resolve {
        /// The text as given.
        addr: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// A host name resolved to no address at all.
    #[error("backend `{addr}` resolved to no address")]
    NoAddress {
        /// The text as given.
        addr: String,
    },
    /// A weight of zero was given; weights start at 1.
    #[error("backend `{addr}` has weight 0; weights start at 1")]
    ZeroWeight {
        /// The backend's address text.
        addr: String,
    },
}
