//! The connection keys of `[upstreams.NAME]` (timeouts, pool, `bind`, `tls`) and their
//! checks. The proxy translates them to its client's options.
//!
//! TLS files are read while the configuration loads (relative paths resolved against the
//! configuration file's directory, see [`paths`](super::paths)), so `lb-proxy -t` reports
//! a missing CA file or a key that does not match its certificate at its line.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lb_core::BackendAddr;
use rustls::crypto::ring;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use serde::Deserialize;
use toml::Spanned;

use super::error_chain;
use super::pem;
use super::{paths, Alpn, ConfigError, PositiveDuration, UpstreamConfig};

/// `tls = { ... }` of an upstream: HTTPS to its backends.
///
/// ```toml
/// tls = { sni = "api.example.com", ca_file = "ca.pem", alpn = ["h2", "http/1.1"] }
/// ```
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// The server name sent and verified; default the host of each backend's configured
    /// name when it is a DNS name (none for an IP address).
    #[serde(default)]
    pub sni: Option<Spanned<String>>,
    /// Verify the backend's certificate (default true).
    #[serde(default)]
    pub verify: Option<Spanned<bool>>,
    /// Verify that the certificate is valid for the server name (default true).
    #[serde(default)]
    pub verify_hostname: Option<Spanned<bool>>,
    /// PEM file of the CA certificates to trust instead of the system's.
    #[serde(default)]
    pub ca_file: Option<Spanned<PathBuf>>,
    /// PEM file of the client certificate chain (mTLS), with `client_key`.
    #[serde(default)]
    pub client_cert: Option<Spanned<PathBuf>>,
    /// PEM file of the client certificate's private key.
    #[serde(default)]
    pub client_key: Option<Spanned<PathBuf>>,
    /// Protocols offered through ALPN: `"h2"` and/or `"http/1.1"` (default `["http/1.1"]`).
    #[serde(default)]
    pub alpn: Option<Spanned<Vec<String>>>,
    /// The files' contents, read by `load`.
    #[serde(skip)]
    loaded: Loaded,
}

#[derive(Clone, Default)]
struct Loaded {
    ca: Option<Vec<CertificateDer<'static>>>,
    client_cert: Option<ClientCertFiles>,
    alpn: Vec<Alpn>,
}

/// A client certificate chain and its private key, as read from `client_cert` and
/// `client_key` (checked to belong together while loading).
pub struct ClientCertFiles {
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key of the leaf.
    pub key: PrivateKeyDer<'static>,
}

impl Clone for ClientCertFiles {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for ClientCertFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertFiles")
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for UpstreamTlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTlsConfig")
            .field("sni", &self.sni)
            .field("verify", &self.verify)
            .field("verify_hostname", &self.verify_hostname)
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .field("client_key", &self.client_key)
            .field("alpn", &self.alpn)
            .finish_non_exhaustive()
    }
}

pub(super) fn default_read_timeout() -> PositiveDuration {
    PositiveDuration(Duration::from_secs(60))
}
pub(super) fn default_write_timeout() -> PositiveDuration {
    PositiveDuration(Duration::from_secs(60))
}
pub(super) fn default_idle_timeout() -> PositiveDuration {
    PositiveDuration(Duration::from_secs(60))
}
pub(super) fn default_pool_max_idle() -> u32 {
    64
}

impl UpstreamTlsConfig {
    /// The CA certificates read from `ca_file`, when it is set (else the system's roots
    /// are meant).
    pub fn ca(&self) -> Option<&[CertificateDer<'static>]> {
        self.loaded.ca.as_deref()
    }

    /// The client certificate and key read from `client_cert` and `client_key` (mTLS).
    pub fn client_cert(&self) -> Option<&ClientCertFiles> {
        self.loaded.client_cert.as_ref()
    }

    /// The protocols of `alpn`, in order; empty when it is not set (the default applies).
    pub fn alpn_protocols(&self) -> &[Alpn] {
        &self.loaded.alpn
    }
}

