//! What a reload changed: the answer of [`RunningProxy::reload`](crate::RunningProxy::reload)
//! and of the admin endpoint `POST /reload`.

use std::net::SocketAddr;

/// What a reload changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reloaded {
    /// The upstreams, by what happened to each.
    pub upstreams: UpstreamChanges,
    /// The listener addresses now, plain ones first (as
    /// [`RunningProxy::local_addrs`](crate::RunningProxy::local_addrs)).
    pub listening: Vec<SocketAddr>,
    /// The admin listener's address now, when `[admin]` is configured.
    pub admin: Option<SocketAddr>,
    /// Changed settings that a reload cannot apply (they need a restart or an upgrade).
    pub not_applied: Vec<&'static str>,
}

/// What a reload does to upstreams, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpstreamChanges {
    /// Unchanged, kept whole.
    pub kept: Vec<String>,
    /// Only the backend list changed.
    pub relisted: Vec<String>,
    /// Other settings changed: built again, backend state carried over.
    pub rebuilt: Vec<String>,
    /// New.
    pub added: Vec<String>,
    /// Gone.
    pub removed: Vec<String>,
}
