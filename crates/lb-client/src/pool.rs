//! The keep-alive pool of one [`UpstreamClient`](super::UpstreamClient): per backend, a
//! lock-free queue of idle HTTP/1.1 connections and at most one shared HTTP/2 connection.
//!
//! Why not hyper-util's legacy pool: it takes a mutex per checkout and per return, hashes
//! a scheme-and-authority key per request, boxes every response future, spawns a task per
//! HTTP/1.1 request to put the connection back, and only tells when a connection was
//! chosen through a per-request capture channel (which the read timeout needed). Here:
//!
//! - the backends' entries are a map behind an `ArcSwap`, keyed by backend address and
//!   shard, the calling thread's [`pool_shard`] (lb-proxy: its worker's index, set with
//!   [`set_pool_shard`] when the worker thread starts): one lock-free load and one hash
//!   lookup per request; a backend's first request on a worker copies the map (once per
//!   backend and worker).
//!   Each worker thus reuses the connections it opened itself, whose tasks run on its own
//!   runtime: a request never wakes another thread. `pool_max_idle` is per backend and
//!   per worker, as nginx's `keepalive` is per worker process;
//! - idle HTTP/1.1 connections wait in a bounded `crossbeam` `ArrayQueue` (lock-free, its
//!   capacity is `pool_max_idle`) as bare connections ([`H1Conn`]); a checkout pops one,
//!   skipping those that idled past `idle_timeout`, that the backend closed, or that it
//!   sent bytes on (see `H1Conn::is_idle_open`);
//! - a connection goes back when its response has been read to the end and its request
//!   written whole: at once when the body came with the head (`h1.rs`), else at the end of
//!   its body;
//! - an HTTP/2 connection (TLS with ALPN `h2`) is shared by every request to the backend
//!   until it closes;
//! - a reaper task per pool (started with its first idle connection) closes idle
//!   connections after `idle_timeout` and stops when the client is dropped.
//!
//! A backend's entry stays in the map after discovery removed the backend (an empty queue,
//! a few hundred bytes; its idle connections are reaped as usual).

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use crossbeam_queue::ArrayQueue;
use hyper::client::conn::http2;
use hyper::client::conn::http2::SendRequest;
use lb_core::{monotonic_ms, BackendAddr};

use super::h1::{H1Conn, KeepAlive};

/// A backend's address and a pool shard (a worker's index).
type Key = (BackendAddr, usize);

thread_local! {
    /// The pool shard of this thread (0 unless [`set_pool_shard`] said otherwise).
    static SHARD: Cell<usize> = const { Cell::new(0) };
}

/// Sets the pool shard of the calling thread: requests made from this thread use (and
/// fill) the idle connections of that shard only, so a connection is reused by the thread
/// (runtime) that drives it. lb-proxy calls it with the worker's index on each worker
/// thread; a thread that never calls it is shard 0.
pub fn set_pool_shard(shard: usize) {
    SHARD.with(|s| s.set(shard));
}

/// The pool shard of the calling thread (see [`set_pool_shard`]).
#[inline]
pub fn pool_shard() -> usize {
    SHARD.with(Cell::get)
}

/// The idle connections of every backend of one client.
pub(crate) struct Pool<B> {
    /// By backend address and worker index.
    hosts: ArcSwap<HashMap<Key, Arc<Host<B>>>>,
    /// `pool_max_idle`: idle HTTP/1.1 connections kept per backend and worker (0: none).
    max_idle: usize,
    /// `idle_timeout`, in milliseconds.
    idle_ms: u64,
    reaper: AtomicBool,
}

/// One backend's connections.
pub(crate) struct Host<B> {
    idle: Option<ArrayQueue<Idle>>,
    h2: ArcSwapOption<http2::SendRequest<B>>,
    idle_ms: u64,
}

/// An idle HTTP/1.1 connection and when it became idle ([`monotonic_ms`]).
struct Idle {
    conn: H1Conn,
    since: u64,
}

/// A connection ready for one request.
pub(crate) enum Conn<B> {
    /// An HTTP/1.1 connection, taken from the pool or new; `reused` when it served before.
    Http1 { conn: H1Conn, reused: bool },
    /// A clone of the backend's shared HTTP/2 connection.
    Http2(http2::SendRequest<B>),
}

