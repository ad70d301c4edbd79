//! The etcd watch loop behind [`Etcd::watch`](super::Etcd): read, watch from the next
//! revision, apply events, and on failure reconnect with backoff and resume by revision.
//!
//! etcd semantics relied on (etcd v3 API, `rpc.proto` and `kv.proto`):
//! - a watch created with `start_revision = r` first replays every event from `r` on, so
//!   resuming from "last applied + 1" after a reconnection loses nothing;
//! - if `r` was compacted, the server cancels the watch with `compact_revision` set, and
//!   the only way to resynchronise is a fresh read;
//! - a deleted key's event carries the key with `version` 0 ("a deletion resets the
//!   version to zero"), a put always has `version` >= 1.

use std::time::Duration;

use etcd_client::{WatchOptions, WatchResponse, WatchStream};

use super::registry::Registry;
use super::{Etcd, EtcdError};
use crate::backoff::Backoff;
use crate::emitter::Emitter;
use crate::{Discovered, DiscoveryError, DiscoveryStream};

/// The loop's state, carried from one stream item to the next.
struct State {
    etcd: Etcd,
    registry: Registry,
    /// The revision the registry reflects; `None` forces a full read.
    revision: Option<i64>,
    watch: Option<WatchStream>,
    emitter: Emitter,
    backoff: Backoff,
    wait: Option<Duration>,
}

/// What one step of the loop produced.
enum Step {
    /// The registry may have changed: offer its answer to the emitter.
    Changed,
    /// Nothing to report; go on.
    Quiet,
    /// A failure to yield, after which the connection is rebuilt.
    Failed(EtcdError),
}

pub(super) fn stream(etcd: Etcd) -> DiscoveryStream {
    let c = &etcd.inner.config;
    let state = State {
        backoff: Backoff::new(c.reconnect_min, c.reconnect_max),
        emitter: Emitter::new(etcd.inner.errors.clone()),
        etcd,
        registry: Registry::default(),
        revision: None,
        watch: None,
        wait: None,
    };
    Box::pin(futures_util::stream::unfold(state, |mut s| async move {
        let item = s.next_item().await;
        Some((item, s))
    }))
}

impl State {
    async fn next_item(&mut self) -> Result<Discovered, DiscoveryError> {
        loop {
            if let Some(wait) = self.wait.take() {
                tokio::time::sleep(wait).await;
            }
            let step = match self.watch.as_mut() {
                None => self.connect().await,
                Some(watch) => match watch.message().await {
                    Ok(Some(response)) => self.apply(response).await,
                    Ok(None) => Step::Failed(EtcdError::WatchClosed {
                        prefix: self.etcd.inner.config.prefix.clone(),
                    }),
                    Err(source) => Step::Failed(EtcdError::Request {
                        operation: "watch",
                        prefix: self.etcd.inner.config.prefix.clone(),
                        source,
                    }),
                },
            };
            match step {
                Step::Quiet => {}
                Step::Changed => {
                    if let Some(found) = self.emitter.ok(self.registry.discovered()) {
                        return Ok(found);
                    }
                }
                Step::Failed(cause) => {
                    self.watch = None;
                    self.etcd.reset_client();
                    self.wait = Some(self.backoff.next_delay());
                    return Err(self.emitter.err(self.etcd.error(cause)));
                }
            }
        }
    }

    /// (Re)opens the watch: reads the prefix first if there is no revision to resume from.
    async fn connect(&mut self) -> Step {
        let revision = match self.revision {
            Some(revision) => revision,
            None => match self.etcd.read().await {
                Ok((registry, revision)) => {
                    self.registry = registry;
                    self.revision = Some(revision);
                    revision
                }
                Err(e) => return Step::Failed(e),
            },
        };
        let prefix = self.etcd.inner.config.prefix.clone();
        let mut client = match self.etcd.client().await {
            Ok(client) => client,
            Err(e) => return Step::Failed(e),
        };
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let opened = self
            .etcd
            .timed("watch", client.watch(prefix.as_str(), Some(options)))
            .await;
        match opened {
            Ok(Ok(watch)) => {
                tracing::debug!(source = %self.etcd.inner.label, from_revision = revision + 1, "etcd watch opened");
                self.watch = Some(watch);
                // Offered even if unchanged: after a failure the emitter yields the recovery.
                Step::Changed
            }
            Ok(Err(source)) => Step::Failed(EtcdError::Request {
                operation: "watch",
                prefix,
                source,
            }),
            Err(timeout) => Step::Failed(timeout),
        }
    }

    /// Applies one watch response to the registry.
    async fn apply(&mut self, response: WatchResponse) -> Step {
        // A message arrived: the connection works.
        self.backoff.reset();
        let header_revision = response.header().map(|h| h.revision());
        if response.canceled() {
            let compacted = response.compact_revision();
            tracing::info!(
                source = %self.etcd.inner.label,
                compact_revision = compacted,
                reason = response.cancel_reason(),
                "etcd watch canceled; reading the registry again"
            );
            self.watch = None;
            self.revision = None;
            return Step::Quiet;
        }
        if let (Some(header), Some(ours)) = (header_revision, self.revision) {
            if response.created() && header < ours {
                tracing::warn!(
                    source = %self.etcd.inner.label,
                    cluster_revision = header,
                    our_revision = ours,
                    "etcd revision went backwards (a new cluster?); reading the registry again"
                );
                self.watch = None;
                self.revision = None;
                return Step::Quiet;
            }
        }
        if response.events().is_empty() {
            return Step::Quiet;
        }
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let key = String::from_utf8_lossy(kv.key());
            if kv.version() == 0 {
                self.registry.delete(&key);
            } else {
                self.registry.put(&key, kv.value()).await;
            }
            self.revision = Some(self.revision.unwrap_or(0).max(kv.mod_revision()));
        }
        Step::Changed
    }
}
