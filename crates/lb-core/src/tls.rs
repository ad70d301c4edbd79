//! The TLS trust of connections to backends (feature `tls`), shared by lb-health's TLS
//! checks and lb-client: the `ring` provider, the root store (the system's through
//! `rustls-native-certs`, or given CA certificates), and the server-certificate verifiers
//! (webpki, webpki without the name check, or none at all).
//!
//! ```
//! use lb_core::tls;
//!
//! let provider = tls::provider();
//! let verifier = tls::accept_any(&provider);
//! let config = tls::client_config_builder(&provider)?
//!     .dangerous()
//!     .with_custom_certificate_verifier(verifier)
//!     .with_no_client_auth();
//! assert!(config.alpn_protocols.is_empty());
//! # Ok::<(), rustls::Error>(())
//! ```

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{VerifierBuilderError, WebPkiServerVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ConfigBuilder, DigitallySignedStruct, RootCertStore,
    SignatureScheme, WantsVerifier,
};

/// The crypto provider of connections to backends: `ring`.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// A client configuration builder on `provider` with its safe default protocol versions
/// (TLS 1.2 and 1.3), waiting for its verifier.
pub fn client_config_builder(
    provider: &Arc<CryptoProvider>,
) -> Result<ConfigBuilder<ClientConfig, WantsVerifier>, rustls::Error> {
    ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()
}

/// The system's root certificates (`rustls-native-certs`); the parts that cannot be read
/// are skipped (logged at debug level). Empty when the system has none usable.
pub fn system_roots() -> RootCertStore {
    let mut store = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::debug!(%error, "skipping part of the system root store");
    }
    store.add_parsable_certificates(found.certs);
    store
}

/// A root store of the given CA certificates, those rustls can use; empty when none is.
pub fn ca_roots(certs: impl IntoIterator<Item = CertificateDer<'static>>) -> RootCertStore {
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(certs);
    store
}

/// The webpki verifier of `roots` (chain, validity, signatures and, if `verify_hostname`,
/// the server name). Fails only on an empty `roots`.
pub fn webpki_verifier(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
    verify_hostname: bool,
) -> Result<Arc<dyn ServerCertVerifier>, VerifierBuilderError> {
    let webpki =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    Ok(if verify_hostname {
        webpki
    } else {
        Arc::new(IgnoreHostname(webpki))
    })
}

/// The verifier that accepts any certificate ([`AcceptAnyCertificate`]) on `provider`.
pub fn accept_any(provider: &Arc<CryptoProvider>) -> Arc<dyn ServerCertVerifier> {
    Arc::new(AcceptAnyCertificate::new(provider.clone()))
}

/// A rustls verifier that accepts any server certificate (chain, validity and name are not
/// checked) while still checking the handshake signatures with `provider`'s algorithms.
///
/// It is what lb-health's `TlsConfigBuilder::dangerous_accept_any_certificate` and the
/// proxy's `tls.verify = false` use: for backends with self-signed certificates, never by
/// default.
#[derive(Debug)]
pub struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl AcceptAnyCertificate {
    /// The verifier, checking signatures with `provider`.
    pub fn new(provider: Arc<CryptoProvider>) -> Self {
        Self(provider)
    }
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
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
