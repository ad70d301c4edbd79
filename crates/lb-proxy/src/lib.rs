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

// The request path is `lb-proxy-core`'s; its modules keep their old paths here.
use lb_proxy_core::{
    access_log, config_proxy, discovery, listener, sockets, stats, timestamp, tls, upstream,
};
pub use lb_proxy_core::{client, config, hash_key, hooks, notify, retry, router, worker};

pub mod demo;
pub mod handover;
pub mod process;
pub mod reload;
pub mod signals;

mod admin;
mod changes;
mod error;
mod error_chain;
mod generation;
mod live;
mod server;

pub use changes::Reloaded;
pub use error::{ReloadError, StartError};
pub use handover::HandoverError;
pub use lb_proxy_core::{
    check, peer_options, AccessLogError, FramingCheck, HealthHook, Inherited, PeerOptions,
    ProxyBody, ProxyHttp, RequestBody, Server, Session, SourceError, TlsError, TlsOptions,
    Upstream, UpstreamClient, UpstreamError, WorkerStats, Workers,
};
pub use server::{Proxy, RunningProxy};
