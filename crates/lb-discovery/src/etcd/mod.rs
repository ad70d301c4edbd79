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
//!
//! **Transport.** etcd is reached through its v3 JSON gateway (`POST /v3/kv/range`,
//! `POST /v3/watch`, served on the client port by every etcd since 3.4) over HTTP/1.1,
//! with the hyper stack the rest of the toolkit already uses: no gRPC code generation, so
//! building needs no `protoc`, and no tonic/prost (see `docs/architecture.md`). While a
//! watch is idle, two things find a broken one: TCP keep-alive on its connection (a host
//! gone or a network cut) and, every [`keep_alive`](EtcdConfig::keep_alive) without a
//! message, a count-only range read of the prefix that must answer within the request
//! timeout (an etcd that accepts connections but no longer serves, as a frozen process).
//! The watch asks for etcd's progress notifications and moves its resume revision to
//! theirs, so a long quiet watch resumes close to the present after a reconnection.

mod api;
mod endpoint;
mod gateway;
mod registry;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::emitter::ErrorCount;
use crate::{Discovered, DiscoveryError, DiscoveryStream, ServiceDiscovery};
use api::{prefix_end, RangeRequest, RangeResponse};
use endpoint::Endpoint;
use gateway::Gateway;
pub use gateway::GatewayError;
use registry::Registry;

/// Where the registry is and how to talk to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs of the cluster members, `http://host:2379` (TLS is not supported yet).
    /// Requests go to the first until it fails, then to the next.
    pub endpoints: Vec<String>,
    /// The key prefix the backends are registered under, for example `/services/web/`.
    pub prefix: String,
    /// How long one request (the range read, opening the watch) may take. Default 5 s.
    pub request_timeout: Duration,
    /// How long a TCP connection attempt may take. Default 3 s.
    pub connect_timeout: Duration,
    /// How long an idle watch waits before it checks its connection: TCP keep-alive
    /// probes start after this much silence (one unanswered for as long again closes the
    /// connection), and a watch with no message for this long sends a count-only read
    /// that must answer within `request_timeout`. Default 10 s.
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
    /// An endpoint is not an `http://host:port` URL.
    #[error("invalid etcd endpoint `{endpoint}`: {reason}")]
    InvalidEndpoint {
        /// The URL as configured.
        endpoint: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A request failed (etcd down, unreachable, or refusing).
    #[error("etcd {operation} of `{prefix}` failed")]
    Request {
        /// `range read`, `watch` or `probe`.
        operation: &'static str,
        /// The prefix.
        prefix: String,
        /// What went wrong on the way.
        #[source]
        source: GatewayError,
    },
    /// A request got no answer in time.
    #[error("etcd {operation} of `{prefix}` timed out after {timeout:?}")]
    Timeout {
        /// `range read`, `watch` or `probe`.
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
    gateway: Gateway,
    /// The prefix as bytes and the end of its range.
    key: Vec<u8>,
    range_end: Vec<u8>,
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
        let endpoints = config
            .endpoints
            .iter()
            .map(|url| {
                Endpoint::parse(url).map_err(|e| EtcdError::InvalidEndpoint {
                    endpoint: url.clone(),
                    reason: e.reason(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let label = format!("etcd {} at {}", config.prefix, config.endpoints.join(","));
        let gateway = Gateway::new(endpoints, config.connect_timeout, config.keep_alive);
        let key = config.prefix.as_bytes().to_vec();
        Ok(Self {
            inner: Arc::new(Inner {
                range_end: prefix_end(&key),
                key,
                config,
                label,
                gateway,
                errors: ErrorCount::default(),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EtcdConfig {
        &self.inner.config
    }

    /// After a failure: the next request goes to the next member.
    fn fail_over(&self) {
        self.inner.gateway.fail_over();
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
        let response = self.range("range read", false).await?;
        let mut registry = Registry::default();
        for kv in &response.kvs {
            registry
                .put(&String::from_utf8_lossy(&kv.key), &kv.value)
                .await;
        }
        Ok((registry, response.header.revision))
    }

    /// Counts the keys under the prefix: proof that etcd serves requests.
    async fn probe(&self) -> Result<(), EtcdError> {
        self.range("probe", true).await.map(drop)
    }

    /// One range request over the prefix, bounded by the request timeout; a failure
    /// moves the next request to the next member.
    async fn range(
        &self,
        operation: &'static str,
        count_only: bool,
    ) -> Result<RangeResponse, EtcdError> {
        let request = RangeRequest {
            key: &self.inner.key,
            range_end: &self.inner.range_end,
            count_only,
        };
        let result = self
            .timed(operation, self.inner.gateway.call("/v3/kv/range", &request))
            .await
            .and_then(|answer| answer.map_err(|source| self.request_error(operation, source)));
        if result.is_err() {
            self.fail_over();
        }
        result
    }

    fn request_error(&self, operation: &'static str, source: GatewayError) -> EtcdError {
        EtcdError::Request {
            operation,
            prefix: self.inner.config.prefix.clone(),
            source,
        }
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
