//! Load limits of an upstream: per-backend `max_conns` with a bounded wait queue, and a cap
//! on the upstream's active requests (nginx `max_conns` + `queue`, HAProxy `maxconn` /
//! `maxqueue` / `timeout queue`, Envoy's circuit-breaker thresholds).
//!
//! A backend with `max_conns` requests in flight is skipped by selection, like an unhealthy
//! one. When every usable backend is full, the request waits in the upstream's queue (at
//! most `max_queue` requests, each at most `queue_timeout`) and is woken when an attempt
//! anywhere in the upstream ends; a full queue answers 503 at once, so overload sheds
//! instead of piling up. The bound is exact: selection's check and the in-flight increment
//! are two steps, so a request that finds its backend over the limit after incrementing
//! gives the slot back and tries again.
//!
//! Nothing here runs for upstreams without limits.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lb_client::frames::Finish;
use lb_core::{Backend, InFlight};
use tokio::sync::Notify;

use crate::config::LimitsConfig;

/// The limits of one upstream, shared by its requests.
#[derive(Debug)]
pub(crate) struct Limits {
    max_conns: Option<usize>,
    max_queue: usize,
    queue_timeout: Duration,
    max_active: Option<usize>,
    active: AtomicUsize,
    queued: AtomicUsize,
    freed: Notify,
}

/// What a backend-limited attempt holds until it ends: its in-flight count and, where the
/// upstream has limits, the release that wakes a queued request.
#[derive(Debug)]
pub(crate) struct Guard {
    // Dropped in declaration order: the in-flight count first, then the release that tells
    // waiters about the free slot.
    pub(crate) in_flight: InFlight,
    pub(crate) release: Option<Release>,
}

/// Gives an attempt's place back to its upstream when dropped.
#[derive(Debug)]
pub(crate) struct Release {
    limits: Arc<Limits>,
    counted: bool,
}

/// Why no backend could be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// No usable backend at all.
    NoBackend,
    /// The upstream is at capacity (active limit, full queue, or queue timeout).
    Overloaded,
}

/// The counts' drops are the whole job, at the body's end or not.
impl Finish for Guard {}

impl Limits {
    /// The limits `config` describes; `None` when it sets none.
    pub(crate) fn new(config: &LimitsConfig) -> Option<Arc<Self>> {
        let size = |n: Option<NonZeroU32>| n.map(|n| n.get() as usize);
        if config.max_conns.is_none() && config.max_active.is_none() {
            return None;
        }
        Some(Arc::new(Self {
            max_conns: size(config.max_conns),
            max_queue: config.max_queue as usize,
            queue_timeout: config.queue_timeout.get(),
            max_active: size(config.max_active),
            active: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            freed: Notify::new(),
        }))
    }

    /// True when `backend` can take one more request.
    #[inline]
    pub(crate) fn has_room(&self, backend: &Backend) -> bool {
        self.max_conns
            .is_none_or(|max| backend.state().in_flight() < max)
    }

    /// The requests currently waiting in the queue.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Runs `select` (which must only pick backends for which `has_room` holds, and sets
    /// its flag when it skipped a usable backend for lack of room) until it yields a backend
    /// within the limits, waiting in the queue while every backend is full.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        mut select: impl FnMut(&Self, &mut bool) -> Option<InFlight>,
    ) -> Result<(InFlight, Release), Refused> {
        let counted = match self.max_active {
            Some(max) => {
                if self.active.fetch_add(1, Ordering::AcqRel) >= max {
                    self.active.fetch_sub(1, Ordering::AcqRel);
                    return Err(Refused::Overloaded);
                }
                true
            }
            None => false,
        };
        let release = Release {
            limits: self.clone(),
            counted,
        };
        let deadline = tokio::time::Instant::now() + self.queue_timeout;
        let mut queued: Option<QueueSlot<'_>> = None;
        loop {
            // Register for a wake-up before looking, so a slot freed in between is not missed.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let mut full = false;
            if let Some(in_flight) = select(self, &mut full) {
                let over = self
                    .max_conns
                    .is_some_and(|max| in_flight.backend().state().in_flight() > max);
                if !over {
                    return Ok((in_flight, release));
                }
                // Lost a race for the last slot: give it back and look again.
                drop(in_flight);
                self.freed.notify_one();
                tokio::task::yield_now().await;
                continue;
            }
            if !full {
                return Err(Refused::NoBackend);
            }
            if queued.is_none() {
                if self.queued.fetch_add(1, Ordering::AcqRel) >= self.max_queue {
                    self.queued.fetch_sub(1, Ordering::AcqRel);
                    return Err(Refused::Overloaded);
                }
                queued = Some(QueueSlot(self));
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(Refused::Overloaded);
            }
        }
    }
}

