//! The per-request path: route, select, rewrite, forward, stream back.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use lb_health::Outcome;

use crate::body::ProxyBody;
use crate::connector::{self, Connector, UpstreamAuthority};
use crate::headers;
use crate::router::Router;
use crate::upstream::Upstream;

/// Everything a request needs, shared by all connections.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) upstreams: Vec<Upstream>,
    /// The `[[routes]]`, whose upstream indexes point into `upstreams`.
    pub(crate) router: Router,
    /// One HTTP/1.1 client (keep-alive pool per backend) per upstream, by index.
    pub(crate) clients: Vec<Client<Connector, Incoming>>,
}

impl Shared {
    pub(crate) fn new(upstreams: Vec<Upstream>, router: Router) -> Self {
        let clients = upstreams
            .iter()
            .map(|u| {
                Client::builder(TokioExecutor::new()).build(Connector {
                    timeout: u.connect_timeout(),
                })
            })
            .collect();
        Self {
            upstreams,
            router,
            clients,
        }
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
    let (mut parts, body) = req.into_parts();
    // Routing: the first matching `[[routes]]` entry names the upstream (router.rs).
    let Some(route) = shared.router.route(&parts) else {
        return Ok(local(
            StatusCode::NOT_FOUND,
            "404 Not Found: no route matches\n",
        ));
    };
    let index = route.upstream();
    let upstream = &shared.upstreams[index];
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
    // The route's `request_headers` rules, after the proxy's own rewriting.
    route.request_headers().apply(&mut parts.headers);
    let Some(uri) = upstream_uri(&guard, &parts.uri) else {
        return Ok(local(StatusCode::BAD_REQUEST, "400 Bad Request\n"));
    };
    parts.uri = uri;
    parts.version = Version::HTTP_11;

    match shared.clients[index]
        .request(Request::from_parts(parts, body))
        .await
    {
        Ok(resp) => {
            upstream
                .balancer()
                .report(guard.backend(), Outcome::Status(resp.status().as_u16()));
            let (mut parts, body) = resp.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers);
            // The route's `response_headers` rules (upstream responses only).
            route.response_headers().apply(&mut parts.headers);
            Ok(Response::from_parts(
                parts,
                ProxyBody::upstream(body, guard),
            ))
        }
        Err(error) => {
            let outcome = if error.is_connect() {
                Outcome::ConnectFailure
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
            Ok(local(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n"))
        }
    }
}

fn upstream_uri(backend: &lb_core::Backend, original: &Uri) -> Option<Uri> {
    let authority = match backend.metadata().get::<UpstreamAuthority>() {
        Some(cached) => cached.0.clone(),
        None => Authority::try_from(connector::authority(backend.addr())).ok()?,
    };
    let path = original
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(authority)
        .path_and_query(path)
        .build()
        .ok()
}
