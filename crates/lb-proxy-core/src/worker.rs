//! Worker threads: one tokio `current_thread` runtime per thread, each accepting and
//! serving its own connections ([`Workers`]).
//!
//! Worker 0 is the runtime that calls `lb_proxy::Proxy::start` (in the binary,
//! the main thread's runtime, which also runs the control plane: health checks, discovery,
//! the admin listener, signals and reloads). Workers 1 to N-1 are OS threads started by
//! [`Workers::start`]. Every listener gets an accept loop on every worker, each on its own
//! duplicate of the listening socket registered in that worker's runtime, so a connection
//! is accepted, served, and its requests forwarded over upstream connections (pooled per
//! worker, see `client/pool.rs`) all on one thread: no cross-thread wake-up on the request
//! path.
//!
//! The kernel wakes every worker waiting on a listening socket; whichever accepts first
//! gets the connection. So that one busy worker does not end up with most of a burst of
//! long-lived connections, a worker that holds more open connections than another by more
//! than one hands a newly accepted connection to the least loaded worker (once, before its
//! first byte is read; see `listener.rs`).
//!
//! Without `lb_proxy::Proxy::workers` the proxy has one worker, the
//! embedder's runtime (multi-threaded or not), and serves on it as before. Connection
//! limits and counters stay process-wide: the `max_connections` gate, the backends'
//! in-flight counts and every metric are shared by all workers.

use std::cell::Cell;
use std::io;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::runtime::{Builder, Handle};
use tokio::sync::watch;

thread_local! {
    /// The index of the worker this thread runs (0 outside worker threads).
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// The index of the worker running on this thread: 0 on the embedder's (or the binary's
/// main) runtime and on any thread that is not a worker, 1 to N-1 on the threads started
/// by [`Workers::start`].
#[inline]
pub fn current() -> usize {
    WORKER.with(Cell::get)
}

/// The worker runtimes of one proxy (cheap to clone: shared). `lb_proxy::Proxy::workers`
/// serves its listeners on them; the runtime that starts them is worker 0.
///
/// ```no_run
/// # fn demo() -> anyhow::Result<()> {
/// let main = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
/// let threads = std::num::NonZeroUsize::new(2).ok_or_else(|| anyhow::anyhow!("no workers"))?;
/// let workers = main.block_on(async { lb_proxy_core::Workers::start(threads) })?;
/// assert_eq!(lb_proxy_core::worker::current(), 0);
/// workers.join();
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Workers {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Worker 0's runtime (the one `start` ran on), then each thread's.
    handles: Vec<Handle>,
    /// Per worker, what it serves.
    loads: Box<[Load]>,
    /// Dropped (or set) to stop the worker threads.
    stop: watch::Sender<bool>,
    threads: parking_lot::Mutex<Vec<JoinHandle<()>>>,
}

/// One worker's counters, on a cache line of their own (each written by its worker).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Load {
    /// Client connections open now.
    open: AtomicUsize,
    /// Client connections served since start.
    accepted: AtomicU64,
    /// Open client connections parked now (idle, hyper's state released; `parking.rs`).
    parked: AtomicUsize,
}

/// What one worker has served, from [`Workers::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Client connections open on this worker now.
    pub open_connections: usize,
    /// Client connections this worker has served since start (including those handed to
    /// it by another worker).
    pub connections: u64,
    /// Of the open connections, those idle with their HTTP state released ("parked":
    /// plain HTTP/1.x connections idle for 100 ms keep only their socket, about 1 KiB).
    pub parked_connections: usize,
}

/// A connection counted as open on its worker until dropped.
#[derive(Debug)]
pub(crate) struct OpenConn {
    workers: Workers,
    worker: usize,
}

impl Workers {
    /// `threads` workers: the current runtime (worker 0; must be called inside a tokio
    /// runtime) and `threads - 1` new OS threads named `lb-worker-N`, each running a
    /// `current_thread` runtime with every driver enabled until [`join`](Self::join) is
    /// called (or every clone is dropped, including those that a proxy's accept loops and
    /// connections hold).
    pub fn start(threads: NonZeroUsize) -> io::Result<Self> {
        let first = Handle::try_current().map_err(io::Error::other)?;
        let (stop, stopped) = watch::channel(false);
        let mut handles = vec![first];
        let mut joins = Vec::with_capacity(threads.get() - 1);
        for index in 1..threads.get() {
            let runtime = Builder::new_current_thread().enable_all().build()?;
            handles.push(runtime.handle().clone());
            let mut stopped = stopped.clone();
            let join = std::thread::Builder::new()
                .name(format!("lb-worker-{index}"))
                .spawn(move || {
                    WORKER.with(|w| w.set(index));
                    // The upstream clients' pools: each worker reuses its own connections.
                    lb_client::set_pool_shard(index);
                    runtime.block_on(async move {
                        // Ends when `stop` is set or dropped.
                        let _ = stopped.wait_for(|s| *s).await;
                    });
                    // Dropping the runtime cancels the tasks still on it.
                    drop(runtime);
                })?;
            joins.push(join);
        }
        let loads = (0..threads.get()).map(|_| Load::default()).collect();
        Ok(Self {
            inner: Arc::new(Inner {
                handles,
                loads,
                stop,
                threads: parking_lot::Mutex::new(joins),
            }),
        })
    }

