//! The client that sends requests to backends: Pingora's `HttpPeer` options and connector.

use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lb_core::Backend;

use crate::connector::{self, Connector, UpstreamAuthority};
use crate::replay::RequestBody;

/// How to connect to the backends of one upstream.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PeerOptions {
    /// How long a TCP connect may take.
    pub connect_timeout: Duration,
    /// How long to wait for the response head once the request is sent.
    pub read_timeout: Option<Duration>,
}

impl Default for PeerOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            read_timeout: None,
        }
    }
}

/// Sends requests to backends over pooled keep-alive connections.
#[derive(Debug)]
pub struct UpstreamClient {
    client: Client<Connector, RequestBody>,
    options: PeerOptions,
}

/// Why a request to a backend failed.
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct UpstreamError {
    kind: Kind,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Connect,
    Timeout,
    Request,
    InvalidUri,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Connect => "cannot connect to the backend",
            Kind::Timeout => "the backend did not answer in time",
            Kind::Request => "the request to the backend failed",
            Kind::InvalidUri => "the request cannot be addressed to the backend",
        })
    }
}

impl UpstreamError {
    /// The request provably never reached the backend (no connection was made).
    pub fn is_connect(&self) -> bool {
        self.kind == Kind::Connect
    }

    /// The backend did not answer within a timeout.
    pub fn is_timeout(&self) -> bool {
        self.kind == Kind::Timeout
    }

    /// The backend answered something that is not a valid HTTP response.
    pub fn is_invalid_response(&self) -> bool {
        self.source
            .as_deref()
            .and_then(|e| e.downcast_ref::<hyper_util::client::legacy::Error>())
            .and_then(std::error::Error::source)
            .and_then(|e| e.downcast_ref::<hyper::Error>())
            .is_some_and(hyper::Error::is_parse)
    }
}

impl UpstreamClient {
    /// A client with `options`.
    pub fn new(options: PeerOptions) -> Self {
        let client = Client::builder(TokioExecutor::new()).build(Connector {
            timeout: options.connect_timeout,
        });
        Self { client, options }
    }

    /// The options.
    pub fn options(&self) -> &PeerOptions {
        &self.options
    }

    /// Sends `req` to `backend` and waits for the response head.
    pub async fn request(
        &self,
        backend: &Backend,
        mut req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let Some(uri) = upstream_uri(backend, req.uri()) else {
            return Err(UpstreamError {
                kind: Kind::InvalidUri,
                source: None,
            });
        };
        *req.uri_mut() = uri;
        let sent = self.client.request(req);
        let result = match self.options.read_timeout {
            Some(limit) => match tokio::time::timeout(limit, sent).await {
                Ok(r) => r,
                Err(elapsed) => {
                    return Err(UpstreamError {
                        kind: Kind::Timeout,
                        source: Some(elapsed.into()),
                    })
                }
            },
            None => sent.await,
        };
        result.map_err(|e| {
            let timed_out = std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<std::io::Error>())
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
            let kind = match (e.is_connect(), timed_out) {
                (true, _) => Kind::Connect,
                (false, true) => Kind::Timeout,
                (false, false) => Kind::Request,
            };
            UpstreamError {
                kind,
                source: Some(e.into()),
            }
        })
    }
}

fn upstream_uri(backend: &Backend, original: &Uri) -> Option<Uri> {
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
