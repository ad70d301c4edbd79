//! Retries: nginx's `proxy_next_upstream` decision, bounded by a retry budget.
//!
//! [`RetryPolicy::decide`] answers "try this request again on another backend?" after a
//! failed attempt, with nginx's rules: the failure must be one of the configured conditions;
//! attempts (`tries`) and time (`timeout`) are bounded; a non-idempotent request (POST,
//! PATCH, LOCK) is retried only when allowed, or when it provably never reached the backend
//! (the connection failed).
//!
//! [`RetryBudget`] is the Finagle/Linkerd/Envoy idea nginx lacks: over a sliding window of
//! ten seconds, retries may add at most `ratio` times the requests, plus a floor of
//! `min_per_sec` per second. When a whole upstream fails, every request would otherwise be
//! sent `tries` times, multiplying the load on the backends that are trying to recover; with
//! the budget the extra load stays a fraction.
//!
//! The budget counts with relaxed atomics in one-second buckets: no lock, and approximate at
//! bucket boundaries, which a budget can afford.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::Method;
use lb_core::monotonic_ms;

use crate::config::{RetryConfig, RetryOn};
use crate::hooks::Attempt;

/// The window of the budget, in one-second buckets.
const WINDOW_SECS: usize = 10;

/// When a failed attempt is retried, for one upstream.
#[derive(Debug)]
pub struct RetryPolicy {
    on_error: bool,
    on_timeout: bool,
    on_invalid_header: bool,
    statuses: Vec<u16>,
    tries: u32,
    time_limit: Option<Duration>,
    non_idempotent: bool,
    replay_limit: usize,
    budget: RetryBudget,
    stats: RetryStats,
}

/// Why a retry happened (or would have, had the budget allowed it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryReason {
    /// The connection failed or broke.
    Error,
    /// A timeout.
    Timeout,
    /// The backend's answer was not valid HTTP.
    InvalidHeader,
    /// A status in `retry.on`.
    Status(u16),
}

/// The answer of [`RetryPolicy::decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Try again, for this reason.
    Retry(RetryReason),
    /// Keep the outcome: not a retry condition, or no attempts or time left, or a
    /// non-idempotent request.
    Keep,
    /// A retry condition, but the budget is spent.
    OverBudget(RetryReason),
}

/// A sliding-window retry budget: retries at most `ratio` × requests + `min_per_sec` per
/// second, over ten seconds.
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    min_per_sec: u32,
    /// Per bucket: the second it counts (`u64::MAX` unused), requests, retries.
    buckets: [Bucket; WINDOW_SECS],
}

#[derive(Debug)]
struct Bucket {
    second: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

/// Counts of retries by reason, and of retries the budget refused.
#[derive(Debug, Default)]
pub struct RetryStats {
    error: AtomicU64,
    timeout: AtomicU64,
    invalid_header: AtomicU64,
    status: AtomicU64,
    over_budget: AtomicU64,
}

/// A snapshot of [`RetryStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryCounts {
    /// Retries after connection errors.
    pub error: u64,
    /// Retries after timeouts.
    pub timeout: u64,
    /// Retries after invalid responses.
    pub invalid_header: u64,
    /// Retries after a status in `retry.on`.
    pub status: u64,
    /// Retries the budget refused.
    pub over_budget: u64,
}

impl Default for RetryPolicy {
    /// nginx's default: retry on `error` and `timeout`.
    fn default() -> Self {
        Self::new(&RetryConfig::default())
    }
}

impl RetryPolicy {
    /// The policy `config` describes.
    pub fn new(config: &RetryConfig) -> Self {
        let has = |c: RetryOn| config.on.contains(&c);
        Self {
            on_error: has(RetryOn::Error),
            on_timeout: has(RetryOn::Timeout),
            on_invalid_header: has(RetryOn::InvalidHeader),
            statuses: config.on.iter().filter_map(|c| c.status()).collect(),
            tries: config.tries,
            time_limit: config.time_limit(),
            non_idempotent: config.non_idempotent,
            replay_limit: usize::try_from(config.buffer.0).unwrap_or(usize::MAX),
            budget: RetryBudget::new(config.budget_ratio, config.budget_min_per_sec),
            stats: RetryStats::default(),
        }
    }

    /// True when some condition can trigger a retry.
    pub fn enabled(&self) -> bool {
        self.on_error || self.on_timeout || self.on_invalid_header || !self.statuses.is_empty()
    }

    /// How many request body bytes to keep for replay.
    pub fn replay_limit(&self) -> usize {
        self.replay_limit
    }

    /// Counts a new request into the budget.
    #[inline]
    pub fn request_started(&self) {
        self.budget.deposit();
    }