/// Checks the connection keys of every upstream and reads their TLS files.
pub(super) fn load(
    upstreams: &mut BTreeMap<String, UpstreamConfig>,
    text: &str,
    origin: &Path,
) -> Result<(), ConfigError> {
    for (name, u) in upstreams.iter_mut() {
        let at = |offset: usize, key: &str, message: String| {
            ConfigError::at(
                origin,
                text,
                offset,
                format!("upstreams.{name}.{key}"),
                message,
            )
        };
        if let Some(total) = &u.total_connection_timeout {
            if u.tls.is_none() {
                return Err(at(
                    total.span().start,
                    "total_connection_timeout",
                    "applies to TLS upstreams only (it bounds connect plus handshake); \
                     connect_timeout bounds a plain connect"
                        .into(),
                ));
            }
            if total.get_ref().get() < u.connect_timeout.get() {
                return Err(at(
                    total.span().start,
                    "total_connection_timeout",
                    format!(
                        "{:?} is shorter than connect_timeout ({:?}), which it includes",
                        total.get_ref().get(),
                        u.connect_timeout.get()
                    ),
                ));
            }
        }
        if let Some(bind) = &u.bind {
            let ip = *bind.get_ref();
            let other = u.backends.iter().find(|b| match b.addr() {
                BackendAddr::Inet(a) => a.is_ipv4() != ip.is_ipv4(),
                BackendAddr::Unix(_) => false,
            });
            if let Some(b) = other {
                return Err(at(
                    bind.span().start,
                    "bind",
                    format!(
                        "{ip} cannot reach backend `{}` ({}): the address families differ",
                        b.name(),
                        b.addr()
                    ),
                ));
            }
        }
        if let Some(tls) = &mut u.tls {
            load_tls(tls.get_mut(), origin, &|offset, key, message| {
                at(offset, &format!("tls.{key}"), message)
            })?;
        }
    }
    Ok(())
}

type At<'a> = dyn Fn(usize, &str, String) -> ConfigError + 'a;

fn load_tls(t: &mut UpstreamTlsConfig, origin: &Path, at: &At<'_>) -> Result<(), ConfigError> {
    if let Some(v) = t.verify.as_ref().filter(|v| !*v.get_ref()) {
        for (key, set) in [
            ("ca_file", t.ca_file.is_some()),
            ("verify_hostname", t.verify_hostname.is_some()),
        ] {
            if set {
                return Err(at(
                    v.span().start,
                    "verify",
                    format!("`verify = false` ignores `{key}`; remove one of them"),
                ));
            }
        }
    }
    if let Some(sni) = &t.sni {
        if ServerName::try_from(sni.get_ref().as_str()).is_err() {
            return Err(at(
                sni.span().start,
                "sni",
                format!(
                    "`{}` is neither a DNS name nor an IP address",
                    sni.get_ref()
                ),
            ));
        }
    }
    if let Some(alpn) = &t.alpn {
        let mut protocols = Vec::with_capacity(alpn.get_ref().len());
        for p in alpn.get_ref() {
            let Some(known) = Alpn::from_name(p) else {
                return Err(at(
                    alpn.span().start,
                    "alpn",
                    format!("unknown protocol `{p}`: use \"h2\" and/or \"http/1.1\""),
                ));
            };
            if protocols.contains(&known) {
                return Err(at(
                    alpn.span().start,
                    "alpn",
                    format!("`{p}` is listed twice"),
                ));
            }
            protocols.push(known);
        }
        if protocols.is_empty() {
            return Err(at(
                alpn.span().start,
                "alpn",
                "needs at least one protocol (or leave it out for [\"http/1.1\"])".into(),
            ));
        }
        t.loaded.alpn = protocols;
    }
    if let Some(ca) = &t.ca_file {
        let path = paths::resolve(origin, ca.get_ref());
        let certs =
            pem::load_certs(&path).map_err(|e| at(ca.span().start, "ca_file", error_chain(&e)))?;
        let (usable, _) = RootCertStore::empty().add_parsable_certificates(certs.iter().cloned());
        if usable == 0 {
            return Err(at(
                ca.span().start,
                "ca_file",
                format!("no usable CA certificate in {}", path.display()),
            ));
        }
        t.loaded.ca = Some(certs);
    }
    match (&t.client_cert, &t.client_key) {
        (None, None) => {}
        (Some(c), None) => {
            return Err(at(
                c.span().start,
                "client_cert",
                "needs `client_key`".into(),
            ));
        }
        (None, Some(k)) => {
            return Err(at(
                k.span().start,
                "client_key",
                "needs `client_cert`".into(),
            ));
        }
        (Some(c), Some(k)) => {
            let chain_path = paths::resolve(origin, c.get_ref());
            let certs = pem::load_certs(&chain_path)
                .map_err(|e| at(c.span().start, "client_cert", error_chain(&e)))?;
            let key_path = paths::resolve(origin, k.get_ref());
            let key = pem::load_key(&key_path)
                .map_err(|e| at(k.span().start, "client_key", error_chain(&e)))?;
            check_client_cert(&certs, &key).map_err(|e| {
                at(
                    k.span().start,
                    "client_key",
                    format!(
                        "{} does not fit the certificate in {}: {e}",
                        key_path.display(),
                        chain_path.display()
                    ),
                )
            })?;
            t.loaded.client_cert = Some(ClientCertFiles { chain: certs, key });
        }
    }
    Ok(())
}

/// Whether `key` is usable and is the key of the leaf of `chain` (what the client checks
/// again when it takes the pair).
fn check_client_cert(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
) -> Result<(), rustls::Error> {
    if chain.is_empty() {
        return Err(rustls::Error::General("empty certificate chain".into()));
    }
    CertifiedKey::from_der(chain.to_vec(), key.clone_key(), &ring::default_provider()).map(|_| ())
}
