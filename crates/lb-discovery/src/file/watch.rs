//! The reload loop behind [`File::watch`](super::File): a notify watcher on the file's
//! directory, a one-slot channel that coalesces its events, a quiet period, a reload.
//!
//! notify calls its handler on its own thread; the handler only does a non-blocking
//! `try_send` into a channel of capacity 1, so any number of events between two reloads
//! costs one reload. Reading and opening files produce access events (inotify `IN_OPEN`,
//! `IN_CLOSE_NOWRITE`); those are ignored, or the stream's own reads would wake it.

use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::{File, FileError};
use crate::backoff::Backoff;
use crate::emitter::Emitter;
use crate::{Discovered, DiscoveryError, DiscoveryStream};

/// The loop's state, carried from one stream item to the next.
struct State {
    file: File,
    /// Kept alive while the stream lives; dropping it stops watching.
    watcher: Option<RecommendedWatcher>,
    changes: mpsc::Receiver<()>,
    wake: mpsc::Sender<()>,
    /// True once the first answer (or error) was produced.
    started: bool,
    emitter: Emitter,
    /// Delays between attempts to (re)create a watcher that failed.
    backoff: Backoff,
}

pub(super) fn stream(file: File) -> DiscoveryStream {
    let (wake, changes) = mpsc::channel(1);
    let state = State {
        emitter: Emitter::new(file.inner.errors.clone()),
        file,
        watcher: None,
        changes,
        wake,
        started: false,
        backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(30)),
    };
    Box::pin(futures_util::stream::unfold(state, |mut s| async move {
        let item = s.next_item().await;
        Some((item, s))
    }))
}

/// True for events that may mean the file's content changed.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

impl State {
    async fn next_item(&mut self) -> Result<Discovered, DiscoveryError> {
        loop {
            if self.started {
                self.wait_for_change().await;
            }
            self.started = true;
            if self.watcher.is_none() {
                // Watch first, then read: a change between the two is not lost.
                if let Err(e) = self.start_watching() {
                    return Err(self.emitter.err(self.file.error(e)));
                }
            }
            match self.file.load().await {
                Ok(found) => {
                    if let Some(found) = self.emitter.ok(found) {
                        return Ok(found);
                    }
                }
                Err(e) => return Err(self.emitter.err(self.file.error(e))),
            }
        }
    }

    /// Watches the file's directory; events are coalesced into the one-slot channel.
    fn start_watching(&mut self) -> Result<(), FileError> {
        let path = self.file.path();
        let dir = path.parent().unwrap_or(path).to_owned();
        let wake = self.wake.clone();
        let handler = move |event: notify::Result<notify::Event>| match event {
            Ok(event) if !is_change(&event.kind) => {}
            Ok(_) => {
                let _ = wake.try_send(());
            }
            Err(error) => {
                tracing::warn!(paths = %error_paths(&error), error = %error, "file watcher error; reloading");
                let _ = wake.try_send(());
            }
        };
        let watched = notify::recommended_watcher(handler).and_then(|mut w| {
            w.watch(&dir, RecursiveMode::NonRecursive)?;
            Ok(w)
        });
        match watched {
            Ok(w) => {
                tracing::debug!(dir = %dir.display(), "watching for backend file changes");
                self.watcher = Some(w);
                self.backoff.reset();
                Ok(())
            }
            Err(source) => Err(FileError::Watch { path: dir, source }),
        }
    }

    /// Waits for a change and its quiet period, or, when the watcher could not be set up,
    /// for the next attempt (1 s doubling up to 30 s).
    async fn wait_for_change(&mut self) {
        if self.watcher.is_none() {
            tokio::time::sleep(self.backoff.next_delay()).await;
            return;
        }
        if self.changes.recv().await.is_none() {
            return;
        }
        // Let a burst of writes (an editor's save, a tool writing in pieces) settle, then
        // drop the events it left: this reload reads the result of all of them.
        tokio::time::sleep(self.file.inner.debounce).await;
        while self.changes.try_recv().is_ok() {}
    }
}

/// The paths of a watcher error, for the log.
fn error_paths(error: &notify::Error) -> String {
    error
        .paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(",")
}
