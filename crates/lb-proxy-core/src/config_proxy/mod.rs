//! The TOML-driven proxy: the [`ProxyHttp`] implementation that `lb_proxy::Proxy`
//! runs, built from a [`Config`](crate::config::Config).
//!
//! - request filter: the route, hence the upstream, and the client address that trusted
//!   proxies vouch for;
//! - upstream peer: a backend with room that this request has not tried, waiting in the
//!   upstream's queue when every backend is full;
//! - upstream request filter: forwarding headers, `Host`, the route's request header rules;
//! - after attempt: the outcome reported to passive health, then the retry policy and
//!   budget;
//! - response filter: the route's response header rules;
//! - after attempt and logging also count the request for `/metrics` and `/status`
//!   ([`crate::stats`]: atomics only) and queue its access log line.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use lb_core::Backend;

use lb_health::Outcome;

use crate::access_log::{AccessLog, Record};
use crate::client::UpstreamError;
use crate::config::ServerConfig;
use crate::headers::{ClientAddr, Forwarding};
use crate::hooks::{Attempt, LocalResponse, Peer, ProxyHttp, Retry, Session};
use crate::limits::Refused;
use crate::retry::Decision;
use crate::router::Router;
use crate::stats::Stats;
use crate::upstream::Upstream;

/// Everything a request needs, shared by all connections.
#[derive(Debug)]
pub struct ConfigProxy {
    /// Shared with the generations before and after this one when a reload keeps them.
    pub upstreams: Vec<Arc<Upstream>>,
    /// The `[[routes]]`, matched in order.
    pub router: Router,
    /// `[server.forwarding]`: trusted proxies and the forwarding headers to write.
    forwarding: Forwarding,
    /// `[server] upgrade_idle_timeout`, for upstreams without their own.
    upgrade_idle_timeout: Duration,
    /// Request counters for the admin listener, created with the upstreams.
    pub stats: Arc<Stats>,
    /// `[access_log]`, when on.
    access_log: Option<AccessLog>,
}

/// Per-request state of the TOML-driven proxy.
#[derive(Debug)]
pub struct RequestCtx {
    /// The index of the matched route.
    route: usize,
    /// The index of the routed upstream.
    upstream: usize,
    /// The client, as trusted proxies vouch for it (what `ip_hash` hashes).
    client: Option<ClientAddr>,
    /// Whether a route matched (`route` and `upstream` are meaningful).
    routed: bool,
    /// When the current attempt's request was sent.
    attempt_started: Option<Instant>,
    /// The last attempt's time to its response head.
    upstream_time: Option<Duration>,
    /// The last attempt's backend (kept only for the access log).
    backend: Option<Backend>,
    /// The response's `Content-Length` (read only for the access log).
    bytes: Option<u64>,
}

impl ConfigProxy {
    /// One configuration generation: its upstreams (in `[upstreams]` order, as the router
    /// and `stats` index them), routes, `[server]` settings and counters.
    pub fn new(
        upstreams: Vec<Arc<Upstream>>,
        router: Router,
        server: &ServerConfig,
        stats: Stats,
    ) -> Self {
        Self {
            upstreams,
            router,
            forwarding: Forwarding::new(&server.forwarding),
            upgrade_idle_timeout: server.upgrade_idle_timeout.get(),
            stats: Arc::new(stats),
            access_log: None,
        }
    }

    /// Writes the access log through `log`.
    pub fn with_access_log(mut self, log: Option<AccessLog>) -> Self {
        self.access_log = log;
        self
    }

    fn upstream(&self, ctx: &RequestCtx) -> &Upstream {
        &self.upstreams[ctx.upstream]
    }

    /// The client as trusted proxies vouch for it, read from the request head once (by
    /// the request filter) and kept in `ctx`.
    fn client<'c>(&self, session: &Session, ctx: &'c mut RequestCtx) -> &'c ClientAddr {
        ctx.client.get_or_insert_with(|| {
            self.forwarding
                .client(session.client_addr().ip(), &session.req_header().headers)
        })
    }
}

impl RequestCtx {
    /// The client's IP address as trusted proxies vouch for it, or the connection's peer
    /// when the request filter did not run (a request refused before it).
    fn client_ip(&self, session: &Session) -> IpAddr {
        self.client
            .as_ref()
            .map_or_else(|| session.client_addr().ip(), |c| c.ip)
    }
}

