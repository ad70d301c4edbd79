//! The request pipeline: the same steps for every request, with a [`ProxyHttp`]
//! implementation deciding at each step (see [`crate::hooks`]).
//!
//! request filter → (upstream peer → upstream request filter → send → after attempt)+ →
//! response filter → logging. A retry sends the request head again (the client's head is
//! kept in the [`Session`]) with the body replayed from its bounded buffer (the session's
//! replay policy, `replay.rs`); a body that outgrew the buffer after part of it was sent is
//! never sent twice, whatever the hook says. Every local answer, the protections' refusals
//! included, is made in one place ([`local_response`]).

use std::convert::Infallible;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;

use crate::body::ProxyBody;
use crate::headers;
use crate::hooks::{Attempt, ConnInfo, LocalResponse, ProxyHttp, Retry, Session};
use crate::protect::{self, ClientBody, RequestLimits};
use crate::upgrade::UpgradeRequest;

/// Serves one request from the connection `conn` with `hooks`, within `limits`.
pub(crate) async fn handle<H: ProxyHttp>(
    hooks: Arc<H>,
    conn: ConnInfo,
    req: Request<Incoming>,
    limits: RequestLimits,
) -> Result<Response<ProxyBody>, Infallible> {
    let (mut parts, body) = req.into_parts();
    // Hostile input (protect/): the framing check's verdict (carried by the request), sizes,
    // framing and Host before anything acts on the head.
    let checked = protect::inspect(&mut parts, &http_body::Body::size_hint(&body), &limits);
    let mut session = Session::new(parts, conn);
    let mut ctx = hooks.new_ctx();
    let resp = match checked {
        Ok(()) => {
            session.set_body(ClientBody::new(body, &limits));
            run(&*hooks, &mut session, &mut ctx).await
        }
        Err(refused) => local_response(&refused.into(), session.req_header().version),
    };
    hooks.logging(&session, resp.status(), &mut ctx);
    Ok(resp)
}

async fn run<H: ProxyHttp>(
    hooks: &H,
    session: &mut Session,
    ctx: &mut H::Ctx,
) -> Response<ProxyBody> {
    let version = session.req_header().version;
    if let Err(local) = hooks.request_filter(session, ctx).await {
        return local_response(&local, version);
    }
    // HTTP/2 clients send the authority in the URI only; HTTP/1.1 backends need `Host`.
    // (An HTTP/1.1 origin-form request has no authority: `Host` is not looked up.)
    let req = session.req_header_mut();
    if let Some(authority) = req.uri.authority() {
        if !req.headers.contains_key(header::HOST) {
            if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
                req.headers.insert(header::HOST, host);
            }
        }
    }

    // An HTTP/1.1 upgrade (WebSocket) keeps its Connection/Upgrade headers and, on 101,
    // splices the two connections (crate::upgrade).
    let upgrade = UpgradeRequest::take(session.req_header_mut());
    loop {
        let peer = match hooks.upstream_peer(session, ctx).await {
            Ok(peer) => peer,
            Err(local) => return local_response(&local, version),
        };
        // The session's replay policy: the first attempt records the body (up to the limit
        // the hooks set), later ones send it again.
        let Some(attempt_body) = session.attempt_body() else {
            return local_response(&LocalResponse::bad_gateway(), version);
        };
        session.begin_attempt();
        let mut upstream = clone_head(session.req_header());
        headers::strip_hop_by_hop(&mut upstream.headers);
        if let Some(up) = &upgrade {
            up.restore_headers(&mut upstream.headers);
        }
        hooks.upstream_request_filter(session, &mut upstream, &peer, ctx);
        upstream.version = http::Version::HTTP_11;

        let sent = peer
            .client()
            .request(peer.backend(), Request::from_parts(upstream, attempt_body))
            .await;
        let can_replay = session.attempt_sent();
        match sent {
            Ok(resp) => {
                let (mut parts, body) = resp.into_parts();
                let retry = hooks.after_attempt(session, &peer, Attempt::Response(&parts), ctx);
                if retry == Retry::Yes && can_replay {
                    session.attempt_failed(peer.backend().clone());
                    continue;
                }
                if parts.status == StatusCode::SWITCHING_PROTOCOLS {
                    if let Some(up) = upgrade {
                        let idle = peer.upgrade_idle_timeout();
                        let resp = Response::from_parts(parts, body);
                        return up.switch(resp, peer.into_guard(), idle);
                    }
                }
                headers::strip_hop_by_hop(&mut parts.headers);
                hooks.response_filter(session, &mut parts, ctx);
                return Response::from_parts(parts, ProxyBody::upstream(body, peer.into_guard()));
            }
            Err(error) => {
                // The client's body failed (too large, too slow, malformed): the client's
                // fault, so no retry and no report against the backend (protect/).
                if let Some(fault) = protect::client_fault(&error) {
                    tracing::debug!(peer = %session.client_addr(), error = fault as &dyn std::error::Error, "request body refused");
                    let version = session.req_header().version;
                    return local_response(&fault.rejection().into(), version);
                }
                tracing::debug!(
                    backend = %peer.backend(),
                    attempt = session.attempts(),
                    error = &error as &dyn std::error::Error,
                    "upstream attempt failed"
                );
                let retry = hooks.after_attempt(session, &peer, Attempt::Failed(&error), ctx);
                if retry == Retry::Yes && can_replay {
                    session.attempt_failed(peer.backend().clone());
                    continue;
                }
                let local = if error.is_timeout() && !error.is_connect() {
                    LocalResponse::gateway_timeout()
                } else {
                    LocalResponse::bad_gateway()
                };
                return local_response(&local, version);
            }
        }
    }
}

/// Header slots kept free in an attempt's head for what the hooks add (the forwarding
/// headers: `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Real-IP`, `Via`, ...), so adding them
/// does not grow the map (a reallocation of both its tables).
const HEADROOM: usize = 6;

/// A copy of the client's request head for one attempt (extensions are not copied; the
/// version stays the client's until the hooks ran, for `Via`). The header map is built
/// with room for the hooks' additions: two allocations, where a clone and its growth took
/// four.
fn clone_head(req: &http::request::Parts) -> http::request::Parts {
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = req.method.clone();
    parts.uri = req.uri.clone();
    parts.version = req.version;
    let mut headers = HeaderMap::with_capacity(req.headers.keys_len() + HEADROOM);
    for (name, value) in &req.headers {
        headers.append(name, value.clone());
    }
    parts.headers = headers;
    parts
}

/// The response for a local answer (every one goes through here: the hooks', the
/// protections' and the pipeline's own) to a request of `version`. One that closes the
/// connection says so over HTTP/1.x (`Connection: close`), so the rest of what the client
/// sent on the connection is never read as another request.
fn local_response(local: &LocalResponse, version: Version) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::local(local.text()));
    *resp.status_mut() = local.status();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(v) = local.retry_after_header() {
        headers.insert(header::RETRY_AFTER, v.clone());
    }
    if local.closes_connection() && version < Version::HTTP_2 {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}
