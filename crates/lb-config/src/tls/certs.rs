//! Loading certificates, private keys and CA files from PEM, and reading the DNS names a
//! certificate is valid for.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, RootCertStore};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use super::{ServerNamePattern, TlsError};

/// A certificate chain with its signing key, and the names from its subject alternative
/// names.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// What rustls serves.
    pub(crate) key: Arc<CertifiedKey>,
    /// The valid DNS names (and wildcards) among the leaf's subject alternative names.
    pub(crate) names: Vec<ServerNamePattern>,
}

/// Reads certificate `index` of a listener: the chain in `cert`, the key in `key`. The key
/// must match the leaf certificate.
pub(crate) fn load(
    index: usize,
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<Loaded, TlsError> {
    let read_cert = |source| TlsError::ReadCert {
        index,
        path: cert.to_owned(),
        source,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(read_cert)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_cert)?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCert {
            index,
            path: cert.to_owned(),
        });
    };
    let names = san_names(leaf).map_err(|reason| TlsError::BadCert {
        index,
        path: cert.to_owned(),
        reason,
    })?;
    let private = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::ReadKey {
        index,
        path: key.to_owned(),
        source,
    })?;
    let certified = CertifiedKey::from_der(chain, private, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => TlsError::KeyMismatch {
            index,
            cert: cert.to_owned(),
            key: key.to_owned(),
        },
        source => TlsError::BadKey {
            index,
            path: key.to_owned(),
            source,
        },
    })?;
    Ok(Loaded {
        key: Arc::new(certified),
        names,
    })
}

/// The CA certificates in `path`, for verifying client certificates.
pub(crate) fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let read = |source| TlsError::ReadCa {
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    let mut roots = RootCertStore::empty();
    // Unparsable entries are skipped here; an empty store is refused by the verifier
    // builder, which names the file.
    roots.add_parsable_certificates(certs);
    Ok(roots)
}

/// The DNS names (lower case) in the certificate's subject alternative names; invalid
/// entries are skipped. A certificate that is expired or not yet valid is logged.
fn san_names(der: &CertificateDer<'_>) -> Result<Vec<ServerNamePattern>, String> {
    let (_, cert) =
        x509_parser::certificate::X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    if !cert.validity().is_valid() {
        tracing::warn!(
            subject = %cert.subject(),
            not_before = %cert.validity().not_before,
            not_after = %cert.validity().not_after,
            "listener certificate is expired or not yet valid; clients will refuse it"
        );
    }
    let san = cert.subject_alternative_name().map_err(|e| e.to_string())?;
    Ok(san
        .into_iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => ServerNamePattern::parse(dns).ok(),
            _ => None,
        })
        .collect())
}
