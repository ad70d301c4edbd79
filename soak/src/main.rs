//! `lb-soak`: the soak run of `cargo xtask soak` (issue 9), against a release `lb-proxy`.
//!
//! ```text
//! lb-soak --proxy target/release/lb-proxy [--minutes 10]
//! ```
//!
//! Starts real backends (lb-testkit's hyper servers, in this process), writes a
//! configuration (upstreams `web`, `api` and `disc`, the last fed by file discovery; health
//! checks; an admin listener; a JSON access log), starts the proxy, waits until every
//! backend is healthy, then for the whole duration at once:
//!
//! - runs the mixed load of [`load`] (HTTP/1.1 keep-alive and new-connection clients,
//!   HTTP/2 prior-knowledge clients, GETs and POST bodies), every answer checked and
//!   counted;
//! - churns `disc`'s backends through its discovery file every 3 s ([`churn`]);
//! - reloads the configuration four times during the warm-up, then every minute (every
//!   fifth of the run if shorter), alternately by SIGHUP and `POST /reload`, each reload
//!   changing backends, routes or an upstream's algorithm ([`reloads`]);
//! - samples the proxy's RSS and open descriptors ([`sample`]).
//!
//! Then it stops the proxy with SIGTERM and prints the tables and verdicts of [`report`];
//! the exit status is 0 when every criterion passed, 1 when one failed, 2 when the run
//! could not be made (bad arguments, the proxy did not start), 130 on Ctrl-C.
//!
//! Every wait is bounded; the proxy is killed by a drop guard however this ends, and a
//! Ctrl-C at the terminal also reaches it (same process group).

mod admin;
mod churn;
mod config;
mod load;
mod proxy;
mod reloads;
mod report;
mod sample;
mod tally;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use lb_testkit::TestBackend;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::churn::{Churn, ChurnReport};
use crate::config::{Layout, Variant};
use crate::load::{Ctx, Plan};
use crate::proxy::ProxyChild;
use crate::reloads::Reloader;
use crate::report::Figures;
use crate::tally::{Class, Tally};

/// Usage, on a bad invocation.
const USAGE: &str = "usage: lb-soak --proxy PATH [--minutes N]   (N may be a fraction; default 10)";
/// Time between two rewrites of the discovery file.
const CHURN_PERIOD: Duration = Duration::from_secs(3);
/// Backends in the discovery pool.
const DISC_POOL: usize = 4;
/// The longest wait for every backend to be healthy at the start.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(20);

/// The command line.
struct Args {
    proxy: PathBuf,
    minutes: f64,
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            say(&format!("lb-soak: {e:#}\n{USAGE}"));
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            say(&format!("lb-soak: cannot start the runtime: {e}"));
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        tokio::select! {
            r = run(&args) => r.map(Some),
            // Dropping `run` kills the proxy (its guard) and stops the backends and clients.
            _ = tokio::signal::ctrl_c() => Ok(None),
        }
    });
    match result {
        Ok(Some(true)) => ExitCode::SUCCESS,
        Ok(Some(false)) => ExitCode::FAILURE,
        Ok(None) => {
            say("lb-soak: interrupted; the proxy was stopped");
            ExitCode::from(130)
        }
        Err(e) => {
            say(&format!("lb-soak: {e:#}"));
            ExitCode::from(2)
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Args> {
    let (mut proxy, mut minutes) = (None, 10.0);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--proxy" => proxy = Some(PathBuf::from(args.next().context("--proxy needs a path")?)),
            "--minutes" => {
                let text = args.next().context("--minutes needs a number")?;
                minutes = text
                    .parse()
                    .ok()
                    .filter(|m: &f64| m.is_finite() && *m >= 0.1 && *m <= 24.0 * 60.0)
                    .with_context(|| format!("--minutes {text}: a number from 0.1 to 1440"))?;
            }
            other => bail!("unknown argument `{other}`"),
        }
    }
    let proxy = proxy.context("--proxy is required")?;
    Ok(Args { proxy, minutes })
}

