//! The HTTP check (feature `http`): one HTTP/1.1 request over TCP, or over TLS when the
//! `tls` feature is on too, judged by status, body and an optional validator.
//!
//! This is nginx's check module `check type=http` and HAProxy's `option httpchk` /
//! `http-check expect`: a backend is healthy when it answers the request with an expected
//! status (default `2xx,3xx`, nginx's `check_http_expect_alive` default), and, if asked,
//! a body that contains a string or matches a regex, and passes the user's validator.
//!
//! - **Bounded reads.** At most [`max_body_bytes`](HttpHealthCheckBuilder::max_body_bytes)
//!   of the body are read (64 KiB by default), so a backend streaming an endless body cannot
//!   make the check use memory without bound; the rest is never read.
//! - **Connections.** By default each check opens its own connection, sends
//!   `Connection: close`, and drives it inside the check's future: no task is spawned,
//!   and a check cancelled by its timeout closes its socket at once. With
//!   [`reuse_connection`](HttpHealthCheckBuilder::reuse_connection) one connection per
//!   backend is kept in the check (its driver is a task, aborted when the connection is
//!   dropped), like Envoy's `reuse_connection` and nginx's `check_keepalive_requests`.
//!   It is dropped on any failure, so the next check starts from a fresh connect.
//! - **Typed failures.** [`CheckFailure::Status`], [`CheckFailure::Body`],
//!   [`CheckFailure::Validator`], [`CheckFailure::Http`], and [`CheckFailure::Tls`] also
//!   when the TLS error surfaces during the exchange (a TLS 1.3 server refusing our client
//!   certificate does so after the handshake).

mod builder;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{HeaderValue, CONNECTION, HOST};
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use lb_core::{Backend, BackendAddr};
use parking_lot::Mutex;

use crate::conn::{connect, host_of, BoxIo};
#[cfg(feature = "tls")]
use crate::TlsConfig;
use crate::{CheckFailure, CheckParams, HealthCheck, StatusSet};
use builder::BodyMatch;

pub use builder::{HttpCheckError, HttpHealthCheckBuilder, Validator, DEFAULT_MAX_BODY};

/// A kept-alive connection: the request handle and its driver task.
pub(crate) struct Kept {
    sender: SendRequest<Empty<Bytes>>,
    _driver: AbortOnDrop,
}

/// Aborts the connection's driver task when the connection is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A backend is healthy when it answers an HTTP/1.1 request as expected.
///
/// ```
/// use lb_health::{CheckParams, HttpHealthCheck};
///
/// let check = HttpHealthCheck::builder(CheckParams::default())
///     .path("/healthz")
///     .header("user-agent", "lb-health")
///     .expect_status("200,204".parse()?)
///     .expect_body_regex(r#""status":\s*"up""#)
///     .validator(|_status, headers, _body| match headers.get("x-ready") {
///         Some(v) if v == "1" => Ok(()),
///         _ => Err("not ready".to_owned()),
///     })
///     .reuse_connection(true)
///     .build()?;
/// # drop(check);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct HttpHealthCheck {
    pub(crate) params: CheckParams,
    pub(crate) method: Method,
    pub(crate) path: PathAndQuery,
    pub(crate) host: Option<HeaderValue>,
    pub(crate) headers: HeaderMap,
    pub(crate) expect: StatusSet,
    pub(crate) body: Option<BodyMatch>,
    pub(crate) max_body: usize,
    pub(crate) validator: Option<Arc<Validator>>,
    pub(crate) reuse: bool,
    pub(crate) port: Option<u16>,
    /// HTTPS: the TLS settings (`None` for plain HTTP).
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<TlsConfig>,
    pub(crate) kept: Mutex<HashMap<BackendAddr, Kept>>,
}

impl fmt::Debug for HttpHealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("HttpHealthCheck");
        f.field("params", &self.params)
            .field("method", &self.method)
            .field("path", &self.path)
            .field("expect", &self.expect)
            .field("reuse", &self.reuse);
        #[cfg(feature = "tls")]
        f.field("tls", &self.tls.is_some());
        f.finish_non_exhaustive()
    }
}

/// The outcome of one exchange, and whether its connection may be used again.
struct Exchange {
    result: Result<(), CheckFailure>,
    reusable: bool,
}

impl HttpHealthCheck {
    /// A builder for a `GET /` check expecting `2xx,3xx`.
    pub fn builder(params: CheckParams) -> HttpHealthCheckBuilder {
        HttpHealthCheckBuilder::new(params)
    }

    /// How many kept-alive connections are open (one per backend at most).
    pub fn kept_connections(&self) -> usize {
        self.kept.lock().len()
    }

    fn request(&self, backend: &Backend) -> Result<Request<Empty<Bytes>>, CheckFailure> {
        let mut req = Request::new(Empty::new());
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.path.clone().into();
        *req.headers_mut() = self.headers.clone();
        let host = match &self.host {
            Some(h) => h.clone(),
            None => HeaderValue::try_from(default_host(backend, self.port))
                .map_err(CheckFailure::other)?,
        };
        req.headers_mut().insert(HOST, host);
        if !self.reuse {
            req.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        Ok(req)
    }

    async fn open(&self, backend: &Backend) -> Result<BoxIo, CheckFailure> {
        let io = connect(backend.addr(), self.port).await?;
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return Ok(Box::new(tls.handshake(io, backend).await?));
        }
        Ok(io)
    }

