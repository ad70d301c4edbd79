//! One upstream server.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{SocketAddr, ToSocketAddrs};
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;

use crate::{BackendAddr, BackendState, Error, Health, InFlight, Metadata};

/// One upstream server: where it listens, the name it was configured with, and its weight.
///
/// Identity (equality, order, hash) is the address, the configured name and the weight.
/// [`Metadata`] and the shared [`BackendState`] do not take part in it. Cloning is one
/// reference-count increment.
///
/// The configured name is the text the operator wrote (`localhost:8080`, `[::1]:80`,
/// `unix:/run/app.sock`). nginx's consistent hashing hashes that text, not the resolved
/// address, so two lists that resolve alike but are written differently give different
/// rings there, and must here too.
///
/// ```
/// use std::num::NonZeroU32;
/// use lb_core::Backend;
///
/// let b = Backend::parse("127.0.0.1:8080")?.with_weight(NonZeroU32::new(3).unwrap());
/// assert_eq!(b.name(), "127.0.0.1:8080");
/// assert_eq!(b.weight().get(), 3);
/// assert!(Backend::parse("127.0.0.1").is_err(), "a port is required");
/// # Ok::<(), lb_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Backend {
    inner: Arc<Inner>,
}

struct Inner {
    addr: BackendAddr,
    name: Arc<str>,
    weight: NonZeroU32,
    metadata: Metadata,
    state: Arc<BackendState>,
}

impl Backend {
    /// A backend at `addr`, named by its address text, weight 1, with fresh state.
    pub fn new(addr: impl Into<BackendAddr>) -> Self {
        let addr = addr.into();
        let name: Arc<str> = addr.to_string().into();
        Self::from_parts(addr, name, NonZeroU32::MIN, Metadata::new(), Arc::default())
    }

    /// Parses a literal address: `ip:port`, `[ipv6]:port` or `unix:/path`. Names are not
    /// resolved here; see [`Backend::resolve`].
    pub fn parse(text: &str) -> Result<Self, Error> {
        let addr = parse_literal(text)?;
        Ok(Self::from_parts(
            addr,
            text.into(),
            NonZeroU32::MIN,
            Metadata::new(),
            Arc::default(),
        ))
    }

    /// Parses `text` like [`Backend::parse`], and resolves `host:port` names with the system
    /// resolver (a blocking call: use it while loading configuration, not per request).
    ///
    /// A name with several addresses gives one backend per address, each keeping the
    /// configured name, as nginx does for `server localhost:8080;`.
    pub fn resolve(text: &str) -> Result<Vec<Self>, Error> {
        match parse_literal(text) {
            Ok(addr) => Ok(vec![Self::from_parts(
                addr,
                text.into(),
                NonZeroU32::MIN,
                Metadata::new(),
                Arc::default(),
            )]),
            Err(Error::InvalidAddress { .. }) if has_port(text) => {
                let addrs = text.to_socket_addrs().map_err(|source| Error::Resolve {
                    addr: text.to_owned(),
                    source,
                })?;
                let name: Arc<str> = text.into();
                let mut out: Vec<Self> = addrs
                    .map(|a| {
                        Self::from_parts(
                            BackendAddr::Inet(a),
                            name.clone(),
                            NonZeroU32::MIN,
                            Metadata::new(),
                            Arc::default(),
                        )
                    })
                    .collect();
                out.sort();
                out.dedup();
                if out.is_empty() {
                    return Err(Error::NoAddress {
                        addr: text.to_owned(),
                    });
                }
                Ok(out)
            }
            Err(e) => Err(e),
        }
    }

