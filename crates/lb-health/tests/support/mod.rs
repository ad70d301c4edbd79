//! Helpers shared by the integration tests: thresholds, a monitor with a recording observer, a small HTTP
//! server whose status, body, headers and delay the test changes (and that counts the
//! connections it accepted), a backend that accepts and never answers, and a clock hold
//! for paused-time tests over real sockets.

#![allow(dead_code, unreachable_pub)] // each test file uses a different part

pub mod pki;
pub mod probe;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use lb_core::Health;
use lb_health::{CheckFailure, CheckParams, HealthCheck, HealthMonitor, StatusChange};
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub fn params(rise: u32, fall: u32, timeout: Duration) -> CheckParams {
    CheckParams {
        rise: NonZeroU32::new(rise).unwrap(),
        fall: NonZeroU32::new(fall).unwrap(),
        timeout,
    }
}

/// One hook call: old, new, and the failure (its `Display` and a copy of what tests match on).
#[derive(Clone, Debug)]
pub struct Transition {
    pub old: Health,
    pub new: Health,
    pub reason: Option<String>,
    pub tls: Option<lb_health::TlsFailureKind>,
    pub status: Option<u16>,
    pub timeout: bool,
    pub body: bool,
    pub validator: bool,
}

/// The transitions seen by a recording hook.
#[derive(Default)]
pub struct Recorder {
    entries: Mutex<Vec<Transition>>,
    changed: Notify,
}

impl Recorder {
    pub fn lock(&self) -> parking_lot::MutexGuard<'_, Vec<Transition>> {
        self.entries.lock()
    }

    /// Waits (without a timer) until `n` transitions were recorded.
    pub async fn wait_for(&self, n: usize) {
        for _ in 0..10_000 {
            let changed = self.changed.notified();
            if self.entries.lock().len() >= n {
                return;
            }
            changed.await;
        }
        panic!("never saw {n} transitions");
    }
}

pub type Log = Arc<Recorder>;

/// A monitor running `check`, with an observer that records every transition.
pub fn recording(check: impl HealthCheck) -> (HealthMonitor, Log) {
    let log: Log = Arc::default();
    let sink = log.clone();
    let monitor = HealthMonitor::new(Arc::new(check));
    monitor.subscribe(Arc::new(move |c: &StatusChange<'_>| {
        let r: Option<&CheckFailure> = c.reason;
        sink.entries.lock().push(Transition {
            old: c.old,
            new: c.new,
            reason: r.map(ToString::to_string),
            tls: r.and_then(CheckFailure::tls_kind),
            status: r.and_then(CheckFailure::status),
            timeout: r.is_some_and(CheckFailure::is_timeout),
            body: r.is_some_and(CheckFailure::is_body),
            validator: r.is_some_and(CheckFailure::is_validator),
        });
        sink.changed.notify_waiters();
    }));
    (monitor, log)
}

/// What [`HttpServer`] answers; changed by the test at any time.
pub struct Answer {
    pub status: AtomicU16,
    pub body: Mutex<Bytes>,
    pub ready_header: Mutex<Option<&'static str>>,
    pub delay_ms: AtomicU64,
    pub accepted: AtomicUsize,
    pub requests: AtomicUsize,
    pub last_host: Mutex<Option<String>>,
    pub arrived: Notify,
}

/// A keep-alive HTTP/1.1 server on a free loopback port.
pub struct HttpServer {
    pub addr: SocketAddr,
    pub answer: Arc<Answer>,
    task: JoinHandle<()>,
}

impl HttpServer {
    pub async fn start(body: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(Answer {
            status: AtomicU16::new(200),
            body: Mutex::new(Bytes::from(body.to_owned())),
            ready_header: Mutex::new(None),
            delay_ms: AtomicU64::new(0),
            accepted: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            last_host: Mutex::new(None),
            arrived: Notify::new(),
        });
        let shared = answer.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                shared.accepted.fetch_add(1, SeqCst);
                let shared = shared.clone();
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req| answer_one(req, shared.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, answer, task }
    }

    pub fn set_status(&self, status: u16) {
        self.answer.status.store(status, SeqCst);
    }

    pub fn set_body(&self, body: impl Into<Bytes>) {
        *self.answer.body.lock() = body.into();
    }

    pub fn set_delay(&self, delay: Duration) {
        self.answer.delay_ms.store(delay.as_millis() as u64, SeqCst);
    }

    pub fn set_ready_header(&self, value: Option<&'static str>) {
        *self.answer.ready_header.lock() = value;
    }

    pub fn accepted(&self) -> usize {
        self.answer.accepted.load(SeqCst)
    }

    pub fn requests(&self) -> usize {
        self.answer.requests.load(SeqCst)
    }

    /// Waits (without a timer) until the server has received `n` requests.
    pub async fn wait_for_requests(&self, n: usize) {
        for _ in 0..10_000 {
            let arrived = self.answer.arrived.notified();
            if self.requests() >= n {
                return;
            }
            arrived.await;
        }
        panic!("never saw request {n}");
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer_one(
    req: Request<Incoming>,
    a: Arc<Answer>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    *a.last_host.lock() = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    a.requests.fetch_add(1, SeqCst);
    a.arrived.notify_waiters();
    let delay = a.delay_ms.load(SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let mut resp = Response::new(Full::new(a.body.lock().clone()));
    *resp.status_mut() = http::StatusCode::from_u16(a.status.load(SeqCst)).unwrap();
    if let Some(v) = *a.ready_header.lock() {
        resp.headers_mut()
            .insert("x-ready", http::HeaderValue::from_static(v));
    }
    Ok(resp)
}

/// Accepts TCP connections and never reads or answers (a hung backend).
pub struct HungServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HungServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut held: Vec<TcpStream> = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        Self { addr, task }
    }
}

impl Drop for HungServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keeps a paused runtime busy so that its clock never auto-advances: time then moves only
/// by `tokio::time::advance`, while real socket I/O still completes. Lets a paused-time test
/// wait for loopback I/O without a timeout firing early. Stops when dropped.
pub struct ClockHold(JoinHandle<()>);

pub fn hold_clock() -> ClockHold {
    ClockHold(tokio::spawn(async {
        loop {
            tokio::task::yield_now().await;
        }
    }))
}

impl Drop for ClockHold {
    fn drop(&mut self) {
        self.0.abort();
    }
}
