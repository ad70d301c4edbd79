//! lb-client, the upstream HTTP client of lb-proxy: [`UpstreamClient`] sends requests to backends with the
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
//! use lb_client::{PeerOptions, TlsOptions, UpstreamClient};
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
//! Underneath: an own HTTP/1.1 exchange for every request to a backend that speaks
//! HTTP/1.1 (`h1.rs`: no task, no channel per request, the answer parsed in place; request
//! bodies streamed with their `Content-Length` or chunked, `Expect: 100-continue`, an
//! answer that comes before the body ends, and upgrades, whose connection a `101` hands
//! over as an [`Upgraded`]), hyper's HTTP/2 client where ALPN picks `h2`, and this
//! module's own keep-alive pool (`pool.rs`: lock-free, one entry per backend address and
//! worker, one pool per client, so a TLS client and a plain one never share a
//! connection). The authority of a backend is computed once (see [`prepare_backend`]).
//!
//! The crate knows nothing of the proxy's request pipeline: the request body type is the
//! caller's (`B`), and the pool's shard is whatever [`set_pool_shard`] last said on the
//! calling thread (lb-proxy's workers set their index there).
//!
//! Also here: the chunked coding's grammar ([`chunk`]), shared with the proxy's request
//! framing check.

mod body;
pub mod chunk;
mod connector;
mod error;
pub mod frames;
mod h1;
mod options;
mod pool;
mod stream;
mod target;
mod tls;

pub use body::UpstreamBody;
pub use error::UpstreamError;
pub use h1::{OnUpgraded, Upgraded};
pub use options::{Alpn, ClientCert, PeerOptions, TlsOptions};
pub use pool::{pool_shard, set_pool_shard};
pub use target::{upstream_authority, UpstreamAuthority};
pub use tls::ClientBuildError;

use std::error::Error as StdError;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderValue, HOST};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use lb_core::{monotonic_ms, Backend};

use body::RequestBody;
use connector::{Connector, ServerNames, Settings};
use error::Kind;
use h1::{H1Conn, Upload};
use pool::{Conn, Host, Pool};

/// How many pooled connections one request may find closed under it (the backend closed
/// them as they were taken) before it opens a new one.
const MAX_STALE: u32 = 8;

/// Sends requests to backends, keeping idle connections for reuse. Cheap to clone (the
/// clones share the pool).
///
/// `B` is the request body type (lb-proxy's is its `RequestBody`, a client's body,
/// replayable for retries).
pub struct UpstreamClient<B> {
    pool: Arc<Pool<RequestBody<B>>>,
    connector: Connector,
    scheme: Scheme,
    read_timeout: Option<Duration>,
    /// Server names of backends configured by DNS name: only when TLS takes them (no `sni`).
    names: Option<Arc<ServerNames>>,
    options: Arc<PeerOptions>,
}

