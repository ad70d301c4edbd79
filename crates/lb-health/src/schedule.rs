//! The scheduler: every backend checked on its own timeline, from one task.
//!
//! [`HealthMonitor::run`] keeps one next-due time per backend in a
//! `tokio_util::time::DelayQueue` (a hierarchical timer wheel: O(1) insert and removal by
//! key, one timer registration for the whole queue) and runs the due checks as futures
//! inside its own task, at most [`Schedule::max_concurrency`] at a time. Why this shape:
//!
//! - **One task, not one per backend.** 10,000 sleeping tasks would cost 10,000 timer
//!   entries in the runtime plus a task each; here the runtime sees one task and one timer,
//!   and memory per backend is a map entry and a wheel slot.
//! - **A wheel rather than a binary heap.** A backend leaving the set must stop being
//!   checked *at once*: the wheel removes its entry by key, where a heap would need lazy
//!   deletion and would keep dead entries until they surface.
//! - **Checks as futures in a `FuturesUnordered`, not spawned tasks.** Dropping the
//!   scheduler's future drops every check in progress, synchronously, sockets included:
//!   shutdown needs no join and no abort round-trip. The concurrency bound is structural
//!   (the set's length), which is what a `Semaphore` would give spawned tasks. The cost:
//!   checks run on one worker thread at a time; a TCP or HTTP check is almost all waiting,
//!   so one core is plenty (TLS handshakes are the exception, see the benchmark notes).
//!
//! Timeline rules, after HAProxy (`inter`, `downinter`, `spread-checks`):
//!
//! - The first check of a backend runs at once ([`FirstCheck::Immediate`]) or at a random
//!   offset within the first interval ([`FirstCheck::Spread`], HAProxy's staggered start),
//!   so 10,000 backends do not all connect in the same millisecond.
//! - The next check is due one wait after the previous one *finished*, so a backend is
//!   never checked twice at once and a slow one is not hammered. The wait is the interval,
//!   or [`Schedule::unhealthy_interval`] while the verdict is unhealthy (HAProxy's
//!   `downinter`), spread by [`Schedule::jitter`].
//! - Each check is bounded by its timeout ([`CheckParams::timeout`](crate::CheckParams)).
//! - A set change (through the `watch` channel) is applied at once: removed backends' checks
//!   are cancelled and their trackers dropped; new backends get a first check.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::time::Duration;

use futures_util::future::{AbortHandle, Abortable};
use futures_util::stream::{FuturesUnordered, StreamExt};
use lb_core::{Backend, BackendAddr, BackendSet, Health};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::time::{delay_queue, DelayQueue};

use crate::HealthMonitor;

/// When the first check of a backend runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FirstCheck {
    /// At once (verdicts are in within one timeout of start-up or of the backend's arrival).
    #[default]
    Immediate,
    /// At a uniformly random offset within the first interval, so that many backends
    /// spread evenly over it (HAProxy staggers its first checks the same way).
    Spread,
}

/// How often and how many checks [`HealthMonitor::run`] runs.
///
/// ```
/// use std::time::Duration;
/// use lb_health::{FirstCheck, Schedule};
///
/// let mut schedule = Schedule::new(Duration::from_secs(2));
/// schedule.unhealthy_interval = Some(Duration::from_secs(10));
/// schedule.first_check = FirstCheck::Spread;
/// assert_eq!(schedule.jitter, 0.1);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Schedule {
    /// Time between the end of one check of a backend and the start of the next (at
    /// least 1ms is used, so a zero cannot make a busy loop).
    pub interval: Duration,
    /// Spread of each wait, as a fraction of it, clamped to `0.0..=1.0`: a wait is drawn
    /// uniformly from `wait * (1 - jitter/2) ..= wait * (1 + jitter/2)`, so the average
    /// stays the interval and no wait is shorter than half of it. A fraction rather than a
    /// fixed duration so that it scales with both intervals (HAProxy's `spread-checks` is a
    /// percentage too). Default `0.1`; `0.0` gives exact periods.
    pub jitter: f64,
    /// The interval while the verdict is unhealthy (HAProxy's `downinter`); `None` uses
    /// `interval`.
    pub unhealthy_interval: Option<Duration>,
    /// At most this many checks run at the same time (at least 1). Default 256.
    pub max_concurrency: usize,
    /// When a backend's first check runs. Default [`FirstCheck::Immediate`].
    pub first_check: FirstCheck,
}

