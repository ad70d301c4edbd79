//! Why the proxy could not start ([`StartError`]) and why a reload was refused
//! ([`ReloadError`]): below every module that starts something, so that none of them
//! imports the top of the process (`server`, `reload`) for its error.

use std::io;
use std::net::SocketAddr;

use crate::access_log::AccessLogError;
use crate::config::ConfigError;
use crate::discovery::SourceError;
use crate::listener::ListenError;
use crate::router::RouterError;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The certificates or settings of `[[server.tls]]` table `index` cannot be used.
    #[error("TLS listener {index}")]
    Tls {
        /// Which `[[server.tls]]` table (from 0).
        index: usize,
        /// Why.
        #[source]
        source: crate::tls::TlsError,
    },
    /// An upstream's discovery source could not be built.
    #[error(transparent)]
    Upstream(#[from] SourceError),
    /// The routes could not be built (a configuration made in code naming an unknown
    /// upstream, or with two path conditions on one route).
    #[error(transparent)]
    Routes(#[from] RouterError),
    /// The access log file cannot be opened.
    #[error(transparent)]
    AccessLog(#[from] AccessLogError),
    /// The proxy is shutting down or draining after a hand-over (a reload came too late).
    #[error("the proxy is stopping")]
    Stopping,
}

impl From<ListenError> for StartError {
    fn from(error: ListenError) -> Self {
        match error {
            ListenError::Listen { addr, source } => Self::Listen { addr, source },
            ListenError::Tls { index, source } => Self::Tls { index, source },
        }
    }
}

/// Why a reload was refused; the running configuration is unchanged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The proxy was not started from a file ([`Proxy::config_file`](crate::Proxy::config_file)).
    #[error("no configuration file to read again (the proxy was configured in code)")]
    NoFile,
    /// The file cannot be read or is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The configuration is valid but cannot be applied (a listener cannot be bound, a
    /// certificate or discovery source cannot be loaded, ...).
    #[error(transparent)]
    Start(#[from] StartError),
}
