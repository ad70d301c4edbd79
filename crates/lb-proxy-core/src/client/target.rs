//! How a backend is addressed inside the client: a URI authority, computed once per
//! backend and carried in its metadata, so the request path clones it instead of
//! formatting an address.
//!
//! TCP backends use their socket address as the authority. Unix socket backends use a hex
//! encoding of the path under the reserved `.unix.invalid` name, so one pool keyed by
//! authority serves both. A backend configured by DNS name also carries that name, the
//! default TLS server name.

use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use http::uri::Authority;
use lb_core::{Backend, BackendAddr};
use rustls::pki_types::ServerName;

const UNIX_SUFFIX: &str = ".unix.invalid";

/// The precomputed addressing of one backend, stored in its [`Metadata`](lb_core::Metadata).
#[derive(Clone, Debug)]
pub(crate) struct UpstreamAuthority {
    /// The URI authority the client uses (and pools connections by).
    pub(crate) authority: Authority,
    /// The host of the configured name when it is a DNS name: the default SNI.
    pub(crate) server_name: Option<ServerName<'static>>,
}

/// The [`UpstreamAuthority`] of `backend` (none if its address cannot be one).
pub(crate) fn upstream_authority(backend: &Backend) -> Option<UpstreamAuthority> {
    let authority = Authority::try_from(authority(backend.addr())).ok()?;
    Some(UpstreamAuthority {
        authority,
        server_name: dns_name(backend),
    })
}

/// `backend` with its [`UpstreamAuthority`] in its metadata.
pub(crate) fn prepare(backend: &Backend) -> Backend {
    match upstream_authority(backend) {
        Some(target) => backend.with_metadata(backend.metadata().with(target)),
        None => backend.clone(),
    }
}

/// The host of a TCP backend's configured name, when it is a valid DNS name (not an IP).
fn dns_name(backend: &Backend) -> Option<ServerName<'static>> {
    if !matches!(backend.addr(), BackendAddr::Inet(_)) {
        return None;
    }
    let name = backend.name();
    let host = name.rsplit_once(':').map_or(name, |(host, _)| host);
    match ServerName::try_from(host.to_owned()) {
        Ok(n @ ServerName::DnsName(_)) => Some(n),
        _ => None,
    }
}

/// The URI authority the client uses for `addr`.
pub(crate) fn authority(addr: &BackendAddr) -> String {
    match addr {
        BackendAddr::Inet(a) => a.to_string(),
        BackendAddr::Unix(path) => {
            let bytes = path.as_os_str().as_encoded_bytes();
            let mut s = String::with_capacity(bytes.len() * 2 + UNIX_SUFFIX.len());
            for b in bytes {
                s.push(hex_digit(b >> 4));
                s.push(hex_digit(b & 0xf));
            }
            s.push_str(UNIX_SUFFIX);
            s
        }
    }
}

fn hex_digit(n: u8) -> char {
    char::from_digit(u32::from(n), 16).unwrap_or('0')
}

/// The Unix socket path encoded in a URI host, if it is one.
pub(crate) fn unix_path(host: &str) -> Option<PathBuf> {
    let hex = host.strip_suffix(UNIX_SUFFIX)?;
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    bytes.map(|b| PathBuf::from(std::ffi::OsString::from_vec(b)))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use http::Uri;

    use super::*;

    #[test]
    fn unix_paths_round_trip_through_the_authority() {
        let addr = BackendAddr::Unix(Arc::from(Path::new("/run/app v2.sock")));
        let auth = authority(&addr);
        let uri: Uri = format!("http://{auth}/x").parse().unwrap();
        assert_eq!(
            unix_path(uri.host().unwrap()),
            Some(PathBuf::from("/run/app v2.sock"))
        );
        assert_eq!(unix_path("127.0.0.1"), None);
    }

    #[test]
    fn dns_names_become_server_names_and_ips_do_not() {
        let named = Backend::parse("127.0.0.1:443")
            .unwrap()
            .with_name("api.example.com:443");
        let t = upstream_authority(&named).unwrap();
        assert_eq!(t.authority.as_str(), "127.0.0.1:443");
        assert_eq!(
            t.server_name,
            Some(ServerName::try_from("api.example.com").unwrap())
        );
        for ip in ["127.0.0.1:443", "[::1]:443"] {
            let b = Backend::parse(ip).unwrap();
            assert_eq!(upstream_authority(&b).unwrap().server_name, None, "{ip}");
        }
        let unix = Backend::parse("unix:/run/a.sock").unwrap();
        assert_eq!(upstream_authority(&unix).unwrap().server_name, None);
    }
}