/// The whole run: true when every criterion passed.
async fn run(args: &Args) -> anyhow::Result<bool> {
    let planned = Duration::from_secs_f64(args.minutes * 60.0);
    let warmup = planned / 5;
    let window = warmup;
    let sample_period = (planned / 120).clamp(Duration::from_secs(1), Duration::from_secs(5));
    let reload_period = Duration::from_secs(60).min(planned / 5);
    let reload_times = reload_times(planned, warmup, reload_period);
    let plan = Plan::DEFAULT;

    let dir = tempfile::Builder::new().prefix("lb-soak-").tempdir()?;
    let disc_dir = dir.path().join("disc");
    std::fs::create_dir(&disc_dir)?;
    let web = [
        TestBackend::start("w0").await,
        TestBackend::start("w1").await,
        TestBackend::start("w2").await,
        TestBackend::start("w3").await,
    ];
    let api = [
        TestBackend::start("a0").await,
        TestBackend::start("a1").await,
    ];
    let layout = Layout {
        web: web.iter().map(TestBackend::addr).collect(),
        api: api.iter().map(TestBackend::addr).collect(),
        disc_file: disc_dir.join("backends.toml"),
        access_log: dir.path().join("access.log"),
    };
    let churn = Churn::start(DISC_POOL, layout.disc_file.clone()).await?;
    let config_file = dir.path().join("lb.toml");
    config::write_atomic(&config_file, &config::proxy(&layout, Variant::nth(0)))?;
    let log_file = dir.path().join("proxy.log");
    let (proxy, bound) = ProxyChild::start(&args.proxy, &config_file, &log_file).await?;
    say(&format!(
        "lb-soak: lb-proxy pid {} on {} (admin {}); {:.1} min of load at about {:.0} requests/s, \
         warm-up {:.0} s, then a reload every {:.0} s; files in {}",
        proxy.pid(),
        bound.listen,
        bound.admin,
        args.minutes,
        plan.rate(),
        warmup.as_secs_f64(),
        reload_period.as_secs_f64(),
        dir.path().display()
    ));
    all_healthy(bound.admin).await?;

    let stop = CancellationToken::new();
    let tally = Arc::new(Tally::default());
    let start = Instant::now();
    let sampler = tokio::spawn(sample::run(proxy.pid(), start, sample_period, stop.clone()));
    let mut clients = load::spawn(plan, &Ctx::new(bound.listen, tally.clone(), stop.clone()));
    let churn = tokio::spawn(churn.run(bound.admin, CHURN_PERIOD, stop.clone()));
    let reloader = Reloader {
        file: config_file,
        layout,
        proxy: &proxy,
        admin: bound.admin,
        listen: bound.listen,
    };
    let (reloads, ()) = tokio::join!(reloader.run(start, &reload_times, stop.clone()), async {
        let deadline = start + planned;
        let mut next = start + Duration::from_secs(60).min(planned / 4);
        while next < deadline {
            tokio::select! {
                () = tokio::time::sleep_until(next) => progress(start, &tally),
                () = stop.cancelled() => return,
            }
            next += Duration::from_secs(60).min(planned / 4);
        }
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => stop.cancel(),
            () = stop.cancelled() => {}
        }
    });
    let ran = start.elapsed();
    let mut problems = Vec::new();

    // Everything below ends on its own once `stop` is cancelled; bounded all the same.
    let drained = tokio::time::timeout(load::REQUEST_TIMEOUT + Duration::from_secs(5), async {
        while clients.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        problems.push("clients still busy after the deadline plus the request timeout".into());
        clients.abort_all();
    }
    let (churn, disc_backends) = match tokio::time::timeout(Duration::from_secs(30), churn).await {
        Ok(Ok(ended)) => ended,
        Ok(Err(e)) => {
            problems.push(format!("the churn task failed: {e}"));
            (ChurnReport::default(), Vec::new())
        }
        Err(_) => {
            problems.push("the churn task did not end within 30 s of the deadline".to_owned());
            (ChurnReport::default(), Vec::new())
        }
    };
    let (samples, sample_error) = sampler
        .await
        .unwrap_or_else(|e| (Vec::new(), Some(e.into())));
    if let Some(e) = sample_error {
        problems.push(format!("sampling: {e:#}"));
    }
    let (reload_counters, retries) = match admin::metrics(bound.admin).await {
        Ok(m) => {
            let counters = (m.reloads("success"), m.reloads("failure"));
            let retries = ["error", "timeout", "invalid_header"]
                .into_iter()
                .map(|r| {
                    (
                        r.to_owned(),
                        m.sum("lb_upstream_retries_total", &[("reason", r)]) as u64,
                    )
                })
                .filter(|(_, n)| *n > 0)
                .collect();
            (counters, retries)
        }
        Err(e) => {
            problems.push(format!("final /metrics: {e:#}"));
            ((0, 0), Vec::new())
        }
    };
    let log = proxy.log.clone();
    match proxy.stop(Duration::from_secs(10)).await {
        Ok(status) if status.success() => {}
        Ok(status) => problems.push(format!("lb-proxy exited with {status} on SIGTERM")),
        Err(e) => problems.push(format!("stopping lb-proxy: {e:#}")),
    }
    let log_lines = {
        let log = log.lock();
        let mut lines: Vec<(String, String, u64)> = log
            .by_message
            .iter()
            .map(|((level, message), n)| (level.clone(), message.clone(), *n))
            .collect();
        lines.extend(log.other.iter().map(|l| ("RAW".to_owned(), l.clone(), 1)));
        lines
    };
    let figures = Figures {
        ran,
        planned,
        warmup,
        window,
        tally: &tally,
        samples: &samples,
        reloads: &reloads,
        reload_counters,
        retries,
        churn: &churn,
        socket_slack: plan.concurrency() as u64,
        problems,
        log_lines,
    };
    let (text, pass) = figures.render();
    out(&text);
    if !pass {
        // Keep the configuration, the proxy's log and the access log to look into.
        let kept = dir.keep();
        say(&format!("lb-soak: files kept in {}", kept.display()));
    }
    drop((web, api, disc_backends));
    Ok(pass)
}

