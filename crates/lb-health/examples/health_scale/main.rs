//! Health checks at scale: what watching 10,000 backends with TCP checks costs.
//!
//! Two roles, run as two processes so that the checker's CPU figure holds its own work
//! (connects, timers, bookkeeping) and not the backends' accepts and closes. (Loopback
//! still runs the kernel's half of each handshake for the backend in the connecting
//! process; `docs/benchmarks.md` measures how much.)
//!
//! - `listen`: opens `--count` real TCP listeners on loopback, one per address
//!   `127.<net>.<i / 250>.<i % 250 + 1>` on one `--port` (Linux routes all of
//!   `127.0.0.0/8` to `lo`, so no set-up is needed), accepts and closes every connection
//!   (with `--http`: answers every HTTP/1.1 request `200` and keeps the connection open),
//!   and runs until SIGINT or SIGTERM. It prints `ready` on stdout once every socket
//!   listens. Each listener is one file descriptor (and with `--http` each kept-alive
//!   connection another): `ulimit -n` must exceed that (it is checked at start).
//! - `check`: runs a [`HealthMonitor`] with a [`TcpHealthCheck`] (or, with `--check`, one
//!   of the variants below) over the same addresses at `--interval-ms` with
//!   [`FirstCheck::Spread`] for `--seconds`, then prints `key=value` lines: checks started
//!   and per second, passes and failures, the process's CPU time (user + system, from
//!   `/proc/self/stat`) as a percentage of one core, peak RSS (`VmHWM`), and the
//!   scheduler's lateness ([`HealthMonitor::schedule_stats`]). CPU and mean lateness are
//!   taken over the window after `--warmup` seconds; the maximum lateness covers the
//!   whole run. It holds at most `--max-concurrency` sockets at a time.
//!
//! ```sh
//! cargo build --release -p lb-health --example health_scale
//! target/release/examples/health_scale listen --count 10000 &
//! target/release/examples/health_scale check --count 10000 --seconds 20
//! ```
//!
//! Variants (`--check`), to see where the cost of a check goes:
//!
//! - `tcp` (default): [`TcpHealthCheck`], as shipped.
//! - `tcp-rst`: the same connect, closed with a reset (`SO_LINGER` 0): no FIN exchange,
//!   no `TIME_WAIT`.
//! - `http-reuse`: [`HttpHealthCheck`] `GET /` with `reuse_connection`, against
//!   `listen --http`: one request per check over a connection kept open, no handshake.
//! - `floor`: no monitor at all, the same connects and closes at the same rate with
//!   blocking `std` sockets: the kernel's share, which no checker can go below.
//!
//! `cargo xtask bench-health` does exactly this (three runs, medians) and prints the table
//! recorded in `docs/benchmarks.md`. Linux only (it reads `/proc`).