    /// Sends the request and judges the response.
    async fn exchange(
        &self,
        sender: &mut SendRequest<Empty<Bytes>>,
        req: Request<Empty<Bytes>>,
    ) -> Exchange {
        let resp = match sender.send_request(req).await {
            Ok(resp) => resp,
            Err(e) => {
                return Exchange {
                    result: Err(http_failure(e)),
                    reusable: false,
                }
            }
        };
        let (head, body) = resp.into_parts();
        let need_body = self.body.is_some() || self.validator.is_some() || self.reuse;
        let (bytes, complete) = if need_body {
            match read_limited(body, self.max_body).await {
                Ok(read) => read,
                Err(e) => {
                    return Exchange {
                        result: Err(http_failure(e)),
                        reusable: false,
                    }
                }
            }
        } else {
            (Vec::new(), false)
        };
        let result = self.judge(head.status, &head.headers, &bytes);
        Exchange {
            reusable: complete && result.is_ok(),
            result,
        }
    }

    fn judge(
        &self,
        status: http::StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), CheckFailure> {
        if !self.expect.contains(status.as_u16()) {
            return Err(CheckFailure::Status {
                status: status.as_u16(),
                expected: self.expect,
            });
        }
        if let Some(m) = &self.body {
            if !m.is_match(body) {
                return Err(CheckFailure::Body {
                    expected: m.to_string(),
                    read: body.len(),
                });
            }
        }
        if let Some(v) = &self.validator {
            v(status, headers, body).map_err(CheckFailure::Validator)?;
        }
        Ok(())
    }

    /// One check on a fresh connection, driven inside this future.
    async fn check_once(
        &self,
        backend: &Backend,
        req: Request<Empty<Bytes>>,
    ) -> Result<(), CheckFailure> {
        let io = self.open(backend).await?;
        let (mut sender, conn) = http1::handshake(TokioIo::new(io))
            .await
            .map_err(http_failure)?;
        let exchange = self.exchange(&mut sender, req);
        tokio::pin!(conn, exchange);
        tokio::select! {
            biased;
            done = &mut exchange => done.result,
            // The connection ended first (closed after the response, or broke): the
            // exchange sees the same end, so finish it.
            _ = &mut conn => exchange.await.result,
        }
    }

    /// One check on the kept connection of `backend`, opening it if needed.
    async fn check_kept(
        &self,
        backend: &Backend,
        req: Request<Empty<Bytes>>,
    ) -> Result<(), CheckFailure> {
        let mut taken = self.kept.lock().remove(backend.addr());
        if let Some(k) = &mut taken {
            if k.sender.is_closed() || k.sender.ready().await.is_err() {
                taken = None;
            }
        }
        let mut kept = match taken {
            Some(k) => k,
            None => {
                let io = self.open(backend).await?;
                let (sender, conn) = http1::handshake(TokioIo::new(io))
                    .await
                    .map_err(http_failure)?;
                let driver = tokio::spawn(async move {
                    if let Err(error) = conn.await {
                        tracing::trace!(%error, "kept health check connection ended");
                    }
                });
                Kept {
                    sender,
                    _driver: AbortOnDrop(driver),
                }
            }
        };
        let done = self.exchange(&mut kept.sender, req).await;
        if done.reusable {
            self.kept.lock().insert(backend.addr().clone(), kept);
        }
        done.result
    }
}

#[async_trait]
impl HealthCheck for HttpHealthCheck {
    async fn check(&self, backend: &Backend) -> Result<(), CheckFailure> {
        let req = self.request(backend)?;
        if self.reuse {
            self.check_kept(backend, req).await
        } else {
            self.check_once(backend, req).await
        }
    }

    fn params(&self) -> CheckParams {
        self.params
    }

    fn forget(&self, addr: &BackendAddr) {
        self.kept.lock().remove(addr);
    }
}

/// `Host` when none is configured: the configured host and the port connected to.
fn default_host(backend: &Backend, port: Option<u16>) -> String {
    match backend.addr() {
        BackendAddr::Unix(_) => "localhost".to_owned(),
        BackendAddr::Inet(addr) => {
            let host = host_of(backend.name());
            let port = port.unwrap_or(addr.port());
            if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            }
        }
    }
}

/// Reads at most `max` bytes of `body`; also says whether the body ended within them.
async fn read_limited(mut body: Incoming, max: usize) -> Result<(Vec<u8>, bool), hyper::Error> {
    let mut out = Vec::new();
    while out.len() < max {
        match body.frame().await {
            None => return Ok((out, true)),
            Some(frame) => {
                if let Ok(data) = frame?.into_data() {
                    let take = data.len().min(max - out.len());
                    out.extend_from_slice(&data[..take]);
                }
            }
        }
    }
    Ok((out, hyper::body::Body::is_end_stream(&body)))
}

/// An HTTP error, or the TLS error inside it when there is one.
fn http_failure(e: hyper::Error) -> CheckFailure {
    #[cfg(feature = "tls")]
    if let Some(tls) = crate::tls::tls_failure_within(&e) {
        return tls;
    }
    CheckFailure::Http(Box::new(e))
}
