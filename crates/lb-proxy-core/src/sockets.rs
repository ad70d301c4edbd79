//! Listening sockets that already exist when listeners are bound: those received from the
//! previous process in a binary upgrade, or this process's own on a reload. A listener
//! takes the socket held for its address instead of binding it again
//! ([`Inherited::take_or_bind`]), so a connection waiting in the accept queue is never
//! refused. How the sockets travel between processes is the hand-over's business
//! (`crate::handover`); this is only the set they arrive in.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::str::FromStr;

/// What a listening socket is for, as the running process served it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ListenerKind {
    /// A plain HTTP listener (`server.listen`).
    Http,
    /// A TLS listener (`[[server.tls]] listen`).
    Tls,
    /// The admin listener (`[admin] listen`).
    Admin,
}

impl ListenerKind {
    /// The name of the kind, as the hand-over's manifest writes it.
    fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Tls => "tls",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for ListenerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ListenerKind {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "http" => Ok(Self::Http),
            "tls" => Ok(Self::Tls),
            "admin" => Ok(Self::Admin),
            _ => Err(()),
        }
    }
}

/// Listening sockets received from the previous process, by bound address.
#[derive(Debug, Default)]
pub struct Inherited {
    listeners: HashMap<SocketAddr, (ListenerKind, TcpListener)>,
    /// Received in a hand-over (not a reload's own sockets).
    received: bool,
}

impl Inherited {
    /// Sockets received from the previous process (a hand-over), each with what it served.
    pub fn received(listeners: HashMap<SocketAddr, (ListenerKind, TcpListener)>) -> Self {
        Self {
            listeners,
            received: true,
        }
    }

    /// The sockets of this process's own listeners (duplicates), for a reload to serve the
    /// new configuration's listeners on them instead of binding again.
    pub fn own(
        listeners: impl IntoIterator<Item = (SocketAddr, ListenerKind, TcpListener)>,
    ) -> Self {
        Self {
            listeners: listeners
                .into_iter()
                .map(|(addr, kind, l)| (addr, (kind, l)))
                .collect(),
            received: false,
        }
    }

    /// How many sockets are left (not yet taken by a listener of the new configuration).
    pub fn len(&self) -> usize {
        self.listeners.len()
    }

    /// True when no socket is left.
    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty()
    }

    /// The socket bound to exactly `addr`, if one was received (and not yet taken), with
    /// what the previous process used it for.
    pub fn take(&mut self, addr: SocketAddr) -> Option<(ListenerKind, TcpListener)> {
        self.listeners.remove(&addr)
    }

    /// A listener on `addr` with its bound address: the socket held for exactly `addr`
    /// (taken out), else a new one bound. Needs a tokio runtime.
    pub async fn take_or_bind(
        &mut self,
        addr: SocketAddr,
    ) -> io::Result<(tokio::net::TcpListener, SocketAddr)> {
        let tcp = match self.take(addr) {
            Some((was, std)) => {
                if self.received {
                    tracing::info!(%addr, %was, "listening on the socket of the previous process");
                }
                std.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(std)?
            }
            None => tokio::net::TcpListener::bind(addr).await?,
        };
        let local = tcp.local_addr()?;
        Ok((tcp, local))
    }

    /// The addresses of the sockets left.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.listeners.keys().copied().collect()
    }
}
