//! The running configuration of the TOML-driven proxy, replaced whole on reload.
//!
//! [`LiveProxy`] holds the current [`ConfigProxy`] behind an `ArcSwap`. Each request takes
//! the generation that is current when it arrives (one atomic reference count in
//! `new_ctx`) and keeps it to its end, so a reload never changes the routes, upstreams or
//! counters under a request in flight, and requests never wait for a reload: the swap is
//! one atomic store.

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::request::Parts;
use http::{response, StatusCode};

use crate::config_proxy::{ConfigProxy, RequestCtx};
use crate::hooks::{Attempt, LocalResponse, Peer, ProxyHttp, Retry, Session};

/// The hooks the listeners call: the current [`ConfigProxy`], swapped on reload.
#[derive(Debug)]
pub(crate) struct LiveProxy {
    current: ArcSwap<ConfigProxy>,
}

/// Per-request state: the generation the request started with, and its own context.
#[derive(Debug)]
pub(crate) struct LiveCtx {
    proxy: Arc<ConfigProxy>,
    ctx: RequestCtx,
}

impl LiveProxy {
    /// Serves `first` until the next [`store`](Self::store).
    pub(crate) fn new(first: Arc<ConfigProxy>) -> Self {
        Self {
            current: ArcSwap::new(first),
        }
    }

    /// The current generation.
    pub(crate) fn load(&self) -> Arc<ConfigProxy> {
        self.current.load_full()
    }

    /// Makes `next` the generation of every request that starts from now on.
    pub(crate) fn store(&self, next: Arc<ConfigProxy>) {
        self.current.store(next);
    }
}

impl ProxyHttp for LiveProxy {
    type Ctx = LiveCtx;

    fn new_ctx(&self) -> LiveCtx {
        let proxy = self.current.load_full();
        let ctx = proxy.new_ctx();
        LiveCtx { proxy, ctx }
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut LiveCtx,
    ) -> Result<(), LocalResponse> {
        ctx.proxy.request_filter(session, &mut ctx.ctx).await
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut LiveCtx,
    ) -> Result<Peer, LocalResponse> {
        ctx.proxy.upstream_peer(session, &mut ctx.ctx).await
    }

    fn upstream_request_filter(
        &self,
        session: &Session,
        upstream_request: &mut Parts,
        peer: &Peer,
        ctx: &mut LiveCtx,
    ) {
        ctx.proxy
            .upstream_request_filter(session, upstream_request, peer, &mut ctx.ctx);
    }

    fn after_attempt(
        &self,
        session: &Session,
        peer: &Peer,
        attempt: Attempt<'_>,
        ctx: &mut LiveCtx,
    ) -> Retry {
        ctx.proxy
            .after_attempt(session, peer, attempt, &mut ctx.ctx)
    }

    fn response_filter(
        &self,
        session: &Session,
        upstream_response: &mut response::Parts,
        ctx: &mut LiveCtx,
    ) {
        ctx.proxy
            .response_filter(session, upstream_response, &mut ctx.ctx);
    }

    fn logging(&self, session: &Session, status: StatusCode, ctx: &mut LiveCtx) {
        ctx.proxy.logging(session, status, &mut ctx.ctx);
    }
}
