//! One resolution: A/AAAA records into backends, SRV records into primary and backup tiers.
//!
//! A and AAAA are asked for concurrently (RFC 3596 defines AAAA as a separate type); a
//! name with only one of the two is fine, a name with neither is an error. SRV handling
//! follows RFC 2782: the lowest priority number is the tier to use, a target of `.` means
//! the service is not available, and weights are relative within a tier.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use futures_util::future::{join, join_all};
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Name, ResolveError, TokioResolver};
use lb_core::{Backend, BackendAddr, Metadata};

use super::DnsError;
use crate::Discovered;

/// The SRV record a backend came from, in its [`Metadata`] (for status pages, or for
/// selectors that want the tiers beyond primary/backup).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrvRecord {
    /// The record's priority (lower is preferred).
    pub priority: u16,
    /// The record's weight as published (0 included; the backend's weight is at least 1).
    pub weight: u16,
    /// The port.
    pub port: u16,
    /// The target host, without its final dot.
    pub target: String,
}

/// Addresses of one name, and the smallest TTL of the records that gave them.
struct Addresses {
    ips: Vec<IpAddr>,
    ttl: u32,
}

/// The A or AAAA records of `name`.
async fn lookup_type(
    resolver: &TokioResolver,
    name: &Name,
    record_type: RecordType,
) -> Result<Addresses, ResolveError> {
    let lookup = resolver.lookup(name.clone(), record_type).await?;
    let mut out = Addresses {
        ips: Vec::new(),
        ttl: u32::MAX,
    };
    for record in lookup.records() {
        out.ttl = out.ttl.min(record.ttl());
        match record.data() {
            RData::A(a) => out.ips.push(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => out.ips.push(IpAddr::V6(aaaa.0)),
            _ => {}
        }
    }
    Ok(out)
}

/// The A and AAAA records of `name`, together. `Ok` with no address only when both types
/// have no records; any other failure of either is an error.
async fn lookup_addresses(
    resolver: &TokioResolver,
    name: &Name,
    text: &str,
) -> Result<Addresses, DnsError> {
    let (v4, v6) = join(
        lookup_type(resolver, name, RecordType::A),
        lookup_type(resolver, name, RecordType::AAAA),
    )
    .await;
    let mut all = Addresses {
        ips: Vec::new(),
        ttl: u32::MAX,
    };
    let mut no_records = None;
    for (record_type, result) in [("A", v4), ("AAAA", v6)] {
        match result {
            Ok(found) => {
                all.ips.extend(found.ips);
                all.ttl = all.ttl.min(found.ttl);
            }
            Err(e) if e.is_no_records_found() => no_records = Some((record_type, e)),
            Err(source) => {
                return Err(DnsError::Query {
                    name: text.to_owned(),
                    record_type,
                    source,
                })
            }
        }
    }
    match no_records {
        Some((record_type, source)) if all.ips.is_empty() => Err(DnsError::Query {
            name: text.to_owned(),
            record_type,
            source,
        }),
        _ => Ok(all),
    }
}

fn parse_name(text: &str) -> Result<Name, DnsError> {
    text.parse::<Name>()
        .map_err(|source| DnsError::InvalidName {
            name: text.to_owned(),
            source,
        })
}

fn ttl(secs: u32) -> Duration {
    Duration::from_secs(u64::from(secs))
}

/// A/AAAA discovery: every address of `name` at `port`, named `name:port`.
pub(super) async fn address(
    resolver: &TokioResolver,
    name: &str,
    port: u16,
) -> Result<(Discovered, Duration), DnsError> {
    let found = lookup_addresses(resolver, &parse_name(name)?, name).await?;
    if found.ips.is_empty() {
        return Err(DnsError::NoAddress {
            name: name.to_owned(),
        });
    }
    let label = format!("{name}:{port}");
    let backends = found
        .ips
        .into_iter()
        .map(|ip| Backend::new(SocketAddr::new(ip, port)).with_name(label.as_str()))
        .collect();
    Ok((Discovered::new(backends), ttl(found.ttl)))
}

/// SRV discovery: every target's addresses, lowest priority primary, the rest backups.
pub(super) async fn srv(
    resolver: &TokioResolver,
    name: &str,
) -> Result<(Discovered, Duration), DnsError> {
    let query = |source| DnsError::Query {
        name: name.to_owned(),
        record_type: "SRV",
        source,
    };
    let lookup = resolver
        .lookup(parse_name(name)?, RecordType::SRV)
        .await
        .map_err(query)?;
    let mut min_ttl = u32::MAX;
    let mut records = Vec::new();
    for record in lookup.records() {
        min_ttl = min_ttl.min(record.ttl());
        if let RData::SRV(srv) = record.data() {
            records.push(srv.clone());
        }
    }
    if records.is_empty() {
        return Err(DnsError::NoAddress {
            name: name.to_owned(),
        });
    }
    records.retain(|r| !r.target().is_root());
    if records.is_empty() {
        // Only "." targets: the service is decidedly not available (RFC 2782).
        return Ok((Discovered::default(), ttl(min_ttl)));
    }

    let targets: BTreeMap<Name, String> = records
        .iter()
        .map(|r| {
            let text = r.target().to_ascii();
            let text = text.strip_suffix('.').unwrap_or(&text).to_owned();
            (r.target().clone(), text)
        })
        .collect();
    let resolved = join_all(
        targets
            .iter()
            .map(|(target, text)| lookup_addresses(resolver, target, text)),
    )
    .await;
    let mut addresses = BTreeMap::new();
    for ((target, text), result) in targets.iter().zip(resolved) {
        match result {
            Ok(found) => {
                min_ttl = min_ttl.min(found.ttl);
                addresses.insert(target.clone(), found.ips);
            }
            Err(DnsError::Query { source, .. }) if source.is_no_records_found() => {
                tracing::warn!(srv = name, target = %text, "SRV target has no address; skipped");
            }
            Err(e) => return Err(e),
        }
    }

    // The tier to use is the lowest-numbered one that has an address (RFC 2782: "the
    // lowest-numbered priority it can reach").
    let Some(primary) = records
        .iter()
        .filter(|r| addresses.contains_key(r.target()))
        .map(|r| r.priority())
        .min()
    else {
        return Err(DnsError::NoAddress {
            name: name.to_owned(),
        });
    };
    let mut backends = Vec::new();
    let mut primaries = HashSet::new();
    let mut backups = HashSet::new();
    for r in &records {
        let (Some(ips), Some(text)) = (addresses.get(r.target()), targets.get(r.target())) else {
            continue;
        };
        let meta = Metadata::new().with(SrvRecord {
            priority: r.priority(),
            weight: r.weight(),
            port: r.port(),
            target: text.clone(),
        });
        let label = format!("{text}:{}", r.port());
        let weight = NonZeroU32::new(u32::from(r.weight())).unwrap_or(NonZeroU32::MIN);
        for ip in ips {
            let b = Backend::new(SocketAddr::new(*ip, r.port()))
                .with_name(label.as_str())
                .with_weight(weight)
                .with_metadata(meta.clone());
            let tier = if r.priority() == primary {
                &mut primaries
            } else {
                &mut backups
            };
            tier.insert(b.addr().clone());
            backends.push(b);
        }
    }
    if backends.is_empty() {
        return Err(DnsError::NoAddress {
            name: name.to_owned(),
        });
    }
    // An address in the primary tier is a primary, even if a higher tier lists it too.
    backups.retain(|a: &BackendAddr| !primaries.contains(a));
    let found = Discovered::new(backends.into_iter().collect()).with_backups(backups);
    Ok((found, ttl(min_ttl)))
}