    /// Whether to retry after `attempt`, given the request's `method`, how many attempts were
    /// made (`attempts`, the failed one included) and how long ago the request arrived.
    /// `backends` is asked only when a retry is otherwise due: the number of backends of
    /// the upstream, or `None` when none that this request has not tried is usable (then
    /// the outcome is kept, as nginx keeps the last error when it runs out of servers).
    pub fn decide(
        &self,
        attempt: &Attempt<'_>,
        method: &Method,
        attempts: u32,
        elapsed: Duration,
        backends: impl FnOnce() -> Option<usize>,
    ) -> Decision {
        let reason = match attempt {
            Attempt::Response(parts) => {
                let status = parts.status.as_u16();
                if !self.statuses.contains(&status) {
                    return Decision::Keep;
                }
                RetryReason::Status(status)
            }
            Attempt::Failed(e) if e.is_timeout() && self.on_timeout => RetryReason::Timeout,
            Attempt::Failed(e) if e.is_invalid_response() && self.on_invalid_header => {
                RetryReason::InvalidHeader
            }
            Attempt::Failed(e) if !e.is_timeout() && !e.is_invalid_response() && self.on_error => {
                RetryReason::Error
            }
            Attempt::Failed(_) => return Decision::Keep,
        };
        let never_reached = attempt.error().is_some_and(|e| e.is_connect());
        if is_non_idempotent(method) && !self.non_idempotent && !never_reached {
            return Decision::Keep;
        }
        if self.tries != 0 && attempts >= self.tries {
            return Decision::Keep;
        }
        if self.time_limit.is_some_and(|t| elapsed >= t) {
            return Decision::Keep;
        }
        let Some(backends) = backends() else {
            return Decision::Keep;
        };
        if self.tries == 0 && attempts as usize >= backends {
            return Decision::Keep;
        }
        if !self.budget.withdraw() {
            self.stats.over_budget.fetch_add(1, Ordering::Relaxed);
            return Decision::OverBudget(reason);
        }
        let counter = match reason {
            RetryReason::Error => &self.stats.error,
            RetryReason::Timeout => &self.stats.timeout,
            RetryReason::InvalidHeader => &self.stats.invalid_header,
            RetryReason::Status(_) => &self.stats.status,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Decision::Retry(reason)
    }

    /// The retry counts so far.
    pub fn counts(&self) -> RetryCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RetryCounts {
            error: get(&self.stats.error),
            timeout: get(&self.stats.timeout),
            invalid_header: get(&self.stats.invalid_header),
            status: get(&self.stats.status),
            over_budget: get(&self.stats.over_budget),
        }
    }
}

/// nginx's non-idempotent methods: POST, LOCK, PATCH.
pub fn is_non_idempotent(method: &Method) -> bool {
    method == Method::POST || method == Method::PATCH || method.as_str() == "LOCK"
}

impl RetryReason {
    /// The `retry.on` spelling of the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Timeout => "timeout",
            Self::InvalidHeader => "invalid_header",
            Self::Status(500) => "http_500",
            Self::Status(502) => "http_502",
            Self::Status(503) => "http_503",
            Self::Status(504) => "http_504",
            Self::Status(403) => "http_403",
            Self::Status(404) => "http_404",
            Self::Status(429) => "http_429",
            Self::Status(_) => "http_status",
        }
    }
}

impl RetryBudget {
    /// A budget allowing `ratio` retries per request plus `min_per_sec` per second.
    pub fn new(ratio: f64, min_per_sec: u32) -> Self {
        Self {
            ratio,
            min_per_sec,
            buckets: std::array::from_fn(|_| Bucket {
                second: AtomicU64::new(u64::MAX),
                requests: AtomicU64::new(0),
                retries: AtomicU64::new(0),
            }),
        }
    }

