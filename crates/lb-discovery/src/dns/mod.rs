//! DNS discovery: A/AAAA records of a name (RFC 1035, RFC 3596) or SRV records of a service
//! (RFC 2782), re-resolved when their TTL runs out.
//!
//! - [`Dns::a_aaaa`]`("api.internal", 8080)` asks for the A and AAAA records of the name.
//!   Every address becomes a backend named exactly `api.internal:8080` (IPv6 addresses
//!   too): the configured text, which nginx-compatible hashing hashes, as nginx does for
//!   `server api.internal:8080 resolve;`.
//! - [`Dns::srv`]`("_http._tcp.api.internal")` asks for the SRV records. Each target is
//!   resolved to its A/AAAA addresses; a backend is named `target:port` (the target without
//!   its final dot) and weighted with the record's weight, except that weight 0 ("very
//!   small chance of being selected", RFC 2782) becomes 1, since weights start at 1 here.
//!   Per RFC 2782 clients must use the lowest-numbered priority they can reach: targets of
//!   the lowest priority in the answer are the primaries, every higher-numbered tier goes
//!   in [`Discovered::backups`]. A target of `.` ("decidedly not available") gives no
//!   backend. Each SRV backend carries an [`SrvRecord`] in its metadata.
//!
//! **Re-resolution** follows the smallest TTL of the records used (RFC 1035 §3.2.1: the
//! time a record may be cached), clamped to [`DnsConfig::min_refresh`] and
//! [`DnsConfig::max_refresh`]. The resolver's own cache is off, so each resolution asks the
//! server. **Failures**: a timeout, a refused connection or a server failure is an error,
//! and so is a name with no records at all (NXDOMAIN or an empty answer): DNS cannot tell
//! "no servers" from a typo or a broken zone, and a stale set is safer than an empty one. A
//! SRV target whose own name has no address is skipped with a warning; any other failure
//! of a target fails the whole resolution. After an error the stream retries after
//! `min_refresh`, doubling up to `max_refresh`.
//!
//! The resolver is the system's (`/etc/resolv.conf`) unless [`DnsConfig::resolver`] names
//! one; [`DnsConfig::protocol`] picks UDP or TCP.

mod resolve;

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{Name, ResolveError, TokioResolver};

use crate::backoff::Backoff;
use crate::emitter::{Emitter, ErrorCount};
use crate::{Discovered, DiscoveryError, DiscoveryStream, ServiceDiscovery};

pub use resolve::SrvRecord;

/// The transport used to talk to the DNS server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DnsProtocol {
    /// UDP (the default).
    #[default]
    Udp,
    /// TCP (RFC 7766), for servers or networks where UDP is not an option.
    Tcp,
}

/// How a [`Dns`] source resolves and how often.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// The DNS server to ask. `None` (the default) uses the system's configuration
    /// (`/etc/resolv.conf`: its name servers, search domains and `ndots`).
    pub resolver: Option<SocketAddr>,
    /// The transport to the server (also filters the system's name servers).
    pub protocol: DnsProtocol,
    /// The shortest time between two resolutions, whatever the TTL says, and the first
    /// retry delay after an error. Default 1 s.
    pub min_refresh: Duration,
    /// The longest time between two resolutions, whatever the TTL says, and the longest
    /// retry delay after errors. Default 60 s.
    pub max_refresh: Duration,
    /// How long to wait for one answer. Default 2 s.
    pub timeout: Duration,
    /// How many times one query is tried before it fails. Default 2.
    pub attempts: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            resolver: None,
            protocol: DnsProtocol::Udp,
            min_refresh: Duration::from_secs(1),
            max_refresh: Duration::from_secs(60),
            timeout: Duration::from_secs(2),
            attempts: 2,
        }
    }
}

