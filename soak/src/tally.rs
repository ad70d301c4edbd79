//! Every request's outcome, counted by kind (how the client connects, and the method) and by
//! class (ok, non-2xx, transport error, timeout, wrong answer). Counting is a pair of atomic
//! adds; only failures take a lock, to keep their status codes and first messages.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::Mutex;

/// How many failure messages are kept for the report (the counts are always complete).
const MAX_SAMPLES: usize = 20;

/// How a client uses its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Conn {
    /// HTTP/1.1, many requests per connection.
    KeepAlive,
    /// HTTP/1.1, a new connection for every request.
    PerRequest,
    /// HTTP/2 with prior knowledge (h2c), several streams at once per connection.
    H2,
}

/// The request method (GETs of a backend's name, POSTs echoed back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    /// `GET`: the answer must be the name of a backend of the expected upstream.
    Get,
    /// `POST /echo`: the answer must be the request body, byte for byte.
    Post,
}

/// One row of the report: a connection use and a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Kind {
    /// How the client connects.
    pub(crate) conn: Conn,
    /// The method.
    pub(crate) method: Method,
}

/// What became of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// A 2xx with the expected body.
    Ok,
    /// An answer with another status.
    Status,
    /// Connect, handshake, send or body error.
    Error,
    /// No complete answer within the request timeout.
    Timeout,
    /// A 2xx with the wrong body (another upstream's backend, or an echo that differs).
    Mismatch,
}

impl Class {
    /// Every class, in report order.
    pub(crate) const ALL: [Class; 5] = [
        Class::Ok,
        Class::Status,
        Class::Error,
        Class::Timeout,
        Class::Mismatch,
    ];
}

impl Kind {
    /// Every kind, in report order.
    pub(crate) const ALL: [Kind; 6] = [
        Kind::new(Conn::KeepAlive, Method::Get),
        Kind::new(Conn::KeepAlive, Method::Post),
        Kind::new(Conn::PerRequest, Method::Get),
        Kind::new(Conn::PerRequest, Method::Post),
        Kind::new(Conn::H2, Method::Get),
        Kind::new(Conn::H2, Method::Post),
    ];

    /// The kind of `method` requests over `conn`.
    pub(crate) const fn new(conn: Conn, method: Method) -> Self {
        Self { conn, method }
    }

    /// Its row label.
    pub(crate) fn label(self) -> &'static str {
        match (self.conn, self.method) {
            (Conn::KeepAlive, Method::Get) => "h1 keep-alive GET",
            (Conn::KeepAlive, Method::Post) => "h1 keep-alive POST",
            (Conn::PerRequest, Method::Get) => "h1 new conn GET",
            (Conn::PerRequest, Method::Post) => "h1 new conn POST",
            (Conn::H2, Method::Get) => "h2c GET",
            (Conn::H2, Method::Post) => "h2c POST",
        }
    }

    fn index(self) -> usize {
        let conn = match self.conn {
            Conn::KeepAlive => 0,
            Conn::PerRequest => 1,
            Conn::H2 => 2,
        };
        let method = match self.method {
            Method::Get => 0,
            Method::Post => 1,
        };
        conn * 2 + method
    }
}

/// The counts of the whole run, shared by every client task.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    counts: [[AtomicU64; Class::ALL.len()]; Kind::ALL.len()],
    max_latency_us: [AtomicU64; Kind::ALL.len()],
    /// Keep-alive connections found closed by the proxy before a request was written (the
    /// request then goes on a new connection, as any client does; not a failed request).
    pub(crate) closed_between_requests: AtomicU64,
    /// Client connections opened (all kinds).
    pub(crate) connections: AtomicU64,
    statuses: Mutex<BTreeMap<u16, u64>>,
    samples: Mutex<Vec<String>>,
}

impl Tally {
    /// Counts one request of `kind` that took `latency`; `detail` describes a failure.
    pub(crate) fn record(&self, kind: Kind, class: Class, latency: Duration, detail: &str) {
        let i = kind.index();
        let c = Class::ALL.iter().position(|x| *x == class).unwrap_or(0);
        self.counts[i][c].fetch_add(1, Relaxed);
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.max_latency_us[i].fetch_max(us, Relaxed);
        if class != Class::Ok {
            let mut samples = self.samples.lock();
            if samples.len() < MAX_SAMPLES {
                samples.push(format!("{}: {class:?}: {detail}", kind.label()));
            }
        }
    }

    /// Counts a non-2xx answer's status code (besides [`record`](Self::record)).
    pub(crate) fn status(&self, code: u16) {
        let mut statuses = self.statuses.lock();
        *statuses.entry(code).or_default() += 1;
    }

    /// Requests of `kind` in `class`.
    pub(crate) fn count(&self, kind: Kind, class: Class) -> u64 {
        let c = Class::ALL.iter().position(|x| *x == class).unwrap_or(0);
        self.counts[kind.index()][c].load(Relaxed)
    }

    /// Requests of every kind in `class`.
    pub(crate) fn total(&self, class: Class) -> u64 {
        Kind::ALL.iter().map(|k| self.count(*k, class)).sum()
    }

    /// The slowest complete exchange of `kind`.
    pub(crate) fn max_latency(&self, kind: Kind) -> Duration {
        Duration::from_micros(self.max_latency_us[kind.index()].load(Relaxed))
    }

    /// Non-2xx answers by status code.
    pub(crate) fn statuses(&self) -> BTreeMap<u16, u64> {
        self.statuses.lock().clone()
    }

    /// The first failures, described.
    pub(crate) fn samples(&self) -> Vec<String> {
        self.samples.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind_and_class_and_keeps_failure_details() {
        let tally = Tally::default();
        let h2_post = Kind::new(Conn::H2, Method::Post);
        tally.record(h2_post, Class::Ok, Duration::from_millis(3), "");
        tally.record(h2_post, Class::Status, Duration::from_millis(9), "502");
        tally.status(502);
        assert_eq!(tally.count(h2_post, Class::Ok), 1);
        assert_eq!(tally.count(h2_post, Class::Status), 1);
        assert_eq!(tally.total(Class::Status), 1);
        assert_eq!(tally.count(Kind::ALL[0], Class::Ok), 0);
        assert_eq!(tally.max_latency(h2_post), Duration::from_millis(9));
        assert_eq!(tally.statuses().get(&502), Some(&1));
        assert_eq!(tally.samples(), vec!["h2c POST: Status: 502".to_owned()]);
    }
}
