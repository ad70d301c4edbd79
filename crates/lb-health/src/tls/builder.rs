//! Building a [`TlsConfig`]: roots, client certificate, ALPN, server name.
//!
//! Everything that can be wrong in TLS settings (an unreadable CA file, a key that does
//! not match its certificate, an empty system store) is reported once, by
//! [`TlsConfigBuilder::build`], as a [`TlsConfigError`] naming the file, instead of
//! failing every check later. The choices behind the defaults (ring, system roots, no
//! resumption) are explained in the `tls` module.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lb_core::tls;
use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::TlsConnector;

use super::TlsConfig;

/// Why a [`TlsConfig`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read {what} from {path}")]
    Pem {
        /// What the file should hold (`CA certificates`, `client certificate`...).
        what: &'static str,
        /// The file, or `<memory>` for PEM given as bytes.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A PEM file held no certificate.
    #[error("no certificate in {path}")]
    NoCertificate {
        /// The file, or `<memory>`.
        path: PathBuf,
    },
    /// The system store had no usable root certificate.
    #[error("no trusted root certificate found in the system store")]
    NoSystemRoots,
    /// rustls refused the settings (for example a key that does not match the certificate).
    #[error("invalid TLS settings")]
    Rustls(#[source] rustls::Error),
}

#[derive(Clone, Debug)]
pub(crate) enum Roots {
    System,
    CaFile(PathBuf),
    CaPem(Vec<u8>),
    AcceptAny,
}

#[derive(Clone)]
enum Pem {
    File(PathBuf),
    Memory(Vec<u8>),
}

impl Pem {
    fn path(&self) -> PathBuf {
        match self {
            Self::File(p) => p.clone(),
            Self::Memory(_) => PathBuf::from("<memory>"),
        }
    }

    fn certs(&self, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
        let err = |source| TlsConfigError::Pem {
            what,
            path: self.path(),
            source,
        };
        let certs: Vec<_> = match self {
            Self::File(p) => CertificateDer::pem_file_iter(p)
                .map_err(err)?
                .collect::<Result<_, _>>(),
            Self::Memory(b) => CertificateDer::pem_slice_iter(b).collect::<Result<_, _>>(),
        }
        .map_err(err)?;
        if certs.is_empty() {
            return Err(TlsConfigError::NoCertificate { path: self.path() });
        }
        Ok(certs)
    }

    fn key(&self) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
        match self {
            Self::File(p) => PrivateKeyDer::from_pem_file(p),
            Self::Memory(b) => PrivateKeyDer::from_pem_slice(b),
        }
        .map_err(|source| TlsConfigError::Pem {
            what: "private key",
            path: self.path(),
            source,
        })
    }
}

/// Builds a [`TlsConfig`]; see [`TlsConfig::builder`].
#[derive(Clone)]
#[must_use]
pub struct TlsConfigBuilder {
    roots: Roots,
    client_auth: Option<(Pem, Pem)>,
    alpn: Vec<Vec<u8>>,
    server_name: Option<String>,
    send_sni: bool,
}

impl fmt::Debug for TlsConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfigBuilder")
            .field("roots", &self.roots)
            .field("client_auth", &self.client_auth.is_some())
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsConfigBuilder {
    pub(crate) fn new() -> Self {
        Self {
            roots: Roots::System,
            client_auth: None,
            alpn: Vec::new(),
            server_name: None,
            send_sni: true,
        }
    }

    /// Verifies against the system's root certificates (the default).
    pub fn system_roots(mut self) -> Self {
        self.roots = Roots::System;
        self
    }

    /// Verifies against the CA certificates of a PEM bundle file instead of the system's.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.roots = Roots::CaFile(path.into());
        self
    }

    /// Verifies against the CA certificates of PEM text instead of the system's.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.roots = Roots::CaPem(pem.into());
        self
    }

    /// Accepts any certificate: no chain, name or validity check (the handshake
    /// signatures are still checked). Only for test rigs and self-signed backends you
    /// cannot otherwise trust; HAProxy calls this `verify none`.
    pub fn dangerous_accept_any_certificate(mut self) -> Self {
        self.roots = Roots::AcceptAny;
        self
    }

    /// Presents a client certificate chain and key (mTLS), both PEM files.
    pub fn client_cert_files(mut self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        let (cert, key) = (cert.as_ref().to_owned(), key.as_ref().to_owned());
        self.client_auth = Some((Pem::File(cert), Pem::File(key)));
        self
    }

    /// Presents a client certificate chain and key (mTLS), both PEM text.
    pub fn client_cert_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.client_auth = Some((Pem::Memory(cert.into()), Pem::Memory(key.into())));
        self
    }

    /// Offers these ALPN protocols (e.g. `["h2", "http/1.1"]`), in order of preference.
    pub fn alpn<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<Vec<u8>>,
    {
        self.alpn = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Sends and verifies this name (a DNS name or an IP) for every backend, instead of
    /// the backend's configured host.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Whether to send SNI at all (default `true`). The name is verified either way.
    pub fn send_sni(mut self, send: bool) -> Self {
        self.send_sni = send;
        self
    }

    /// Loads the certificates and builds the rustls configuration.
    pub fn build(self) -> Result<TlsConfig, TlsConfigError> {
        let provider = tls::provider();
        let builder = tls::client_config_builder(&provider).map_err(TlsConfigError::Rustls)?;
        let verifier = match &self.roots {
            Roots::AcceptAny => tls::accept_any(&provider),
            roots => {
                let store = match roots {
                    Roots::CaFile(p) => {
                        tls::ca_roots(Pem::File(p.clone()).certs("CA certificates")?)
                    }
                    Roots::CaPem(b) => {
                        tls::ca_roots(Pem::Memory(b.clone()).certs("CA certificates")?)
                    }
                    _ => tls::system_roots(),
                };
                if store.is_empty() {
                    return Err(match roots {
                        Roots::CaFile(p) => TlsConfigError::NoCertificate { path: p.clone() },
                        Roots::CaPem(_) => TlsConfigError::NoCertificate {
                            path: PathBuf::from("<memory>"),
                        },
                        _ => TlsConfigError::NoSystemRoots,
                    });
                }
                tls::webpki_verifier(store, &provider, true)
                    .map_err(|e| TlsConfigError::Rustls(rustls::Error::General(e.to_string())))?
            }
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match &self.client_auth {
            Some((cert, key)) => builder
                .with_client_auth_cert(cert.certs("client certificate")?, key.key()?)
                .map_err(TlsConfigError::Rustls)?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn;
        config.resumption = Resumption::disabled();
        config.enable_sni = self.send_sni;
        let server_name = match self.server_name {
            Some(name) => Some(ServerName::try_from(name).map_err(|_| {
                TlsConfigError::Rustls(rustls::Error::General("invalid server name".into()))
            })?),
            None => None,
        };
        Ok(TlsConfig {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }
}