impl ProxyHttp for ConfigProxy {
    type Ctx = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            route: 0,
            upstream: 0,
            client: None,
            routed: false,
            attempt_started: None,
            upstream_time: None,
            backend: None,
            bytes: None,
        }
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<(), LocalResponse> {
        self.client(session, ctx);
        let Some(route) = self.router.route(session.req_header()) else {
            return Err(LocalResponse::no_route());
        };
        ctx.route = route.index();
        ctx.upstream = route.upstream();
        ctx.routed = true;
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
        let client = ctx.client_ip(session);
        let peer = upstream
            .peer(session.req_header(), client, session.tried())
            .await
            .map_err(refusal)?;
        let idle = upstream
            .upgrade_idle_timeout()
            .unwrap_or(self.upgrade_idle_timeout);
        Ok(peer.with_upgrade_idle_timeout(idle))
    }

    fn upstream_request_filter(
        &self,
        session: &Session,
        upstream_request: &mut http::request::Parts,
        _peer: &Peer,
        ctx: &mut RequestCtx,
    ) {
        let upstream = self.upstream(ctx);
        let client = self.client(session, ctx);
        self.forwarding.rewrite_request(
            upstream_request,
            client,
            session.conn().tls,
            upstream.host_header(),
        );
        self.router.routes()[ctx.route]
            .request_headers()
            .apply(&mut upstream_request.headers);
        ctx.attempt_started = Some(Instant::now());
    }

    fn response_filter(
        &self,
        _session: &Session,
        upstream_response: &mut http::response::Parts,
        ctx: &mut RequestCtx,
    ) {
        self.router.routes()[ctx.route]
            .response_headers()
            .apply(&mut upstream_response.headers);
        // Only the access log reads it.
        if self.access_log.is_some() {
            ctx.bytes = upstream_response
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
        }
    }

    fn logging(&self, session: &Session, status: http::StatusCode, ctx: &mut RequestCtx) {
        let (route, upstream) = if ctx.routed {
            (Some(ctx.route), Some(ctx.upstream))
        } else {
            (None, None)
        };
        let elapsed = session.elapsed();
        self.stats
            .record_request(route, upstream, status.as_u16(), elapsed);
        if let Some(log) = &self.access_log {
            let req = session.req_header();
            log.log(Record {
                time: SystemTime::now()
                    .checked_sub(elapsed)
                    .unwrap_or(SystemTime::UNIX_EPOCH),
                client: ctx.client_ip(session),
                method: req.method.clone(),
                uri: req.uri.clone(),
                version: req.version,
                status: status.as_u16(),
                bytes: ctx.bytes,
                route,
                upstream,
                backend: ctx.backend.take(),
                duration: elapsed,
                upstream_time: ctx.upstream_time,
                retries: session.attempts().saturating_sub(1),
                referer: req.headers.get(http::header::REFERER).cloned(),
                user_agent: req.headers.get(http::header::USER_AGENT).cloned(),
            });
        }
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
        // Fault suite (tests/fault_fds.rs): a socket the proxy could not even create (out of
        // descriptors) is not the backend's failure; reporting it ejected healthy backends.
        if !attempt
            .error()
            .is_some_and(UpstreamError::is_local_resource)
        {
            upstream.balancer().report(peer.backend(), outcome);
        }
        // Metrics: the backend's counters (atomics in a map built off the request path).
        let took = ctx.attempt_started.take().map(|t| t.elapsed());
        ctx.upstream_time = took.filter(|_| attempt.status().is_some());
        self.stats.upstreams[ctx.upstream].with_backend(
            peer.backend().addr(),
            |b| match &attempt {
                Attempt::Response(parts) => {
                    b.responses.record(parts.status.as_u16());
                    if let Some(took) = took {
                        b.ttfb.observe(took);
                    }
                }
                Attempt::Failed(e) => b.record_error(e),
            },
        );
        if self.access_log.is_some() {
            ctx.backend = Some(peer.backend().clone());
        }
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

/// The local response for an upstream that gave no peer: 503 either way, saying why.
fn refusal(refused: Refused) -> LocalResponse {
    match refused {
        Refused::NoBackend => LocalResponse::no_backend(),
        Refused::Overloaded => LocalResponse::overloaded(),
    }
}

#[cfg(test)]
mod tests;
