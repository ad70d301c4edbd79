//! TLS termination on listeners: the rustls server configuration of a `[[server.tls]]`
//! table.
//!
//! Crate-internal API: [`server_config`] turns a [`TlsListenerConfig`] into an
//! `Arc<rustls::ServerConfig>` (the listener wraps it in a `tokio_rustls::TlsAcceptor`),
//! or a [`TlsError`] whose [`part`](TlsError::part) says which key is at fault. The
//! configuration loader calls it to validate (`lb-proxy -t`); the proxy calls it again when
//! it starts.
//!
//! Choices:
//! - **ring provider, rustls defaults**: only TLS 1.2 and 1.3, forward-secret AEAD suites,
//!   no renegotiation, no compression; session resumption with rustls' defaults (a
//!   256-entry session cache and TLS 1.3 tickets).
//! - **Certificates by SNI** ([`sni::SniResolver`]): a certificate is served for the DNS
//!   names in its subject alternative names, or for its `sni` list when given. A name
//!   listed in `sni` wins over the same name found in another certificate; among `sni`
//!   lists a name may appear once; among certificate names the first certificate listed
//!   wins. Exact names beat wildcards, and the default certificate answers the rest.
//! - **ALPN** follows the configured order (the server's preference); the listener serves
//!   HTTP/2 when `h2` was agreed and HTTP/1.1 otherwise (including clients that send no
//!   ALPN).

mod certs;
mod error;
mod sni;

pub(crate) use error::Part;
pub use error::TlsError;

use std::sync::Arc;

use rustls::crypto::ring;
use rustls::server::WebPkiClientVerifier;
use rustls::version::{TLS12, TLS13};
use rustls::{ServerConfig, SupportedProtocolVersion};

use crate::config::{TlsListenerConfig, TlsVersion};
use sni::SniResolver;

/// The rustls configuration of `listener`: certificates loaded (paths as they stand in
/// the config, already resolved against the configuration file by the loader), keys
/// checked against their certificates, names indexed, versions, ALPN and client
/// authentication set.
pub(crate) fn server_config(listener: &TlsListenerConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(ring::default_provider());
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
            &provider,
        )?);
    }

    let mut resolver = SniResolver::default();
    // Names given in `sni` first: they are the operator's explicit choice.
    for (index, (c, l)) in listener.certificates.iter().zip(&loaded).enumerate() {
        for name in c.get_ref().sni.iter().flatten() {
            if let Err(first) = resolver.insert(name, &l.key, index) {
                return Err(TlsError::DuplicateName {
                    index,
                    first,
                    name: name.as_str().to_owned(),
                });
            }
        }
    }
    // Then the certificates' own names; a name claimed already stays where it is.
    for (index, (c, l)) in listener.certificates.iter().zip(&loaded).enumerate() {
        let c = c.get_ref();
        let names = match &c.sni {
            Some(sni) => sni.len(),
            None => {
                for name in &l.names {
                    let _ = resolver.insert(name, &l.key, index);
                }
                l.names.len()
            }
        };
        if names == 0 && default != Some(index) {
            return Err(TlsError::NoName {
                index,
                path: c.cert.get_ref().clone(),
            });
        }
    }
    if let Some(l) = default.and_then(|d| loaded.get(d)) {
        resolver.set_default(l.key.clone());
    }

    let versions: &[&SupportedProtocolVersion] = match listener.min_version {
        TlsVersion::Tls12 => &[&TLS13, &TLS12],
        TlsVersion::Tls13 => &[&TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(TlsError::Rustls)?;
    let builder = match &listener.client_auth {
        None => builder.with_no_client_auth(),
        Some(auth) => {
            let path = auth.ca_file.get_ref();
            let roots = certs::roots(path)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth.required {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier.build().map_err(|source| TlsError::BadCa {
                path: path.clone(),
                source,
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = listener
        .alpn
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
    Ok(Arc::new(config))
}