    /// Counts a request.
    #[inline]
    pub fn deposit(&self) {
        self.bucket(now_secs())
            .requests
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn withdraw(&self) -> bool {
        let now = now_secs();
        let (mut requests, mut retries) = (0u64, 0u64);
        for b in &self.buckets {
            let second = b.second.load(Ordering::Relaxed);
            if second != u64::MAX && now.saturating_sub(second) < WINDOW_SECS as u64 {
                requests += b.requests.load(Ordering::Relaxed);
                retries += b.retries.load(Ordering::Relaxed);
            }
        }
        let allowed =
            self.ratio * requests as f64 + f64::from(self.min_per_sec) * WINDOW_SECS as f64;
        if (retries as f64) + 1.0 > allowed {
            return false;
        }
        self.bucket(now).retries.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// The bucket of second `now`, reset first if it still holds an older second.
    fn bucket(&self, now: u64) -> &Bucket {
        let b = &self.buckets[(now % WINDOW_SECS as u64) as usize];
        let seen = b.second.load(Ordering::Relaxed);
        if seen != now
            && b.second
                .compare_exchange(seen, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            b.requests.store(0, Ordering::Relaxed);
            b.retries.store(0, Ordering::Relaxed);
        }
        b
    }
}

fn now_secs() -> u64 {
    monotonic_ms() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ByteSize;

    fn status(code: u16) -> http::response::Parts {
        let mut parts = http::Response::new(()).into_parts().0;
        parts.status = http::StatusCode::from_u16(code).unwrap();
        parts
    }

    fn policy(on: &[RetryOn], tries: u32, non_idempotent: bool) -> RetryPolicy {
        RetryPolicy::new(&RetryConfig {
            on: on.to_vec(),
            tries,
            non_idempotent,
            buffer: ByteSize(1024),
            budget_ratio: 1.0,
            budget_min_per_sec: 100,
            ..RetryConfig::default()
        })
    }

    #[test]
    fn statuses_retry_only_when_listed() {
        let p = policy(&[RetryOn::Http503], 0, false);
        let get = Method::GET;
        let d = |code| {
            p.decide(
                &Attempt::Response(&status(code)),
                &get,
                1,
                Duration::ZERO,
                || Some(3),
            )
        };
        assert_eq!(d(503), Decision::Retry(RetryReason::Status(503)));
        assert_eq!(d(500), Decision::Keep);
        assert_eq!(d(200), Decision::Keep);
        assert_eq!(p.counts().status, 1);
    }

    #[test]
    fn tries_default_to_the_number_of_backends() {
        let p = policy(&[RetryOn::Http500], 0, false);
        let resp = status(500);
        let a = Attempt::Response(&resp);
        assert!(matches!(
            p.decide(&a, &Method::GET, 2, Duration::ZERO, || Some(3)),
            Decision::Retry(_)
        ));
        assert_eq!(
            p.decide(&a, &Method::GET, 3, Duration::ZERO, || Some(3)),
            Decision::Keep
        );
        let p = policy(&[RetryOn::Http500], 2, false);
        assert_eq!(
            p.decide(&a, &Method::GET, 2, Duration::ZERO, || Some(9)),
            Decision::Keep
        );
    }

    #[test]
    fn non_idempotent_requests_keep_their_response_unless_allowed() {
        let resp = status(500);
        let a = Attempt::Response(&resp);
        let strict = policy(&[RetryOn::Http500], 0, false);
        assert_eq!(
            strict.decide(&a, &Method::POST, 1, Duration::ZERO, || Some(3)),
            Decision::Keep
        );
        assert_eq!(
            strict.decide(&a, &Method::PATCH, 1, Duration::ZERO, || Some(3)),
            Decision::Keep
        );
        let lock = Method::from_bytes(b"LOCK").unwrap();
        assert_eq!(
            strict.decide(&a, &lock, 1, Duration::ZERO, || Some(3)),
            Decision::Keep
        );
        assert!(matches!(
            strict.decide(&a, &Method::PUT, 1, Duration::ZERO, || Some(3)),
            Decision::Retry(_)
        ));
        let lenient = policy(&[RetryOn::Http500], 0, true);
        assert!(matches!(
            lenient.decide(&a, &Method::POST, 1, Duration::ZERO, || Some(3)),
            Decision::Retry(_)
        ));
    }

    #[test]
    fn the_time_limit_stops_retries() {
        let mut config = RetryConfig {
            on: vec![RetryOn::Http502],
            ..RetryConfig::default()
        };
        config.timeout = crate::config::ConfigDuration(Duration::from_millis(100));
        let p = RetryPolicy::new(&config);
        let resp = status(502);
        let a = Attempt::Response(&resp);
        assert!(matches!(
            p.decide(&a, &Method::GET, 1, Duration::from_millis(99), || Some(3)),
            Decision::Retry(_)
        ));
        assert_eq!(
            p.decide(&a, &Method::GET, 1, Duration::from_millis(100), || Some(3)),
            Decision::Keep
        );
    }

    #[test]
    fn the_budget_caps_retries_at_a_ratio_of_requests_plus_a_floor() {
        let budget = RetryBudget::new(0.2, 1);
        // The floor: 1 per second over the 10-second window.
        for _ in 0..10 {
            assert!(budget.withdraw());
        }
        assert!(!budget.withdraw());
        // 100 requests add 20 retries.
        for _ in 0..100 {
            budget.deposit();
        }
        let granted = (0..100).filter(|_| budget.withdraw()).count();
        assert_eq!(granted, 20);
    }

    #[test]
    fn an_exhausted_budget_is_counted() {
        let mut config = RetryConfig {
            on: vec![RetryOn::Http502],
            budget_ratio: 0.0,
            budget_min_per_sec: 0,
            ..RetryConfig::default()
        };
        config.tries = 5;
        let p = RetryPolicy::new(&config);
        let resp = status(502);
        let d = p.decide(
            &Attempt::Response(&resp),
            &Method::GET,
            1,
            Duration::ZERO,
            || Some(3),
        );
        assert_eq!(d, Decision::OverBudget(RetryReason::Status(502)));
        assert_eq!(p.counts().over_budget, 1);
    }
}
