//! [`Session`]: one request on its way through the proxy, with what the proxy knows of its
//! connection ([`ConnInfo`]) and its replay policy (how much of its body is kept to send it
//! again, and whether it still can be).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::request::Parts;
use lb_core::Backend;

use crate::protect::ClientBody;
use crate::replay::{ReplayPolicy, RequestBody};

/// What the proxy knows about the connection a request arrived on; `Copy`, passed to the
/// service with every request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The proxy's address the client connected to.
    pub local: SocketAddr,
    /// True when the connection came through a TLS listener (for `X-Forwarded-Proto`).
    pub tls: bool,
}

/// One request on its way through the proxy: the client's request head and what happened
/// to it so far.
#[derive(Debug)]
pub struct Session {
    req: Parts,
    conn: ConnInfo,
    started: Instant,
    attempts: u32,
    tried: Vec<Backend>,
    /// The body and the policy for sending it again: the hooks set the limit, the
    /// pipeline takes each attempt's body from here.
    replay: ReplayPolicy,
}

impl Session {
    /// A request without a body (see [`set_body`](Self::set_body)).
    pub(crate) fn new(req: Parts, conn: ConnInfo) -> Self {
        Self {
            req,
            conn,
            started: Instant::now(),
            attempts: 0,
            tried: Vec::new(),
            replay: ReplayPolicy::default(),
        }
    }

    /// The request's body: what its attempts send.
    pub(crate) fn set_body(&mut self, body: ClientBody) {
        self.replay.set_body(body);
    }

    /// The client's request head.
    pub fn req_header(&self) -> &Parts {
        &self.req
    }

    /// The client's request head, to change before it is forwarded.
    pub fn req_header_mut(&mut self) -> &mut Parts {
        &mut self.req
    }

    /// The client connection.
    pub fn conn(&self) -> &ConnInfo {
        &self.conn
    }

    /// The client's address.
    pub fn client_addr(&self) -> SocketAddr {
        self.conn.peer
    }

    /// How long ago the request arrived.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// When the request arrived.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// How many attempts were made so far (0 in the first `upstream_peer` call).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The backends of the failed attempts so far, oldest first.
    pub fn tried(&self) -> &[Backend] {
        &self.tried
    }

    /// True when an earlier attempt of this request went to `backend`.
    pub fn has_tried(&self, backend: &Backend) -> bool {
        self.tried.iter().any(|b| b.addr() == backend.addr())
    }

    /// Lets the request be retried after its body started streaming: up to `bytes` of the
    /// request body are kept for replay (0, the default, means a request with a body is
    /// retried only if none of it was read). Set it in `upstream_peer` before the first
    /// attempt.
    pub fn set_replay_limit(&mut self, bytes: usize) {
        self.replay.set_limit(bytes);
    }

    /// True when the request could be sent again after the attempt that just ended (its
    /// body, if any, is still whole in the replay buffer). The pipeline never retries
    /// otherwise, whatever [`ProxyHttp::after_attempt`](super::ProxyHttp::after_attempt)
    /// answers.
    pub fn body_replayable(&self) -> bool {
        self.replay.replayable()
    }

    /// The body for the next attempt: the first records it for replay (up to the replay
    /// limit), later ones send it again; `None` when it cannot be sent again.
    pub(crate) fn attempt_body(&mut self) -> Option<RequestBody> {
        self.replay.next_body()
    }

    /// The attempt's request was sent (or failed): notes, and returns, whether the request
    /// can still be sent again ([`body_replayable`](Self::body_replayable)).
    pub(crate) fn attempt_sent(&mut self) -> bool {
        self.replay.attempt_sent()
    }

    pub(crate) fn attempt_failed(&mut self, backend: Backend) {
        self.tried.push(backend);
    }

    pub(crate) fn begin_attempt(&mut self) {
        self.attempts += 1;
    }
}
