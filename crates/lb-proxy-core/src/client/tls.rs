//! The rustls client configuration built from [`TlsOptions`], and the verifiers behind
//! `verify = false` and `verify_hostname = false`.
//!
//! Choices: the `ring` provider (as the health checks), the system store through
//! `rustls-native-certs` when no CA is given, TLS 1.2 and 1.3, and rustls' default
//! in-memory session resumption (a reverse proxy reconnects to the same few backends).

use std::sync::Arc;

use lb_health::AcceptAnyCertificate;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::ring;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::SingleCertAndKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
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
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(ClientBuildError::Rustls)?;
    let verifier: Arc<dyn ServerCertVerifier> = if options.verify {
        let roots = roots(options.ca.as_deref())?;
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| ClientBuildError::Rustls(rustls::Error::General(e.to_string())))?;
        if options.verify_hostname {
            webpki
        } else {
            Arc::new(IgnoreHostname(webpki))
        }
    } else {
        Arc::new(AcceptAnyCertificate::new(provider))
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

fn roots(ca: Option<&[CertificateDer<'static>]>) -> Result<RootCertStore, ClientBuildError> {
    let mut store = RootCertStore::empty();
    match ca {
        Some(certs) => {
            store.add_parsable_certificates(certs.iter().cloned());
            if store.is_empty() {
                return Err(ClientBuildError::NoUsableCa);
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::debug!(%error, "skipping part of the system root store");
            }
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err(ClientBuildError::NoSystemRoots);
            }
        }
    }
    Ok(store)
}

/// Verifies the chain, validity and signatures, but accepts a certificate issued for
/// another name (`verify_hostname = false`).
#[derive(Debug)]
struct IgnoreHostname(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for IgnoreHostname {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain before the name, so a name error means the chain passed.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
