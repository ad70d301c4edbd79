//! Service discovery: where the backends of an upstream come from.
//!
//! A [`ServiceDiscovery`] answers "which backends are there now?" with a [`Discovered`]
//! set: the backends, the ones to keep but give no new traffic (`disabled`), and the ones to
//! use only when no other is usable (`backups`, from SRV priority tiers). It does so in two
//! ways:
//!
//! - **Polling**: [`ServiceDiscovery::discover`] resolves the set now. Every source has it.
//! - **Push**: [`ServiceDiscovery::watch`] returns a [`DiscoveryStream`] that yields a new
//!   full set each time the source sees a change (an etcd watch event, a file written, a DNS
//!   record whose TTL ran out and whose answer changed). Sources that cannot tell when
//!   things change return `None`, and the consumer polls.
//!
//! **Errors never empty an upstream.** A source that fails returns (or yields) an
//! [`Err`]; the consumer keeps serving the last good set. Each source counts its errors
//! ([`ServiceDiscovery::error_count`]).
//!
//! Sources in this crate:
//!
//! | Source | Module | Push | Feature |
//! |---|---|---|---|
//! | [`Static`]: a list given in code or configuration, changeable at run time | here | yes | always |
//! | [`Dns`][dns-type]: A/AAAA (`name:port`) or SRV (`_http._tcp.name`) records, re-resolved on their TTL | [`dns`][dns-module] | yes | `dns` |
//! | [`Etcd`][etcd-type]: keys under a prefix with a JSON value, watched | [`etcd`][etcd-module] | yes | `etcd` |
//! | [`File`][file-type]: a TOML or JSON file, reloaded when it changes | [`file`][file-module] | yes | `file` |
//!
//! ```
//! use lb_discovery::{ServiceDiscovery, Static};
//!
//! # tokio_test_block_on(async {
//! let discovery = Static::try_from_iter(["127.0.0.1:9001", "127.0.0.1:9002"])?;
//! let found = discovery.discover().await?;
//! assert_eq!(found.backends.len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```
//!
//! # Consuming a source
//!
//! Call [`discover`](ServiceDiscovery::discover) once at start-up, so the upstream has a
//! set (or a start-up error to report) before it serves. Then, if
//! [`watch`](ServiceDiscovery::watch) gives a stream, consume it: each `Ok` item is the
//! whole new set (install it; an item equal to the current set is harmless), each `Err` is
//! logged by the source and changes nothing. If it gives `None`, poll `discover` on an
//! interval instead. See [`DiscoveryStream`] for the exact contract.
//!
//! # Features
//!
//! `dns`, `etcd` and `file` each compile one source and its client (see the table above);
//! all three are on by default. With `default-features = false` the crate is the trait,
//! [`Static`] and the shared types, with no resolver, etcd client or file watcher.
//!
// Links to sources a feature may compile out: without the feature they point to this
// section instead of breaking rustdoc.
#![cfg_attr(feature = "dns", doc = "[dns-type]: dns::Dns")]
#![cfg_attr(feature = "dns", doc = "[dns-module]: mod@dns")]
#![cfg_attr(feature = "etcd", doc = "[etcd-type]: etcd::Etcd")]
#![cfg_attr(feature = "etcd", doc = "[etcd-module]: mod@etcd")]
#![cfg_attr(feature = "file", doc = "[file-type]: file::File")]
#![cfg_attr(feature = "file", doc = "[file-module]: mod@file")]
#![cfg_attr(not(feature = "dns"), doc = "[dns-type]: #features")]
#![cfg_attr(not(feature = "dns"), doc = "[dns-module]: #features")]
#![cfg_attr(not(feature = "etcd"), doc = "[etcd-type]: #features")]
#![cfg_attr(not(feature = "etcd"), doc = "[etcd-module]: #features")]
#![cfg_attr(not(feature = "file"), doc = "[file-type]: #features")]
#![cfg_attr(not(feature = "file"), doc = "[file-module]: #features")]

// Shared by the network and file sources; unused when all of them are compiled out.
#[cfg_attr(
    not(any(feature = "dns", feature = "etcd", feature = "file")),
    allow(dead_code)
)]
mod backoff;
mod discovered;
#[cfg_attr(
    not(any(feature = "dns", feature = "etcd", feature = "file")),
    allow(dead_code)
)]
mod emitter;
mod entry;
mod static_list;

#[cfg(feature = "dns")]
pub mod dns;
#[cfg(feature = "etcd")]
pub mod etcd;
#[cfg(feature = "file")]
pub mod file;

pub use discovered::{Discovered, DiscoveryError};
pub use entry::BackendEntry;
pub use static_list::Static;

use std::pin::Pin;

use async_trait::async_trait;
use futures_util::Stream;

/// The push side of a [`ServiceDiscovery`]: a stream of whole backend sets.
///
/// The contract every source of this crate follows:
///
/// - **The first item** is the source's current answer, produced as soon as the stream is
///   first polled (after the stream has started watching, so no change between a
///   [`discover`](ServiceDiscovery::discover) call and the stream is lost).
/// - **Then one item per change**: an `Ok` whenever the set differs from the last `Ok`
///   yielded, and an `Err` whenever the source fails (a DNS timeout, an etcd connection
///   lost, an unparsable file). After an `Err`, the next success is yielded even if the set
///   did not change, so the consumer sees the recovery.
/// - **Errors are not the end.** After an `Err` the stream keeps going: it retries on its
///   own (with backoff where a server is involved). The source logs each error it yields
///   at `warn` and counts it in [`ServiceDiscovery::error_count`]; the consumer must keep
///   its last good set.
/// - **The stream ends** (`None`) only when the source can produce nothing more (a
///   [`Static`] that was dropped). The consumer then keeps the last set, and may fall back
///   to polling.
/// - **Cancellation** is dropping the stream: it stops the source's background work (DNS
///   timers, the etcd watch, the file watcher). Streams spawn no tasks: they only make
///   progress while polled (the file watcher has its own notify thread, which only wakes
///   the stream).
///
/// The stream is `Send + 'static`, so it can be driven from a spawned task.
pub type DiscoveryStream = Pin<Box<dyn Stream<Item = Result<Discovered, DiscoveryError>> + Send>>;

/// A source of backends.
///
/// Implement [`discover`](Self::discover); implement [`watch`](Self::watch) too if the
/// source knows when its answer changes.
#[async_trait]
pub trait ServiceDiscovery: Send + Sync + 'static {
    /// The backends there are now. An `Err` means "no new answer": the caller keeps the last
    /// good set. Does not log the error (the caller does).
    async fn discover(&self) -> Result<Discovered, DiscoveryError>;

    /// A stream of new sets as the source sees changes, or `None` (the default) when the
    /// source can only be polled. Each call gives an independent stream. See
    /// [`DiscoveryStream`] for the contract.
    fn watch(&self) -> Option<DiscoveryStream> {
        None
    }

    /// How many errors this source has returned or yielded since it was built (all its
    /// streams and `discover` calls together). The default is 0, for sources that do not
    /// count.
    fn error_count(&self) -> u64 {
        0
    }
}
