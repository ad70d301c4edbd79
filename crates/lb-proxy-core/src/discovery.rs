//! Building an upstream's discovery source from configuration.
//!
//! Static lists become [`Static`]; DNS, etcd and file sources are wrapped so every backend
//! they report carries its precomputed URI authority, keeping the request path free of
//! per-request formatting whatever the source.

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::StreamExt;
use lb_core::{Backend, ConfigOrder};
use lb_discovery::dns::{Dns, DnsConfig, DnsProtocol};
use lb_discovery::etcd::{Etcd, EtcdConfig};
use lb_discovery::file::File;
use lb_discovery::{Discovered, DiscoveryError, DiscoveryStream, ServiceDiscovery, Static};

use crate::config::{BackendList, Backup, DiscoveryConfig, DiscoveryKind, UpstreamConfig};

/// Why an upstream could not be built from its configuration (its discovery source or its
/// health check): a file that cannot be read, an invalid name, a bad pattern.
#[derive(Debug, thiserror::Error)]
#[error("upstream `{upstream}`: cannot build its {what}")]
pub struct SourceError {
    upstream: String,
    what: &'static str,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl SourceError {
    pub(crate) fn new(
        upstream: &str,
        what: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            upstream: upstream.to_owned(),
            what,
            source: source.into(),
        }
    }
}

/// A configured backend with its metadata: the configuration order (nginx's hash and
/// ip_hash walk servers as written) and the URI authority computed once.
pub(crate) fn decorate(b: &Backend, order: Option<u32>) -> Backend {
    let mut meta = b.metadata().clone();
    if let Some(order) = order {
        meta = meta.with(ConfigOrder(order));
    }
    if let Some(authority) = lb_client::upstream_authority(b) {
        meta = meta.with(authority);
    }
    b.with_metadata(meta)
}

/// The backends of a configured list, decorated, with their `backup` flags.
pub fn listed(list: &BackendList) -> Discovered {
    let backends = list
        .iter()
        .enumerate()
        .map(|(i, b)| decorate(b, Some(u32::try_from(i).unwrap_or(u32::MAX))))
        .collect();
    let backups = list
        .iter()
        .filter(|b| b.metadata().get::<Backup>().is_some())
        .map(|b| b.addr().clone())
        .collect();
    Discovered::new(backends).with_backups(backups)
}

/// A discovery source, and the [`Static`] list behind it when the backends are listed.
pub(crate) type Source = (Arc<dyn ServiceDiscovery>, Option<Arc<Static>>);

/// The discovery source of upstream `name`, and the [`Static`] list behind it when the
/// backends are listed in the configuration (known at once, replaced by a reload).
pub(crate) fn source(name: &str, config: &UpstreamConfig) -> Result<Source, SourceError> {
    let list = match config.discovery.as_ref().map(|d| d.get_ref()) {
        None => Some(&config.backends),
        Some(d) if d.kind == DiscoveryKind::Static => d.backends.as_ref(),
        Some(_) => None,
    };
    if let Some(list) = list {
        let fixed = Arc::new(Static::from_discovered(listed(list)));
        return Ok((fixed.clone(), Some(fixed)));
    }
    let Some(d) = config.discovery.as_ref().map(|d| d.get_ref()) else {
        let fixed = Arc::new(Static::default());
        return Ok((fixed.clone(), Some(fixed)));
    };
    let err = |what: &'static str| {
        move |e: Box<dyn std::error::Error + Send + Sync>| SourceError::new(name, what, e)
    };
    let dynamic: Arc<dyn ServiceDiscovery> = match d.kind {
        DiscoveryKind::Dns | DiscoveryKind::DnsSrv => {
            let cfg = dns_config(d);
            let dns_name = d.name.clone().unwrap_or_default();
            let dns = if d.kind == DiscoveryKind::Dns {
                Dns::a_aaaa_with(dns_name, d.port.unwrap_or_default(), &cfg)
            } else {
                Dns::srv_with(dns_name, &cfg)
            };
            Arc::new(dns.map_err(|e| err("DNS discovery")(e.into()))?)
        }
        DiscoveryKind::Etcd => {
            let cfg = EtcdConfig::new(
                d.endpoints.clone().unwrap_or_default(),
                d.prefix.clone().unwrap_or_default(),
            );
            Arc::new(Etcd::new(cfg).map_err(|e| err("etcd discovery")(e.into()))?)
        }
        DiscoveryKind::File => {
            let path = d.path.clone().unwrap_or_default();
            Arc::new(File::new(path).map_err(|e| err("file discovery")(e.into()))?)
        }
        DiscoveryKind::Static => Arc::new(Static::default()),
    };
    Ok((Arc::new(WithAuthority(dynamic)), None))
}

fn dns_config(d: &DiscoveryConfig) -> DnsConfig {
    let mut cfg = DnsConfig::default();
    if let Some(r) = d.resolver {
        cfg.resolver = Some(r.addr);
        cfg.protocol = if r.tcp {
            DnsProtocol::Tcp
        } else {
            DnsProtocol::Udp
        };
    }
    if let Some(min) = d.min_refresh {
        cfg.min_refresh = min.get();
    }
    if let Some(max) = d.max_refresh {
        cfg.max_refresh = max.get();
    }
    cfg
}

/// Adds the URI authority to every backend a dynamic source reports.
struct WithAuthority(Arc<dyn ServiceDiscovery>);

fn with_authority(mut found: Discovered) -> Discovered {
    found.backends = found.backends.iter().map(|b| decorate(b, None)).collect();
    found
}

#[async_trait]
impl ServiceDiscovery for WithAuthority {
    async fn discover(&self) -> Result<Discovered, DiscoveryError> {
        self.0.discover().await.map(with_authority)
    }

    fn watch(&self) -> Option<DiscoveryStream> {
        let stream = self.0.watch()?;
        Some(Box::pin(stream.map(|item| item.map(with_authority))))
    }

    fn error_count(&self) -> u64 {
        self.0.error_count()
    }
}