    /// One worker: the current runtime, with no thread of its own (what a proxy started
    /// without `lb_proxy::Proxy::workers` uses).
    pub fn single() -> Self {
        let (stop, _) = watch::channel(false);
        Self {
            inner: Arc::new(Inner {
                handles: Vec::new(),
                loads: Box::new([Load::default()]),
                stop,
                threads: parking_lot::Mutex::new(Vec::new()),
            }),
        }
    }

    /// How many workers there are (at least 1).
    pub fn count(&self) -> usize {
        self.inner.loads.len()
    }

    /// What each worker has served, by worker index (counted per connection: nothing
    /// per request).
    pub fn stats(&self) -> Vec<WorkerStats> {
        self.inner
            .loads
            .iter()
            .map(|l| WorkerStats {
                open_connections: l.open.load(Ordering::Relaxed),
                connections: l.accepted.load(Ordering::Relaxed),
                parked_connections: l.parked.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Stops the worker threads (their runtimes drop every task still on them) and waits
    /// for them to end. Blocks: call it outside any runtime, after the proxy has shut down.
    pub fn join(self) {
        let _ = self.inner.stop.send(true);
        let threads = std::mem::take(&mut *self.inner.threads.lock());
        for thread in threads {
            if thread.join().is_err() {
                tracing::error!("a worker thread panicked");
            }
        }
    }

    /// The runtime of worker `index` (worker 0's is the runtime that started the workers;
    /// `None` for a single worker, which never hands a connection over). Worker 0 must be
    /// reachable too: a connection that worker 1 accepted and counted on worker 0 was
    /// otherwise served by worker 1, so every connection could end up on one thread.
    pub(crate) fn handle(&self, index: usize) -> Option<&Handle> {
        self.inner.handles.get(index)
    }

    /// Worker `index`'s counters.
    #[inline]
    pub(crate) fn load(&self, index: usize) -> &Load {
        let loads = &self.inner.loads;
        loads.get(index).unwrap_or(&loads[0])
    }

    /// The worker that should serve a connection just accepted by `accepting`: itself,
    /// unless it holds more than one connection (and an eighth) more than the least
    /// loaded worker (the slack keeps short-lived connections from moving back and forth).
    pub(crate) fn pick(&self, accepting: usize) -> usize {
        let loads = &self.inner.loads;
        if loads.len() < 2 {
            return accepting;
        }
        let own = self.load(accepting).open.load(Ordering::Relaxed);
        let (least, min) = loads
            .iter()
            .enumerate()
            .map(|(i, l)| (i, l.open.load(Ordering::Relaxed)))
            .min_by_key(|&(_, open)| open)
            .unwrap_or((accepting, own));
        if own > min.saturating_add(1 + min / 8) {
            least
        } else {
            accepting
        }
    }

    /// Counts a connection as open (and served) on `worker` until the guard is dropped.
    pub(crate) fn open(&self, worker: usize) -> OpenConn {
        let load = self.load(worker);
        load.open.fetch_add(1, Ordering::Relaxed);
        load.accepted.fetch_add(1, Ordering::Relaxed);
        OpenConn {
            workers: self.clone(),
            worker,
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The threads end on their own; `join` waits for them.
        let _ = self.stop.send(true);
    }
}

impl OpenConn {
    /// Counts the connection as parked (`true`) or serving again (`false`).
    pub(crate) fn set_parked(&self, parked: bool) {
        let load = self.workers.load(self.worker);
        if parked {
            load.parked.fetch_add(1, Ordering::Relaxed);
        } else {
            load.parked.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for OpenConn {
    fn drop(&mut self) {
        let load = self.workers.load(self.worker);
        load.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn threads_know_their_index_and_stop() {
        let workers = Workers::start(NonZeroUsize::new(3).unwrap()).unwrap();
        assert_eq!(workers.count(), 3);
        assert_eq!(current(), 0);
        // Worker 0 can be handed connections too (the runtime that started the workers).
        let zero = workers.handle(0).unwrap().spawn(async { current() });
        assert_eq!(zero.await.unwrap(), 0);
        assert!(Workers::single().handle(0).is_none());
        for index in 1..3 {
            let seen = workers
                .handle(index)
                .unwrap()
                .spawn(async { (current(), lb_client::pool_shard()) })
                .await
                .unwrap();
            // The upstream pools shard by worker: each worker has its own connections.
            assert_eq!(seen, (index, index));
        }
        let stats = workers.stats();
        assert_eq!(stats.len(), 3);
        tokio::task::spawn_blocking(move || workers.join())
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_worker_ahead_by_more_than_one_hands_the_connection_over() {
        let workers = Workers::start(NonZeroUsize::new(2).unwrap()).unwrap();
        let a = workers.open(0);
        assert_eq!(workers.pick(0), 0, "1 against 0");
        let b = workers.open(0);
        assert_eq!(workers.pick(0), 1, "2 against 0");
        assert_eq!(workers.pick(1), 1);
        drop((a, b));
        assert_eq!(workers.stats()[0].open_connections, 0);
        assert_eq!(workers.stats()[0].connections, 2);
        drop(workers);
    }
}
