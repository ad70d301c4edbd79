//! The TLS check: TCP connect plus a full TLS handshake.
//!
//! HAProxy's `check-ssl` and Pingora's `TcpHealthCheck::new_tls` do the same: a backend
//! whose certificate is wrong, expired or untrusted is as unfit for traffic as one that
//! does not listen, because the proxy's own TLS connections to it would fail too.
//!
//! One subtlety: with TLS 1.3 the client finishes its side of the handshake before the
//! server has looked at the client certificate, so a server that requires mTLS refuses a
//! missing or unknown certificate only *after* the client's handshake has returned. The
//! check therefore, by default, closes the session (`close_notify`, then FIN) and reads
//! until the server closes too: a TLS alert in that read is a failure
//! ([`TlsFailureKind::Rejected`]), a clean close or a reset is a pass. Servers that keep
//! a connection open after the peer closed it (rare) would make every check time out:
//! turn the confirmation off for them with [`TlsHealthCheck::confirm_session`].

use async_trait::async_trait;
use lb_core::Backend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{tls_failure, TlsConfig};
use crate::conn::connect;
use crate::{CheckFailure, CheckParams, HealthCheck, TlsFailureKind};

/// At most this much is read (and discarded) while waiting for the server to close.
const CONFIRM_READ_LIMIT: usize = 64 * 1024;

/// A backend is healthy when a TLS handshake with it completes and verifies within the
/// timeout.
///
/// ```no_run
/// use lb_health::{CheckParams, TlsConfig, TlsHealthCheck};
///
/// let tls = TlsConfig::builder().ca_file("/etc/lb/backend-ca.pem").alpn(["h2"]).build()?;
/// let check = TlsHealthCheck::new(CheckParams::default(), tls).port(8443);
/// # drop(check);
/// # Ok::<(), lb_health::TlsConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct TlsHealthCheck {
    params: CheckParams,
    tls: TlsConfig,
    port: Option<u16>,
    confirm: bool,
}

impl TlsHealthCheck {
    /// A TLS check with the given thresholds, timeout and TLS settings.
    pub fn new(params: CheckParams, tls: TlsConfig) -> Self {
        Self {
            params,
            tls,
            port: None,
            confirm: true,
        }
    }

    /// Checks this port instead of the backend's (HAProxy's `port`, nginx's `check port=`).
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Whether to close the session and wait for the server to close too, so that a server
    /// refusing our client certificate after a TLS 1.3 handshake is seen (default `true`).
    #[must_use]
    pub fn confirm_session(mut self, confirm: bool) -> Self {
        self.confirm = confirm;
        self
    }

    /// The TLS settings.
    pub fn tls(&self) -> &TlsConfig {
        &self.tls
    }
}

#[async_trait]
impl HealthCheck for TlsHealthCheck {
    async fn check(&self, backend: &Backend) -> Result<(), CheckFailure> {
        let io = connect(backend.addr(), self.port).await?;
        let mut stream = self.tls.handshake(io, backend).await?;
        if !self.confirm {
            return Ok(());
        }
        if let Err(e) = stream.shutdown().await {
            return settle(e);
        }
        let mut buf = [0u8; 4096];
        let mut read = 0;
        while read < CONFIRM_READ_LIMIT {
            match stream.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => read += n,
                Err(e) => return settle(e),
            }
        }
        Ok(())
    }

    fn params(&self) -> CheckParams {
        self.params
    }
}

/// After the handshake, only an alert from the server is a failure; a reset or an
/// unannounced close is how many servers end a session.
fn settle(e: std::io::Error) -> Result<(), CheckFailure> {
    let failure = tls_failure(e);
    match failure.tls_kind() {
        Some(TlsFailureKind::Handshake) | None => {
            tracing::trace!(error = %failure, "TLS session ended without an alert");
            Ok(())
        }
        Some(_) => Err(failure),
    }
}
