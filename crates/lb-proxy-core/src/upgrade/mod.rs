//! HTTP/1.1 protocol upgrades (WebSocket and any other `Upgrade` token): forward the
//! request's `Connection: upgrade` and `Upgrade`, and when the backend answers
//! `101 Switching Protocols`, answer 101 to the client and splice the two connections
//! together both ways until they close or stay silent for the idle timeout.
//!
//! The crate-internal API, used by the request path:
//! - [`UpgradeRequest::take`] before the request headers are rewritten;
//! - [`UpgradeRequest::restore_headers`] after hop-by-hop removal;
//! - [`UpgradeRequest::switch`] when the backend answered 101.
//!
//! The backend's connection is never returned to the client pool: the client hands it over
//! in the 101's extensions ([`OnUpgraded`]), and the splice owns it from then on.
//!
//! Not supported: HTTP/2 extended CONNECT (RFC 8441, WebSocket over HTTP/2) and `h2c`
//! upgrades. An HTTP/2 request is never treated as an upgrade, and `Upgrade: h2c` (or an
//! `Upgrade` that is not ASCII) is removed as hop-by-hop, as before.
//!
//! Spliced connections are not part of graceful shutdown: they go on until they close or
//! time out, or until the process exits.

mod splice;

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Response, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use lb_client::OnUpgraded;

use crate::body::ProxyBody;
use crate::headers;
use crate::limits::Guard;
use splice::{splice, SpliceEnd};

static UPGRADE_TOKEN: HeaderValue = HeaderValue::from_static("upgrade");

/// An HTTP/1.1 upgrade the client asked for: the protocol to forward and the client's
/// half of the connection, available once the 101 has been sent.
#[derive(Debug)]
pub(crate) struct UpgradeRequest {
    protocol: HeaderValue,
    downstream: OnUpgrade,
}

impl UpgradeRequest {
    /// Takes the upgrade out of `parts` when it is an HTTP/1.1 request with `Upgrade` and a
    /// `Connection` field naming `upgrade`; `None` (and `parts` untouched) otherwise, and
    /// for `h2c`: a client upgrading to HTTP/2 cleartext would bypass the proxy's
    /// per-request handling for the rest of the connection (h2c is served directly,
    /// with prior knowledge, instead).
    pub(crate) fn take(parts: &mut Parts) -> Option<Self> {
        // hyper hands over the client's half only for a request that asked for an upgrade;
        // without it (most requests carry no extension at all) the headers are not read.
        if parts.version != Version::HTTP_11
            || parts.extensions.get::<OnUpgrade>().is_none()
            || !connection_has_upgrade(&parts.headers)
        {
            return None;
        }
        let protocol = parts.headers.get(header::UPGRADE)?.clone();
        let to_h2c = protocol.to_str().map_or(true, |p| {
            p.split(',').any(|t| t.trim().eq_ignore_ascii_case("h2c"))
        });
        if to_h2c {
            return None;
        }
        let downstream = parts.extensions.remove::<OnUpgrade>()?;
        Some(Self {
            protocol,
            downstream,
        })
    }

    /// Puts `Connection: upgrade` and the `Upgrade` protocol back, after hop-by-hop removal.
    pub(crate) fn restore_headers(&self, headers: &mut HeaderMap) {
        headers.insert(header::CONNECTION, UPGRADE_TOKEN.clone());
        headers.insert(header::UPGRADE, self.protocol.clone());
    }

    /// The backend accepted (`resp` is its 101): returns the 101 for the client and spawns
    /// the splice, which holds `guard` (the backend counts the connection as in flight)
    /// until it ends. `idle` closes both sides after that long without a byte either way.
    pub(crate) fn switch<B>(
        self,
        resp: Response<B>,
        guard: Guard,
        idle: Duration,
    ) -> Response<ProxyBody> {
        let upstream = resp
            .extensions()
            .get::<OnUpgraded>()
            .and_then(OnUpgraded::take);
        let (mut parts, _empty) = resp.into_parts();
        let protocol = parts.headers.get(header::UPGRADE).cloned();
        headers::strip_hop_by_hop(&mut parts.headers);
        parts
            .headers
            .insert(header::CONNECTION, UPGRADE_TOKEN.clone());
        parts
            .headers
            .insert(header::UPGRADE, protocol.unwrap_or(self.protocol));
        let downstream = self.downstream;
        tokio::spawn(async move {
            let backend = guard.in_flight.backend().clone();
            let Some(server) = upstream else {
                tracing::debug!(%backend, "upgrade did not complete: the backend's connection was not handed over");
                return;
            };
            let client = match downstream.await {
                Ok(client) => client,
                Err(error) => {
                    tracing::debug!(%backend, error = &error as &dyn std::error::Error, "upgrade did not complete");
                    return;
                }
            };
            tracing::debug!(%backend, "upgraded connection spliced");
            let stats = splice(TokioIo::new(client), server, idle).await;
            drop(guard);
            match &stats.end {
                SpliceEnd::Error(error) => tracing::debug!(
                    %backend,
                    to_backend = stats.to_b,
                    to_client = stats.to_a,
                    error = error as &dyn std::error::Error,
                    "upgraded connection failed"
                ),
                end => tracing::debug!(
                    %backend,
                    to_backend = stats.to_b,
                    to_client = stats.to_a,
                    timed_out = matches!(end, SpliceEnd::IdleTimeout),
                    "upgraded connection ended"
                ),
            }
        });
        Response::from_parts(parts, ProxyBody::local(""))
    }
}

/// True when a `Connection` field lists the `upgrade` token.
fn connection_has_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use http::Request;

    use super::*;

    #[test]
    fn only_http11_requests_naming_upgrade_are_upgrades() {
        let parts = |req: http::request::Builder| {
            let (mut parts, ()) = req.body(()).unwrap().into_parts();
            // hyper puts an OnUpgrade in every HTTP/1.1 request it serves.
            parts
                .extensions
                .insert(hyper::upgrade::on(Request::new(())));
            parts
        };
        let ws = || {
            Request::get("/")
                .header("connection", "keep-alive, Upgrade")
                .header("upgrade", "websocket")
        };
        let mut p = parts(ws());
        let up = UpgradeRequest::take(&mut p).unwrap();
        assert_eq!(up.protocol, "websocket");
        let mut h = HeaderMap::new();
        up.restore_headers(&mut h);
        assert_eq!(
            (&h["connection"], &h["upgrade"]),
            (&UPGRADE_TOKEN, &up.protocol)
        );

        assert!(UpgradeRequest::take(&mut parts(ws().version(Version::HTTP_2))).is_none());
        assert!(UpgradeRequest::take(&mut parts(ws().version(Version::HTTP_10))).is_none());
        let no_token = Request::get("/")
            .header("connection", "keep-alive")
            .header("upgrade", "websocket");
        assert!(UpgradeRequest::take(&mut parts(no_token)).is_none());
        let no_protocol = Request::get("/").header("connection", "upgrade");
        assert!(UpgradeRequest::take(&mut parts(no_protocol)).is_none());
        let h2c = Request::get("/")
            .header("connection", "Upgrade, HTTP2-Settings")
            .header("upgrade", "H2C");
        assert!(UpgradeRequest::take(&mut parts(h2c)).is_none());
    }
}
