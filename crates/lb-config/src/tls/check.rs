//! Checking a `[[server.tls]]` listener as a whole: every certificate loaded and matched
//! with its key, the names each is served for, the protocol versions, the client CA.
//!
//! The result holds what a rustls server configuration is made of, so the proxy builds
//! its listener from exactly what was checked.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::version::{TLS12, TLS13};
use rustls::{ServerConfig, SupportedProtocolVersion};

use super::certs;
use super::{ServerNamePattern, TlsError, TlsListenerConfig, TlsVersion};

/// `min_version = "1.2"`.
static TLS12_AND_13: [&SupportedProtocolVersion; 2] = [&TLS13, &TLS12];
/// `min_version = "1.3"`.
static TLS13_ONLY: [&SupportedProtocolVersion; 1] = [&TLS13];

/// A listener's TLS settings, checked and loaded.
#[derive(Debug)]
pub struct CheckedListener {
    /// One per entry of `certificates`, in order: the chain with its signing key.
    pub certificates: Vec<Arc<CertifiedKey>>,
    /// Every server name with the index of the certificate served for it, each name once:
    /// names given in `sni` first, then the certificates' own names.
    pub names: Vec<(ServerNamePattern, usize)>,
    /// The index of the certificate served when no name matches.
    pub default: Option<usize>,
    /// The protocol versions accepted.
    pub versions: &'static [&'static SupportedProtocolVersion],
    /// The verifier of client certificates, with `client_auth`.
    pub client_verifier: Option<Arc<dyn ClientCertVerifier>>,
}

/// Loads and checks `listener` (paths as they stand in the config, already resolved
/// against the configuration file by the loader) with `provider`'s algorithms.
pub fn check_listener(
    listener: &TlsListenerConfig,
    provider: &Arc<CryptoProvider>,
) -> Result<CheckedListener, TlsError> {
    let count = listener.certificates.len();
    let default = listener.default_certificate.as_ref().map(|d| *d.get_ref());
    if let Some(index) = default.filter(|&d| d >= count) {
        return Err(TlsError::NoDefault { index, count });
    }
    let mut loaded = Vec::with_capacity(count);
    for (index, c) in listener.certificates.iter().enumerate() {
        let c = c.get_ref();
        loaded.push(certs::load(
            index,
            c.cert.get_ref(),
            c.key.get_ref(),
            provider,
        )?);
    }

    let mut names = Vec::new();
    let mut claimed = HashMap::new();
    // Names given in `sni` first: they are the operator's explicit choice.
    for (index, c) in listener.certificates.iter().enumerate() {
        for name in c.get_ref().sni.iter().flatten() {
            if let Some(&first) = claimed.get(name.as_str()) {
                return Err(TlsError::DuplicateName {
                    index,
                    first,
                    name: name.as_str().to_owned(),
                });
            }
            claimed.insert(name.as_str().to_owned(), index);
            names.push((name.clone(), index));
        }
    }
    // Then the certificates' own names; a name claimed already stays where it is.
    for (index, (c, l)) in listener.certificates.iter().zip(&loaded).enumerate() {
        let c = c.get_ref();
        let count = match &c.sni {
            Some(sni) => sni.len(),
            None => {
                for name in &l.names {
                    if !claimed.contains_key(name.as_str()) {
                        claimed.insert(name.as_str().to_owned(), index);
                        names.push((name.clone(), index));
                    }
                }
                l.names.len()
            }
        };
        if count == 0 && default != Some(index) {
            return Err(TlsError::NoName {
                index,
                path: c.cert.get_ref().clone(),
            });
        }
    }

    let versions: &'static [&'static SupportedProtocolVersion] = match listener.min_version {
        TlsVersion::Tls12 => &TLS12_AND_13,
        TlsVersion::Tls13 => &TLS13_ONLY,
    };
    ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(TlsError::Rustls)?;
    let client_verifier = match &listener.client_auth {
        None => None,
        Some(auth) => {
            let path = auth.ca_file.get_ref();
            let roots = certs::roots(path)?;
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = if auth.required {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier.build().map_err(|source| TlsError::BadCa {
                path: path.clone(),
                source,
            })?;
            Some(verifier)
        }
    };
    Ok(CheckedListener {
        certificates: loaded.into_iter().map(|l| l.key).collect(),
        names,
        default,
        versions,
        client_verifier,
    })
}
