//! The upstream HTTP client: [`UpstreamClient`] sends requests to backends with the
//! connection settings of a [`PeerOptions`] (Pingora's `HttpPeer` options): plain HTTP or
//! TLS (verification, SNI, mTLS, ALPN), HTTP/2 when ALPN picks `h2`, connect, read and
//! write timeouts, a keep-alive pool per backend, and an optional local source address.
//!
//! A peer, for an embedding program's hook, is a backend plus the client to reach it:
//!
//! ```no_run
//! # async fn demo(backend: lb_core::Backend) -> Result<(), Box<dyn std::error::Error>> {
//! use bytes::Bytes;
//! use http_body_util::Empty;
//! use lb_proxy::client::{PeerOptions, TlsOptions, UpstreamClient};
//!
//! let mut options = PeerOptions::default();
//! options.tls = Some(TlsOptions::default());
//! let client: UpstreamClient<Empty<Bytes>> = UpstreamClient::new(options)?;
//! let request = http::Request::get("/health").body(Empty::new())?;
//! match client.request(&backend, request).await {
//!     Ok(response) => println!("{}", response.status()),
//!     Err(e) if e.is_connect() => println!("never reached {backend}: {e}"),
//!     Err(e) if e.is_timeout() => println!("{backend} did not answer in time"),
//!     Err(e) => println!("{backend} failed: {e}"),
//! }
//! # Ok(()) }
//! ```
//!
//! Underneath is hyper-util's pooled client. Connections are pooled by scheme and URI
//! authority, one pool per client: a TLS client and a plain one never share a connection,
//! and the authority of a backend is computed once (see [`prepare_backend`]).

mod body;
mod connector;
mod error;
mod options;
mod stream;
pub(crate) mod target;
mod tls;

pub use body::UpstreamBody;
pub use error::UpstreamError;
pub use options::{load_certs, load_key, Alpn, ClientCert, PeerOptions, PemError, TlsOptions};
pub use tls::ClientBuildError;

use std::error::Error as StdError;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use http_body::Body;
use hyper_util::client::legacy::connect::capture_connection;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use lb_core::{monotonic_ms, Backend};

use body::RequestBody;
use connector::{Connector, ServerNames, Settings};
use error::Kind;
use target::UpstreamAuthority;

/// Sends requests to backends, keeping idle connections for reuse. Cheap to clone (the
/// clones share the pool).
///
/// `B` is the request body type: the proxy's [`RequestBody`](crate::RequestBody) (a
/// client's body, replayable for retries) by default, which is what a [`Peer`](crate::hooks::Peer) uses.
pub struct UpstreamClient<B = crate::replay::RequestBody> {
    client: Client<Connector, RequestBody<B>>,
    scheme: Scheme,
    read_timeout: Option<Duration>,
    /// Server names of backends configured by DNS name: only when TLS takes them (no `sni`).
    names: Option<Arc<ServerNames>>,
    options: Arc<PeerOptions>,
}

impl<B> Clone for UpstreamClient<B> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            scheme: self.scheme.clone(),
            read_timeout: self.read_timeout,
            names: self.names.clone(),
            options: self.options.clone(),
        }
    }
}

