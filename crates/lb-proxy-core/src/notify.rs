//! Operator hooks on health transitions: `on_change = { webhook = "...", command = [...] }`.
//!
//! Every transition of a backend becomes one JSON event, with its fields in this order:
//!
//! ```json
//! {"upstream":"web","backend":"app-1:8080","address":"10.0.0.7:8080","old":"healthy",
//!  "new":"unhealthy","reason":"connect failed: connection refused","streak":3,
//!  "time":"2025-01-31T09:12:45.123Z"}
//! ```
//!
//! `backend` is the configured name, `address` the resolved address (`unix:/path` for a
//! socket), `reason` is `null` unless a failure caused the transition, and `time` (RFC 3339
//! in UTC) is when the monitor saw the transition. The event goes to each configured hook:
//!
//! - `webhook`: an HTTP POST of the event (`Content-Type: application/json`) to an
//!   `http://` URL. Any 2xx answer is a success.
//! - `command`: the program and its arguments, run without a shell. The event and a newline
//!   arrive on its stdin, and the environment carries `LB_UPSTREAM`, `LB_BACKEND`,
//!   `LB_ADDRESS`, `LB_OLD`, `LB_NEW`, `LB_REASON` (empty when none) and `LB_STREAK`.
//!   Exit status 0 is a success. Its stdout is discarded; its stderr is the proxy's.
//!
//! [`Notifier::notify`] never waits: it puts the event on a bounded queue and returns. One
//! background task delivers events in order, one at a time (both hooks of one event run
//! together), each hook bounded by `timeout` (default 5s). A command still running then is
//! killed (only the program itself, not processes it started). A failure is logged at
//! `warn` and not retried. When the queue is full (a slow or hung hook), new events are
//! dropped and counted. Counters are in [`Notifier::stats`].

use std::io::{self, ErrorKind};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::OptionFuture;
use http::{header, Request, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use lb_health::StatusChange;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, Mutex};

pub use crate::config::{OnChangeConfig, WebhookUrl};

const USER_AGENT: &str = concat!("lb-proxy/", env!("CARGO_PKG_VERSION"));

/// How many events may wait for delivery before new ones are dropped.
pub const DEFAULT_CAPACITY: usize = 1024;

/// Counts of a [`Notifier`] since it was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NotifyStats {
    /// Hook runs that succeeded (a 2xx answer, a command exiting 0). An event sent to both
    /// hooks counts twice.
    pub delivered: u64,
    /// Hook runs that failed: an error, the timeout, another status, a non-zero exit.
    pub failed: u64,
    /// Events dropped because the queue was full (or its delivery task had stopped).
    pub dropped: u64,
}

/// Delivers health transitions to the hooks of one [`OnChangeConfig`]; see the module docs.
#[derive(Debug)]
pub struct Notifier {
    tx: mpsc::Sender<Event>,
    /// The queue's receiving end until the delivery task takes it; only ever `try_lock`ed.
    rx: Mutex<Option<mpsc::Receiver<Event>>>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: OnChangeConfig,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

/// One transition, as the hooks get it (the field order is the JSON order).
#[derive(Debug, Serialize)]
struct Event {
    upstream: String,
    backend: String,
    address: String,
    old: &'static str,
    new: &'static str,
    reason: Option<String>,
    streak: u32,
    time: String,
}

impl Notifier {
    /// A notifier with a queue of [`DEFAULT_CAPACITY`] events.
    pub fn new(config: &OnChangeConfig) -> Self {
        Self::with_capacity(config, DEFAULT_CAPACITY)
    }

    /// A notifier whose queue holds at most `capacity` events (at least 1).
    ///
    /// Nothing runs yet: the delivery task is spawned on the tokio runtime of the first
    /// [`notify`](Self::notify) made inside one. Events notified outside any runtime wait in
    /// the queue until then.
    pub fn with_capacity(config: &OnChangeConfig, capacity: usize) -> Self {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let shared = Shared {
            config: config.clone(),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        };
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
            shared: Arc::new(shared),
        }
    }

