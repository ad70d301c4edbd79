//! The rustls client configuration built from [`TlsOptions`].
//!
//! The trust (the `ring` provider, the system store through `rustls-native-certs` when no
//! CA is given, and the verifiers behind `verify = false` and `verify_hostname = false`)
//! is [`lb_core::tls`], shared with lb-health's TLS checks. TLS 1.2 and 1.3, and rustls'
//! default in-memory session resumption (a reverse proxy reconnects to the same few
//! backends).

use std::sync::Arc;

use lb_core::tls;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::sign::SingleCertAndKey;
use rustls::RootCertStore;
use tokio_rustls::TlsConnector;

use super::TlsOptions;

/// Why an [`UpstreamClient`](super::UpstreamClient) could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientBuildError {
    /// No CA was given and the system store holds no usable root certificate.
    #[error("no trusted root certificate found in the system store (set a CA file)")]
    NoSystemRoots,
    /// The given CA certificates include none rustls can use.
    #[error("none of the CA certificates is usable")]
    NoUsableCa,
    /// `sni` is neither a DNS name nor an IP address.
    #[error("`{0}` is not a valid server name")]
    ServerName(String),
    /// rustls refused the settings.
    #[error("invalid TLS settings")]
    Rustls(#[source] rustls::Error),
}

/// What the connector needs for TLS: the rustls connector and the fixed server name.
#[derive(Clone)]
pub(crate) struct TlsSetup {
    pub(crate) connector: TlsConnector,
    /// `sni` from the options: used for every backend when set.
    pub(crate) server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for TlsSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSetup")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// Builds the rustls configuration for `options` (loads the system roots if needed).
pub(crate) fn build(options: &TlsOptions) -> Result<TlsSetup, ClientBuildError> {
    let provider = tls::provider();
    let builder = tls::client_config_builder(&provider).map_err(ClientBuildError::Rustls)?;
    let verifier = if options.verify {
        tls::webpki_verifier(
            roots(options.ca.as_deref())?,
            &provider,
            options.verify_hostname,
        )
        .map_err(|e| ClientBuildError::Rustls(rustls::Error::General(e.to_string())))?
    } else {
        tls::accept_any(&provider)
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &options.client_cert {
        Some(cert) => {
            builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(cert.0.clone())))
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = options
        .alpn
        .iter()
        .map(|p| p.as_str().as_bytes().to_vec())
        .collect();
    let server_name = match &options.sni {
        Some(name) => Some(
            ServerName::try_from(name.clone())
                .map_err(|_| ClientBuildError::ServerName(name.clone()))?,
        ),
        None => None,
    };
    Ok(TlsSetup {
        connector: TlsConnector::from(Arc::new(config)),
        server_name,
    })
}

/// The given CA certificates, or the system's; an error when none is usable.
fn roots(ca: Option<&[CertificateDer<'static>]>) -> Result<RootCertStore, ClientBuildError> {
    let (store, none) = match ca {
        Some(certs) => (
            tls::ca_roots(certs.iter().cloned()),
            ClientBuildError::NoUsableCa,
        ),
        None => (tls::system_roots(), ClientBuildError::NoSystemRoots),
    };
    if store.is_empty() {
        return Err(none);
    }
    Ok(store)
}
