//! [`LocalResponse`]: an answer the proxy gives itself instead of a backend's, from a hook
//! or from the protections (`protect/`), which also close the connection after it.

use http::{HeaderValue, StatusCode};

use crate::protect::Rejection;

/// A local answer instead of a proxied response: a status and a short text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalResponse {
    status: StatusCode,
    text: &'static str,
    retry_after: Option<HeaderValue>,
    /// The connection closes after it (HTTP/1.x: `Connection: close`): a refused request,
    /// after which nothing more the client sent is read as a request.
    close: bool,
}

impl LocalResponse {
    /// A response with `status` and a short plain-text body.
    pub fn new(status: StatusCode, text: &'static str) -> Self {
        Self {
            status,
            text,
            retry_after: None,
            close: false,
        }
    }

    /// Adds a `Retry-After` header (seconds).
    #[must_use]
    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(HeaderValue::from(seconds));
        self
    }

    /// 404: no route matches the request.
    pub fn no_route() -> Self {
        Self::new(StatusCode::NOT_FOUND, "404 Not Found: no route matches\n")
    }

    /// 503: the upstream has no usable backend.
    pub fn no_backend() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Unavailable: no healthy backend\n",
        )
        .retry_after(1)
    }

    /// 503: the upstream's queue or limits are full.
    pub fn overloaded() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Unavailable: upstream at capacity\n",
        )
        .retry_after(1)
    }

    /// 502: the backend could not be reached or answered nonsense.
    pub fn bad_gateway() -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n")
    }

    /// 504: the backend did not answer in time.
    pub fn gateway_timeout() -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Timeout\n")
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The body text.
    pub fn text(&self) -> &'static str {
        self.text
    }

    pub(crate) fn retry_after_header(&self) -> Option<&HeaderValue> {
        self.retry_after.as_ref()
    }

    /// True when the connection closes after this answer.
    pub(crate) fn closes_connection(&self) -> bool {
        self.close
    }
}

impl From<Rejection> for LocalResponse {
    /// A request the protections refused: its answer, and the connection closes after it.
    fn from(rejection: Rejection) -> Self {
        Self {
            close: true,
            ..Self::new(rejection.status, rejection.text)
        }
    }
}
