//! `cargo xtask bench-health`: what watching 10,000 backends with TCP health checks at a
//! 1 s interval costs (CPU, memory, punctuality). Not part of `ci` (CI only compiles the
//! example, through `cargo clippy --all-targets`); run it by hand and record the figures
//! in `docs/benchmarks.md`, "Health checks at scale".
//!
//! From the workspace root, it:
//!
//! 1. builds `cargo build --release -p lb-health --example health_scale`;
//! 2. starts `health_scale listen` (10,000 real listeners on `127.64.x.y:7171`) as its own
//!    process and waits for its `ready` line, so the backends' accept/close work is not
//!    counted in the checker's CPU (it is reported apart, as "backends' CPU");
//! 3. runs `health_scale check` (a `HealthMonitor` with `TcpHealthCheck`, 1 s interval,
//!    `FirstCheck::Spread`, 20 s, the first 2 s left out of CPU and mean lateness) three
//!    times, one after the other, and echoes each run's figures;
//! 4. stops the listener and prints a markdown table: every run, then the median.
//!
//! Arguments are passed to the checker (`cargo xtask bench-health --check tcp-rst`,
//! `--interval-ms 5000`, `--seconds 30`...; see the example's `--help`); `--count`, `--net`
//! and `--port` go to the listener too, and `--check http-reuse` starts it with `--http`.
//! `--runs N` changes the number of runs. Linux only: the example and this task read
//! `/proc`.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context as _};

use crate::cmd::{echo, Cmd};

/// Checker options that the listener must get too (same addresses).
const SHARED: [&str; 3] = ["--count", "--net", "--port"];

/// Builds the example, runs the listener and the checker, prints the table.
pub(crate) fn run(args: &[&str]) -> anyhow::Result<()> {
    echo(&measure(args)?);
    Ok(())
}

/// Builds the example, runs the listener and the checker; the markdown table (also used by
/// `cargo xtask bench all`).
pub(crate) fn measure(args: &[&str]) -> anyhow::Result<String> {
    let root = workspace_root()?;
    let (runs, check_args) = split_runs(args)?;
    let mut listen_args = vec!["listen".to_owned()];
    for pair in check_args.windows(2) {
        if SHARED.contains(&pair[0].as_str()) {
            listen_args.extend(pair.iter().cloned());
        }
    }
    if check_args
        .windows(2)
        .any(|p| p[0] == "--check" && p[1] == "http-reuse")
    {
        listen_args.push("--http".to_owned());
    }

    let locked: &[&str] = if root.join("Cargo.lock").is_file() {
        &["--locked"]
    } else {
        &[]
    };
    Cmd::new("cargo")
        .args(["build", "--release", "-p", "lb-health", "--example"])
        .args(["health_scale"])
        .args(locked)
        .run(&root)?;
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let binary = target.join("release/examples/health_scale");

    let machine = machine();
    echo(&format!("xtask bench-health: {machine}"));
    let listener = Listener::start(&binary, &listen_args, &root)?;
    let mut results = Vec::new();
    for run in 1..=runs {
        let backends_cpu_before = listener.cpu_seconds()?;
        let mut command = Command::new(&binary);
        command.arg("check").args(&check_args).current_dir(&root);
        let shown: Vec<String> = std::iter::once(binary.display().to_string())
            .chain(std::iter::once("check".to_owned()))
            .chain(check_args.iter().cloned())
            .collect();
        echo(&format!("$ {}  # run {run} of {runs}", shown.join(" ")));
        let output = command
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("starting {}", binary.display()))?;
        let backends_cpu = listener.cpu_seconds()? - backends_cpu_before;
        let text = String::from_utf8_lossy(&output.stdout);
        echo(text.trim_end());
        if !output.status.success() {
            bail!("the checker failed ({})", output.status);
        }
        let mut figures = Figures::parse(&text)?;
        figures.backends_cpu_pct = 100.0 * backends_cpu / figures.run_s;
        results.push(figures);
    }
    drop(listener);
    Ok(table(&results, &machine))
}

