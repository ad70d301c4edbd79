//! Building an [`HttpHealthCheck`]: request, expectations, connection options.
//!
//! The options mirror what operators configure elsewhere:
//!
//! | here | nginx check module | HAProxy | Envoy |
//! |---|---|---|---|
//! | `method`, `path`, `header` | `check_http_send` | `http-check send meth uri hdr` | `path`, `request_headers_to_add` |
//! | `expect_status` (default `2xx,3xx`) | `check_http_expect_alive` | `http-check expect status` | `expected_statuses` |
//! | `expect_body_contains`/`_regex` | - | `http-check expect string`/`rstring` | `receive` |
//! | `reuse_connection` | `check_keepalive_requests` | - | `reuse_connection` (default on) |
//! | `port` | `check port=` | `port` | `port_value` |
//!
//! Everything that can be invalid (path, header values, the regex) is checked once by
//! [`HttpHealthCheckBuilder::build`], so a check never fails for a reason that lies in
//! its own configuration.

use std::fmt;
use std::sync::Arc;

use http::header::{HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, StatusCode};

use super::{HttpHealthCheck, Kept};
#[cfg(feature = "tls")]
use crate::TlsConfig;
use crate::{CheckParams, StatusSet};

/// Reads at most this much of a response body by default (64 KiB).
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;

/// A user validator over the response: status, headers and the body read (at most the
/// configured number of bytes). `Err` carries the reason shown in hooks and logs.
pub type Validator = dyn Fn(StatusCode, &HeaderMap, &[u8]) -> Result<(), String> + Send + Sync;

/// Why an [`HttpHealthCheck`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpCheckError {
    /// The method is not a valid HTTP method.
    #[error("invalid method `{0}`")]
    Method(String),
    /// The path is not a valid origin-form request target (`/path?query`).
    #[error("invalid path `{0}`: expected /path or /path?query")]
    Path(String),
    /// A header name or value is invalid.
    #[error("invalid header `{0}`")]
    Header(String),
    /// The body regex does not compile.
    #[error("invalid body regex")]
    Regex(#[source] regex::Error),
}

/// What the body must contain.
#[derive(Clone)]
pub(crate) enum BodyMatch {
    Contains(Vec<u8>),
    Regex(regex::bytes::Regex),
}

impl BodyMatch {
    pub(crate) fn is_match(&self, body: &[u8]) -> bool {
        match self {
            Self::Contains(needle) => {
                needle.is_empty() || body.windows(needle.len()).any(|w| w == needle.as_slice())
            }
            Self::Regex(re) => re.is_match(body),
        }
    }
}

impl fmt::Display for BodyMatch {
    /// `contain "ok"` or `match /^up$/`, to read after "body does not".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Contains(n) => write!(f, "contain {:?}", String::from_utf8_lossy(n)),
            Self::Regex(re) => write!(f, "match /{}/", re.as_str()),
        }
    }
}

/// The request and expectations of an [`HttpHealthCheck`]; see
/// [`HttpHealthCheck::builder`].
#[must_use]
pub struct HttpHealthCheckBuilder {
    params: CheckParams,
    method: String,
    path: String,
    host: Option<String>,
    headers: Vec<(String, String)>,
    expect: StatusSet,
    body: Option<Result<BodyMatch, regex::Error>>,
    max_body: usize,
    validator: Option<Arc<Validator>>,
    reuse: bool,
    port: Option<u16>,
    #[cfg(feature = "tls")]
    tls: Option<TlsConfig>,
}

impl fmt::Debug for HttpHealthCheckBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpHealthCheckBuilder")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("expect", &self.expect)
            .finish_non_exhaustive()
    }
}

