//! The per-request path: route, select, rewrite, forward, stream back.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use lb_health::Outcome;

use crate::body::ProxyBody;
use crate::config::ServerConfig;
use crate::connector::{self, Connector, UpstreamAuthority};
use crate::headers::{self, Forwarding};
use crate::upgrade::UpgradeRequest;
use crate::upstream::Upstream;

/// Everything a request needs, shared by all connections.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) upstreams: Vec<Upstream>,
    /// For each `[[routes]]` entry, in order, the index of its upstream.
    pub(crate) routes: Vec<usize>,
    /// One HTTP/1.1 client (keep-alive pool per backend) per upstream, by index.
    pub(crate) clients: Vec<Client<Connector, Incoming>>,
    /// `[server.forwarding]`, prepared (crate::headers).
    pub(crate) forwarding: Forwarding,
    /// `[server] upgrade_idle_timeout`, for upstreams without their own (crate::upgrade).
    pub(crate) upgrade_idle_timeout: Duration,
}

impl Shared {
    pub(crate) fn new(upstreams: Vec<Upstream>, routes: Vec<usize>, server: &ServerConfig) -> Self {
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
            routes,
            clients,
            forwarding: Forwarding::new(&server.forwarding),
            upgrade_idle_timeout: server.upgrade_idle_timeout.get(),
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
    // Routes match everything for now; the first one wins.
    let Some(&index) = shared.routes.first() else {
        return Ok(local(
            StatusCode::NOT_FOUND,
            "404 Not Found: no route matches\n",
        ));
    };
    let upstream = &shared.upstreams[index];
    let (mut parts, body) = req.into_parts();
    // The client a trusted proxy vouches for (crate::headers), also what ip_hash hashes.
    let client = shared.forwarding.client(client.ip(), &parts.headers);
    let Some(guard) = upstream.select(&parts, client.ip) else {
        tracing::debug!(upstream = upstream.name(), "no usable backend");
        return Ok(local(
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Unavailable: no healthy backend\n",
        ));
    };

    // Host, hop-by-hop and forwarding headers (crate::headers); an HTTP/1.1 upgrade keeps
    // its Connection/Upgrade (crate::upgrade). TODO(tls listeners): pass the connection's tls.
    let upgrade = UpgradeRequest::take(&mut parts);
    shared
        .forwarding
        .rewrite_request(&mut parts, &client, false, upstream.host_header());
    if let Some(up) = &upgrade {
        up.restore_headers(&mut parts.headers);
    }
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
            if let Some(up) = upgrade.filter(|_| resp.status() == StatusCode::SWITCHING_PROTOCOLS) {
                let idle = upstream
                    .upgrade_idle_timeout()
                    .unwrap_or(shared.upgrade_idle_timeout);
                return Ok(up.switch(resp, guard, idle));
            }
            let (mut parts, body) = resp.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers);
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
