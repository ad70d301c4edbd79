//! The TOML-driven proxy: the [`ProxyHttp`] implementation that [`Proxy`](crate::Proxy)
//! runs, built from a [`Config`](crate::config::Config).
//!
//! Route → upstream (request filter); select a backend with room that this request has
//! not tried (upstream peer, waiting in the upstream's queue when every backend is full);
//! forwarding headers (upstream request filter); report each attempt's outcome to passive
//! health and apply the retry policy and budget (after attempt).

use lb_health::Outcome;

use crate::headers;
use crate::hooks::{Attempt, LocalResponse, Peer, ProxyHttp, Retry, Session};
use crate::retry::Decision;
use crate::upstream::Upstream;

/// Everything a request needs, shared by all connections.
#[derive(Debug)]
pub(crate) struct ConfigProxy {
    pub(crate) upstreams: Vec<Upstream>,
    /// For each `[[routes]]` entry, in order, the index of its upstream.
    pub(crate) routes: Vec<usize>,
}

/// Per-request state of the TOML-driven proxy.
#[derive(Debug)]
pub(crate) struct RequestCtx {
    /// The index of the routed upstream.
    upstream: usize,
}

impl ConfigProxy {
    pub(crate) fn new(upstreams: Vec<Upstream>, routes: Vec<usize>) -> Self {
        Self { upstreams, routes }
    }

    fn upstream(&self, ctx: &RequestCtx) -> &Upstream {
        &self.upstreams[ctx.upstream]
    }
}

impl ProxyHttp for ConfigProxy {
    type Ctx = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx { upstream: 0 }
    }

    async fn request_filter(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<(), LocalResponse> {
        // Routes match everything for now; the first one wins.
        let Some(&index) = self.routes.first() else {
            return Err(LocalResponse::no_route());
        };
        ctx.upstream = index;
        Ok(())
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Peer, LocalResponse> {
        let upstream = self.upstream(ctx);
        if session.attempts() == 0 && upstream.retry().enabled() {
            upstream.retry().request_started();
            session.set_replay_limit(upstream.retry().replay_limit());
        }
        upstream.peer(session).await
    }

    fn upstream_request_filter(
        &self,
        session: &Session,
        upstream_request: &mut http::request::Parts,
        _peer: &Peer,
        _ctx: &mut RequestCtx,
    ) {
        headers::append_forwarded_for(&mut upstream_request.headers, session.client_addr().ip());
    }

    fn after_attempt(
        &self,
        session: &Session,
        peer: &Peer,
        attempt: Attempt<'_>,
        ctx: &mut RequestCtx,
    ) -> Retry {
        let upstream = self.upstream(ctx);
        let outcome = match &attempt {
            Attempt::Response(parts) => Outcome::Status(parts.status.as_u16()),
            Attempt::Failed(e) if e.is_connect() => Outcome::ConnectFailure,
            Attempt::Failed(e) if e.is_timeout() => Outcome::Timeout,
            Attempt::Failed(_) => Outcome::Error,
        };
        upstream.balancer().report(peer.backend(), outcome);
        if !session.body_replayable() {
            return Retry::No;
        }
        let decision = upstream.retry().decide(
            &attempt,
            &session.req_header().method,
            session.attempts(),
            session.elapsed(),
            || {
                // Retry only if another backend could take it; else keep this outcome (a
                // 502 or the backend's own response) rather than turn it into a 503.
                let backends = upstream.balancer().backends();
                backends
                    .iter()
                    .any(|b| {
                        b.state().is_usable()
                            && b.addr() != peer.backend().addr()
                            && !session.has_tried(b)
                    })
                    .then_some(backends.len())
            },
        );
        match decision {
            Decision::Keep => Retry::No,
            Decision::Retry(reason) => {
                tracing::info!(
                    upstream = upstream.name(),
                    backend = %peer.backend(),
                    reason = reason.as_str(),
                    attempt = session.attempts(),
                    "retrying on another backend"
                );
                Retry::Yes
            }
            Decision::OverBudget(reason) => {
                tracing::warn!(
                    upstream = upstream.name(),
                    backend = %peer.backend(),
                    reason = reason.as_str(),
                    "retry budget exhausted; not retrying"
                );
                Retry::No
            }
        }
    }
}
