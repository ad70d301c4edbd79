//! The decisions of the request path, as a trait: Pingora's `ProxyHttp` for `lb-proxy`.
//!
//! The proxy runs the same pipeline for every request (`pipeline.rs`), and asks a
//! [`ProxyHttp`] implementation at each decision point:
//!
//! 1. [`request_filter`](ProxyHttp::request_filter): answer locally (a redirect, a 403), or
//!    go on.
//! 2. [`upstream_peer`](ProxyHttp::upstream_peer): which backend, reached through which
//!    [`UpstreamClient`], serves this attempt. The only required method.
//! 3. [`upstream_request_filter`](ProxyHttp::upstream_request_filter): rewrite the request
//!    head sent to that backend (`Host`, added headers).
//! 4. [`after_attempt`](ProxyHttp::after_attempt): told how the attempt went (a response
//!    status, or an error); says whether to try again. The pipeline then enforces what it
//!    alone knows: a body already streamed past the replay buffer is never sent twice.
//! 5. [`response_filter`](ProxyHttp::response_filter): rewrite the response head.
//! 6. [`logging`](ProxyHttp::logging): once per request, at the end.
//!
//! The TOML-driven proxy is itself an implementation of this trait (`ConfigProxy`, built by
//! `lb_proxy::Proxy`), so an embedding user writes the same kind of code the binary
//! runs. `crates/lb-proxy/examples/balanced_proxy.rs` and `multi_cluster_router.rs`
//! reproduce Pingora's `BalancedProxy` and `MultiClusterRouter` this way.
//!
//! Futures returned by the hooks are `Send` and statically dispatched: no boxing per request.
//!
//! Files: the trait and the attempt's types ([`Peer`], [`Attempt`], [`Retry`]) here; the
//! request and its connection ([`Session`], [`ConnInfo`]) in `session.rs`; local answers
//! ([`LocalResponse`]) in `local.rs`.

mod local;
mod session;

pub use local::LocalResponse;
pub use session::{ConnInfo, Session};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{response, StatusCode};
use lb_core::{Backend, InFlight};

use crate::client::{UpstreamClient, UpstreamError};
use crate::limits::{Guard, Release};

/// The idle timeout of upgraded connections unless the peer says otherwise.
const DEFAULT_UPGRADE_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// The backend an attempt goes to, and the client that reaches it: Pingora's `HttpPeer`.
///
/// The backend counts the attempt as in flight from the moment it was selected until the
/// response body ends (or the attempt fails).
#[derive(Debug)]
pub struct Peer {
    guard: Guard,
    client: Arc<UpstreamClient>,
    upgrade_idle_timeout: Duration,
}

/// How an attempt ended, as told to [`ProxyHttp::after_attempt`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Attempt<'a> {
    /// The backend answered with this response head.
    Response(&'a response::Parts),
    /// The attempt failed before a response head arrived.
    Failed(&'a UpstreamError),
}

/// Whether to try a request again after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Keep this outcome: pass the response on, or answer the error.
    No,
    /// Try again: [`ProxyHttp::upstream_peer`] is asked for another backend.
    Yes,
}