/// A place in the queue, given back when the request leaves it.
struct QueueSlot<'a>(&'a Limits);

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if self.counted {
            self.limits.active.fetch_sub(1, Ordering::AcqRel);
        }
        if self.limits.max_conns.is_some() {
            self.limits.freed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use lb_core::Backend;

    use super::*;
    use crate::config::PositiveDuration;

    fn limits(max_conns: u32, max_queue: u32, timeout_ms: u64) -> Arc<Limits> {
        Limits::new(&LimitsConfig {
            max_conns: NonZeroU32::new(max_conns),
            max_queue,
            queue_timeout: PositiveDuration(Duration::from_millis(timeout_ms)),
            max_active: None,
        })
        .unwrap()
    }

    fn pick(backend: &Backend) -> impl FnMut(&Limits, &mut bool) -> Option<InFlight> + '_ {
        move |l, full| {
            if l.has_room(backend) {
                Some(backend.begin_request())
            } else {
                *full = true;
                None
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_backend_queues_then_takes_the_freed_slot() {
        let b = Backend::parse("127.0.0.1:1").unwrap();
        let l = limits(1, 1, 1000);
        let first = l.acquire(pick(&b)).await.unwrap();
        let waiter = {
            let (l, b) = (l.clone(), b.clone());
            tokio::spawn(async move { l.acquire(pick(&b)).await.map(|_| ()) })
        };
        // Let the waiter queue.
        while l.queued() == 0 {
            tokio::task::yield_now().await;
        }
        // A third request finds the queue full.
        assert_eq!(l.acquire(pick(&b)).await.err(), Some(Refused::Overloaded));
        drop(first);
        assert_eq!(waiter.await.unwrap(), Ok(()));
        assert_eq!(l.queued(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_queued_request_gives_up_at_the_queue_timeout() {
        let b = Backend::parse("127.0.0.1:1").unwrap();
        let l = limits(1, 5, 200);
        let _held = l.acquire(pick(&b)).await.unwrap();
        let start = tokio::time::Instant::now();
        assert_eq!(l.acquire(pick(&b)).await.err(), Some(Refused::Overloaded));
        assert_eq!(start.elapsed(), Duration::from_millis(200));
        assert_eq!(l.queued(), 0);
    }

    #[tokio::test]
    async fn no_queue_means_503_at_once_and_no_backend_is_not_overload() {
        let b = Backend::parse("127.0.0.1:1").unwrap();
        let l = limits(1, 0, 1000);
        let _held = l.acquire(pick(&b)).await.unwrap();
        assert_eq!(l.acquire(pick(&b)).await.err(), Some(Refused::Overloaded));
        assert_eq!(l.acquire(|_, _| None).await.err(), Some(Refused::NoBackend));
    }

    #[tokio::test]
    async fn the_active_cap_counts_attempts_until_released() {
        let l = Limits::new(&LimitsConfig {
            max_active: NonZeroU32::new(2),
            ..LimitsConfig::default()
        })
        .unwrap();
        let b = Backend::parse("127.0.0.1:1").unwrap();
        let any = |_: &Limits, _: &mut bool| Some(b.begin_request());
        let one = l.acquire(any).await.unwrap();
        let _two = l.acquire(any).await.unwrap();
        assert_eq!(l.acquire(any).await.err(), Some(Refused::Overloaded));
        drop(one);
        assert!(l.acquire(any).await.is_ok());
    }
}
