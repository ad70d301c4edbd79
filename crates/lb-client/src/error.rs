//! [`UpstreamError`]: why a request to a backend failed, classified for the caller's
//! decisions (retry, 502 or 504, passive health), with the cause kept as its source.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::time::Duration;

pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;

/// A request to a backend failed. Opaque: ask it what happened with the `is_*` methods;
/// the underlying error is its [`source`](StdError::source).
///
/// | Case | `is_connect` | `is_timeout` | `is_body` |
/// |---|---|---|---|
/// | refused, unreachable, bind failed | yes | | |
/// | connect (TCP or TLS) timed out | yes | yes | |
/// | TLS handshake failed | yes | | |
/// | no response head within `read_timeout` | | yes | |
/// | a write made no progress within `write_timeout` | | yes | |
/// | the response body stalled for `read_timeout` | | yes | yes |
/// | invalid response (`is_invalid_response`) | | | |
/// | connection closed or reset after connecting | | | |
///
/// A reverse proxy answers 502 for connect failures and 504 for `is_timeout() &&
/// !is_connect()` before the response head (as nginx).
pub struct UpstreamError {
    kind: Kind,
    source: Option<BoxError>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// No connection: refused, unreachable, bind failure, bad address.
    Connect,
    /// The TCP connect, or TCP and TLS together, took too long.
    ConnectTimeout,
    /// The TLS handshake failed (certificate, protocol, alert).
    Tls,
    /// Connected and sent, but no response head within the read timeout.
    ResponseTimeout,
    /// A write to the backend made no progress within the write timeout.
    WriteTimeout,
    /// The response body made no progress within the read timeout.
    BodyTimeout,
    /// The backend's answer is not valid HTTP.
    InvalidResponse,
    /// Reading the response body failed.
    Body,
    /// Anything else after connecting: closed, reset, protocol error.
    Request,
}

impl UpstreamError {
    pub(crate) fn new(kind: Kind, source: Option<BoxError>) -> Self {
        Self { kind, source }
    }

    /// The backend provably never saw the request: the connection or TLS handshake
    /// failed or timed out. Safe to retry on another backend whatever the method.
    pub fn is_connect(&self) -> bool {
        matches!(self.kind, Kind::Connect | Kind::ConnectTimeout | Kind::Tls)
    }

    /// A timeout: connect (also `is_connect`), response head, write, or body read.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self.kind,
            Kind::ConnectTimeout | Kind::ResponseTimeout | Kind::WriteTimeout | Kind::BodyTimeout
        )
    }

    /// The TLS handshake failed (also `is_connect`): untrusted or mismatched certificate,
    /// refused client certificate, no common protocol.
    pub fn is_tls(&self) -> bool {
        self.kind == Kind::Tls
    }

    /// The backend answered something that is not valid HTTP.
    pub fn is_invalid_response(&self) -> bool {
        self.kind == Kind::InvalidResponse
    }

    /// The proxy itself lacked a resource for the attempt (out of file descriptors, socket
    /// buffers or memory; see `lb_health::is_local_resource_exhaustion`): it says nothing
    /// about the backend, so it is not reported to passive health.
    pub fn is_local_resource(&self) -> bool {
        lb_health::is_local_resource_exhaustion(self)
    }

    /// The failure happened while streaming the response body, after its head was
    /// passed on.
    pub fn is_body(&self) -> bool {
        matches!(self.kind, Kind::Body | Kind::BodyTimeout)
    }

    /// Classifies a failure to open a connection.
    pub(crate) fn from_connect(error: ConnectError) -> Self {
        Self::new(error.kind(), Some(Box::new(error)))
    }

    /// Classifies an error of an HTTP/1.1 or HTTP/2 handshake: the backend saw no request.
    pub(crate) fn from_handshake(error: hyper::Error) -> Self {
        Self::new(Kind::Connect, Some(Box::new(error)))
    }

    /// Classifies an error of a request sent on an open connection.
    pub(crate) fn from_request(error: hyper::Error) -> Self {
        let kind = classify(&error, false);
        Self::new(kind, Some(Box::new(error)))
    }

    /// Classifies an error while reading the response body.
    pub(crate) fn from_body(error: hyper::Error) -> Self {
        Self::new(Kind::Body, Some(Box::new(error)))
    }

    /// Classifies an I/O error of the own HTTP/1.1 client before the response head.
    pub(crate) fn from_io(error: io::Error) -> Self {
        let kind = classify(&error, false);
        Self::new(kind, Some(Box::new(error)))
    }

    pub(crate) fn response_timeout(after: Duration) -> Self {
        Self::new(Kind::ResponseTimeout, Some(Box::new(Elapsed(after))))
    }

    pub(crate) fn body_timeout(after: Duration) -> Self {
        Self::new(Kind::BodyTimeout, Some(Box::new(Elapsed(after))))
    }
}

