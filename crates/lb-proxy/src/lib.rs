//! `lb-proxy`: a hyper-based HTTP/1.1 and HTTP/2 reverse proxy and load balancer, driven
//! by one TOML file.
//!
//! The binary is a thin shell over this library: [`config::Config`] loads and validates a
//! file, [`Proxy`] builds the upstreams (a [`LoadBalancer`](lb_balancer::LoadBalancer) per
//! `[upstreams.NAME]`, with health checks) and starts the listeners, and
//! [`RunningProxy::shutdown`] drains it. Tests build the whole proxy in-process this way.
//!
//! The request path: accept (HTTP/1.1, or HTTP/2 with prior knowledge) → route → select a
//! usable backend (lock-free; the backend counts the request as in flight until the
//! response body ends) → strip hop-by-hop headers, write the forwarding headers
//! (`X-Forwarded-For`, `X-Real-IP`, ..., believing only trusted proxies), keep or rewrite
//! `Host` → forward through the upstream's [`UpstreamClient`] (keep-alive pool, TLS and
//! HTTP/2 if configured, connect/read/write timeouts) → stream the response back.
//! Bodies are streamed both ways, never buffered whole. An HTTP/1.1 upgrade (WebSocket)
//! that the backend accepts with 101 becomes a spliced two-way byte stream. A backend that
//! cannot be reached gives 502, one that does not answer in time 504; no usable backend
//! gives 503.

pub mod client;
/// The configuration: [`lb_config`], under its old path.
pub use lb_config as config;
/// Request routing: [`lb_router`], under its old path.
pub use lb_router as router;
pub mod demo;
pub mod handover;
pub mod hash_key;
pub mod hooks;
pub mod notify;
pub mod process;
pub mod reload;
pub mod retry;
pub mod signals;
pub mod worker;

mod access_log;
mod admin;
mod body;
mod changes;
mod config_proxy;
mod discovery;
mod error;
mod error_chain;
mod generation;
mod headers;
mod limits;
mod listener;
mod live;
mod parking;
mod peer;
mod pipeline;
mod protect;
mod replay;
mod serve;
mod server;
mod sockets;
mod stats;
mod timestamp;
mod tls;
mod upgrade;
mod upstream;

pub use access_log::AccessLogError;
pub use body::ProxyBody;
pub use changes::Reloaded;
pub use client::{PeerOptions, TlsOptions, UpstreamClient, UpstreamError};
pub use discovery::SourceError;
pub use error::{ReloadError, StartError};
pub use handover::HandoverError;
pub use hooks::{ProxyHttp, Session};
pub use peer::peer_options;
/// The HTTP/1.x framing scanner, public only for the fuzz target `fuzz/fuzz_targets/framing.rs`.
#[doc(hidden)]
pub use protect::framing::FramingCheck;
pub use replay::RequestBody;
pub use serve::Server;
pub use server::{Proxy, RunningProxy};
pub use sockets::Inherited;
pub use tls::TlsError;
pub use upstream::{HealthHook, Upstream};
pub use worker::{WorkerStats, Workers};

/// Builds every upstream of `config` (its discovery source, selector and checks) without
/// contacting anything: what `lb-proxy -t` runs after parsing. Needs a tokio runtime.
pub fn check(config: &config::Config) -> Result<(), SourceError> {
    for (name, upstream) in &config.upstreams {
        Upstream::new(name, upstream)?;
    }
    Ok(())
}