impl Schedule {
    /// Checks every `interval`, jitter 0.1, no separate unhealthy interval, 256 at a time,
    /// first checks at once.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            jitter: 0.1,
            unhealthy_interval: None,
            max_concurrency: 256,
            first_check: FirstCheck::Immediate,
        }
    }

    fn wait(&self, health: Health, rng: &mut fastrand::Rng) -> Duration {
        let base = match (health, self.unhealthy_interval) {
            (Health::Unhealthy, Some(down)) => down,
            _ => self.interval,
        };
        // Negative and NaN jitter count as none.
        let wait = if self.jitter > 0.0 {
            let jitter = self.jitter.min(1.0);
            let factor = 1.0 - jitter / 2.0 + jitter * rng.f64();
            Duration::try_from_secs_f64(base.as_secs_f64() * factor).unwrap_or(base)
        } else {
            base
        };
        wait.clamp(MIN_WAIT, MAX_WAIT)
    }
}

/// The shortest wait between two checks of one backend.
const MIN_WAIT: Duration = Duration::from_millis(1);

/// The longest wait the timer wheel is given (it refuses more than about two years).
const MAX_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

/// Punctuality of [`HealthMonitor::run`] since the monitor was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScheduleStats {
    /// Checks started.
    pub started: u64,
    /// Sum over started checks of how long after its due time each started.
    pub total_lateness: Duration,
    /// The latest start relative to its due time.
    pub max_lateness: Duration,
}

/// Where a backend is in its cycle.
enum Slot {
    Waiting(delay_queue::Key),
    Ready,
    Running(AbortHandle),
}

struct Entry {
    backend: Backend,
    generation: u64,
    slot: Slot,
}

/// The timelines of all backends.
struct Timeline {
    schedule: Schedule,
    rng: fastrand::Rng,
    entries: HashMap<BackendAddr, Entry>,
    queue: DelayQueue<(BackendAddr, u64)>,
    ready: VecDeque<(BackendAddr, u64, Instant)>,
    generation: u64,
}

impl Timeline {
    fn add(&mut self, backend: Backend) {
        self.generation += 1;
        let key = (backend.addr().clone(), self.generation);
        let slot = match self.schedule.first_check {
            FirstCheck::Immediate => {
                self.ready.push_back((key.0.clone(), key.1, Instant::now()));
                Slot::Ready
            }
            FirstCheck::Spread => {
                let offset = self.schedule.interval.min(MAX_WAIT).mul_f64(self.rng.f64());
                Slot::Waiting(self.queue.insert(key.clone(), offset))
            }
        };
        self.entries.insert(
            key.0,
            Entry {
                backend,
                generation: key.1,
                slot,
            },
        );
    }

    fn remove(&mut self, addr: &BackendAddr) {
        if let Some(entry) = self.entries.remove(addr) {
            match entry.slot {
                Slot::Waiting(key) => {
                    self.queue.try_remove(&key);
                }
                Slot::Running(abort) => abort.abort(),
                // Left in `ready`; skipped there because the entry is gone.
                Slot::Ready => {}
            }
        }
    }

    fn due(&mut self, addr: BackendAddr, generation: u64, at: Instant) {
        if let Some(entry) = self.entries.get_mut(&addr) {
            if entry.generation == generation && matches!(entry.slot, Slot::Waiting(_)) {
                entry.slot = Slot::Ready;
                self.ready.push_back((addr, generation, at));
            }
        }
    }

    fn finished(&mut self, addr: &BackendAddr, generation: u64, verdict: Health) {
        if let Some(entry) = self.entries.get_mut(addr) {
            if entry.generation == generation && matches!(entry.slot, Slot::Running(_)) {
                let wait = self.schedule.wait(verdict, &mut self.rng);
                entry.slot = Slot::Waiting(self.queue.insert((addr.clone(), generation), wait));
            }
        }
    }
}

