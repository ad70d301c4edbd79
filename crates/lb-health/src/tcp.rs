//! The TCP connect check.

use async_trait::async_trait;
use lb_core::{Backend, BackendAddr};
use tokio::net::{TcpStream, UnixStream};

use crate::{CheckFailure, CheckParams, HealthCheck};

/// A backend is healthy when a connection to it opens within the timeout.
///
/// Works for TCP and Unix domain socket backends. The connection is closed at once.
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
            BackendAddr::Inet(addr) => TcpStream::connect(addr).await.map(drop),
            BackendAddr::Unix(path) => UnixStream::connect(path).await.map(drop),
        }
        .map_err(CheckFailure::Connect)
    }

    fn params(&self) -> CheckParams {
        self.params
    }
}