impl<B> std::fmt::Debug for UpstreamClient<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamClient")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<B> UpstreamClient<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    /// A client for `options`. Builds the TLS configuration (loading the system roots when
    /// no CA is given); connects to nothing yet.
    pub fn new(options: PeerOptions) -> Result<Self, ClientBuildError> {
        let tls = options.tls.as_ref().map(tls::build).transpose()?;
        let names = tls
            .as_ref()
            .filter(|t| t.server_name.is_none())
            .map(|_| Arc::new(ServerNames::default()));
        let scheme = if tls.is_some() {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        };
        let connector = Connector(Arc::new(Settings {
            connect_timeout: options.connect_timeout,
            total_timeout: options.total_connection_timeout,
            write_timeout: options.write_timeout,
            bind: options.bind,
            tls,
            names: names.clone().unwrap_or_default(),
        }));
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(options.idle_timeout)
            .pool_max_idle_per_host(options.pool_max_idle)
            .build(connector);
        Ok(Self {
            client,
            scheme,
            read_timeout: options.read_timeout,
            names,
            options: Arc::new(options),
        })
    }

    /// The options it was built with.
    pub fn options(&self) -> &PeerOptions {
        &self.options
    }

    /// Sends `req` to `backend` and returns the response once its head arrived; the body
    /// streams behind it, under the read timeout.
    ///
    /// The request's URI is replaced by the backend's address (scheme `http` or `https`)
    /// and its path and query; headers are sent as they are (the caller rewrites them).
    /// HTTP/1.1 or HTTP/2 is chosen per connection (ALPN), whatever `req.version()`.
    pub async fn request(
        &self,
        backend: &Backend,
        req: Request<B>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let (mut parts, body) = req.into_parts();
        parts.uri = self.uri(backend, &parts.uri)?;
        let progress = (self.read_timeout.is_some() && !body.is_end_stream())
            .then(|| Arc::new(AtomicU64::new(monotonic_ms())));
        let mut req = Request::from_parts(parts, RequestBody::new(body, progress.clone()));
        let response = match self.read_timeout {
            None => self.client.request(req).await,
            Some(limit) => {
                let mut connected = capture_connection(&mut req);
                let sent = self.client.request(req);
                let on_connection = async move {
                    connected.wait_for_connection_metadata().await;
                };
                wait_for_head(sent, on_connection, limit, progress.as_deref()).await?
            }
        };
        let response = response.map_err(UpstreamError::from_client)?;
        Ok(response.map(|body| UpstreamBody::new(body, self.read_timeout)))
    }

    /// The backend's URI for the path and query of `original`.
    fn uri(&self, backend: &Backend, original: &Uri) -> Result<Uri, UpstreamError> {
        let computed;
        let target = match backend.metadata().get::<UpstreamAuthority>() {
            Some(cached) => cached,
            None => {
                computed = target::upstream_authority(backend).ok_or_else(|| {
                    UpstreamError::new(
                        Kind::Connect,
                        Some(format!("backend {backend} has no usable URI authority").into()),
                    )
                })?;
                &computed
            }
        };
        if let (Some(names), Some(name)) = (&self.names, &target.server_name) {
            names.note(&target.authority, name);
        }
        let path = original
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(target.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|e| UpstreamError::new(Kind::Connect, Some(Box::new(e))))
    }
}

/// Returns `backend` with its addressing precomputed in its metadata, so that requests to
/// it format nothing. Backends from lb-proxy's configuration and discovery already carry
/// it; call this for backends built by hand.
pub fn prepare_backend(backend: &Backend) -> Backend {
    target::prepare(backend)
}

/// Waits for the response head: without a timer until a connection is chosen (connecting
/// has its own timeouts), then at most `limit` after the later of that moment and the last
/// progress of the request body.
async fn wait_for_head<T>(
    sent: impl Future<Output = T>,
    on_connection: impl Future<Output = ()>,
    limit: Duration,
    progress: Option<&AtomicU64>,
) -> Result<T, UpstreamError> {
    let mut sent = pin!(sent);
    tokio::select! {
        biased;
        done = &mut sent => return Ok(done),
        () = on_connection => {}
    }
    let connected_at = monotonic_ms();
    let limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
    loop {
        let last = progress.map_or(0, |p| p.load(Ordering::Relaxed));
        let deadline_ms = connected_at.max(last).saturating_add(limit_ms);
        let wait = Duration::from_millis(deadline_ms.saturating_sub(monotonic_ms()));
        if wait.is_zero() {
            return Err(UpstreamError::response_timeout(limit));
        }
        if let Ok(done) = tokio::time::timeout(wait, &mut sent).await {
            return Ok(done);
        }
    }
}
