//! What an upstream's `health_check` table becomes: the active check (TCP, TLS or HTTP,
//! with its rise/fall and timeout). Its transitions come from the monitor, whose
//! subscribers (the `on_change` notifier, the embedder's callback) `mod.rs` sets up.

use std::sync::Arc;

use lb_health::{
    CheckParams, HealthCheck, HttpHealthCheck, TcpHealthCheck, TlsConfig, TlsHealthCheck,
};

use crate::config::{HealthCheckConfig, HealthCheckKind};
use crate::discovery::SourceError;

/// The active check an upstream's `health_check` table describes.
pub(super) fn health_check(
    upstream: &str,
    hc: &HealthCheckConfig,
) -> Result<Arc<dyn HealthCheck>, SourceError> {
    let params = CheckParams {
        rise: hc.rise,
        fall: hc.fall,
        timeout: hc.timeout.get(),
    };
    let tls = if hc.uses_tls() {
        let mut b = TlsConfig::builder();
        if hc.verify == Some(false) {
            b = b.dangerous_accept_any_certificate();
        } else if let Some(ca) = &hc.ca_file {
            b = b.ca_file(ca.clone());
        } else {
            b = b.system_roots();
        }
        if let (Some(cert), Some(key)) = (&hc.client_cert, &hc.client_key) {
            b = b.client_cert_files(cert, key);
        }
        if let Some(alpn) = &hc.alpn {
            b = b.alpn(alpn.iter().map(|p| p.as_bytes().to_vec()));
        }
        if let Some(sni) = &hc.sni {
            b = b.server_name(sni.clone());
        }
        Some(
            b.build()
                .map_err(|e| SourceError::new(upstream, "TLS health check", e))?,
        )
    } else {
        None
    };
    Ok(match hc.kind {
        HealthCheckKind::Tcp => Arc::new(TcpHealthCheck::new(params)),
        HealthCheckKind::Tls => {
            let tls = tls
                .ok_or_else(|| SourceError::new(upstream, "TLS health check", "no TLS settings"))?;
            let mut check = TlsHealthCheck::new(params, tls);
            if let Some(port) = hc.port {
                check = check.port(port);
            }
            Arc::new(check)
        }
        HealthCheckKind::Http => {
            let mut b = HttpHealthCheck::builder(params);
            if let Some(m) = &hc.method {
                b = b.method(m.clone());
            }
            if let Some(p) = &hc.path {
                b = b.path(p.clone());
            }
            if let Some(h) = &hc.host {
                b = b.host(h.clone());
            }
            for (name, value) in hc.headers.iter().flatten() {
                b = b.header(name.clone(), value.clone());
            }
            if let Some(s) = hc.expect_status {
                b = b.expect_status(s.0);
            }
            if let Some(text) = &hc.expect_body {
                b = b.expect_body_contains(text.clone());
            }
            if let Some(re) = &hc.expect_body_regex {
                b = b.expect_body_regex(re);
            }
            if let Some(reuse) = hc.reuse_connection {
                b = b.reuse_connection(reuse);
            }
            if let Some(port) = hc.port {
                b = b.port(port);
            }
            if let Some(tls) = tls {
                b = b.tls(tls);
            }
            Arc::new(
                b.build()
                    .map_err(|e| SourceError::new(upstream, "HTTP health check", e))?,
            )
        }
    })
}