impl<B> Clone for UpstreamClient<B> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            connector: self.connector.clone(),
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
        let pool = Pool::new(options.pool_max_idle, options.idle_timeout);
        Ok(Self {
            pool: Arc::new(pool),
            connector,
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
    /// and its path and query; headers are sent as they are (the caller rewrites them),
    /// plus `Host` (the backend's address) if there is none. HTTP/1.1 or HTTP/2 is chosen
    /// per connection (ALPN), whatever `req.version()`.
    pub async fn request(
        &self,
        backend: &Backend,
        req: Request<B>,
    ) -> Result<Response<UpstreamBody<B>>, UpstreamError> {
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
        let (parts, body) = req.into_parts();
        let progress = (self.read_timeout.is_some() && !body.is_end_stream())
            .then(|| Arc::new(AtomicU64::new(monotonic_ms())));
        let mut req = Request::from_parts(parts, RequestBody::new(body, progress.clone()));
        let host = self.pool.host(backend.addr());
        let h2 = self.connector.may_use_h2();
        let idempotent = matches!(
            *req.method(),
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::DELETE
                | Method::PUT
                | Method::TRACE
        );
        // How the body goes out over HTTP/1.1, made on the first HTTP/1.1 connection.
        let mut upload: Option<Upload> = None;
        for stale in 0..=MAX_STALE {
            let pooled = if stale < MAX_STALE {
                host.checkout(h2)
            } else {
                None
            };
            let conn = match pooled {
                Some(conn) => conn,
                // Boxed: connecting (TCP, TLS, handshakes) is the largest state of this
                // future and the rare path; unboxed, every request would move it around.
                None => Box::pin(self.connect(&target.authority, &host)).await?,
            };
            // The read timeout runs from here: the connection is chosen.
            let chosen = monotonic_ms();
            match conn {
                Conn::Http1 { mut conn, reused } => {
                    origin_form(&mut req, &target.authority, &self.scheme);
                    let upload = match &mut upload {
                        Some(again) => {
                            again.rewind();
                            again
                        }
                        None => upload.insert(Upload::new(&req)?),
                    };
                    let exchange = conn.exchange(&mut req, upload);
                    let exchanged = self.wait(exchange, chosen, progress.as_deref()).await?;
                    match exchanged {
                        Ok(head) => {
                            upload.answered(head.response.status());
                            let closes = h1::asks_close(&req);
                            // The body moves on only when it is still to be written.
                            let rest = if upload.is_streaming() && !upload.is_done() {
                                Some(req.into_body())
                            } else {
                                None
                            };
                            return Ok(self.answer(conn, head, upload, rest, closes, &host));
                        }
                        // Closed as it was taken: try another when the request can be sent
                        // again.
                        Err(failure)
                            if failure.unanswered && reused && upload.may_resend(idempotent) => {}
                        Err(failure) => return Err(failure.error),
                    }
                }
                Conn::Http2(mut sender) => {
                    if upload.as_ref().is_some_and(Upload::read_any) {
                        return Err(UpstreamError::new(
                            Kind::Request,
                            Some("the request body was partly sent on a closed connection".into()),
                        ));
                    }
                    self.absolute_form(&mut req, &target.authority)?;
                    let sent = sender.try_send_request(req);
                    match self.wait(sent, chosen, progress.as_deref()).await? {
                        Ok(resp) => {
                            let timeout = self.read_timeout;
                            return Ok(resp.map(|b| UpstreamBody::new(b, timeout)));
                        }
                        Err(mut error) => match error.take_message() {
                            Some(unsent) => req = unsent,
                            None => return Err(UpstreamError::from_request(error.into_error())),
                        },
                    }
                }
            }
        }
        Err(UpstreamError::new(
            Kind::Request,
            Some("every connection to the backend closed before the request was sent".into()),
        ))
    }

    /// The response of an HTTP/1.1 exchange whose head arrived: its body streams from
    /// `conn` (which goes back to `host` after it when it may), and drives the rest of the
    /// request body (`rest`) when that is still being written; after a `101`, the
    /// connection rides in its extensions as an [`Upgraded`]. `closes`: the request asked
    /// the backend to close the connection.
    #[inline]
    fn answer(
        &self,
        conn: H1Conn,
        mut head: h1::Head,
        upload: &mut Upload,
        rest: Option<RequestBody<B>>,
        closes: bool,
        host: &Arc<Host<RequestBody<B>>>,
    ) -> Response<UpstreamBody<B>> {
        let timeout = self.read_timeout;
        if head.response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let mut resp = head.response.map(|()| UpstreamBody::empty(timeout));
            resp.extensions_mut().insert(conn.into_upgraded());
            return resp;
        }
        // Written whole, or still streaming beside the answer; a request that waited for
        // `100 Continue` and was refused never sends its body, and its connection is
        // closed.
        let back = (upload.is_done() || upload.is_streaming()) && !closes;
        let back = back.then(|| host.clone());
        let rest = rest.map(|body| {
            let upload = std::mem::replace(upload, Upload::finished());
            Box::new(h1::Uploading { upload, body }) as Box<dyn h1::Rest>
        });
        let body = h1::OwnBody::new(conn, &mut head, back, rest);
        head.response.map(|()| UpstreamBody::own(body, timeout))
    }

    /// Opens a connection to `authority`: a bare HTTP/1.1 one, or (ALPN `h2`) an HTTP/2
    /// one, which is shared with the next requests to `host`.
    async fn connect(
        &self,
        authority: &Authority,
        host: &Arc<Host<RequestBody<B>>>,
    ) -> Result<Conn<RequestBody<B>>, UpstreamError> {
        let stream = self
            .connector
            .connect(authority)
            .await
            .map_err(UpstreamError::from_connect)?;
        if stream.is_h2() {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(TokioIo::new(stream))
                .await
                .map_err(UpstreamError::from_handshake)?;
            tokio::spawn(drive(conn));
            host.set_h2(&sender);
            return Ok(Conn::Http2(sender));
        }
        Ok(Conn::Http1 {
            conn: H1Conn::new(stream),
            reused: false,
        })
    }

    /// Waits for `sent` under the read timeout, if any.
    async fn wait<T>(
        &self,
        sent: impl Future<Output = T>,
        chosen: u64,
        progress: Option<&AtomicU64>,
    ) -> Result<T, UpstreamError> {
        match self.read_timeout {
            None => Ok(sent.await),
            Some(limit) => wait_for_head(sent, chosen, limit, progress).await,
        }
    }

    /// Sets the URI HTTP/2 needs: scheme, the backend's authority, path and query.
    fn absolute_form(
        &self,
        req: &mut Request<RequestBody<B>>,
        authority: &Authority,
    ) -> Result<(), UpstreamError> {
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|e| UpstreamError::new(Kind::Connect, Some(Box::new(e))))?;
        Ok(())
    }
}

