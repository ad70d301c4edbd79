//! The client options of an upstream: its `[upstreams.NAME]` connection keys (as loaded,
//! TLS files included) translated to the client's [`PeerOptions`].

use crate::client::{Alpn, ClientCert, PeerOptions, TlsOptions};
use crate::config::{self, UpstreamConfig, UpstreamTlsConfig};

/// The client options `upstream`'s keys describe (TLS files as loaded with the
/// configuration).
// `PeerOptions` and `TlsOptions` are `#[non_exhaustive]`: outside the client's crate they
// are only built by setting fields on their defaults.
#[allow(clippy::field_reassign_with_default)]
pub fn peer_options(upstream: &UpstreamConfig) -> PeerOptions {
    let mut options = PeerOptions::default();
    options.connect_timeout = upstream.connect_timeout.get();
    options.total_connection_timeout = upstream
        .total_connection_timeout
        .as_ref()
        .map(|t| t.get_ref().get());
    options.read_timeout = Some(upstream.read_timeout.get());
    options.write_timeout = Some(upstream.write_timeout.get());
    options.idle_timeout = Some(upstream.idle_timeout.get());
    options.pool_max_idle = usize::try_from(upstream.pool_max_idle).unwrap_or(usize::MAX);
    options.bind = upstream.bind.as_ref().map(|b| *b.get_ref());
    options.tls = upstream.tls.as_ref().map(|t| tls_options(t.get_ref()));
    options
}

#[allow(clippy::field_reassign_with_default)]
fn tls_options(tls: &UpstreamTlsConfig) -> TlsOptions {
    let mut options = TlsOptions::default();
    options.sni = tls.sni.as_ref().map(|s| s.get_ref().clone());
    options.verify = tls.verify.as_ref().is_none_or(|v| *v.get_ref());
    options.verify_hostname = tls.verify_hostname.as_ref().is_none_or(|v| *v.get_ref());
    options.ca = tls.ca().map(<[_]>::to_vec);
    options.client_cert = tls.client_cert().and_then(|c| {
        // The loader checked this pair the same way, so this does not fail.
        ClientCert::new(c.chain.clone(), c.key.clone_key())
            .inspect_err(|error| tracing::error!(%error, "client certificate refused"))
            .ok()
    });
    if !tls.alpn_protocols().is_empty() {
        options.alpn = tls.alpn_protocols().iter().map(|&p| alpn(p)).collect();
    }
    options
}

/// The client's protocol for the configuration's.
fn alpn(protocol: config::Alpn) -> Alpn {
    match protocol {
        config::Alpn::H2 => Alpn::H2,
        config::Alpn::Http11 => Alpn::Http1,
    }
}