impl HttpHealthCheckBuilder {
    pub(crate) fn new(params: CheckParams) -> Self {
        Self {
            params,
            method: "GET".to_owned(),
            path: "/".to_owned(),
            host: None,
            headers: Vec::new(),
            expect: StatusSet::default(),
            body: None,
            max_body: DEFAULT_MAX_BODY,
            validator: None,
            reuse: false,
            port: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// The request method (default `GET`; `HEAD` is a cheap alternative).
    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.method = method.into();
        self
    }

    /// The request target, `/path?query` (default `/`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The `Host` header. Default: the backend's configured host and the port connected
    /// to (`api.internal:8080`), or `localhost` for a Unix socket.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Adds a request header (may be called several times, also for the same name).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The statuses that pass (default `2xx,3xx`).
    pub fn expect_status(mut self, statuses: StatusSet) -> Self {
        self.expect = statuses;
        self
    }

    /// The body (its first [`max_body_bytes`](Self::max_body_bytes)) must contain `text`.
    pub fn expect_body_contains(mut self, text: impl Into<Vec<u8>>) -> Self {
        self.body = Some(Ok(BodyMatch::Contains(text.into())));
        self
    }

    /// The body (its first [`max_body_bytes`](Self::max_body_bytes)) must match `regex`
    /// (the `regex` crate's syntax, over bytes; `(?s)`, `^`, `$` as usual).
    pub fn expect_body_regex(mut self, regex: &str) -> Self {
        self.body = Some(regex::bytes::Regex::new(regex).map(BodyMatch::Regex));
        self
    }

    /// Reads at most `n` bytes of the body for matching and validation (default 64 KiB).
    /// A longer body is not an error; only its beginning is looked at.
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.max_body = n;
        self
    }

    /// Calls `validator` on every response whose status and body passed; an `Err` fails
    /// the check with that message.
    pub fn validator<F>(mut self, validator: F) -> Self
    where
        F: Fn(StatusCode, &HeaderMap, &[u8]) -> Result<(), String> + Send + Sync + 'static,
    {
        self.validator = Some(Arc::new(validator));
        self
    }

    /// Keeps one HTTP/1.1 connection per backend open across checks (default `false`:
    /// each check opens a connection and sends `Connection: close`). A kept connection
    /// is dropped on any failure and opened again by the next check.
    pub fn reuse_connection(mut self, reuse: bool) -> Self {
        self.reuse = reuse;
        self
    }

    /// Checks this port instead of the backend's (TCP backends only).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Speaks HTTPS with these TLS settings (offer `http/1.1` if you set ALPN: the check
    /// speaks HTTP/1.1). Needs the `tls` feature too.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Validates everything and builds the check.
    pub fn build(self) -> Result<HttpHealthCheck, HttpCheckError> {
        let method = Method::from_bytes(self.method.as_bytes())
            .map_err(|_| HttpCheckError::Method(self.method.clone()))?;
        // `PathAndQuery` also accepts `*` and relative text; a check needs origin form.
        let path = PathAndQuery::try_from(self.path.as_str())
            .ok()
            .filter(|_| self.path.starts_with('/'))
            .ok_or_else(|| HttpCheckError::Path(self.path.clone()))?;
        let host = match self.host {
            Some(h) => Some(
                HeaderValue::try_from(h.as_str())
                    .map_err(|_| HttpCheckError::Header(format!("host: {h}")))?,
            ),
            None => None,
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let bad = || HttpCheckError::Header(format!("{name}: {value}"));
            let name = HeaderName::try_from(name.as_str()).map_err(|_| bad())?;
            let value = HeaderValue::try_from(value.as_str()).map_err(|_| bad())?;
            headers.append(name, value);
        }
        let body = self.body.transpose().map_err(HttpCheckError::Regex)?;
        Ok(HttpHealthCheck {
            params: self.params,
            method,
            path,
            host,
            headers,
            expect: self.expect,
            body,
            max_body: self.max_body,
            validator: self.validator,
            reuse: self.reuse,
            port: self.port,
            #[cfg(feature = "tls")]
            tls: self.tls,
            kept: parking_lot::Mutex::new(std::collections::HashMap::<_, Kept>::new()),
        })
    }
}
