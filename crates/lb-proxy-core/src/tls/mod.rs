//! TLS termination on listeners: the rustls server configuration of a `[[server.tls]]`
//! table.
//!
//! Crate-internal API: `server_config` turns a [`TlsListenerConfig`] into an
//! `Arc<rustls::ServerConfig>` (the listener wraps it in a `tokio_rustls::TlsAcceptor`),
//! or a [`TlsError`]. The checks (files, keys, names, versions, client CA) are the
//! configuration's ([`check_listener`], which the loader runs for `lb-proxy -t`); this
//! module runs them again when the proxy starts and builds rustls' configuration from
//! their result.
//!
//! Choices:
//! - **ring provider, rustls defaults**: only TLS 1.2 and 1.3, forward-secret AEAD suites,
//!   no renegotiation, no compression; session resumption with rustls' defaults (a
//!   256-entry session cache and TLS 1.3 tickets).
//! - **Certificates by SNI** (`sni::SniResolver`): a certificate is served for the DNS
//!   names in its subject alternative names, or for its `sni` list when given. A name
//!   listed in `sni` wins over the same name found in another certificate; among `sni`
//!   lists a name may appear once; among certificate names the first certificate listed
//!   wins. Exact names beat wildcards, and the default certificate answers the rest.
//! - **ALPN** follows the configured order (the server's preference); the listener serves
//!   HTTP/2 when `h2` was agreed and HTTP/1.1 otherwise (including clients that send no
//!   ALPN).

mod sni;

pub use crate::config::TlsError;

use std::sync::Arc;

use rustls::crypto::ring;
use rustls::ServerConfig;

use crate::config::{check_listener, TlsListenerConfig};
use sni::SniResolver;

/// The rustls configuration of `listener`: certificates loaded (paths as they stand in
/// the config, already resolved against the configuration file by the loader), keys
/// checked against their certificates, names indexed, versions, ALPN and client
/// authentication set.
pub(crate) fn server_config(listener: &TlsListenerConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(ring::default_provider());
    let checked = check_listener(listener, &provider)?;

    let mut resolver = SniResolver::default();
    for (name, index) in &checked.names {
        if let Some(key) = checked.certificates.get(*index) {
            // Each name is listed once, so none is refused here.
            let _ = resolver.insert(name, key, *index);
        }
    }
    if let Some(key) = checked.default.and_then(|d| checked.certificates.get(d)) {
        resolver.set_default(key.clone());
    }

    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(checked.versions)
        .map_err(TlsError::Rustls)?;
    let builder = match checked.client_verifier {
        None => builder.with_no_client_auth(),
        Some(verifier) => builder.with_client_cert_verifier(verifier),
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = listener
        .alpn
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
    Ok(Arc::new(config))
}
