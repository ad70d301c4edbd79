//! `[[server.tls]]`: TLS listeners, their certificates, protocol versions, ALPN and client
//! authentication.
//!
//! Everything is checked while the configuration loads, so `lb-proxy -t` catches it: the
//! certificate and key files are read (relative paths resolved against the configuration
//! file's directory, see [`paths`](super::paths)), each key must match its certificate, each
//! certificate must have a name to be selected by (or be the default), and the client CA
//! file must hold a usable CA ([`check_listener`]). The proxy builds its rustls server
//! configuration from that check's result when it starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::DnsName;
use serde::Deserialize;
use toml::Spanned;

mod certs;
mod check;
mod error;

pub use check::{check_listener, CheckedListener};
pub use error::TlsError;

use std::sync::Arc;

use error::Part;
use rustls::crypto::ring;

use super::error_chain;
use super::{paths, ConfigError, PositiveDuration, ServerConfig};

/// `[[server.tls]]`: one TLS listener (a set of addresses sharing certificates and settings).
///
/// ```toml
/// [[server.tls]]
/// listen = ["0.0.0.0:443"]
/// certificates = [
///   { cert = "certs/a.pem", key = "certs/a.key" },
///   { cert = "certs/b.pem", key = "certs/b.key", sni = ["b.example.com", "*.b.example.com"] },
/// ]
/// default_certificate = 0
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsListenerConfig {
    /// Addresses to accept TLS connections on; at least one.
    #[serde(deserialize_with = "super::non_empty")]
    pub listen: Vec<SocketAddr>,
    /// The certificates, chosen per connection by the client's SNI; at least one.
    #[serde(deserialize_with = "non_empty_certificates")]
    pub certificates: Vec<Spanned<CertificateConfig>>,
    /// Index (from 0) into `certificates` of the one served when the client sends no SNI or
    /// a name no certificate has; without it such handshakes fail.
    #[serde(default)]
    pub default_certificate: Option<Spanned<usize>>,
    /// The lowest TLS version accepted: `"1.2"` (the default) or `"1.3"`.
    #[serde(default)]
    pub min_version: TlsVersion,
    /// The application protocols offered through ALPN, in the server's order of preference;
    /// default `["h2", "http/1.1"]`. `["http/1.1"]` turns HTTP/2 off on this listener.
    #[serde(default = "default_alpn", deserialize_with = "non_empty_alpn")]
    pub alpn: Vec<Alpn>,
    /// Mutual TLS: verify client certificates against a CA.
    #[serde(default)]
    pub client_auth: Option<ClientAuthConfig>,
    /// How long a client has to complete the TLS handshake after connecting (default 10s).
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout: PositiveDuration,
}

/// One entry of `certificates`: a certificate chain and its private key.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// PEM file with the certificate chain, leaf first.
    pub cert: Spanned<PathBuf>,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Spanned<PathBuf>,
    /// The server names this certificate is served for, instead of the DNS names in its
    /// subject alternative names. `*.example.com` matches one label (`a.example.com`, not
    /// `example.com` nor `a.b.example.com`).
    #[serde(default)]
    pub sni: Option<Vec<ServerNamePattern>>,
}

/// `client_auth`: mutual TLS.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuthConfig {
    /// PEM file with the CA certificates client certificates must chain to.
    pub ca_file: Spanned<PathBuf>,
    /// Refuse clients without a certificate (default true). With `false` such clients are
    /// served, but a certificate that is presented must still be valid.
    #[serde(default = "default_required")]
    pub required: bool,
}

/// A TLS protocol version, for `min_version`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[serde(rename = "1.3")]
    Tls13,
}

/// An application protocol the proxy can speak over TLS, for the `alpn` of a listener or
/// of an upstream's `tls`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Alpn {
    /// HTTP/2.
    #[serde(rename = "h2")]
    H2,
    /// HTTP/1.1.
    #[serde(rename = "http/1.1")]
    Http11,
}

impl Alpn {
    /// The protocol for its identifier (`h2`, `http/1.1`), if it is one the proxy speaks.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "h2" => Some(Self::H2),
            "http/1.1" => Some(Self::Http11),
            _ => None,
        }
    }

    /// The protocol identifier sent in the handshake.
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            Self::H2 => b"h2",
            Self::Http11 => b"http/1.1",
        }
    }
}

/// A server name in `sni`: a DNS name, or `*.` and a DNS name; stored in lower case and
/// without a trailing dot, as rustls hands out the client's SNI.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServerNamePattern(String);

impl ServerNamePattern {
    /// The name as written (normalised), `*.example.com` for a wildcard.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For `*.example.com`, `Some("example.com")`: the parent domain it covers one label of.
    pub fn wildcard_parent(&self) -> Option<&str> {
        self.0.strip_prefix("*.")
    }

    /// Parses and normalises a name; the error explains what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
        let base = name.strip_prefix("*.").unwrap_or(&name);
        if DnsName::try_from(base).is_err() {
            return Err(format!(
                "{text:?} is not a DNS name or a wildcard such as \"*.example.com\""
            ));
        }
        Ok(Self(name))
    }
}

impl<'de> Deserialize<'de> for ServerNamePattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

