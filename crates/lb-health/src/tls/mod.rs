//! TLS client settings shared by the TLS and HTTPS checks (feature `tls`): [`TlsConfig`]
//! and its builder, the [`TlsHealthCheck`], and the classification of rustls errors into
//! a [`TlsFailureKind`].
//!
//! [`TlsConfig`] wraps one `rustls::ClientConfig`, built once and shared by every check
//! of every backend. Choices made here, and why:
//!
//! - **Crypto provider: `ring`.** It builds from C and assembly with only `cc`, in a few
//!   seconds; `aws-lc-rs` needs CMake and takes much longer to compile, and a health
//!   check needs no FIPS mode or post-quantum key exchange.
//! - **Roots: the system store (`rustls-native-certs`)** rather than a compiled-in Mozilla
//!   bundle (`webpki-roots`). Backends behind a load balancer usually carry certificates of
//!   an internal CA, which operators add to the system store (`update-ca-certificates`);
//!   HAProxy's `ca-file @system-ca` does the same. For a private CA without touching the
//!   system, give the CA bundle with [`TlsConfigBuilder::ca_file`] (nginx's
//!   `proxy_ssl_trusted_certificate`).
//! - **No session resumption.** A resumed session skips certificate verification, so an
//!   expired or replaced certificate would go unnoticed. Every check does a full handshake.
//! - **Server name.** By default the backend's configured host (`api.internal` of
//!   `api.internal:443`) is sent as SNI and verified; a backend written as an IP literal is
//!   verified against its IP address and sends no SNI (RFC 6066 forbids IP literals in
//!   SNI); a Unix socket backend uses `localhost`. [`TlsConfigBuilder::server_name`]
//!   overrides all of this, like nginx's `proxy_ssl_name` or HAProxy's `check-sni`.
//! - **Verification off** exists for test rigs and is named for what it is:
//!   [`TlsConfigBuilder::dangerous_accept_any_certificate`] (HAProxy's `verify none`).

mod builder;
mod check;

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;

use lb_core::{Backend, BackendAddr};
use rustls::pki_types::ServerName;
use rustls::{CertificateError, ClientConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::conn::host_of;
use crate::{CheckFailure, TlsFailureKind};

pub use builder::{TlsConfigBuilder, TlsConfigError};
// One copy of the verifier, shared with lb-client (`lb_core::tls`).
pub use check::TlsHealthCheck;
pub use lb_core::tls::AcceptAnyCertificate;

// The mapping from rustls errors lives with rustls, in this feature; the kind itself is
// always compiled (`tls_failure.rs`).
impl TlsFailureKind {
    /// Classifies an error of a TLS stream (rustls errors travel inside `io::Error`).
    pub fn classify(err: &io::Error) -> Self {
        let Some(tls) = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
        else {
            return Self::Handshake;
        };
        match tls {
            rustls::Error::InvalidCertificate(cert) => match cert {
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => Self::WrongName,
                CertificateError::UnknownIssuer => Self::UntrustedIssuer,
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    Self::Expired
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    Self::NotYetValid
                }
                _ => Self::BadCertificate,
            },
            rustls::Error::AlertReceived(_) => Self::Rejected,
            _ => Self::Handshake,
        }
    }
}

/// TLS client settings for health checks; cheap to clone (one `Arc`).
///
/// ```
/// use lb_health::TlsConfig;
///
/// let tls = TlsConfig::builder()
///     .dangerous_accept_any_certificate()
///     .alpn(["http/1.1"])
///     .build()?;
/// # drop(tls);
/// # Ok::<(), lb_health::TlsConfigError>(())
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    pub(crate) connector: TlsConnector,
    pub(crate) server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// A builder verifying against the system roots, no client certificate, no ALPN, the
    /// backend's host as SNI.
    pub fn builder() -> TlsConfigBuilder {
        TlsConfigBuilder::new()
    }

    /// Uses a rustls configuration built elsewhere, as is (resumption included, if on).
    pub fn from_rustls(config: Arc<ClientConfig>) -> Self {
        Self {
            connector: TlsConnector::from(config),
            server_name: None,
        }
    }

    /// The name verified (and sent as SNI) for `backend`.
    pub fn server_name_for(&self, backend: &Backend) -> ServerName<'static> {
        if let Some(name) = &self.server_name {
            return name.clone();
        }
        let host = match backend.addr() {
            BackendAddr::Unix(_) => "localhost",
            BackendAddr::Inet(_) => host_of(backend.name()),
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            return ServerName::IpAddress(ip.into());
        }
        match ServerName::try_from(host.to_owned()) {
            Ok(name) => name,
            // A configured name that is no valid DNS name: verify against the address.
            Err(_) => match backend.addr().as_inet() {
                Some(addr) => ServerName::IpAddress(addr.ip().into()),
                None => ServerName::IpAddress(IpAddr::from([127, 0, 0, 1]).into()),
            },
        }
    }

    /// Runs the client handshake over `io`; a failure carries its [`TlsFailureKind`].
    pub(crate) async fn handshake<IO>(
        &self,
        io: IO,
        backend: &Backend,
    ) -> Result<TlsStream<IO>, CheckFailure>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        self.connector
            .connect(self.server_name_for(backend), io)
            .await
            .map_err(tls_failure)
    }
}

/// Wraps an error of a TLS stream into [`CheckFailure::Tls`] with its kind.
pub(crate) fn tls_failure(source: io::Error) -> CheckFailure {
    CheckFailure::Tls {
        kind: TlsFailureKind::classify(&source),
        source,
    }
}

/// The TLS failure in the source chain of `error` (an HTTPS exchange's error, where a
/// TLS 1.3 server's refusal of our client certificate surfaces), if there is one.
#[cfg(feature = "http")]
pub(crate) fn tls_failure_within(
    error: &(dyn std::error::Error + 'static),
) -> Option<CheckFailure> {
    let mut cause = error.source();
    while let Some(err) = cause {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Some(tls_failure(io::Error::new(io.kind(), tls.clone())));
            }
        }
        cause = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TlsConfigError;

    #[test]
    fn server_name_follows_the_configured_host() {
        let tls = TlsConfig::builder()
            .dangerous_accept_any_certificate()
            .build()
            .unwrap();
        let named = Backend::parse("127.0.0.1:443")
            .unwrap()
            .with_name("api.internal:443");
        assert_eq!(
            tls.server_name_for(&named),
            ServerName::try_from("api.internal").unwrap()
        );
        let ip = Backend::parse("[::1]:443").unwrap();
        assert!(matches!(tls.server_name_for(&ip), ServerName::IpAddress(_)));
        let fixed = TlsConfig::builder()
            .dangerous_accept_any_certificate()
            .server_name("other.example")
            .build()
            .unwrap();
        assert_eq!(
            fixed.server_name_for(&ip),
            ServerName::try_from("other.example").unwrap()
        );
    }

    #[test]
    fn bad_pem_is_a_build_error_naming_the_file() {
        let err = TlsConfig::builder()
            .ca_file("/nonexistent/ca.pem")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        let err = TlsConfig::builder()
            .ca_pem(b"not pem".to_vec())
            .build()
            .unwrap_err();
        assert!(matches!(err, TlsConfigError::NoCertificate { .. }), "{err}");
    }
}