/// Why a DNS source could not be built or could not resolve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// The name is not a valid domain name.
    #[error("`{name}` is not a valid DNS name")]
    InvalidName {
        /// The name as given.
        name: String,
        /// The parser's error.
        #[source]
        source: hickory_resolver::proto::ProtoError,
    },
    /// The configuration is inconsistent.
    #[error("invalid DNS discovery configuration: {0}")]
    InvalidConfig(&'static str),
    /// The system's resolver configuration could not be read.
    #[error("cannot read the system resolver configuration (/etc/resolv.conf)")]
    SystemConfig(#[source] ResolveError),
    /// A query failed (timeout, refused, server failure, no such name, no records).
    #[error("{record_type} query for `{name}` failed")]
    Query {
        /// The name asked for.
        name: String,
        /// `A`, `AAAA` or `SRV`.
        record_type: &'static str,
        /// The resolver's error.
        #[source]
        source: ResolveError,
    },
    /// The answer had records but none gave an address.
    #[error("`{name}` has no usable address (every SRV target failed to resolve)")]
    NoAddress {
        /// The name asked for.
        name: String,
    },
}

/// What to ask for.
#[derive(Clone, Debug)]
enum Query {
    /// A and AAAA records of `name`, every address at `port`.
    Address { name: String, port: u16 },
    /// SRV records of `name`, and the A/AAAA records of their targets.
    Srv { name: String },
}

/// Discovery from DNS records; see the [module documentation](self).
#[derive(Clone)]
pub struct Dns {
    inner: Arc<Inner>,
}

struct Inner {
    query: Query,
    label: String,
    resolver: TokioResolver,
    min_refresh: Duration,
    max_refresh: Duration,
    errors: ErrorCount,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns")
            .field("query", &self.inner.query)
            .field("min_refresh", &self.inner.min_refresh)
            .field("max_refresh", &self.inner.max_refresh)
            .finish_non_exhaustive()
    }
}

impl Dns {
    /// The A and AAAA records of `name`, each address at `port`, with the system resolver
    /// and default refresh bounds. Backends are named `name:port`.
    pub fn a_aaaa(name: impl Into<String>, port: u16) -> Result<Self, DnsError> {
        Self::a_aaaa_with(name, port, &DnsConfig::default())
    }

    /// Like [`a_aaaa`](Self::a_aaaa), configured by `config`.
    pub fn a_aaaa_with(
        name: impl Into<String>,
        port: u16,
        config: &DnsConfig,
    ) -> Result<Self, DnsError> {
        let name = name.into();
        let label = format!("dns {name}:{port}");
        Self::build(Query::Address { name, port }, label, config)
    }

    /// The SRV records of `name` (for example `_http._tcp.api.internal`), with the system
    /// resolver and default refresh bounds. Backends are named `target:port`.
    pub fn srv(name: impl Into<String>) -> Result<Self, DnsError> {
        Self::srv_with(name, &DnsConfig::default())
    }

    /// Like [`srv`](Self::srv), configured by `config`.
    pub fn srv_with(name: impl Into<String>, config: &DnsConfig) -> Result<Self, DnsError> {
        let name = name.into();
        let label = format!("dns srv {name}");
        Self::build(Query::Srv { name }, label, config)
    }

    fn build(query: Query, label: String, config: &DnsConfig) -> Result<Self, DnsError> {
        let name = match &query {
            Query::Address { name, .. } | Query::Srv { name } => name,
        };
        Name::from_str(name).map_err(|source| DnsError::InvalidName {
            name: name.clone(),
            source,
        })?;
        if config.min_refresh.is_zero() || config.timeout.is_zero() || config.attempts == 0 {
            return Err(DnsError::InvalidConfig(
                "min_refresh, timeout and attempts must be above zero",
            ));
        }
        if config.min_refresh > config.max_refresh {
            return Err(DnsError::InvalidConfig(
                "min_refresh must not exceed max_refresh",
            ));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                query,
                label,
                resolver: build_resolver(config)?,
                min_refresh: config.min_refresh,
                max_refresh: config.max_refresh,
                errors: ErrorCount::default(),
            }),
        })
    }

    /// Resolves now: the answer, and how long it may be kept (its smallest TTL, clamped to
    /// the refresh bounds).
    pub async fn resolve(&self) -> Result<(Discovered, Duration), DnsError> {
        let inner = &self.inner;
        let (found, ttl) = match &inner.query {
            Query::Address { name, port } => resolve::address(&inner.resolver, name, *port).await?,
            Query::Srv { name } => resolve::srv(&inner.resolver, name).await?,
        };
        let refresh = ttl.clamp(inner.min_refresh, inner.max_refresh);
        Ok((found, refresh))
    }

    fn error(&self, cause: DnsError) -> DiscoveryError {
        DiscoveryError::new(self.inner.label.clone(), cause)
    }
}