// A benchmark program talks to its user: results on stdout, errors on stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::error::Error;
use std::num::NonZeroU32;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lb_core::{Backend, BackendSet};
use lb_health::{
    CheckParams, FirstCheck, HealthCheck, HealthMonitor, HttpHealthCheck, Schedule, TcpHealthCheck,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

mod floor;
mod options;
mod proc_stats;

use floor::{floor, FloorStats, ResetTcpCheck};
use options::{Kind, Options, USAGE};
use proc_stats::{cpu_time, open_files_limit, status_kib};

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.split_first() {
        Some((role, rest)) if role == "listen" => {
            Options::parse(rest).and_then(|o| o.runtime()?.block_on(listen(o)))
        }
        Some((role, rest)) if role == "check" => {
            Options::parse(rest).and_then(|o| o.runtime()?.block_on(check(o)))
        }
        _ => Err(USAGE.into()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("health_scale: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The backends: `count` listeners that accept and close (or, with `--http`, answer),
/// until SIGINT or SIGTERM.
async fn listen(options: Options) -> Result<()> {
    let limit = open_files_limit()?;
    // Listeners (and kept-alive connections with `--http`), plus accepted sockets in
    // flight, plus the runtime's own descriptors.
    let per_backend = if options.http { 2 } else { 1 };
    let needed = per_backend * options.count as u64 + 256;
    if limit < needed {
        return Err(format!(
            "the open-files limit is {limit}, {} backends need about {needed}: raise `ulimit -n` \
             or use fewer backends",
            options.count
        )
        .into());
    }
    let http = options.http;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..options.count {
        let addr = options.addr(i);
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket
            .bind(addr)
            .map_err(|e| format!("binding {addr}: {e}"))?;
        let listener = socket.listen(1024)?;
        tasks.spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) if http => {
                        tokio::spawn(serve_http(stream));
                    }
                    // Dropping the stream closes it: that is the whole backend.
                    Ok((stream, _)) => drop(stream),
                    // EMFILE and the like: back off a little rather than spin.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        });
    }
    println!(
        "ready: {} listeners on {}..={}",
        options.count,
        options.addr(0),
        options.addr(options.count - 1)
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tasks.abort_all();
    Ok(())
}

/// Answers every request on `stream` with an empty `200`, until the peer closes it.
/// Just enough HTTP/1.1 for a health check: requests without bodies, kept alive.
async fn serve_http(mut stream: TcpStream) {
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
    let mut buf = Vec::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 1024];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            if stream.write_all(OK).await.is_err() {
                return;
            }
        }
    }
}

/// The checker: one monitor over all the backends (or the floor loop), measured.
async fn check(options: Options) -> Result<()> {
    let rss_before = status_kib("VmRSS")?;
    let start = Instant::now();
    let cpu_start = cpu_time()?;
    let shutdown = tokio::time::Instant::now() + Duration::from_secs(options.seconds);
    let (workload, run) = Workload::start(&options, shutdown)?;
    tokio::time::sleep(Duration::from_secs(options.warmup)).await;
    let warm_at = Instant::now();
    let cpu_warm = cpu_time()?;
    let stats_warm = workload.punctuality();
    run.await?;
    let end = Instant::now();
    let cpu_end = cpu_time()?;
    let stats = workload.punctuality();
    let (passes, failures, reasons) = workload.results();

    let window = end.duration_since(warm_at).as_secs_f64();
    let cpu = cpu_end.since(cpu_warm);
    let cpu_total = cpu_end.since(cpu_start);
    let started = stats.started - stats_warm.started;
    let lateness = stats
        .total_lateness
        .saturating_sub(stats_warm.total_lateness);
    let mean_lateness = lateness.as_secs_f64() / started.max(1) as f64;

    let lines = [
        ("backends", options.count.to_string()),
        ("interval_ms", options.interval.as_millis().to_string()),
        ("threads", options.threads.to_string()),
        ("check", options.kind.name().to_owned()),
        ("max_concurrency", options.max_concurrency.to_string()),
        (
            "run_s",
            format!("{:.2}", end.duration_since(start).as_secs_f64()),
        ),
        ("window_s", format!("{window:.2}")),
        ("checks_started", stats.started.to_string()),
        ("checks_per_s", format!("{:.0}", started as f64 / window)),
        ("passes", passes.to_string()),
        ("failures", failures.to_string()),
        ("failure_reasons", format!("{reasons:?}")),
        ("cpu_user_s", format!("{:.2}", cpu.user)),
        ("cpu_sys_s", format!("{:.2}", cpu.system)),
        (
            "cpu_pct_one_core",
            format!("{:.1}", 100.0 * cpu.total() / window),
        ),
        (
            "cpu_user_pct_one_core",
            format!("{:.1}", 100.0 * cpu.user / window),
        ),
        (
            "cpu_us_per_check",
            format!("{:.1}", 1e6 * cpu.total() / started.max(1) as f64),
        ),
        (
            "cpu_pct_one_core_whole_run",
            format!(
                "{:.1}",
                100.0 * cpu_total.total() / end.duration_since(start).as_secs_f64()
            ),
        ),
        (
            "rss_at_start_mib",
            format!("{:.1}", rss_before as f64 / 1024.0),
        ),
        (
            "peak_rss_mib",
            format!("{:.1}", status_kib("VmHWM")? as f64 / 1024.0),
        ),
        ("mean_lateness_ms", format!("{:.3}", 1e3 * mean_lateness)),
        (
            "max_lateness_ms",
            format!("{:.3}", 1e3 * stats.max_lateness.as_secs_f64()),
        ),
    ];
    for (key, value) in lines {
        println!("{key}={value}");
    }
    Ok(())
}

/// What the checker runs: the monitor, or the floor loop.
enum Workload {
    Monitor(Arc<HealthMonitor>),
    Floor(Arc<FloorStats>),
}

/// Checks started and how late, from either workload.
#[derive(Clone, Copy, Debug, Default)]
struct Punctuality {
    started: u64,
    total_lateness: Duration,
    max_lateness: Duration,
}

impl Workload {
    /// Starts the workload in its own task, running until `shutdown`.
    fn start(
        options: &Options,
        shutdown: tokio::time::Instant,
    ) -> Result<(Self, tokio::task::JoinHandle<()>)> {
        let params = CheckParams {
            rise: NonZeroU32::MIN,
            fall: NonZeroU32::MIN,
            timeout: options.timeout,
        };
        let check: Arc<dyn HealthCheck> = match options.kind {
            Kind::Tcp => Arc::new(TcpHealthCheck::new(params)),
            Kind::TcpRst => Arc::new(ResetTcpCheck { params }),
            Kind::HttpReuse => {
                // One kept-alive connection per backend.
                let needed = options.count as u64 + 256;
                let limit = open_files_limit()?;
                if limit < needed {
                    return Err(format!(
                        "the open-files limit is {limit}, {} kept-alive connections need \
                         about {needed}: raise `ulimit -n` or use fewer backends",
                        options.count
                    )
                    .into());
                }
                Arc::new(
                    HttpHealthCheck::builder(params)
                        .reuse_connection(true)
                        .build()?,
                )
            }
            Kind::Floor => {
                let stats = Arc::new(FloorStats::default());
                let run = tokio::spawn(floor(options.clone(), Arc::clone(&stats), shutdown));
                return Ok((Self::Floor(stats), run));
            }
        };
        let monitor = Arc::new(HealthMonitor::new(check));
        let set: BackendSet = (0..options.count)
            .map(|i| Backend::new(options.addr(i)))
            .collect();
        let (sender, backends) = watch::channel(set);
        let mut schedule = Schedule::new(options.interval);
        schedule.first_check = FirstCheck::Spread;
        schedule.max_concurrency = options.max_concurrency;
        let run = {
            let monitor = Arc::clone(&monitor);
            tokio::spawn(async move {
                // Kept alive for the run (a dropped sender would only freeze the set).
                let _sender = sender;
                let stop = tokio::time::sleep_until(shutdown);
                monitor.run(backends, schedule, stop).await;
            })
        };
        Ok((Self::Monitor(monitor), run))
    }

    fn punctuality(&self) -> Punctuality {
        match self {
            Self::Monitor(monitor) => {
                let s = monitor.schedule_stats();
                Punctuality {
                    started: s.started,
                    total_lateness: s.total_lateness,
                    max_lateness: s.max_lateness,
                }
            }
            Self::Floor(stats) => Punctuality {
                started: stats.started.load(Relaxed),
                total_lateness: Duration::from_nanos(stats.lateness_ns.load(Relaxed)),
                max_lateness: Duration::from_nanos(stats.max_lateness_ns.load(Relaxed)),
            },
        }
    }

    /// Passes, failures and the distinct reasons of the last failures.
    fn results(&self) -> (u64, u64, Vec<String>) {
        match self {
            Self::Monitor(monitor) => {
                let snapshot = monitor.snapshot();
                let mut reasons: Vec<String> = snapshot
                    .iter()
                    .filter_map(|b| b.last_failure.clone())
                    .collect();
                reasons.sort_unstable();
                reasons.dedup();
                (
                    snapshot.iter().map(|b| b.total_passes).sum(),
                    snapshot.iter().map(|b| b.total_failures).sum(),
                    reasons,
                )
            }
            Self::Floor(stats) => {
                let failures = stats.failures.load(Relaxed);
                (stats.started.load(Relaxed) - failures, failures, Vec::new())
            }
        }
    }
}
