//! Service discovery: where the backends of an upstream come from.
//!
//! A [`ServiceDiscovery`] answers "which backends are there now?" with a [`Discovered`]
//! set (plus the ones it wants disabled). A load balancer polls it on an interval, builds a
//! new selector off the hot path when the answer changes, and keeps the last good answer
//! when discovery fails: an error never empties an upstream.
//!
//! This crate ships [`Static`], a list given in code or configuration that can also be
//! changed at run time.
//!
//! ```
//! use lb_discovery::{ServiceDiscovery, Static};
//!
//! # tokio_test_block_on(async {
//! let discovery = Static::try_from_iter(["127.0.0.1:9001", "127.0.0.1:9002"])?;
//! let found = discovery.discover().await?;
//! assert_eq!(found.backends.len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

mod static_list;

pub use static_list::Static;

use std::collections::HashSet;
use std::error::Error as StdError;

use async_trait::async_trait;
use lb_core::{BackendAddr, BackendSet};

/// One answer of a discovery source.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Discovered {
    /// Every backend the source knows of.
    pub backends: BackendSet,
    /// Addresses the source wants kept in the set but given no new traffic.
    pub disabled: HashSet<BackendAddr>,
}

impl Discovered {
    /// All of `backends`, none disabled.
    pub fn new(backends: BackendSet) -> Self {
        Self {
            backends,
            disabled: HashSet::new(),
        }
    }
}

/// Why discovery failed this time. The load balancer logs it and keeps the last good set.
#[derive(Debug, thiserror::Error)]
#[error("discovery from {source_name} failed")]
pub struct DiscoveryError {
    source_name: String,
    #[source]
    cause: Box<dyn StdError + Send + Sync>,
}

impl DiscoveryError {
    /// An error of the source named `source_name` (for logs: `dns`, `etcd`, a file path...).
    pub fn new(
        source_name: impl Into<String>,
        cause: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        Self {
            source_name: source_name.into(),
            cause: cause.into(),
        }
    }

    /// The name of the source that failed.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }
}

/// A source of backends.
#[async_trait]
pub trait ServiceDiscovery: Send + Sync + 'static {
    /// The backends there are now.
    async fn discover(&self) -> Result<Discovered, DiscoveryError>;
}
