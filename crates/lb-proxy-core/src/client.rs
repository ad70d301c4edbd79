//! The upstream HTTP client, [`lb_client`], under the path lb-proxy has always named it by,
//! with the proxy's [`RequestBody`](crate::RequestBody) (a client's body, replayable for
//! retries) as the default request body type: what a [`Peer`](crate::hooks::Peer) uses.
//!
//! ```no_run
//! # async fn demo(backend: lb_core::Backend) -> Result<(), Box<dyn std::error::Error>> {
//! use bytes::Bytes;
//! use http_body_util::Empty;
//! use lb_proxy_core::client::{PeerOptions, TlsOptions, UpstreamClient};
//!
//! let mut options = PeerOptions::default();
//! options.tls = Some(TlsOptions::default());
//! let client: UpstreamClient<Empty<Bytes>> = UpstreamClient::new(options)?;
//! let request = http::Request::get("/health").body(Empty::new())?;
//! let response = client.request(&backend, request).await?;
//! tracing::info!(status = %response.status(), "answered");
//! # Ok(()) }
//! ```

pub use lb_client::{
    prepare_backend, Alpn, ClientBuildError, ClientCert, OnUpgraded, PeerOptions, TlsOptions,
    Upgraded, UpstreamError,
};
// The PEM files named in the configuration are read by lb-config; the client's users read
// the same kinds of file with the same code.
pub use lb_config::pem::{load_certs, load_key, PemError};

/// [`lb_client::UpstreamClient`], sending the proxy's request bodies by default.
pub type UpstreamClient<B = crate::replay::RequestBody> = lb_client::UpstreamClient<B>;

/// [`lb_client::UpstreamBody`], the response body of an [`UpstreamClient`] (by default, of
/// one sending the proxy's request bodies).
pub type UpstreamBody<B = crate::replay::RequestBody> = lb_client::UpstreamBody<B>;