fn classify(error: &(dyn StdError + 'static), is_connect: bool) -> Kind {
    let mut next: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = next {
        if let Some(c) = e.downcast_ref::<ConnectError>() {
            return c.kind();
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if io.get_ref().is_some_and(|i| i.is::<WriteTimeout>()) {
                return Kind::WriteTimeout;
            }
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            // `is_parse` covers every parse error, a too large head included.
            if h.is_parse() || h.is_parse_status() {
                return Kind::InvalidResponse;
            }
        }
        next = e.source();
    }
    if is_connect {
        Kind::Connect
    } else {
        Kind::Request
    }
}

impl fmt::Debug for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamError")
            .field("kind", &self.kind)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            Kind::Connect => "cannot connect to the backend",
            Kind::ConnectTimeout => "connecting to the backend timed out",
            Kind::Tls => "TLS handshake with the backend failed",
            Kind::ResponseTimeout => "timed out waiting for the backend's response",
            Kind::WriteTimeout => "timed out writing to the backend",
            Kind::BodyTimeout => "timed out reading the backend's response body",
            Kind::InvalidResponse => "invalid response from the backend",
            Kind::Body => "reading the backend's response body failed",
            Kind::Request => "the request to the backend failed",
        })
    }
}

impl StdError for UpstreamError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// A timer ran out.
#[derive(Debug, thiserror::Error)]
#[error("no progress for {0:?}")]
struct Elapsed(Duration);

/// The marker inside the `io::Error` a stalled write returns.
#[derive(Debug, thiserror::Error)]
#[error("write made no progress for {0:?}")]
pub(crate) struct WriteTimeout(pub(crate) Duration);

/// Why the connector could not open a connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// The authority names no backend.
    #[error("`{0}` is not a backend address")]
    Address(String),
    /// Binding the local address failed.
    #[error("cannot bind the local address {addr}")]
    Bind {
        addr: std::net::IpAddr,
        #[source]
        source: io::Error,
    },
    /// The TCP or Unix connect failed.
    #[error("connect failed")]
    Io(#[source] io::Error),
    /// The connect (and handshake) did not finish in time.
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    /// The TLS handshake failed.
    #[error("TLS handshake failed")]
    Tls(#[source] io::Error),
}

impl ConnectError {
    fn kind(&self) -> Kind {
        match self {
            Self::Timeout(_) => Kind::ConnectTimeout,
            Self::Tls(_) => Kind::Tls,
            Self::Address(_) | Self::Bind { .. } | Self::Io(_) => Kind::Connect,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_answer_their_predicates() {
        let connect_timeout = UpstreamError::new(Kind::ConnectTimeout, None);
        assert!(connect_timeout.is_connect() && connect_timeout.is_timeout());
        let head = UpstreamError::response_timeout(Duration::from_secs(1));
        assert!(head.is_timeout() && !head.is_connect() && !head.is_body());
        let body = UpstreamError::body_timeout(Duration::from_secs(1));
        assert!(body.is_timeout() && body.is_body());
        let tls = UpstreamError::new(Kind::Tls, None);
        assert!(tls.is_connect() && tls.is_tls() && !tls.is_timeout());
    }

    #[test]
    fn causes_are_found_in_the_source_chain() {
        let write = io::Error::new(
            io::ErrorKind::TimedOut,
            WriteTimeout(Duration::from_secs(1)),
        );
        let wrapped: BoxError = Box::new(Wrapper(Box::new(write)));
        assert_eq!(classify(&*wrapped, false), Kind::WriteTimeout);
        let timeout: BoxError = Box::new(Wrapper(Box::new(ConnectError::Timeout(
            Duration::from_secs(1),
        ))));
        assert_eq!(classify(&*timeout, true), Kind::ConnectTimeout);
        let other: BoxError = Box::new(io::Error::other("reset"));
        assert_eq!(classify(&*other, true), Kind::Connect);
        assert_eq!(classify(&*other, false), Kind::Request);
    }

    #[derive(Debug, thiserror::Error)]
    #[error("wrapper")]
    struct Wrapper(#[source] BoxError);
}
