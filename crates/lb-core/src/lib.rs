//! Core vocabulary of the `lb` load-balancing toolkit.
//!
//! Every other crate of the workspace speaks in these types:
//!
//! - [`Backend`]: one upstream server: its [`BackendAddr`] (an IP socket address or a
//!   Unix domain socket path), the name it was configured with (kept for nginx-compatible
//!   hashing, which hashes the configured text, not the resolved address), and a weight
//!   that is at least 1 by construction.
//! - [`BackendSet`]: a sorted, duplicate-free set of backends, so that every process that
//!   sees the same servers builds the same selection structures.
//! - [`BackendState`]: the shared, lock-free runtime state of one backend (health,
//!   administrative flags, in-flight requests). It lives behind an `Arc` that outlives
//!   selector rebuilds, so discovery updates never reset health or load.
//! - [`InFlight`]: an RAII guard that counts a request against a backend while it lives.
//! - `tls` (feature `tls`): the TLS trust of backend connections (root store, verifiers)
//!   that lb-health's TLS checks and lb-client share.
//!
//! ```
//! use lb_core::{Backend, BackendSet};
//!
//! let set: BackendSet = ["127.0.0.1:9001", "127.0.0.1:9002"]
//!     .into_iter()
//!     .map(Backend::parse)
//!     .collect::<Result<_, _>>()?;
//! assert_eq!(set.len(), 2);
//! let first = &set.as_slice()[0];
//! let guard = first.begin_request();
//! assert_eq!(first.state().in_flight(), 1);
//! drop(guard);
//! assert_eq!(first.state().in_flight(), 0);
//! # Ok::<(), lb_core::Error>(())
//! ```

mod addr;
mod backend;
mod error;
mod metadata;
mod set;
mod state;
#[cfg(feature = "tls")]
pub mod tls;

pub use addr::BackendAddr;
pub use backend::Backend;
pub use error::Error;
pub use metadata::{ConfigOrder, Metadata};
pub use set::BackendSet;
pub use state::{monotonic_ms, BackendState, Health, InFlight};