/// Takes `--runs N` (default 3) out of the arguments; the rest is for the checker.
fn split_runs(args: &[&str]) -> anyhow::Result<(usize, Vec<String>)> {
    let mut runs = 3;
    let mut rest = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if *arg == "--runs" {
            let value = iter.next().context("--runs needs a value")?;
            runs = value
                .parse()
                .with_context(|| format!("--runs {value}: not a number"))?;
            if runs == 0 {
                bail!("--runs must be at least 1");
            }
        } else {
            rest.push((*arg).to_owned());
        }
    }
    Ok((runs, rest))
}

/// The workspace root: the parent of this crate's directory.
fn workspace_root() -> anyhow::Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("xtask's manifest directory has no parent")
}

/// The listener process; killed (and reaped) when dropped, on every path out of `run`.
struct Listener {
    child: Child,
}

impl Listener {
    /// Starts `binary listen ...` and waits for its `ready` line.
    fn start(binary: &Path, args: &[String], dir: &Path) -> anyhow::Result<Self> {
        echo(&format!("$ {} {} &", binary.display(), args.join(" ")));
        let mut child = Command::new(binary)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().context("no stdout from the listener")?;
        // Own it from here, so that an early return below still kills it.
        let listener = Self { child };
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .context("reading the listener's first line")?;
        if !line.starts_with("ready") {
            bail!("the listener did not start (see its error above)");
        }
        echo(line.trim_end());
        Ok(listener)
    }

    /// CPU time (user + system) the listener has used so far, in seconds.
    fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let path = format!("/proc/{}/stat", self.child.id());
        let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        proc_stat_cpu_seconds(&stat).with_context(|| format!("parsing {path}"))
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // SIGKILL: the listener holds no state worth a graceful exit.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `utime + stime` of a `/proc/<pid>/stat` line, in seconds (fields 14 and 15, counted
/// after the parenthesised command name; clock ticks are `USER_HZ`, 100 on Linux).
fn proc_stat_cpu_seconds(stat: &str) -> Option<f64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some((user + system) as f64 / 100.0)
}

/// What one checker run printed (its `key=value` lines), plus the listener's CPU.
#[derive(Clone, Debug, Default, PartialEq)]
struct Figures {
    backends: u64,
    interval_ms: u64,
    check: String,
    run_s: f64,
    checks_per_s: f64,
    cpu_pct: f64,
    cpu_user_pct: f64,
    cpu_us_per_check: f64,
    peak_rss_mib: f64,
    mean_lateness_ms: f64,
    max_lateness_ms: f64,
    failures: u64,
    backends_cpu_pct: f64,
}

impl Figures {
    fn parse(text: &str) -> anyhow::Result<Self> {
        let get = |key: &str| -> anyhow::Result<&str> {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .with_context(|| format!("the checker printed no `{key}=`"))
        };
        let num = |key: &str| -> anyhow::Result<f64> {
            let value = get(key)?;
            value
                .parse()
                .with_context(|| format!("`{key}={value}`: not a number"))
        };
        let int = |key: &str| -> anyhow::Result<u64> {
            let value = get(key)?;
            value
                .parse()
                .with_context(|| format!("`{key}={value}`: not an integer"))
        };
        Ok(Self {
            backends: int("backends")?,
            interval_ms: int("interval_ms")?,
            check: get("check")?.to_owned(),
            run_s: num("run_s")?,
            checks_per_s: num("checks_per_s")?,
            cpu_pct: num("cpu_pct_one_core")?,
            cpu_user_pct: num("cpu_user_pct_one_core")?,
            cpu_us_per_check: num("cpu_us_per_check")?,
            peak_rss_mib: num("peak_rss_mib")?,
            mean_lateness_ms: num("mean_lateness_ms")?,
            max_lateness_ms: num("max_lateness_ms")?,
            failures: int("failures")?,
            backends_cpu_pct: 0.0,
        })
    }

