//! etcd discovery: backends registered as keys under a prefix, read once and then watched.
//!
//! Each backend is one key under [`EtcdConfig::prefix`] (for example
//! `/services/web/10.0.0.1:8080`) whose value is JSON: `{"addr": "10.0.0.1:8080",
//! "weight": 2, "enabled": true}` (`weight` and `enabled` optional, see
//! [`BackendEntry`](crate::BackendEntry)). A service usually attaches its key to a lease
//! and keeps the lease alive; when it stops, the lease expires, etcd deletes the key
//! (etcd's lease API: "all keys attached to the lease will be expired and deleted") and
//! the backend leaves the set within the watch latency. `enabled: false` keeps a backend
//! in the set but gives it no new traffic ([`Discovered::disabled`]). A value that is not
//! valid is skipped with a warning naming its key.
//!
//! [`discover`](ServiceDiscovery::discover) is one range read of the prefix. The
//! [`watch`](ServiceDiscovery::watch) stream does that read, then watches the prefix from
//! the read's revision + 1 (etcd's MVCC revisions are cluster-wide and increase with every
//! change, so nothing between the read and the watch is missed). When the connection
//! breaks (etcd restarted, network lost) it yields an error and reconnects with capped
//! exponential backoff, resuming the watch from the last revision it applied; if etcd has
//! compacted that revision away, or the cluster's revision went backwards (a new cluster),
//! it reads the whole prefix again.

mod registry;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Client, ConnectOptions, GetOptions};
use parking_lot::Mutex;

use crate::emitter::ErrorCount;
use crate::{Discovered, DiscoveryError, DiscoveryStream, ServiceDiscovery};
use registry::Registry;

/// Where the registry is and how to talk to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs of the cluster members, `http://host:2379` (TLS is not supported yet).
    pub endpoints: Vec<String>,
    /// The key prefix the backends are registered under, for example `/services/web/`.
    pub prefix: String,
    /// How long one request (the range read, opening the watch) may take. Default 5 s.
    pub request_timeout: Duration,
    /// How long a TCP connection attempt may take. Default 3 s.
    pub connect_timeout: Duration,
    /// The HTTP/2 keep-alive interval that detects a dead connection while the watch is
    /// idle (a ping unanswered for as long again closes it). Default 10 s.
    pub keep_alive: Duration,
    /// The first reconnection delay after a failure. Default 100 ms.
    pub reconnect_min: Duration,
    /// The longest reconnection delay (the delay doubles up to it). Default 5 s.
    pub reconnect_max: Duration,
}

impl EtcdConfig {
    /// The default configuration for `endpoints` and `prefix`.
    pub fn new<E: Into<String>>(
        endpoints: impl IntoIterator<Item = E>,
        prefix: impl Into<String>,
    ) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            prefix: prefix.into(),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            keep_alive: Duration::from_secs(10),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
        }
    }
}

/// Why etcd discovery could not be built or could not read the registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdError {
    /// The configuration is inconsistent.
    #[error("invalid etcd discovery configuration: {0}")]
    InvalidConfig(&'static str),
    /// The client could not be set up (a malformed endpoint URL, for example).
    #[error("cannot set up an etcd client for {endpoints}")]
    Connect {
        /// The endpoints, comma-separated.
        endpoints: String,
        /// The client's error.
        #[source]
        source: etcd_client::Error,
    },
    /// A request failed (etcd down, unreachable, or refusing).
    #[error("etcd {operation} of `{prefix}` failed")]
    Request {
        /// `range read` or `watch`.
        operation: &'static str,
        /// The prefix.
        prefix: String,
        /// The client's error.
        #[source]
        source: etcd_client::Error,
    },
    /// A request got no answer in time.
    #[error("etcd {operation} of `{prefix}` timed out after {timeout:?}")]
    Timeout {
        /// `range read` or `watch`.
        operation: &'static str,
        /// The prefix.
        prefix: String,
        /// The configured request timeout.
        timeout: Duration,
    },
    /// The server ended the watch (it is shutting down, or the connection dropped).
    #[error("etcd closed the watch of `{prefix}`")]
    WatchClosed {
        /// The prefix.
        prefix: String,
    },
}

/// Discovery from an etcd registry; see the [module documentation](self).
#[derive(Clone)]
pub struct Etcd {
    inner: Arc<Inner>,
}

