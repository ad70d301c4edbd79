//! Why a TLS listener's settings cannot be used, and which part of its table is at fault.

use std::path::PathBuf;

use rustls::pki_types::pem;

/// The part of a `[[server.tls]]` table an error is about, so that configuration errors
/// point at the right key and line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    /// `certificates[i].cert`.
    Cert(usize),
    /// `certificates[i].key`.
    Key(usize),
    /// The `certificates[i]` entry as a whole (its names).
    Certificate(usize),
    /// `default_certificate`.
    Default,
    /// `client_auth.ca_file`.
    ClientCa,
    /// The listener as a whole.
    Listener,
}

/// A TLS listener whose certificates, keys or settings cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate file could not be read or is not PEM.
    #[error("cannot read certificate file {}", path.display())]
    ReadCert {
        /// Index in `certificates`.
        index: usize,
        /// The file.
        path: PathBuf,
        /// The reader's error.
        #[source]
        source: pem::Error,
    },
    /// A certificate file held no certificate.
    #[error("no PEM certificate in {}", path.display())]
    NoCert {
        /// Index in `certificates`.
        index: usize,
        /// The file.
        path: PathBuf,
    },
    /// The first certificate of a file is not a valid X.509 certificate.
    #[error("the certificate in {} is not a valid X.509 certificate ({reason})", path.display())]
    BadCert {
        /// Index in `certificates`.
        index: usize,
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// A private key file could not be read, is not PEM, or holds no key.
    #[error("cannot read a private key from {}", path.display())]
    ReadKey {
        /// Index in `certificates`.
        index: usize,
        /// The file.
        path: PathBuf,
        /// The reader's error.
        #[source]
        source: pem::Error,
    },
    /// rustls cannot use the private key (an unsupported algorithm or a malformed key).
    #[error("the private key in {} is not usable", path.display())]
    BadKey {
        /// Index in `certificates`.
        index: usize,
        /// The file.
        path: PathBuf,
        /// rustls' error.
        #[source]
        source: rustls::Error,
    },
    /// The private key is not the one of the certificate.
    #[error("the private key in {} does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch {
        /// Index in `certificates`.
        index: usize,
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// A certificate no client could select: no DNS name in its subject alternative names,
    /// no `sni`, and not the default.
    #[error(
        "the certificate in {} has no DNS name in its subject alternative names: \
         list its names in `sni`, or make it the `default_certificate`",
        path.display()
    )]
    NoName {
        /// Index in `certificates`.
        index: usize,
        /// The certificate file.
        path: PathBuf,
    },
    /// Two certificates list the same name in `sni`.
    #[error("{name} is already in the `sni` of certificates[{first}]")]
    DuplicateName {
        /// Index of the second certificate.
        index: usize,
        /// Index of the first.
        first: usize,
        /// The name.
        name: String,
    },
    /// `default_certificate` is not an index into `certificates`.
    #[error("index {index} is out of range: `certificates` has {count} (numbered from 0)")]
    NoDefault {
        /// The configured index.
        index: usize,
        /// How many certificates there are.
        count: usize,
    },
    /// The client CA file could not be read or is not PEM.
    #[error("cannot read CA certificates from {}", path.display())]
    ReadCa {
        /// The file.
        path: PathBuf,
        /// The reader's error.
        #[source]
        source: pem::Error,
    },
    /// rustls refused the client CA certificates.
    #[error("the CA certificates in {} are not usable", path.display())]
    BadCa {
        /// The file.
        path: PathBuf,
        /// rustls' error.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    /// rustls refused the protocol settings.
    #[error("invalid TLS settings")]
    Rustls(#[source] rustls::Error),
}

impl TlsError {
    /// Which part of the listener's table is at fault.
    pub(crate) fn part(&self) -> Part {
        match self {
            Self::ReadCert { index, .. }
            | Self::NoCert { index, .. }
            | Self::BadCert { index, .. } => Part::Cert(*index),
            Self::ReadKey { index, .. }
            | Self::BadKey { index, .. }
            | Self::KeyMismatch { index, .. } => Part::Key(*index),
            Self::NoName { index, .. } | Self::DuplicateName { index, .. } => {
                Part::Certificate(*index)
            }
            Self::NoDefault { .. } => Part::Default,
            Self::ReadCa { .. } | Self::BadCa { .. } => Part::ClientCa,
            Self::Rustls(_) => Part::Listener,
        }
    }
}