    fn row(&self, label: &str) -> String {
        format!(
            "| {label} | {} | {} | {} ms | {:.0} | {:.1} % | {:.1} % | {:.1} | {:.1} MiB | {:.2} ms | {:.1} ms | {} | {:.1} % |",
            self.check,
            self.backends,
            self.interval_ms,
            self.checks_per_s,
            self.cpu_pct,
            self.cpu_user_pct,
            self.cpu_us_per_check,
            self.peak_rss_mib,
            self.mean_lateness_ms,
            self.max_lateness_ms,
            self.failures,
            self.backends_cpu_pct,
        )
    }
}

/// The median of each figure over the runs (the mean of the middle two for an even count).
fn median(runs: &[Figures]) -> Option<Figures> {
    let first = runs.first()?;
    let mid = |f: fn(&Figures) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    Some(Figures {
        backends: first.backends,
        interval_ms: first.interval_ms,
        check: first.check.clone(),
        run_s: mid(|f| f.run_s),
        checks_per_s: mid(|f| f.checks_per_s),
        cpu_pct: mid(|f| f.cpu_pct),
        cpu_user_pct: mid(|f| f.cpu_user_pct),
        cpu_us_per_check: mid(|f| f.cpu_us_per_check),
        peak_rss_mib: mid(|f| f.peak_rss_mib),
        mean_lateness_ms: mid(|f| f.mean_lateness_ms),
        max_lateness_ms: mid(|f| f.max_lateness_ms),
        failures: mid(|f| f.failures as f64).round() as u64,
        backends_cpu_pct: mid(|f| f.backends_cpu_pct),
    })
}

/// Markdown: one row per run, then the medians.
fn table(runs: &[Figures], machine: &str) -> String {
    let mut rows = vec![
        String::new(),
        format!("Machine: {machine}"),
        String::new(),
        "| run | check | backends | interval | checks/s | checker CPU (% of one core) | of which user | CPU µs/check | peak RSS | mean lateness | max lateness | failures | backends' CPU |".to_owned(),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|".to_owned(),
    ];
    for (i, run) in runs.iter().enumerate() {
        rows.push(run.row(&(i + 1).to_string()));
    }
    if let Some(m) = median(runs) {
        rows.push(m.row("**median**"));
    }
    rows.join("\n")
}

/// CPU model, core count, kernel and load average, from `/proc` (best effort).
pub(crate) fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "{cores} × {model}, Linux {}, load average {} at start",
        kernel.trim(),
        load.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "backends=10000\ninterval_ms=1000\nthreads=2\ncheck=tcp\n\
        run_s=20.00\nchecks_per_s=9950\nfailures=0\ncpu_pct_one_core=40.2\n\
        cpu_user_pct_one_core=5.1\ncpu_us_per_check=40.4\npeak_rss_mib=14.3\n\
        mean_lateness_ms=1.839\nmax_lateness_ms=18.493\n";

    #[test]
    fn parses_the_checker_output() {
        let f = Figures::parse(OUTPUT).unwrap();
        assert_eq!(f.backends, 10_000);
        assert_eq!(f.check, "tcp");
        assert_eq!(f.cpu_pct, 40.2);
        assert_eq!(f.max_lateness_ms, 18.493);
        assert!(Figures::parse("backends=1\n").is_err());
    }

    #[test]
    fn median_per_figure() {
        let f = Figures::parse(OUTPUT).unwrap();
        let runs: Vec<Figures> = [30.0, 50.0, 40.0]
            .into_iter()
            .map(|cpu_pct| Figures {
                cpu_pct,
                ..f.clone()
            })
            .collect();
        assert_eq!(median(&runs).unwrap().cpu_pct, 40.0);
        assert_eq!(median(&runs[..2]).unwrap().cpu_pct, 40.0);
    }

    #[test]
    fn reads_proc_stat_cpu() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(proc_stat_cpu_seconds(stat), Some(3.0));
    }

    #[test]
    fn runs_are_taken_out() {
        let (runs, rest) = split_runs(&["--runs", "5", "--check", "tcp-rst"]).unwrap();
        assert_eq!(runs, 5);
        assert_eq!(rest, ["--check", "tcp-rst"]);
    }
}
