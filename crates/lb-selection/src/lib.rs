//! Backend selection: which backend a request goes to, and in what order to fall back.
//!
//! A selection algorithm is a type implementing [`BackendSelection`]. It is built once from
//! a [`BackendSet`] into an immutable structure (a load balancer swaps a new one in
//! atomically when discovery changes the set), and then answers [`BackendSelection::iter`]
//! for each request with a [`BackendIter`]: the candidates in order of preference.
//!
//! The contract of every iterator: it yields each backend of the set **at most once**, so a
//! caller that skips unhealthy candidates always terminates, without a magic iteration cap,
//! and it never allocates. Health is not the selector's business: the caller filters.
//!
//! ```
//! use lb_core::{Backend, BackendSet};
//! use lb_selection::{BackendSelection, RoundRobin};
//!
//! let set: BackendSet = ["10.0.0.1:80", "10.0.0.2:80"]
//!     .into_iter()
//!     .map(Backend::parse)
//!     .collect::<Result<_, _>>()?;
//! let rr = RoundRobin::build(&set, &Default::default());
//! let first: Vec<_> = rr.iter(b"").map(|b| b.name().to_owned()).collect();
//! assert_eq!(first, ["10.0.0.1:80", "10.0.0.2:80"]);
//! assert_eq!(rr.iter(b"").next().unwrap().name(), "10.0.0.2:80");
//! # Ok::<(), lb_core::Error>(())
//! ```
//!
//! # Writing your own
//!
//! Implement [`BackendSelection`] for your selector. The simplest way to keep the iterator
//! contract is to return [`Candidates`] over your own [`Preference`]: it takes up to
//! [`PREFERRED_MAX`] distinct preferred indices from it, then yields every other backend
//! once, without allocating. Here, backends in the local zone are preferred, in rotation:
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use lb_core::{Backend, BackendSet, Metadata};
//! use lb_selection::{BackendSelection, Candidates, Preference};
//!
//! #[derive(Debug, PartialEq)]
//! struct Zone(&'static str);
//!
//! /// Local-zone backends first (rotating), then the others.
//! struct ZoneAware {
//!     backends: BackendSet,
//!     local: Vec<usize>, // indices of local-zone backends
//!     next: AtomicUsize,
//! }
//!
//! /// The local backends, starting at a rotating offset.
//! struct Local<'a> {
//!     local: &'a [usize],
//!     start: usize,
//!     taken: usize,
//! }
//!
//! impl Preference for Local<'_> {
//!     fn next_index(&mut self) -> Option<usize> {
//!         if self.taken == self.local.len() {
//!             return None;
//!         }
//!         self.taken += 1;
//!         Some(self.local[(self.start + self.taken) % self.local.len()])
//!     }
//! }
//!
//! impl BackendSelection for ZoneAware {
//!     type Config = &'static str; // the local zone
//!     type Iter<'a> = Candidates<'a, Local<'a>>;
//!
//!     fn build(backends: &BackendSet, zone: &&'static str) -> Self {
//!         let local = backends
//!             .iter()
//!             .enumerate()
//!             .filter(|(_, b)| b.metadata().get::<Zone>() == Some(&Zone(zone)))
//!             .map(|(i, _)| i)
//!             .collect();
//!         Self { backends: backends.clone(), local, next: AtomicUsize::new(0) }
//!     }
//!
//!     fn iter<'a>(&'a self, _key: &'a [u8]) -> Self::Iter<'a> {
//!         let start = self.next.fetch_add(1, Ordering::Relaxed);
//!         let prefer = Local { local: &self.local, start, taken: 0 };
//!         Candidates::new(&self.backends, prefer, usize::MAX, start)
//!     }
//! }
//!
//! let in_zone = |addr: &str, zone| {
//!     Backend::parse(addr).map(|b| b.with_metadata(Metadata::new().with(Zone(zone))))
//! };
//! let set: BackendSet = [
//!     in_zone("10.0.0.1:80", "eu-west-1a")?,
//!     in_zone("10.0.0.2:80", "eu-west-1b")?,
//!     in_zone("10.0.0.3:80", "eu-west-1a")?,
//! ]
//! .into_iter()
//! .collect();
//! let selector = ZoneAware::build(&set, &"eu-west-1a");
//! let order: Vec<_> = selector.iter(b"").map(|b| b.name().to_owned()).collect();
//! assert_eq!(order.len(), 3, "every backend, once");
//! assert_eq!(order[2], "10.0.0.2:80", "the remote zone comes last");
//! # Ok::<(), lb_core::Error>(())
//! ```

pub mod bounded;
pub mod candidates;
pub mod fnv;
mod hashing;
pub mod ketama;
pub mod least_conn;
pub mod maglev;
pub mod nginx_hash;
pub mod p2c;
pub mod random;
pub mod round_robin;
pub mod walk;
mod weighted;

pub use bounded::{BalanceFactor, InvalidBalanceFactor};
pub use candidates::{Candidates, Picks, Preference, WalkOrPicks, PREFERRED_MAX};
pub use fnv::FnvHash;
pub use ketama::{Consistent, ConsistentConfig, RingWalk};
pub use least_conn::LeastConn;
pub use maglev::{is_prime, Maglev, MaglevConfig, TableWalk, DEFAULT_TABLE_SIZE, MAX_TABLE_SIZE};
pub use nginx_hash::{IpHash, IpWalk, NginxHash, RehashWalk};
pub use p2c::P2c;
pub use random::Random;
pub use round_robin::RoundRobin;
pub use walk::{CyclicWalk, Entry};

use lb_core::{Backend, BackendSet};

/// A selection algorithm, built from a backend set into an immutable structure.
pub trait BackendSelection: Send + Sync + Sized + 'static {
    /// Options of the algorithm (table sizes, balance factors, ...); `()` when there are none.
    type Config: Clone + Default + Send + Sync + 'static;

    /// The candidate iterator of one request, borrowing the selector.
    type Iter<'a>: BackendIter<'a>
    where
        Self: 'a;

    /// Builds the selector. An empty set gives a selector whose iterators yield nothing.
    fn build(backends: &BackendSet, config: &Self::Config) -> Self;

    /// The candidates for a request with hash key `key`, best first. Algorithms that do not
    /// hash ignore the key; those that rehash on fallback (nginx's `hash`) borrow it.
    fn iter<'a>(&'a self, key: &'a [u8]) -> Self::Iter<'a>;
}

/// The candidates of one request, in order of preference.
///
/// Implementations promise that each backend of the set is yielded at most once and that
/// iterating never allocates. This trait adds no methods to [`Iterator`]; implementing it is
/// the statement that the promise holds.
pub trait BackendIter<'a>: Iterator<Item = &'a Backend> {}