impl HealthMonitor {
    /// Checks every backend of the set in `backends` on its own timeline until `shutdown`
    /// resolves; see the rules on [`Schedule`] and [`FirstCheck`].
    ///
    /// - The set is read at start and again whenever the channel says it changed. Backends
    ///   that stay keep their timeline and tracker; removed ones stop at once (a check in
    ///   progress is cancelled, the tracker dropped, [`HealthCheck::forget`](crate::HealthCheck::forget)
    ///   called); new ones get their first check. If the sender is dropped, the last set
    ///   goes on being checked.
    /// - Returns as soon as `shutdown` resolves; the checks in progress are dropped with it
    ///   (their sockets close, their results are not recorded).
    /// - Runs in the caller's task; spawn it, or join it with other work.
    pub async fn run(
        &self,
        mut backends: watch::Receiver<BackendSet>,
        schedule: Schedule,
        shutdown: impl Future<Output = ()>,
    ) {
        let max = schedule.max_concurrency.max(1);
        let mut timeline = Timeline {
            schedule,
            rng: fastrand::Rng::new(),
            entries: HashMap::new(),
            queue: DelayQueue::new(),
            ready: VecDeque::new(),
            generation: 0,
        };
        let mut running = FuturesUnordered::new();
        let mut watching = true;
        let initial = backends.borrow_and_update().clone();
        self.sync(&mut timeline, &initial);
        tokio::pin!(shutdown);
        loop {
            while running.len() < max {
                let Some((addr, generation, due)) = timeline.ready.pop_front() else {
                    break;
                };
                let Some(entry) = timeline.entries.get_mut(&addr) else {
                    continue;
                };
                if entry.generation != generation || !matches!(entry.slot, Slot::Ready) {
                    continue;
                }
                self.note_start(due);
                let (abort, registration) = AbortHandle::new_pair();
                entry.slot = Slot::Running(abort);
                let backend = entry.backend.clone();
                running.push(Abortable::new(
                    async move {
                        let (_, verdict) = self.check_and_record(&backend).await;
                        (addr, generation, verdict)
                    },
                    registration,
                ));
            }
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                changed = backends.changed(), if watching => match changed {
                    Ok(()) => {
                        let set = backends.borrow_and_update().clone();
                        self.sync(&mut timeline, &set);
                    }
                    Err(_) => watching = false,
                },
                Some(done) = running.next(), if !running.is_empty() => {
                    // `Err` is a check aborted because its backend left: nothing to do.
                    if let Ok((addr, generation, verdict)) = done {
                        timeline.finished(&addr, generation, verdict);
                    }
                }
                Some(expired) = timeline.queue.next(), if !timeline.queue.is_empty() => {
                    let deadline = expired.deadline();
                    let (addr, generation) = expired.into_inner();
                    timeline.due(addr, generation, deadline);
                }
            }
        }
    }

    /// Brings the timelines in line with `set`.
    fn sync(&self, timeline: &mut Timeline, set: &BackendSet) {
        let present: HashSet<&BackendAddr> = set.iter().map(Backend::addr).collect();
        let gone: Vec<BackendAddr> = timeline
            .entries
            .keys()
            .filter(|a| !present.contains(a))
            .cloned()
            .collect();
        for addr in &gone {
            timeline.remove(addr);
            self.forget(addr);
            tracing::debug!(backend = %addr, "backend left: no longer checked");
        }
        for backend in set.iter() {
            match timeline.entries.get_mut(backend.addr()) {
                // Same address: keep the timeline, take the new handle (name, weight, state).
                Some(entry) => entry.backend = backend.clone(),
                None => timeline.add(backend.clone()),
            }
        }
    }

    fn note_start(&self, due: Instant) {
        let late = Instant::now().saturating_duration_since(due);
        let mut stats = self.stats.lock();
        stats.started += 1;
        stats.total_lateness += late;
        stats.max_lateness = stats.max_lateness.max(late);
    }
}
