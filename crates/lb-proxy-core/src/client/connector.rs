//! Opens connections to backends for the pooled HTTP client: TCP (from an optional local
//! address, `TCP_NODELAY`) or Unix, then TLS if configured, within the connect timeouts.
//!
//! The client names a backend only by the authority of its URI (see `target.rs`). The TLS
//! server name of a backend configured by DNS name is not in the authority, so the request
//! path notes it in [`ServerNames`] (once per backend, lock-free afterwards) and the
//! connector looks it up when it opens a connection.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::uri::Authority;
use rustls::pki_types::ServerName;
use tokio::net::{TcpSocket, UnixStream};
use tokio::time::Instant;

use super::error::ConnectError;
use super::stream::{Io, Plain, Stream};
use super::target::unix_path;
use super::tls::TlsSetup;

/// TLS server names of backends configured by DNS name, by authority.
// `Authority` holds `Bytes` (an atomic pointer inside), but its hash and equality are fixed.
#[allow(clippy::mutable_key_type)]
#[derive(Debug, Default)]
pub(crate) struct ServerNames(ArcSwap<HashMap<Authority, ServerName<'static>>>);

impl ServerNames {
    /// Records `name` for `authority`: a map lookup when it is known, a copy of the map
    /// the first time (once per backend).
    #[allow(clippy::mutable_key_type)]
    pub(crate) fn note(&self, authority: &Authority, name: &ServerName<'static>) {
        if self.0.load().get(authority) == Some(name) {
            return;
        }
        self.0.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.insert(authority.clone(), name.clone());
            map
        });
    }

    fn get(&self, authority: &Authority) -> Option<ServerName<'static>> {
        self.0.load().get(authority).cloned()
    }
}

/// Connection settings shared by every connect of one client.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) connect_timeout: Duration,
    pub(crate) total_timeout: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) bind: Option<IpAddr>,
    pub(crate) tls: Option<TlsSetup>,
    pub(crate) names: Arc<ServerNames>,
}

/// Connects to the backend named by a URI authority.
#[derive(Clone, Debug)]
pub(crate) struct Connector(pub(crate) Arc<Settings>);

enum Target {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Connector {
    /// Opens a connection to the backend at `authority` (TLS when configured).
    pub(crate) async fn connect(&self, authority: &Authority) -> Result<Stream, ConnectError> {
        self.0.connect(authority).await
    }

    /// True when connections may negotiate HTTP/2 (TLS, where ALPN decides).
    pub(crate) fn may_use_h2(&self) -> bool {
        self.0.tls.is_some()
    }
}

impl Settings {
    async fn connect(&self, authority: &Authority) -> Result<Stream, ConnectError> {
        let target = match unix_path(authority.host()) {
            Some(path) => Target::Unix(path),
            None => Target::Tcp(
                authority
                    .as_str()
                    .parse()
                    .map_err(|_| ConnectError::Address(authority.to_string()))?,
            ),
        };
        let start = Instant::now();
        let tcp_limit = match self.total_timeout {
            Some(total) => self.connect_timeout.min(total),
            None => self.connect_timeout,
        };
        let plain = tokio::time::timeout(tcp_limit, self.open(&target))
            .await
            .map_err(|_| ConnectError::Timeout(tcp_limit))??;
        let Some(tls) = &self.tls else {
            return Ok(Stream::new(Io::Plain(plain), false, self.write_timeout));
        };
        let name = tls
            .server_name
            .clone()
            .or_else(|| self.names.get(authority))
            .unwrap_or_else(|| default_server_name(&target));
        let deadline = match self.total_timeout {
            Some(total) => start + total,
            None => Instant::now() + self.connect_timeout,
        };
        let stream = tokio::time::timeout_at(deadline, tls.connector.connect(name, plain))
            .await
            .map_err(|_| ConnectError::Timeout(start.elapsed()))?
            .map_err(ConnectError::Tls)?;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok(Stream::new(
            Io::Tls(Box::new(stream)),
            h2,
            self.write_timeout,
        ))
    }

    async fn open(&self, target: &Target) -> Result<Plain, ConnectError> {
        match target {
            Target::Unix(path) => UnixStream::connect(path)
                .await
                .map(Plain::Unix)
                .map_err(ConnectError::Io),
            Target::Tcp(addr) => {
                let socket = match addr {
                    SocketAddr::V4(_) => TcpSocket::new_v4(),
                    SocketAddr::V6(_) => TcpSocket::new_v6(),
                }
                .map_err(ConnectError::Io)?;
                if let Some(ip) = self.bind {
                    socket
                        .bind(SocketAddr::new(ip, 0))
                        .map_err(|source| ConnectError::Bind { addr: ip, source })?;
                }
                socket.set_nodelay(true).map_err(ConnectError::Io)?;
                socket
                    .connect(*addr)
                    .await
                    .map(Plain::Tcp)
                    .map_err(ConnectError::Io)
            }
        }
    }
}

/// The name verified when neither `sni` nor a configured DNS name gives one: the IP
/// address of a TCP backend (no SNI is sent for an IP), `localhost` for a Unix socket.
fn default_server_name(target: &Target) -> ServerName<'static> {
    match target {
        Target::Tcp(addr) => ServerName::IpAddress(addr.ip().into()),
        Target::Unix(_) => ServerName::try_from("localhost")
            .unwrap_or(ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())),
    }
}