fn default_alpn() -> Vec<Alpn> {
    vec![Alpn::H2, Alpn::Http11]
}

fn default_handshake_timeout() -> PositiveDuration {
    PositiveDuration(Duration::from_secs(10))
}

fn default_required() -> bool {
    true
}

fn non_empty_certificates<'de, D>(
    deserializer: D,
) -> Result<Vec<Spanned<CertificateConfig>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let v = Vec::deserialize(deserializer)?;
    if v.is_empty() {
        return Err(serde::de::Error::custom(
            "needs at least one { cert = \"...\", key = \"...\" }",
        ));
    }
    Ok(v)
}

fn non_empty_alpn<'de, D>(deserializer: D) -> Result<Vec<Alpn>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let v = Vec::deserialize(deserializer)?;
    if v.is_empty() {
        return Err(serde::de::Error::custom(
            "needs at least one protocol: \"h2\", \"http/1.1\" or both",
        ));
    }
    Ok(v)
}

impl TlsListenerConfig {
    /// Makes the relative file paths absolute against `origin`'s directory (the
    /// configuration file), so the proxy finds them whatever its working directory.
    fn resolve_paths(&mut self, origin: &Path) {
        for c in &mut self.certificates {
            let c = c.get_mut();
            *c.cert.get_mut() = paths::resolve(origin, c.cert.get_ref());
            *c.key.get_mut() = paths::resolve(origin, c.key.get_ref());
        }
        if let Some(auth) = &mut self.client_auth {
            *auth.ca_file.get_mut() = paths::resolve(origin, auth.ca_file.get_ref());
        }
    }

    /// The byte offset in the file and the key path of the part an error is about.
    fn locate(&self, listener: usize, part: Part, text: &str) -> (usize, String) {
        let prefix = format!("server.tls[{listener}]");
        let cert = |i: usize| self.certificates.get(i);
        match part {
            Part::Cert(i) => (
                cert(i).map_or(0, |c| c.get_ref().cert.span().start),
                format!("{prefix}.certificates[{i}].cert"),
            ),
            Part::Key(i) => (
                cert(i).map_or(0, |c| c.get_ref().key.span().start),
                format!("{prefix}.certificates[{i}].key"),
            ),
            Part::Certificate(i) => (
                cert(i).map_or(0, |c| c.span().start),
                format!("{prefix}.certificates[{i}]"),
            ),
            Part::Default => (
                self.default_certificate
                    .as_ref()
                    .map_or(0, |d| d.span().start),
                format!("{prefix}.default_certificate"),
            ),
            Part::ClientCa => (
                self.client_auth
                    .as_ref()
                    .map_or(0, |a| a.ca_file.span().start),
                format!("{prefix}.client_auth.ca_file"),
            ),
            Part::Listener => (
                text.match_indices("[[server.tls]]")
                    .nth(listener)
                    .map_or(0, |(offset, _)| offset),
                prefix,
            ),
        }
    }
}

/// Checks `[server]`'s listeners: at least one plain or TLS address, and every TLS
/// listener's files and names (see the module documentation). Relative paths in
/// `[[server.tls]]` are resolved against `origin` first.
pub(crate) fn validate(
    server: &mut ServerConfig,
    text: &str,
    origin: &Path,
) -> Result<(), ConfigError> {
    if server.listen.is_empty() && server.tls.is_empty() {
        return Err(ConfigError::at(
            origin,
            text,
            listen_offset(text),
            "server.listen".into(),
            "needs at least one address (or a [[server.tls]] listener)".into(),
        ));
    }
    for (i, listener) in server.tls.iter_mut().enumerate() {
        listener.resolve_paths(origin);
        if let Err(error) = check_listener(listener, &Arc::new(ring::default_provider())) {
            let (offset, key) = listener.locate(i, error.part(), text);
            return Err(ConfigError::at(
                origin,
                text,
                offset,
                key,
                error_chain(&error),
            ));
        }
    }
    Ok(())
}

/// Where `server.listen` is written (its value), or the `[server]` table: found by parsing
/// the text again for that one span, on this error path only.
fn listen_offset(text: &str) -> usize {
    #[derive(Deserialize)]
    struct File {
        server: Server,
    }
    #[derive(Deserialize)]
    struct Server {
        listen: Option<Spanned<toml::Value>>,
    }
    toml::from_str::<File>(text)
        .ok()
        .and_then(|f| f.server.listen)
        .map(|l| l.span().start)
        .or_else(|| text.find("[server]"))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn server_names_are_normalised_and_checked() {
        let n = ServerNamePattern::parse("WWW.Example.COM.").unwrap();
        assert_eq!((n.as_str(), n.wildcard_parent()), ("www.example.com", None));
        let w = ServerNamePattern::parse("*.Example.com").unwrap();
        assert_eq!(w.wildcard_parent(), Some("example.com"));
        for bad in [
            "",
            "*",
            "*.",
            "a.*.example.com",
            "*.*.example.com",
            "a..b",
            "10.0.0.1",
            "a b",
        ] {
            assert!(ServerNamePattern::parse(bad).is_err(), "{bad:?}");
        }
    }
}
