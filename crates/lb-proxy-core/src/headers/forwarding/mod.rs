//! The forwarding headers a request carries to its backend: `X-Forwarded-For`,
//! `X-Real-IP`, `X-Forwarded-Proto`, `X-Forwarded-Host`, `Forwarded`, `Via`, and the
//! `Host` rewrite, as `[server.forwarding]` and the upstream's `host` say.

use std::cell::OnceCell;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::Version;

use super::client_ip;
use super::text::{self, IpText, Piece};
use super::ClientAddr;
use super::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REAL_IP};
use crate::config::{Cidr, ForwardingConfig};

static HTTP: HeaderValue = HeaderValue::from_static("http");
static HTTPS: HeaderValue = HeaderValue::from_static("https");
/// What a client says about itself and is dropped unless its peer is trusted.
static CLAIMS: [HeaderName; 5] = [
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-real-ip"),
    header::FORWARDED,
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-host"),
];

/// `[server.forwarding]`, prepared for the request path: the trusted networks and which
/// headers to write, with the `Via` values built once per protocol version.
#[derive(Clone, Debug)]
pub(crate) struct Forwarding {
    trusted: Box<[Cidr]>,
    x_forwarded_for: bool,
    x_forwarded_proto: bool,
    x_forwarded_host: bool,
    x_real_ip: bool,
    forwarded: bool,
    /// `Via` per received version (see [`version_index`]); empty when off.
    via: Box<[HeaderValue]>,
}

/// Index of `version` in [`Forwarding::via`]; RFC 9110 `received-protocol` spellings.
fn version_index(version: Version) -> usize {
    match version {
        Version::HTTP_09 => 0,
        Version::HTTP_10 => 1,
        Version::HTTP_2 => 3,
        Version::HTTP_3 => 4,
        _ => 2,
    }
}

/// Index of a field name (lower case) among the fields [`Forwarding::rewrite_request`]
/// looks for: [`CLAIMS`] in order, then `Via` and `Host`.
#[inline]
fn field_index(name: &str) -> Option<u32> {
    Some(match name {
        "x-forwarded-for" => XFF,
        "x-real-ip" => 1,
        "forwarded" => 2,
        "x-forwarded-proto" => XFP,
        "x-forwarded-host" => XFH,
        "via" => VIA,
        "host" => HOST,
        _ => return None,
    })
}

/// Bits of [`field_index`]: `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host`,
/// `Via`, `Host`.
const XFF: u32 = 0;
const XFP: u32 = 3;
const XFH: u32 = 4;
const VIA: u32 = 5;
const HOST: u32 = 6;
/// The bits of [`CLAIMS`].
const CLAIM_BITS: u32 = (1 << CLAIMS.len()) - 1;

const VIA_VERSIONS: [&str; 5] = ["0.9", "1.0", "1.1", "2", "3"];

impl Forwarding {
    /// Prepares `config` for the request path.
    pub(crate) fn new(config: &ForwardingConfig) -> Self {
        let via = match config.via.name() {
            // The name was validated as token characters at load time, so each value parses.
            Some(name) => VIA_VERSIONS
                .iter()
                .filter_map(|v| HeaderValue::from_str(&format!("{v} {name}")).ok())
                .collect(),
            None => Box::default(),
        };
        Self {
            trusted: config.trusted_proxies.iter().copied().collect(),
            x_forwarded_for: config.x_forwarded_for,
            x_forwarded_proto: config.x_forwarded_proto,
            x_forwarded_host: config.x_forwarded_host,
            x_real_ip: config.x_real_ip,
            forwarded: config.forwarded,
            via,
        }
    }

    /// Who sent a request from `peer` with `headers`; see [`client_ip::client_addr`]. Call
    /// it before selecting a backend, so `ip_hash` and `hash_key = "client_ip"` hash the
    /// real client.
    #[inline]
    pub(crate) fn client(&self, peer: std::net::IpAddr, headers: &HeaderMap) -> ClientAddr {
        client_ip::client_addr(&self.trusted, peer, headers)
    }