struct Inner {
    config: EtcdConfig,
    label: String,
    /// The shared client (a cheap-to-clone gRPC channel), built on first use and dropped
    /// after a failure so the next attempt starts afresh. Never held across `.await`.
    client: Mutex<Option<Client>>,
    errors: ErrorCount,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Etcd {
    /// Discovery from the keys under `config.prefix`. Nothing is contacted yet.
    pub fn new(config: EtcdConfig) -> Result<Self, EtcdError> {
        if config.endpoints.is_empty() {
            return Err(EtcdError::InvalidConfig("no endpoints"));
        }
        if config.prefix.is_empty() {
            return Err(EtcdError::InvalidConfig(
                "an empty prefix would watch the whole keyspace",
            ));
        }
        if config.request_timeout.is_zero() || config.reconnect_min.is_zero() {
            return Err(EtcdError::InvalidConfig(
                "request_timeout and reconnect_min must be above zero",
            ));
        }
        let label = format!("etcd {} at {}", config.prefix, config.endpoints.join(","));
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                label,
                client: Mutex::new(None),
                errors: ErrorCount::default(),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EtcdConfig {
        &self.inner.config
    }

    /// The shared client, built if there is none.
    async fn client(&self) -> Result<Client, EtcdError> {
        if let Some(client) = self.inner.client.lock().clone() {
            return Ok(client);
        }
        let c = &self.inner.config;
        let options = ConnectOptions::new()
            .with_connect_timeout(c.connect_timeout)
            .with_keep_alive(c.keep_alive, c.keep_alive)
            .with_keep_alive_while_idle(true);
        let client = self
            .timed(
                "connect",
                Client::connect(c.endpoints.clone(), Some(options)),
            )
            .await?
            .map_err(|source| EtcdError::Connect {
                endpoints: c.endpoints.join(","),
                source,
            })?;
        *self.inner.client.lock() = Some(client.clone());
        Ok(client)
    }

    /// Forgets the client after a failure.
    fn reset_client(&self) {
        *self.inner.client.lock() = None;
    }

    /// `future`, bounded by the request timeout.
    async fn timed<T>(
        &self,
        operation: &'static str,
        future: impl std::future::Future<Output = T>,
    ) -> Result<T, EtcdError> {
        let timeout = self.inner.config.request_timeout;
        tokio::time::timeout(timeout, future)
            .await
            .map_err(|_| EtcdError::Timeout {
                operation,
                prefix: self.inner.config.prefix.clone(),
                timeout,
            })
    }

    /// Reads every key under the prefix: the registry and the revision it was read at.
    async fn read(&self) -> Result<(Registry, i64), EtcdError> {
        let result = self.try_read().await;
        if result.is_err() {
            self.reset_client();
        }
        result
    }

    async fn try_read(&self) -> Result<(Registry, i64), EtcdError> {
        let mut client = self.client().await?;
        let prefix = self.inner.config.prefix.clone();
        let response = self
            .timed(
                "range read",
                client.get(prefix.as_str(), Some(GetOptions::new().with_prefix())),
            )
            .await?
            .map_err(|source| EtcdError::Request {
                operation: "range read",
                prefix: prefix.clone(),
                source,
            })?;
        let revision = response.header().map_or(0, |h| h.revision());
        let mut registry = Registry::default();
        for kv in response.kvs() {
            registry
                .put(&String::from_utf8_lossy(kv.key()), kv.value())
                .await;
        }
        Ok((registry, revision))
    }

    fn error(&self, cause: EtcdError) -> DiscoveryError {
        DiscoveryError::new(self.inner.label.clone(), cause)
    }
}

#[async_trait]
impl ServiceDiscovery for Etcd {
    async fn discover(&self) -> Result<Discovered, DiscoveryError> {
        let result = self.read().await.map(|(registry, _)| registry.discovered());
        self.inner
            .errors
            .track(result.map_err(|cause| self.error(cause)))
    }

    /// Reads the prefix, then follows the watch; see the [module documentation](self).
    fn watch(&self) -> Option<DiscoveryStream> {
        Some(watch::stream(self.clone()))
    }

    fn error_count(&self) -> u64 {
        self.inner.errors.get()
    }
}