    fn from_parts(
        addr: BackendAddr,
        name: Arc<str>,
        weight: NonZeroU32,
        metadata: Metadata,
        state: Arc<BackendState>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                addr,
                name,
                weight,
                metadata,
                state,
            }),
        }
    }

    fn rebuild(&self, f: impl FnOnce(&mut Inner)) -> Self {
        let i = &self.inner;
        let mut inner = Inner {
            addr: i.addr.clone(),
            name: i.name.clone(),
            weight: i.weight,
            metadata: i.metadata.clone(),
            state: i.state.clone(),
        };
        f(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// This backend with another weight.
    #[must_use]
    pub fn with_weight(&self, weight: NonZeroU32) -> Self {
        self.rebuild(|i| i.weight = weight)
    }

    /// This backend with another configured name (the text hashed by nginx-compatible
    /// hashing and shown in logs).
    #[must_use]
    pub fn with_name(&self, name: impl Into<Arc<str>>) -> Self {
        let name = name.into();
        self.rebuild(|i| i.name = name)
    }

    /// This backend with other metadata.
    #[must_use]
    pub fn with_metadata(&self, metadata: Metadata) -> Self {
        self.rebuild(|i| i.metadata = metadata)
    }

    /// This backend sharing `state` (typically the state of the same server from a previous
    /// discovery round, so health and load carry over).
    #[must_use]
    pub fn with_state(&self, state: Arc<BackendState>) -> Self {
        self.rebuild(|i| i.state = state)
    }

    /// This backend with a fresh state that starts in `initial` health.
    #[must_use]
    pub fn with_initial_health(&self, initial: Health) -> Self {
        self.with_state(Arc::new(BackendState::new(initial)))
    }

    /// Where to connect.
    pub fn addr(&self) -> &BackendAddr {
        &self.inner.addr
    }

    /// The text this backend was configured with.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The relative share of traffic, at least 1.
    pub fn weight(&self) -> NonZeroU32 {
        self.inner.weight
    }

    /// User or discovery metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.inner.metadata
    }

    /// The shared runtime state.
    #[inline]
    pub fn state(&self) -> &BackendState {
        &self.inner.state
    }

    /// The shared runtime state, to hand to the next incarnation of this backend.
    pub fn shared_state(&self) -> &Arc<BackendState> {
        &self.inner.state
    }

    /// Counts a request against this backend until the returned guard is dropped.
    #[inline]
    pub fn begin_request(&self) -> InFlight {
        InFlight::new(self.clone())
    }

    /// True when `other` is the same allocation (cheaper than `==`).
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    fn key(&self) -> (&BackendAddr, &str, NonZeroU32) {
        (&self.inner.addr, &self.inner.name, self.inner.weight)
    }
}

fn has_port(text: &str) -> bool {
    text.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

fn parse_literal(text: &str) -> Result<BackendAddr, Error> {
    let invalid = |reason| Error::InvalidAddress {
        addr: text.to_owned(),
        reason,
    };
    if let Some(path) = text.strip_prefix("unix:") {
        if !path.starts_with('/') {
            return Err(invalid("a unix socket path must be absolute"));
        }
        return Ok(BackendAddr::Unix(Arc::from(Path::new(path))));
    }
    if !has_port(text) {
        return Err(invalid("expected host:port, [ipv6]:port or unix:/path"));
    }
    text.parse::<SocketAddr>()
        .map(BackendAddr::Inet)
        .map_err(|_| invalid("not an IP address; names need resolving"))
}

impl PartialEq for Backend {
    fn eq(&self, other: &Self) -> bool {
        self.ptr_eq(other) || self.key() == other.key()
    }
}

impl Eq for Backend {}

impl PartialOrd for Backend {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Backend {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

impl Hash for Backend {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("addr", &self.inner.addr)
            .field("name", &self.inner.name)
            .field("weight", &self.inner.weight)
            .field("state", &self.inner.state)
            .finish()
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_literal_form() {
        let v4 = Backend::parse("10.0.0.1:80").unwrap();
        assert_eq!(v4.addr().as_inet(), Some("10.0.0.1:80".parse().unwrap()));
        let v6 = Backend::parse("[::1]:8080").unwrap();
        assert_eq!(v6.name(), "[::1]:8080", "brackets kept as written");
        let unix = Backend::parse("unix:/run/app.sock").unwrap();
        assert_eq!(unix.addr().as_unix(), Some(Path::new("/run/app.sock")));
        assert_eq!(unix.to_string(), "unix:/run/app.sock");
    }

    #[test]
    fn rejects_bad_input_with_a_reason() {
        for bad in [
            "",
            "10.0.0.1",
            ":80",
            "10.0.0.1:99999",
            "unix:relative",
            "host:port",
        ] {
            let err = Backend::parse(bad).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn resolve_keeps_the_configured_name() {
        let all = Backend::resolve("localhost:8080").unwrap();
        assert!(!all.is_empty());
        for b in &all {
            assert_eq!(b.name(), "localhost:8080");
            assert!(b.addr().as_inet().unwrap().ip().is_loopback());
        }
    }

    #[test]
    fn identity_ignores_state_and_metadata() {
        let a = Backend::parse("10.0.0.1:80").unwrap();
        let b = a
            .with_metadata(Metadata::new().with(7u8))
            .with_initial_health(Health::Unhealthy);
        assert_eq!(a, b);
        assert_ne!(a, a.with_weight(NonZeroU32::new(2).unwrap()));
        assert_ne!(a, a.with_name("other:80"));
    }

    #[test]
    fn in_flight_guard_counts_and_gives_back() {
        let a = Backend::parse("10.0.0.1:80").unwrap();
        let shared = a.with_weight(NonZeroU32::new(5).unwrap());
        let g1 = a.begin_request();
        let g2 = shared.begin_request();
        assert_eq!(
            a.state().in_flight(),
            2,
            "state is shared across rebuilt handles"
        );
        drop(g1);
        drop(g2);
        assert_eq!(a.state().in_flight(), 0);
    }
}
