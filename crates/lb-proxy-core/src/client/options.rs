//! [`PeerOptions`] and [`TlsOptions`]: how an [`UpstreamClient`](super::UpstreamClient)
//! talks to backends (Pingora's `PeerOptions`), with defaults that suit a reverse proxy.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::ring;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// How to connect to backends and how long to wait for them. One value configures one
/// [`UpstreamClient`](super::UpstreamClient); every backend it talks to shares it.
///
/// Start from [`PeerOptions::default`] and set the fields that differ:
///
/// ```
/// use std::time::Duration;
/// use lb_proxy::client::{PeerOptions, TlsOptions};
///
/// let mut options = PeerOptions::default();
/// options.read_timeout = Some(Duration::from_secs(5));
/// options.tls = Some(TlsOptions::default()); // HTTPS, verified against the system roots
/// assert_eq!(options.connect_timeout, Duration::from_secs(3));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PeerOptions {
    /// Longest TCP (or Unix socket) connect. Default 3 s.
    pub connect_timeout: Duration,
    /// Longest TCP connect plus TLS handshake. `None` (the default) gives the handshake
    /// its own `connect_timeout` after the TCP connect.
    pub total_connection_timeout: Option<Duration>,
    /// Longest wait for the response head once the request was sent (restarted whenever a
    /// chunk of the request body goes out), and between two reads of the response body.
    /// `None` waits forever. Default 60 s, as nginx's `proxy_read_timeout`.
    pub read_timeout: Option<Duration>,
    /// Longest time a write to a backend connection may make no progress. `None` waits
    /// forever. Default 60 s, as nginx's `proxy_send_timeout`.
    pub write_timeout: Option<Duration>,
    /// An idle pooled connection is closed after this long. `None` keeps idle connections
    /// until the backend closes them. Default 60 s.
    pub idle_timeout: Option<Duration>,
    /// Idle keep-alive connections kept per backend; 0 disables reuse. Default 64.
    pub pool_max_idle: usize,
    /// The local address to connect from (port chosen by the system), like nginx's
    /// `proxy_bind`. `None` lets the system choose.
    pub bind: Option<IpAddr>,
    /// Speak TLS (HTTPS) to backends; `None` is plain HTTP.
    pub tls: Option<TlsOptions>,
}

impl Default for PeerOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            total_connection_timeout: None,
            read_timeout: Some(Duration::from_secs(60)),
            write_timeout: Some(Duration::from_secs(60)),
            idle_timeout: Some(Duration::from_secs(60)),
            pool_max_idle: 64,
            bind: None,
            tls: None,
        }
    }
}

/// A protocol offered in the TLS handshake (ALPN).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Alpn {
    /// `h2`: HTTP/2. When the backend picks it, requests to it use HTTP/2.
    H2,
    /// `http/1.1`.
    Http1,
}

impl Alpn {
    /// The protocol identifier sent on the wire (`h2`, `http/1.1`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::H2 => "h2",
            Self::Http1 => "http/1.1",
        }
    }

    /// The protocol for its identifier, if it is one this client speaks.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "h2" => Some(Self::H2),
            "http/1.1" => Some(Self::Http1),
            _ => None,
        }
    }
}

/// TLS to backends. The default verifies the certificate chain against the system's root
/// certificates and the name against the backend's host, offers only `http/1.1`, and
/// presents no client certificate.
#[derive(Clone)]
#[non_exhaustive]
pub struct TlsOptions {
    /// The server name sent (SNI) and verified, for every backend. `None` (the default)
    /// uses the host of each backend's configured name when it is a DNS name; a backend
    /// configured by IP address sends no SNI and is verified against that address, and a
    /// Unix socket backend uses `localhost`.
    pub sni: Option<String>,
    /// Verify the backend's certificate (default `true`). `false` accepts any certificate:
    /// only for test rigs.
    pub verify: bool,
    /// Verify that the certificate is valid for the server name (default `true`). `false`
    /// still verifies the chain, expiry and signatures.
    pub verify_hostname: bool,
    /// Trust these CA certificates instead of the system's (see [`load_certs`]).
    pub ca: Option<Vec<CertificateDer<'static>>>,
    /// Present this certificate (mTLS).
    pub client_cert: Option<ClientCert>,
    /// Protocols to offer, in order of preference. Default `[Http1]`; add [`Alpn::H2`] to
    /// speak HTTP/2 to backends that agree.
    pub alpn: Vec<Alpn>,
}

impl Default for TlsOptions {
    fn default() -> Self {
        Self {
            sni: None,
            verify: true,
            verify_hostname: true,
            ca: None,
            client_cert: None,
            alpn: vec![Alpn::Http1],
        }
    }
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("sni", &self.sni)
            .field("verify", &self.verify)
            .field("verify_hostname", &self.verify_hostname)
            .field("ca", &self.ca.as_ref().map(Vec::len))
            .field("client_cert", &self.client_cert.is_some())
            .field("alpn", &self.alpn)
            .finish()
    }
}

/// A client certificate chain with its private key, checked to belong together.
#[derive(Clone)]
pub struct ClientCert(pub(crate) Arc<CertifiedKey>);

impl fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCert")
            .field("chain", &self.0.cert.len())
            .finish_non_exhaustive()
    }
}

impl ClientCert {
    /// The chain (leaf first) and its key; fails when the key is not usable or does not
    /// match the leaf certificate.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, rustls::Error> {
        if chain.is_empty() {
            return Err(rustls::Error::General("empty certificate chain".into()));
        }
        CertifiedKey::from_der(chain, key, &ring::default_provider()).map(|k| Self(Arc::new(k)))
    }
}

// The PEM files named in the configuration are read by lb-config; the client reads the
// same kinds of file with the same code.
pub use crate::config::pem::{load_certs, load_key, PemError};