impl<B: Send + 'static> Pool<B> {
    /// An empty pool; idle connections never expire without an `idle_timeout`.
    pub(crate) fn new(max_idle: usize, idle_timeout: Option<Duration>) -> Self {
        Self {
            hosts: ArcSwap::default(),
            max_idle,
            idle_ms: idle_timeout.map_or(u64::MAX, |t| {
                u64::try_from(t.as_millis()).unwrap_or(u64::MAX)
            }),
            reaper: AtomicBool::new(false),
        }
    }

    /// The entry of the backend at `addr` for the current shard (created on its first
    /// request there).
    #[inline]
    pub(crate) fn host(self: &Arc<Self>, addr: &BackendAddr) -> Arc<Host<B>> {
        // A copy of the address (an `Arc` count for a Unix socket path), no allocation.
        let key = (addr.clone(), pool_shard());
        if let Some(host) = self.hosts.load().get(&key) {
            return host.clone();
        }
        self.add_host(key)
    }

    #[cold]
    fn add_host(self: &Arc<Self>, key: Key) -> Arc<Host<B>> {
        self.start_reaper();
        let mut added = None;
        self.hosts.rcu(|hosts| {
            let mut hosts = HashMap::clone(hosts);
            let host = hosts
                .entry(key.clone())
                .or_insert_with(|| {
                    Arc::new(Host {
                        idle: (self.max_idle > 0).then(|| ArrayQueue::new(self.max_idle)),
                        h2: ArcSwapOption::empty(),
                        idle_ms: self.idle_ms,
                    })
                })
                .clone();
            added = Some(host);
            hosts
        });
        added.unwrap_or_else(|| self.hosts.load()[&key].clone())
    }

    /// Starts the task that closes connections idle past the timeout, once per pool and
    /// only inside a runtime (a pool used outside one has nothing to reap: nothing
    /// connected).
    fn start_reaper(self: &Arc<Self>) {
        if self.max_idle == 0
            || self.idle_ms == u64::MAX
            || self.reaper.swap(true, Ordering::Relaxed)
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.reaper.store(false, Ordering::Relaxed);
            return;
        };
        let pool = Arc::downgrade(self);
        // Often enough that a connection outlives its timeout by at most a quarter of it.
        let period = Duration::from_millis((self.idle_ms / 4).clamp(10, 15_000));
        runtime.spawn(reap(pool, period));
    }
}

/// Closes idle connections that passed their timeout or closed, until the pool is gone.
async fn reap<B: Send + 'static>(pool: Weak<Pool<B>>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        let now = monotonic_ms();
        for host in pool.hosts.load().values() {
            host.evict(now);
        }
    }
}

impl<B: Send + 'static> Host<B> {
    /// A ready connection of this backend, if one is idle: the shared HTTP/2 one, or a
    /// queued HTTP/1.1 one (closed and expired ones are dropped on the way).
    #[inline]
    pub(crate) fn checkout(&self, h2: bool) -> Option<Conn<B>> {
        if h2 {
            if let Some(shared) = &*self.h2.load() {
                if !shared.is_closed() {
                    return Some(Conn::Http2(SendRequest::clone(shared)));
                }
            }
        }
        let queue = self.idle.as_ref()?;
        let now = monotonic_ms();
        while let Some(mut idle) = queue.pop() {
            if idle.usable(now, self.idle_ms) {
                return Some(Conn::Http1 {
                    conn: idle.conn,
                    reused: true,
                });
            }
        }
        None
    }

    /// Shares `sender` for the next HTTP/2 requests to this backend.
    pub(crate) fn set_h2(&self, sender: &http2::SendRequest<B>) {
        self.h2.store(Some(Arc::new(sender.clone())));
    }

    /// Drops the idle connections that closed or expired; keeps the others queued.
    fn evict(&self, now: u64) {
        let Some(queue) = &self.idle else {
            return;
        };
        // Bounded: each pass looks at most at the connections queued when it started.
        for _ in 0..queue.len() {
            let Some(mut idle) = queue.pop() else {
                break;
            };
            if idle.usable(now, self.idle_ms) {
                let _ = queue.push(idle);
            }
        }
    }
}

impl<B> KeepAlive for Host<B> {
    /// Queues `conn` (idle, nothing pending on it) if there is room; else drops (closes) it.
    #[inline]
    fn put_own(&self, conn: H1Conn) {
        if let Some(queue) = &self.idle {
            let _ = queue.push(Idle {
                conn,
                since: monotonic_ms(),
            });
        }
    }
}

impl Idle {
    fn usable(&mut self, now: u64, idle_ms: u64) -> bool {
        now.saturating_sub(self.since) < idle_ms && self.conn.is_idle_open()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn each_shard_has_its_own_entry_per_backend() {
        let pool: Arc<Pool<String>> = Arc::new(Pool::new(4, None));
        let addr = BackendAddr::Inet("127.0.0.1:9".parse().unwrap());
        let here = pool.host(&addr);
        assert!(Arc::ptr_eq(&here, &pool.host(&addr)), "one entry per shard");
        let (p, a) = (pool.clone(), addr.clone());
        // A thread of shard 1, as lb-proxy's worker 1 is.
        let there = std::thread::spawn(move || {
            set_pool_shard(1);
            assert_eq!(pool_shard(), 1);
            p.host(&a)
        })
        .join()
        .unwrap();
        assert!(!Arc::ptr_eq(&here, &there), "shard 1 has its own entry");
        assert_eq!(pool.hosts.load().len(), 2);
        assert_eq!(pool_shard(), 0, "the shard is the thread's own");
    }
}