    /// Rewrites the headers of a request from `client` for its backend:
    ///
    /// 1. `Host` is set from the URI authority when absent (HTTP/2 sends `:authority`).
    /// 2. (Hop-by-hop fields were removed by the pipeline before this runs; an upgrade's
    ///    two are back, see [`crate::upgrade`].)
    /// 3. From an untrusted peer, `X-Forwarded-For`, `X-Real-IP`, `Forwarded`,
    ///    `X-Forwarded-Proto` and `X-Forwarded-Host` are removed: nothing it says about
    ///    the client is passed on.
    /// 4. The enabled headers are written: the peer appended to `X-Forwarded-For`, the
    ///    client in `X-Real-IP`, the scheme (`tls`) in `X-Forwarded-Proto` and the
    ///    requested host in `X-Forwarded-Host` (a trusted peer's values of these two are
    ///    kept), a `for=;proto=;host=` element appended to `Forwarded`, and this proxy
    ///    appended to `Via`.
    /// 5. `Host` becomes `host` when the upstream sets one.
    ///
    /// Allocates only the values it builds: the address lists and `Forwarded` (the value of
    /// the peer alone, in `X-Forwarded-For` and `X-Real-IP`, comes from a one-entry cache
    /// per thread, [`text::peer_value`]).
    pub(crate) fn rewrite_request(
        &self,
        parts: &mut Parts,
        client: &ClientAddr,
        tls: bool,
        host: Option<&HeaderValue>,
    ) {
        let headers = &mut parts.headers;
        // One pass over the names says which of the fields read below are there (instead
        // of a hashed lookup each).
        let mut present = super::present(headers, field_index);
        if present & (1 << HOST) == 0 {
            if let Some(authority) = parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            {
                headers.insert(header::HOST, authority);
            }
        }
        if !client.trusted {
            // Usually none is there.
            for (i, name) in CLAIMS.iter().enumerate() {
                if present & (1 << i) != 0 {
                    headers.remove(name);
                }
            }
            present &= !CLAIM_BITS;
        }
        let has = |i: u32| present & (1 << i) != 0;
        let proto = if tls { &HTTPS } else { &HTTP };
        // The peer's text, written at most once and only when a list or `Forwarded` needs it.
        let peer = OnceCell::new();
        let peer_text = || peer.get_or_init(|| IpText::new(client.peer));

        // The peer's text as a value, built at most once for X-Forwarded-For and X-Real-IP.
        let mut peer_value = None;
        if self.x_forwarded_for {
            if has(XFF) {
                text::append_list(
                    headers,
                    &X_FORWARDED_FOR,
                    &[Piece::Raw(peer_text().as_bytes())],
                );
            } else if let Some(v) = text::peer_value(client.peer) {
                // Shared with X-Real-IP below: the clone is a reference count.
                headers.insert(&X_FORWARDED_FOR, v.clone());
                peer_value = Some(v);
            }
        }
        if self.x_real_ip {
            let value = if client.ip == client.peer {
                peer_value.or_else(|| text::peer_value(client.peer))
            } else {
                text::ip_value(IpText::new(client.ip))
            };
            if let Some(v) = value {
                headers.insert(&X_REAL_IP, v);
            }
        }
        // (A trusted peer's values of these two were not removed above.)
        if self.x_forwarded_proto && !has(XFP) {
            headers.insert(&X_FORWARDED_PROTO, proto.clone());
        }
        if self.x_forwarded_host && !has(XFH) {
            if let Some(requested) = headers.get(header::HOST).cloned() {
                headers.insert(&X_FORWARDED_HOST, requested);
            }
        }
        if self.forwarded {
            append_forwarded(headers, client, peer_text(), proto);
        }
        if let Some(via) = self.via.get(version_index(parts.version)) {
            if has(VIA) {
                text::append_list(headers, &header::VIA, &[Piece::Raw(via.as_bytes())]);
            } else {
                headers.insert(header::VIA, via.clone());
            }
        }
        if let Some(host) = host {
            headers.insert(header::HOST, host.clone());
        }
    }
}

/// Appends `for=<peer>;proto=<proto>[;host=<Host>]` to `Forwarded` (RFC 7239): IPv6
/// addresses quoted and bracketed, the host quoted unless it is a token.
fn append_forwarded(
    headers: &mut HeaderMap,
    client: &ClientAddr,
    peer: &IpText,
    proto: &HeaderValue,
) {
    let (open, close): (&[u8], &[u8]) = if client.peer.is_ipv6() {
        (b"for=\"[", b"]\";proto=")
    } else {
        (b"for=", b";proto=")
    };
    let requested = headers.get(header::HOST).cloned();
    let mut pieces = [
        Piece::Raw(open),
        Piece::Raw(peer.as_bytes()),
        Piece::Raw(close),
        Piece::Raw(proto.as_bytes()),
        Piece::Raw(b""),
        Piece::Raw(b""),
    ];
    if let Some(host) = &requested {
        pieces[4] = Piece::Raw(b";host=");
        pieces[5] = Piece::Value(host.as_bytes());
    }
    text::append_list(headers, &header::FORWARDED, &pieces);
}

#[cfg(test)]
mod tests;
