//! The per-request path: route, select, rewrite, forward, stream back.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;

use lb_health::Outcome;

use crate::body::ProxyBody;
use crate::headers;
use crate::upstream::Upstream;

/// Everything a request needs, shared by all connections.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) upstreams: Vec<Upstream>,
    /// For each `[[routes]]` entry, in order, the index of its upstream.
    pub(crate) routes: Vec<usize>,
}

impl Shared {
    pub(crate) fn new(upstreams: Vec<Upstream>, routes: Vec<usize>) -> Self {
        Self { upstreams, routes }
    }
}

fn local(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::local(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

/// Handles one request from `client`.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    client: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    // Routes match everything for now; the first one wins.
    let Some(&index) = shared.routes.first() else {
        return Ok(local(
            StatusCode::NOT_FOUND,
            "404 Not Found: no route matches\n",
        ));
    };
    let upstream = &shared.upstreams[index];
    let (mut parts, body) = req.into_parts();
    let Some(guard) = upstream.select(&parts, client.ip()) else {
        tracing::debug!(upstream = upstream.name(), "no usable backend");
        return Ok(local(
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Unavailable: no healthy backend\n",
        ));
    };

    // HTTP/2 clients send the authority in the URI only; HTTP/1.1 backends need `Host`.
    if !parts.headers.contains_key(header::HOST) {
        if let Some(host) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            parts.headers.insert(header::HOST, host);
        }
    }
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::append_forwarded_for(&mut parts.headers, client.ip());
    parts.version = Version::HTTP_11;

    // The upstream's client (client.rs) sets the backend URI, speaks TLS/HTTP/2 and
    // enforces the connect, read and write timeouts.
    match upstream
        .client()
        .request(guard.backend(), Request::from_parts(parts, body))
        .await
    {
        Ok(resp) => {
            upstream
                .balancer()
                .report(guard.backend(), Outcome::Status(resp.status().as_u16()));
            let (mut parts, body) = resp.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers);
            Ok(Response::from_parts(
                parts,
                ProxyBody::upstream(body, guard),
            ))
        }
        Err(error) => {
            // Connected but no answer in time: 504, as nginx; any other failure: 502.
            let timed_out = error.is_timeout() && !error.is_connect();
            let outcome = if error.is_connect() {
                Outcome::ConnectFailure
            } else if timed_out {
                Outcome::Timeout
            } else {
                Outcome::Error
            };
            upstream.balancer().report(guard.backend(), outcome);
            tracing::debug!(
                upstream = upstream.name(),
                backend = %guard.backend(),
                error = &error as &dyn std::error::Error,
                "upstream request failed"
            );
            if timed_out {
                return Ok(local(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Timeout\n"));
            }
            Ok(local(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n"))
        }
    }
}