/// When to reload, from the start of the load: four times during the warm-up, so that every
/// kind of reload (each [`Variant`] change) has run once before the memory baseline is taken
/// (the first run of a code path pages in the binary's code for it, and fills allocator
/// caches: warm-up, not growth), then every `period` after it until the end.
fn reload_times(planned: Duration, warmup: Duration, period: Duration) -> Vec<Duration> {
    let mut times: Vec<Duration> = (1..=4).map(|i| warmup * i / 5).collect();
    let mut next = warmup + period;
    while next < planned {
        times.push(next);
        next += period;
    }
    times
}

/// Waits until every backend of every upstream is healthy (polling `/status`: health has no
/// event to await from outside the proxy).
async fn all_healthy(admin_addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + HEALTHY_TIMEOUT;
    loop {
        let status = admin::status(admin_addr).await?;
        let mut count = 0;
        let mut all = true;
        for name in ["web", "api", "disc"] {
            for b in admin::backends(&status, name) {
                count += 1;
                all &= b["health"] == "healthy";
            }
        }
        if all && count > 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("backends not all healthy within {HEALTHY_TIMEOUT:?}: {status:#}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One progress line on stderr.
fn progress(start: Instant, tally: &Tally) {
    let failed: u64 = Class::ALL[1..].iter().map(|c| tally.total(*c)).sum();
    say(&format!(
        "lb-soak: {:>5.0} s: {} requests ok, {} failed",
        start.elapsed().as_secs_f64(),
        tally.total(Class::Ok),
        failed
    ));
}

/// The report, on stdout.
#[allow(clippy::print_stdout)] // the one place that writes the report
fn out(text: &str) {
    println!("{text}");
}

/// Progress and errors, on stderr.
#[allow(clippy::print_stderr)] // the one place that talks to the terminal
fn say(text: &str) {
    eprintln!("{text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> anyhow::Result<Args> {
        parse_args(list.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn reloads_four_times_in_the_warm_up_then_every_minute() {
        let secs = |v: Vec<Duration>| v.iter().map(Duration::as_secs).collect::<Vec<_>>();
        let ten = Duration::from_secs(600);
        let times = reload_times(ten, ten / 5, Duration::from_secs(60));
        assert_eq!(
            secs(times),
            [24, 48, 72, 96, 180, 240, 300, 360, 420, 480, 540]
        );
    }

    #[test]
    fn parses_the_command_line() {
        let a = args(&["--proxy", "/bin/lb", "--minutes", "0.5"]).unwrap();
        assert_eq!(a.proxy, PathBuf::from("/bin/lb"));
        assert!((a.minutes - 0.5).abs() < f64::EPSILON);
        assert!((args(&["--proxy", "p"]).unwrap().minutes - 10.0).abs() < f64::EPSILON);
        assert!(args(&["--minutes", "2"]).is_err(), "--proxy is required");
        assert!(args(&["--proxy", "p", "--minutes", "0"]).is_err());
        assert!(args(&["--proxy", "p", "--minutes", "x"]).is_err());
        assert!(args(&["--proxy", "p", "--what"]).is_err());
    }
}
