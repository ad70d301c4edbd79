//! A flapping backend: a [`TestBackend`] crashed and restarted on the same port again and
//! again, for tests of health-check hysteresis (rise/fall) and retries.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

use crate::{Shared, TestBackend};

/// Drives a backend down and up until [`finish`](Self::finish)ed.
pub struct Flapper {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<TestBackend>,
    downs: Arc<Counter>,
    /// The backend's counters, readable while the task owns it.
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Counter {
    n: AtomicUsize,
    event: Notify,
}

impl Flapper {
    /// Starts flapping `backend` (which must be running): it stays up for `up`, then is
    /// stopped as a crash would ([`TestBackend::stop`]: the port refuses connections and open
    /// ones are dropped) for `down`, then serves again on the same port, and so on.
    pub fn start(mut backend: TestBackend, up: Duration, down: Duration) -> Self {
        let (stop, mut stopped) = oneshot::channel();
        let downs = Arc::new(Counter::default());
        let shared = backend.shared.clone();
        let counter = downs.clone();
        let task = tokio::spawn(async move {
            loop {
                if tokio::time::timeout(up, &mut stopped).await.is_ok() {
                    break;
                }
                backend.stop().await;
                counter.n.fetch_add(1, Ordering::SeqCst);
                counter.event.notify_waiters();
                let finished = tokio::time::timeout(down, &mut stopped).await.is_ok();
                backend.start_again().await;
                if finished {
                    break;
                }
            }
            backend
        });
        Self {
            stop: Some(stop),
            task,
            downs,
            shared,
        }
    }

    /// Requests the backend has served so far (as [`TestBackend::hits`]).
    pub fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }

    /// How many times the backend went down so far.
    pub fn downs(&self) -> usize {
        self.downs.n.load(Ordering::SeqCst)
    }

    /// Waits until the backend has gone down at least `n` times.
    pub async fn wait_for_downs(&self, n: usize) {
        loop {
            let event = self.downs.event.notified();
            if self.downs() >= n {
                return;
            }
            event.await;
        }
    }

    /// Stops flapping and returns the backend, running, with the number of times it went
    /// down.
    pub async fn finish(mut self) -> (TestBackend, usize) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let backend = (&mut self.task).await.unwrap();
        (backend, self.downs())
    }
}

impl Drop for Flapper {
    fn drop(&mut self) {
        self.task.abort();
    }
}