/// Runs a connection to its end (the pool drops its handle when the connection closes).
async fn drive<C, E>(conn: C)
where
    C: Future<Output = Result<(), E>>,
    E: StdError + Send + Sync + 'static,
{
    if let Err(error) = conn.await {
        tracing::debug!(
            error = &error as &dyn StdError,
            "upstream connection ended with an error"
        );
    }
}

/// Sets the URI HTTP/1.1 sends (origin form, `/path?query`), and `Host` from the backend's
/// authority when the request has none. A URI already in origin form is left as it is.
fn origin_form<T>(req: &mut Request<T>, authority: &Authority, scheme: &Scheme) {
    let uri = req.uri();
    if uri.scheme().is_some() || uri.authority().is_some() || uri.path_and_query().is_none() {
        let path = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(path);
    }
    if !req.headers().contains_key(HOST) {
        let default_port = if *scheme == Scheme::HTTPS { 443 } else { 80 };
        let text = match authority.port_u16() {
            Some(port) if port == default_port => authority.host(),
            _ => authority.as_str(),
        };
        if let Ok(value) = HeaderValue::from_str(text) {
            req.headers_mut().insert(HOST, value);
        }
    }
}

/// Returns `backend` with its addressing precomputed in its metadata, so that requests to
/// it format nothing. Backends from lb-proxy's configuration and discovery already carry
/// it; call this for backends built by hand.
pub fn prepare_backend(backend: &Backend) -> Backend {
    target::prepare(backend)
}

/// Waits for the response head: at most `limit` after the later of `chosen` (when the
/// connection was chosen, [`monotonic_ms`]) and the last progress of the request body.
async fn wait_for_head<T>(
    sent: impl Future<Output = T>,
    chosen: u64,
    limit: Duration,
    progress: Option<&AtomicU64>,
) -> Result<T, UpstreamError> {
    let mut sent = pin!(sent);
    let limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
    // Bounded: each pass either ends or waits out a deadline that only moves with the
    // request body's progress.
    loop {
        let last = progress.map_or(0, |p| p.load(Ordering::Relaxed));
        let deadline_ms = chosen.max(last).saturating_add(limit_ms);
        let wait = Duration::from_millis(deadline_ms.saturating_sub(monotonic_ms()));
        if wait.is_zero() {
            return Err(UpstreamError::response_timeout(limit));
        }
        if let Ok(done) = tokio::time::timeout(wait, &mut sent).await {
            return Ok(done);
        }
    }
}