fn build_resolver(config: &DnsConfig) -> Result<TokioResolver, DnsError> {
    let protocol = match config.protocol {
        DnsProtocol::Udp => Protocol::Udp,
        DnsProtocol::Tcp => Protocol::Tcp,
    };
    let (resolver_config, mut opts) = match config.resolver {
        Some(addr) => {
            let mut c = ResolverConfig::new();
            c.add_name_server(NameServerConfig::new(addr, protocol));
            let mut opts = ResolverOpts::default();
            opts.use_hosts_file = ResolveHosts::Never;
            (c, opts)
        }
        None => {
            let (system, opts) = hickory_resolver::system_conf::read_system_conf()
                .map_err(DnsError::SystemConfig)?;
            let servers = system
                .name_servers()
                .iter()
                .filter(|s| s.protocol == protocol)
                .cloned()
                .collect::<Vec<_>>();
            let mut c = ResolverConfig::from_parts(
                system.domain().cloned(),
                system.search().to_vec(),
                servers,
            );
            if c.name_servers().is_empty() {
                // No server for that protocol: reuse the addresses with it.
                for s in system.name_servers() {
                    c.add_name_server(NameServerConfig::new(s.socket_addr, protocol));
                }
            }
            (c, opts)
        }
    };
    opts.timeout = config.timeout;
    opts.attempts = config.attempts;
    // This source is the cache: it re-resolves when the TTL says so, and must then reach
    // the server, not an answer the resolver kept.
    opts.cache_size = 0;
    opts.try_tcp_on_error = false;
    let mut builder =
        TokioResolver::builder_with_config(resolver_config, TokioConnectionProvider::default());
    *builder.options_mut() = opts;
    Ok(builder.build())
}

#[async_trait]
impl ServiceDiscovery for Dns {
    async fn discover(&self) -> Result<Discovered, DiscoveryError> {
        let result = self.resolve().await.map(|(found, _)| found);
        self.inner
            .errors
            .track(result.map_err(|cause| self.error(cause)))
    }

    /// Resolves at once, then again when the TTL (clamped) runs out; after an error, again
    /// after `min_refresh`, doubling up to `max_refresh`.
    fn watch(&self) -> Option<DiscoveryStream> {
        struct State {
            dns: Dns,
            emitter: Emitter,
            backoff: Backoff,
            wait: Option<Duration>,
        }
        let state = State {
            dns: self.clone(),
            emitter: Emitter::new(self.inner.errors.clone()),
            backoff: Backoff::new(self.inner.min_refresh, self.inner.max_refresh),
            wait: None,
        };
        Some(Box::pin(futures_util::stream::unfold(
            state,
            |mut s| async move {
                loop {
                    if let Some(wait) = s.wait.take() {
                        tokio::time::sleep(wait).await;
                    }
                    match s.dns.resolve().await {
                        Ok((found, refresh)) => {
                            s.backoff.reset();
                            s.wait = Some(refresh);
                            tracing::debug!(source = %s.dns.inner.label, backends = found.backends.len(), ?refresh, "resolved");
                            if let Some(found) = s.emitter.ok(found) {
                                return Some((Ok(found), s));
                            }
                        }
                        Err(cause) => {
                            s.wait = Some(s.backoff.next_delay());
                            let error = s.emitter.err(s.dns.error(cause));
                            return Some((Err(error), s));
                        }
                    }
                }
            },
        )))
    }

    fn error_count(&self) -> u64 {
        self.inner.errors.get()
    }
}