    /// Queues `change` of `upstream` for delivery and returns at once. When the queue is
    /// full, the event is dropped, counted in [`NotifyStats::dropped`] and logged at `warn`.
    pub fn notify(&self, upstream: &str, change: &StatusChange<'_>) {
        let event = Event {
            upstream: upstream.to_owned(),
            backend: change.backend.name().to_owned(),
            address: change.backend.addr().to_string(),
            old: change.old.as_str(),
            new: change.new.as_str(),
            reason: change.reason.map(ToString::to_string),
            streak: change.streak,
            time: humantime::format_rfc3339_millis(change.at).to_string(),
        };
        if let Err(e) = self.tx.try_send(event) {
            let full = matches!(e, mpsc::error::TrySendError::Full(_));
            let cause = if full {
                "queue full"
            } else {
                "delivery task stopped"
            };
            let event = e.into_inner();
            // Counted outside the macro: its fields are evaluated only when the event is logged.
            let dropped = self.shared.dropped.fetch_add(1, Relaxed) + 1;
            tracing::warn!(
                upstream,
                backend = event.backend,
                old = event.old,
                new = event.new,
                dropped,
                cause,
                "on_change event dropped"
            );
        }
        // Start delivery on the first call inside a runtime. A concurrent caller that loses
        // the lock moves on: the winner starts it.
        if let Ok(mut rx) = self.rx.try_lock() {
            if let (Some(_), Ok(runtime)) = (&*rx, tokio::runtime::Handle::try_current()) {
                if let Some(rx) = rx.take() {
                    runtime.spawn(deliver_all(rx, self.shared.clone()));
                }
            }
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> NotifyStats {
        NotifyStats {
            delivered: self.shared.delivered.load(Relaxed),
            failed: self.shared.failed.load(Relaxed),
            dropped: self.shared.dropped.load(Relaxed),
        }
    }
}

/// Why one hook run failed.
#[derive(Debug, thiserror::Error)]
enum HookError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("cannot encode the event: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("cannot build the request: {0}")]
    Build(#[from] http::Error),
    #[error("request failed: {0}")]
    Request(#[from] hyper_util::client::legacy::Error),
    #[error("answered {0}")]
    Status(StatusCode),
    #[error("command failed to run: {0}")]
    Io(#[from] io::Error),
    #[error("command {0}")]
    Exit(ExitStatus),
}

/// The delivery task: one event at a time, in order, until the [`Notifier`] is dropped.
async fn deliver_all(mut rx: mpsc::Receiver<Event>, shared: Arc<Shared>) {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let (webhook, command) = (&shared.config.webhook, &shared.config.command);
    let timeout = shared.config.timeout.get();
    while let Some(event) = rx.recv().await {
        let json = match serde_json::to_vec(&event) {
            Ok(json) => Bytes::from(json),
            Err(e) => {
                record(&shared, &event, "encode", Err(e.into()));
                continue;
            }
        };
        let post = webhook
            .as_ref()
            .map(|url| post(&client, url, &json, timeout));
        let run = command
            .as_ref()
            .map(|argv| run(argv, &event, &json, timeout));
        let results = tokio::join!(OptionFuture::from(post), OptionFuture::from(run));
        for (hook, result) in [("webhook", results.0), ("command", results.1)] {
            if let Some(result) = result {
                record(&shared, &event, hook, result);
            }
        }
    }
}

fn record(shared: &Shared, event: &Event, hook: &'static str, result: Result<(), HookError>) {
    let (upstream, backend) = (&event.upstream, &event.backend);
    match result {
        Ok(()) => {
            shared.delivered.fetch_add(1, Relaxed);
            tracing::debug!(upstream, backend, hook, "on_change delivered");
        }
        Err(error) => {
            shared.failed.fetch_add(1, Relaxed);
            let error = &error as &dyn std::error::Error;
            tracing::warn!(
                upstream,
                backend,
                new = event.new,
                hook,
                error,
                "on_change hook failed"
            );
        }
    }
}

async fn post(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &WebhookUrl,
    json: &Bytes,
    timeout: Duration,
) -> Result<(), HookError> {
    let request = Request::post(url.uri().clone())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, USER_AGENT)
        .body(Full::new(json.clone()))?;
    let response = tokio::time::timeout(timeout, client.request(request))
        .await
        .map_err(|_| HookError::Timeout(timeout))??;
    match response.status() {
        status if status.is_success() => Ok(()),
        status => Err(HookError::Status(status)),
    }
}

async fn run(
    argv: &[String],
    event: &Event,
    json: &[u8],
    timeout: Duration,
) -> Result<(), HookError> {
    let Some((program, args)) = argv.split_first() else {
        return Ok(()); // `check` refuses an empty command.
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("LB_UPSTREAM", &event.upstream)
        .env("LB_BACKEND", &event.backend)
        .env("LB_ADDRESS", &event.address)
        .env("LB_OLD", event.old)
        .env("LB_NEW", event.new)
        .env("LB_REASON", event.reason.as_deref().unwrap_or(""))
        .env("LB_STREAK", event.streak.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdin = child.stdin.take();
    let finished = async {
        if let Some(mut stdin) = stdin {
            match stdin.write_all(&[json, b"\n"].concat()).await {
                // A program that ignores its input may exit before reading it.
                Err(e) if e.kind() != ErrorKind::BrokenPipe => return Err(e),
                _ => drop(stdin), // End of input.
            }
        }
        child.wait().await
    };
    match tokio::time::timeout(timeout, finished).await {
        Ok(status) if status.as_ref().is_ok_and(ExitStatus::success) => Ok(()),
        Ok(status) => Err(HookError::Exit(status?)),
        Err(_) => {
            // An error means it has exited meanwhile; kill_on_drop covers the rest.
            let _ = child.kill().await;
            Err(HookError::Timeout(timeout))
        }
    }
}
