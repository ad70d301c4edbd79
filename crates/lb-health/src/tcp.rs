//! The TCP connect check.
//!
//! nginx's check module `check type=tcp`, HAProxy's plain `check` and Pingora's
//! `TcpHealthCheck`: a backend is up when it accepts a connection. It is the cheapest
//! check (one handshake, no payload) and proves only that something listens; use
//! `HttpHealthCheck` (feature `http`) to prove the service answers.

use async_trait::async_trait;
use lb_core::{Backend, BackendAddr};
use tokio::net::{TcpStream, UnixStream};

use crate::{CheckFailure, CheckParams, HealthCheck};

/// A backend is healthy when a connection to it opens within the timeout.
///
/// Works for TCP and Unix domain socket backends. The connection is closed at once, with a
/// reset (`SO_LINGER` 0) rather than a FIN, as HAProxy closes its checks: a FIN would leave
/// one `TIME_WAIT` socket per check on the checking host (about 100,000 for 10,000 backends
/// checked every second, near the kernel's limit), and the reset is cheaper for both ends.
#[derive(Clone, Debug, Default)]
pub struct TcpHealthCheck {
    params: CheckParams,
}

impl TcpHealthCheck {
    /// A TCP check with the given thresholds and timeout.
    pub fn new(params: CheckParams) -> Self {
        Self { params }
    }
}

#[async_trait]
impl HealthCheck for TcpHealthCheck {
    async fn check(&self, backend: &Backend) -> Result<(), CheckFailure> {
        match backend.addr() {
            BackendAddr::Inet(addr) => TcpStream::connect(addr).await.map(|stream| {
                // Best effort: without it the close is an ordinary FIN.
                let _ = stream.set_zero_linger();
            }),
            BackendAddr::Unix(path) => UnixStream::connect(path).await.map(drop),
        }
        .map_err(CheckFailure::Connect)
    }

    fn params(&self) -> CheckParams {
        self.params
    }
}
