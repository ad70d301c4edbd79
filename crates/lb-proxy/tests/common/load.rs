//! A bounded load generator for the fault tests: `concurrency` loops share a fixed budget of
//! requests (and stop early when told to), each request checked (status 2xx, whole body,
//! and the expected body when one is given), every failure kept with its reason.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// One request of the load: what to send and, optionally, the body it must come back with.
pub struct Planned {
    pub request: Request<Full<Bytes>>,
    pub expect_body: Option<Bytes>,
}

/// Builds request number `i` of the load.
pub type Plan = Arc<dyn Fn(usize) -> Planned + Send + Sync>;

/// What the load saw.
#[derive(Debug, Default)]
pub struct Report {
    /// Requests that got an answer or an error.
    pub done: usize,
    /// Why each failed request failed (`"502 Bad Gateway"`, `"client error: ..."`, ...).
    pub failures: Vec<String>,
    /// The slowest request.
    pub max_latency: Duration,
}

/// A running load; [`finish`](Self::finish) waits for it.
pub struct Load {
    stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
    tasks: JoinSet<(Vec<String>, Duration)>,
}

#[derive(Default)]
struct Progress {
    next: AtomicUsize,
    done: AtomicUsize,
    event: Notify,
}

/// How long a load may take to wind down once its budget is spent or it is stopped.
const FINISH_DEADLINE: Duration = Duration::from_secs(30);

/// Every request is bounded by this (a hung request is a failure, not a hung test).
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// A keep-alive HTTP/1.1 client for the load.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build_http()
}

/// A plan of GETs of `url`.
pub fn gets(url: String) -> Plan {
    Arc::new(move |_| Planned {
        request: Request::get(url.as_str()).body(Full::default()).unwrap(),
        expect_body: None,
    })
}

impl Load {
    /// Starts `concurrency` loops that send `total` requests in all, request `i` built by
    /// `plan(i)`, each loop waiting `pace` between its requests (none when zero).
    pub fn start(
        client: &Client<HttpConnector, Full<Bytes>>,
        concurrency: usize,
        total: usize,
        pace: Duration,
        plan: Plan,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(Progress::default());
        let mut tasks = JoinSet::new();
        for _ in 0..concurrency {
            let (client, stop, progress, plan) =
                (client.clone(), stop.clone(), progress.clone(), plan.clone());
            tasks.spawn(async move {
                let mut failures = Vec::new();
                let mut max_latency = Duration::ZERO;
                while !stop.load(Ordering::SeqCst) {
                    let i = progress.next.fetch_add(1, Ordering::SeqCst);
                    if i >= total {
                        break;
                    }
                    let planned = plan(i);
                    let started = Instant::now();
                    let outcome = tokio::time::timeout(
                        REQUEST_DEADLINE,
                        one(&client, planned.request, planned.expect_body),
                    )
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer within {REQUEST_DEADLINE:?}")));
                    max_latency = max_latency.max(started.elapsed());
                    if let Err(why) = outcome {
                        failures.push(why);
                    }
                    progress.done.fetch_add(1, Ordering::SeqCst);
                    progress.event.notify_waiters();
                    if !pace.is_zero() {
                        tokio::time::sleep(pace).await;
                    }
                }
                (failures, max_latency)
            });
        }
        Self {
            stop,
            progress,
            tasks,
        }
    }

    /// Requests answered (or failed) so far.
    pub fn done(&self) -> usize {
        self.progress.done.load(Ordering::SeqCst)
    }

    /// Waits (at most `deadline`) until at least `n` requests are done.
    pub async fn wait_done(&self, n: usize, deadline: Duration) {
        let wait = async {
            loop {
                let event = self.progress.event.notified();
                if self.done() >= n {
                    return;
                }
                event.await;
            }
        };
        tokio::time::timeout(deadline, wait)
            .await
            .unwrap_or_else(|_| panic!("the load did not reach {n} requests in {deadline:?}"));
    }

    /// Stops the loops after their current request.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Waits for the loops to end (budget spent, or stopped) and reports.
    pub async fn finish(mut self) -> Report {
        let mut report = Report::default();
        let all = async {
            while let Some(done) = self.tasks.join_next().await {
                let (failures, max_latency) = done.unwrap();
                report.failures.extend(failures);
                report.max_latency = report.max_latency.max(max_latency);
            }
        };
        tokio::time::timeout(FINISH_DEADLINE, all)
            .await
            .expect("the load did not finish in time");
        report.done = self.done();
        report
    }
}

/// Sends one request and checks its answer.
async fn one(
    client: &Client<HttpConnector, Full<Bytes>>,
    request: Request<Full<Bytes>>,
    expect_body: Option<Bytes>,
) -> Result<(), String> {
    let resp = client
        .request(request)
        .await
        .map_err(|e| format!("client error: {e:?}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{status}, body error: {e:?}"))?
        .to_bytes();
    if !status.is_success() {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
    }
    match expect_body {
        Some(want) if want != body => Err(format!("{status}, body {body:?} instead of {want:?}")),
        _ => Ok(()),
    }
}