/// The behaviour of the proxy, one method per decision; see the [module](self) docs.
///
/// ```
/// use lb_proxy_core::hooks::{LocalResponse, Peer, ProxyHttp, Session};
/// use lb_proxy_core::{PeerOptions, UpstreamClient};
/// use lb_balancer::LoadBalancer;
/// use lb_selection::RoundRobin;
/// use std::sync::Arc;
///
/// struct Balanced {
///     lb: LoadBalancer<RoundRobin>,
///     client: Arc<UpstreamClient>,
/// }
///
/// impl ProxyHttp for Balanced {
///     type Ctx = ();
///
///     fn new_ctx(&self) {}
///
///     async fn upstream_peer(&self, session: &mut Session, _: &mut ()) -> Result<Peer, LocalResponse> {
///         let key = session.req_header().uri.path().as_bytes();
///         let backend = self.lb.select(key, 256).ok_or_else(LocalResponse::no_backend)?;
///         Ok(Peer::new(backend, self.client.clone()))
///     }
/// }
/// ```
pub trait ProxyHttp: Send + Sync + 'static {
    /// Per-request state, created by [`new_ctx`](Self::new_ctx) and passed to every hook.
    type Ctx: Send + 'static;

    /// A fresh context for a new request.
    fn new_ctx(&self) -> Self::Ctx;

    /// Runs first. `Err` answers the client at once with that response.
    fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut Self::Ctx,
    ) -> impl Future<Output = Result<(), LocalResponse>> + Send {
        let _ = (session, ctx);
        async { Ok(()) }
    }

    /// Chooses the backend for the next attempt ([`Session::attempts`] and
    /// [`Session::tried`] say what failed before). `Err` answers the client with that
    /// response (`LocalResponse::no_backend()` is the usual 503).
    fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Self::Ctx,
    ) -> impl Future<Output = Result<Peer, LocalResponse>> + Send;

    /// Rewrites the request head sent to `peer` (already stripped of hop-by-hop headers).
    fn upstream_request_filter(
        &self,
        session: &Session,
        upstream_request: &mut Parts,
        peer: &Peer,
        ctx: &mut Self::Ctx,
    ) {
        let _ = (session, upstream_request, peer, ctx);
    }

    /// Hears how an attempt went and decides whether to try again. The default never
    /// retries.
    fn after_attempt(
        &self,
        session: &Session,
        peer: &Peer,
        attempt: Attempt<'_>,
        ctx: &mut Self::Ctx,
    ) -> Retry {
        let _ = (session, peer, attempt, ctx);
        Retry::No
    }

    /// Rewrites the response head sent to the client (already stripped of hop-by-hop
    /// headers). Runs for proxied responses, not for local ones.
    fn response_filter(
        &self,
        session: &Session,
        upstream_response: &mut response::Parts,
        ctx: &mut Self::Ctx,
    ) {
        let _ = (session, upstream_response, ctx);
    }

    /// Runs once per request when its response head is ready, with the status sent to the
    /// client.
    fn logging(&self, session: &Session, status: StatusCode, ctx: &mut Self::Ctx) {
        let _ = (session, status, ctx);
    }
}

impl Peer {
    /// The selected backend (its in-flight guard, as `LoadBalancer::select` returns it) and
    /// the client that reaches it.
    pub fn new(in_flight: InFlight, client: Arc<UpstreamClient>) -> Self {
        Self {
            guard: Guard {
                in_flight,
                release: None,
            },
            client,
            upgrade_idle_timeout: DEFAULT_UPGRADE_IDLE_TIMEOUT,
        }
    }

    /// How long an upgraded connection (a WebSocket) through this peer may stay silent in
    /// both directions before both sides are closed; one hour by default.
    #[must_use]
    pub fn with_upgrade_idle_timeout(mut self, idle: Duration) -> Self {
        self.upgrade_idle_timeout = idle;
        self
    }

    /// See [`with_upgrade_idle_timeout`](Self::with_upgrade_idle_timeout).
    pub fn upgrade_idle_timeout(&self) -> Duration {
        self.upgrade_idle_timeout
    }

    /// The backend.
    pub fn backend(&self) -> &Backend {
        self.guard.in_flight.backend()
    }

    pub(crate) fn with_release(mut self, release: Release) -> Self {
        self.guard.release = Some(release);
        self
    }

    /// The client that reaches it.
    pub fn client(&self) -> &UpstreamClient {
        &self.client
    }

    pub(crate) fn into_guard(self) -> Guard {
        self.guard
    }
}

impl Attempt<'_> {
    /// The response status, if the backend answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Attempt::Response(parts) => Some(parts.status),
            Attempt::Failed(_) => None,
        }
    }

    /// The error, if the attempt failed.
    pub fn error(&self) -> Option<&UpstreamError> {
        match self {
            Attempt::Response(_) => None,
            Attempt::Failed(e) => Some(e),
        }
    }
}
