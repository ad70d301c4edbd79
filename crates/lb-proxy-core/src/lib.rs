//! `lb-proxy-core`: the request path of the `lb-proxy` reverse proxy, as a library one can
//! embed without the process around it (no command line, signals, pid file, reload or
//! hand-over; those are `lb-proxy`'s).
//!
//! The request path: a [`listener`] accepts (HTTP/1.1, or HTTP/2 with prior knowledge),
//! protection (`protect`) checks the framing and limits, the [`hooks`] ([`ProxyHttp`], with the
//! configuration-driven [`config_proxy::ConfigProxy`]) route it and pick a [`Peer`](hooks::Peer):
//! an [`Upstream`] selects a usable backend (lock-free; the backend counts the request as in
//! flight until the response body ends) → strip hop-by-hop headers, write the forwarding
//! headers (`X-Forwarded-For`, `X-Real-IP`, ..., believing only trusted proxies), keep or
//! rewrite `Host` → forward through the upstream's [`UpstreamClient`] (keep-alive pool, TLS
//! and HTTP/2 if configured, connect/read/write timeouts) → stream the response back.
//! Bodies are streamed both ways, never buffered whole. An HTTP/1.1 upgrade (WebSocket)
//! that the backend accepts with 101 becomes a spliced two-way byte stream. A backend that
//! cannot be reached gives 502, one that does not answer in time 504; no usable backend
//! gives 503.
//!
//! Modules depend one way: the hooks and the pipeline know nothing of listeners or
//! workers; the configuration ([`lb_config`]) and routing ([`lb_router`]) are crates of
//! their own that import nothing of the run time. `docs/architecture.md` has the map.

/// The configuration: [`lb_config`], under the path the modules use.
pub use lb_config as config;
/// Request routing: [`lb_router`], under the path the modules use.
pub use lb_router as router;

pub mod access_log;
pub mod client;
pub mod config_proxy;
pub mod discovery;
pub mod hash_key;
pub mod hooks;
pub mod listener;
pub mod notify;
pub mod retry;
pub mod sockets;
pub mod stats;
pub mod timestamp;
pub mod tls;
pub mod upstream;
pub mod worker;

mod body;
mod headers;
mod limits;
mod parking;
mod peer;
mod pipeline;
mod protect;
mod replay;
mod serve;
mod upgrade;

pub use access_log::AccessLogError;
pub use body::ProxyBody;
pub use client::{PeerOptions, TlsOptions, UpstreamClient, UpstreamError};
pub use discovery::SourceError;
pub use hooks::{ProxyHttp, Session};
pub use peer::peer_options;
/// The HTTP/1.x framing scanner, public only for the fuzz target `fuzz/fuzz_targets/framing.rs`.
#[doc(hidden)]
pub use protect::framing::FramingCheck;
pub use replay::RequestBody;
pub use serve::Server;
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
