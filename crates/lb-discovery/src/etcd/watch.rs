//! The etcd watch loop behind [`Etcd::watch`](super::Etcd): read, watch from the next
//! revision, apply events, and on failure reconnect with backoff and resume by revision.
//!
//! While no message comes for `keep_alive`, the loop probes etcd (a count-only read that
//! must answer within the request timeout); a failed probe ends the watch like a broken
//! connection.
//!
//! etcd semantics relied on (etcd v3 API, `rpc.proto` and `kv.proto`):
//! - a watch created with `start_revision = r` first replays every event from `r` on, so
//!   resuming from "last applied + 1" after a reconnection loses nothing;
//! - if `r` was compacted, the server cancels the watch with `compact_revision` set, and
//!   the only way to resynchronise is a fresh read;
//! - an event's type is `PUT` or `DELETE` (a deleted key or an expired lease);
//! - with `progress_notify`, a response with no events and a header revision `r` means
//!   every event up to `r` was sent: `r` is a safe point to resume from.

use std::time::Duration;

use super::api::{EventKind, WatchCreate, WatchRequest, WatchResponse};
use super::gateway::WatchStream;
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
    let state = stream_state(etcd);
    Box::pin(futures_util::stream::unfold(state, |mut s| async move {
        let item = s.next_item().await;
        Some((item, s))
    }))
}

/// The loop's state before its first step: nothing read, nothing watched.
fn stream_state(etcd: Etcd) -> State {
    let c = &etcd.inner.config;
    State {
        backoff: Backoff::new(c.reconnect_min, c.reconnect_max),
        emitter: Emitter::new(etcd.inner.errors.clone()),
        etcd,
        registry: Registry::default(),
        revision: None,
        watch: None,
        wait: None,
    }
}

impl State {
    async fn next_item(&mut self) -> Result<Discovered, DiscoveryError> {
        loop {
            if let Some(wait) = self.wait.take() {
                tokio::time::sleep(wait).await;
            }
            let idle = self.etcd.inner.config.keep_alive;
            let step = match self.watch.as_mut() {
                None => self.connect().await,
                Some(watch) => match tokio::time::timeout(idle, watch.message()).await {
                    Ok(Ok(Some(response))) => self.apply(response).await,
                    Ok(Ok(None)) => Step::Failed(EtcdError::WatchClosed {
                        prefix: self.etcd.inner.config.prefix.clone(),
                    }),
                    Ok(Err(source)) => Step::Failed(self.etcd.request_error("watch", source)),
                    // Quiet for a while: is etcd still there?
                    Err(_) => match self.etcd.probe().await {
                        Ok(()) => Step::Quiet,
                        Err(e) => Step::Failed(e),
                    },
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
                    self.etcd.fail_over();
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
        let inner = &self.etcd.inner;
        let request = WatchRequest {
            create_request: WatchCreate {
                key: &inner.key,
                range_end: &inner.range_end,
                start_revision: revision + 1,
                progress_notify: true,
            },
        };
        match self
            .etcd
            .timed("watch", inner.gateway.watch(&request))
            .await
        {
            Ok(Ok(watch)) => {
                tracing::debug!(source = %inner.label, from_revision = revision + 1, "etcd watch opened");
                self.watch = Some(watch);
                // Offered even if unchanged: after a failure the emitter yields the recovery.
                Step::Changed
            }
            Ok(Err(source)) => Step::Failed(self.etcd.request_error("watch", source)),
            Err(timeout) => Step::Failed(timeout),
        }
    }

    /// Applies one watch response to the registry.
    async fn apply(&mut self, response: WatchResponse) -> Step {
        // A message arrived: the connection works.
        self.backoff.reset();
        let header_revision = response.header.revision;
        if response.canceled {
            tracing::info!(
                source = %self.etcd.inner.label,
                compact_revision = response.compact_revision,
                reason = %response.cancel_reason,
                "etcd watch canceled; reading the registry again"
            );
            self.watch = None;
            self.revision = None;
            return Step::Quiet;
        }
        if let Some(ours) = self.revision {
            if response.created && header_revision < ours {
                tracing::warn!(
                    source = %self.etcd.inner.label,
                    cluster_revision = header_revision,
                    our_revision = ours,
                    "etcd revision went backwards (a new cluster?); reading the registry again"
                );
                self.watch = None;
                self.revision = None;
                return Step::Quiet;
            }
        }
        if response.events.is_empty() {
            if !response.created {
                // A progress notification: every event up to its revision was sent.
                self.revision = self.revision.map(|ours| ours.max(header_revision));
            }
            return Step::Quiet;
        }
        for event in &response.events {
            let Some(kv) = &event.kv else { continue };
            let key = String::from_utf8_lossy(&kv.key);
            match event.kind {
                EventKind::Delete => self.registry.delete(&key),
                EventKind::Put => self.registry.put(&key, &kv.value).await,
            }
            self.revision = Some(self.revision.unwrap_or(0).max(kv.mod_revision));
        }
        Step::Changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etcd::api::{Event, Header, KeyValue};
    use crate::etcd::EtcdConfig;

    fn state() -> State {
        let etcd = Etcd::new(EtcdConfig::new(["http://127.0.0.1:1"], "/s/")).unwrap();
        stream_state(etcd)
    }

    fn response(revision: i64) -> WatchResponse {
        WatchResponse {
            header: Header { revision },
            ..WatchResponse::default()
        }
    }

    #[tokio::test]
    async fn progress_notifications_move_the_resume_point_and_nothing_else_does() {
        let mut s = state();
        s.revision = Some(5);
        assert!(matches!(s.apply(response(9)).await, Step::Quiet));
        assert_eq!(s.revision, Some(9), "a progress notification");

        let created = WatchResponse {
            created: true,
            ..response(12)
        };
        assert!(matches!(s.apply(created).await, Step::Quiet));
        assert_eq!(
            s.revision,
            Some(9),
            "the created answer is not a progress point"
        );

        let put = WatchResponse {
            events: vec![Event {
                kind: EventKind::Put,
                kv: Some(KeyValue {
                    key: b"/s/a".to_vec(),
                    value: br#""10.0.0.1:80""#.to_vec(),
                    mod_revision: 10,
                }),
            }],
            ..response(20)
        };
        assert!(matches!(s.apply(put).await, Step::Changed));
        assert_eq!(s.revision, Some(10), "events: their own revisions");
        assert_eq!(s.registry.discovered().backends.len(), 1);

        let delete = WatchResponse {
            events: vec![Event {
                kind: EventKind::Delete,
                kv: Some(KeyValue {
                    key: b"/s/a".to_vec(),
                    mod_revision: 11,
                    ..KeyValue::default()
                }),
            }],
            ..response(11)
        };
        assert!(matches!(s.apply(delete).await, Step::Changed));
        assert!(s.registry.discovered().backends.is_empty());

        let canceled = WatchResponse {
            canceled: true,
            compact_revision: 30,
            ..response(0)
        };
        assert!(matches!(s.apply(canceled).await, Step::Quiet));
        assert_eq!(s.revision, None, "a compaction forces a full read");
    }
}
