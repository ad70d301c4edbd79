//! `cargo xtask fuzz`: the libFuzzer targets of `fuzz/` (a cargo-fuzz crate outside the
//! workspace). Not part of `ci`; needs a nightly toolchain and `cargo install cargo-fuzz`.
//!
//! ```text
//! cargo xtask fuzz [TARGET] [--time SECS]   run one target, or all in turn (600 s each)
//! cargo xtask fuzz --check [TARGET]         build, then run each seed corpus once
//! cargo xtask fuzz --merge [TARGET]         add to the seeds in the repository a few inputs
//!                                           of the last runs that cover new edges
//! ```
//!
//! Every run is `cargo +nightly fuzz run --sanitizer none --debug-assertions TARGET WORK
//! SEEDS -- -max_total_time=SECS ...`: the code is safe Rust (the workspace forbids
//! `unsafe` outside the socket hand-over), so AddressSanitizer adds cost and little else,
//! while debug assertions turn integer overflow into a crash. libFuzzer writes new inputs
//! to the work corpus `fuzz/target/corpus/TARGET` and only reads the seeds in
//! `fuzz/corpus/TARGET`; `fuzz/dict/TARGET.dict` is passed when it exists. Where
//! `unshare --net --map-root-user` works, the runs have no network: the configuration
//! targets resolve any host name they invent, and should not query the real resolver
//! thousands of times a second.
//!
//! Each run's output goes to `fuzz/target/logs/TARGET.log`; the task then prints a table of
//! executions, corpus size, coverage and crashes (the figures of `docs/reliability.md`) and
//! fails if any target crashed, naming the input to reproduce it with.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context as _};

use crate::cmd::{echo, Cmd};

/// Seconds per target when `--time` is not given.
const DEFAULT_SECS: u64 = 600;

/// Flags of every build and run: no sanitizer, overflow checks and debug assertions on.
const BUILD_FLAGS: [&str; 3] = ["--sanitizer", "none", "--debug-assertions"];

/// What to do.
#[derive(Debug, PartialEq, Eq)]
enum Mode {
    /// Fuzz for this many seconds per target.
    Run(u64),
    /// Build, and run the seeds once.
    Check,
    /// Merge the work corpus into the seeds.
    Merge,
}

/// The figures of one run, read from libFuzzer's output.
#[derive(Debug, Default)]
struct Figures {
    target: String,
    seconds: u64,
    executions: Option<u64>,
    per_second: Option<u64>,
    corpus: Option<u64>,
    coverage: Option<u64>,
    features: Option<u64>,
    peak_rss_mb: Option<u64>,
    /// Crash, timeout, leak or out-of-memory inputs written by this run.
    crashes: Vec<String>,
    /// Inputs that took over 10 s (reported, not failures).
    slow: Vec<String>,
}

/// Parses the arguments and runs.
pub(crate) fn run(args: &[&str]) -> anyhow::Result<()> {
    let (mode, only) = parse_args(args)?;
    let root = workspace_root()?;
    let all = targets(&root)?;
    let targets: Vec<String> = match only {
        Some(t) if all.iter().any(|a| a == t) => vec![t.to_owned()],
        Some(t) => bail!("unknown fuzz target `{t}` (targets: {})", all.join(", ")),
        None => all,
    };
    if !Cmd::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .succeeds(&root)
    {
        bail!(
            "`cargo +nightly fuzz` is not available: run `rustup toolchain install nightly` \
             and `cargo install cargo-fuzz`"
        );
    }
    // One build of every target first (it needs the network to fetch crates the first
    // time); the runs below then find it up to date.
    Cmd::new("cargo")
        .args(["+nightly", "fuzz", "build"])
        .args(BUILD_FLAGS)
        .run(&root)?;
    let isolate = Cmd::new("unshare")
        .args(["--net", "--map-root-user", "true"])
        .succeeds(&root);
    match mode {
        Mode::Check => {
            for t in &targets {
                fuzz(&root, t, &mode, isolate)?;
            }
            echo(&format!(
                "xtask fuzz: {} targets built, every seed runs clean",
                targets.len()
            ));
            Ok(())
        }
        Mode::Merge => {
            for t in &targets {
                let seeds = root.join("fuzz/corpus").join(t);
                let before = list(&seeds).len();
                fuzz(&root, t, &mode, isolate)?;
                echo(&format!(
                    "{t}: {} seeds added to {} ({} now)",
                    list(&seeds).len().saturating_sub(before),
                    seeds.display(),
                    list(&seeds).len()
                ));
            }
            Ok(())
        }
        Mode::Run(secs) => {
            if !isolate {
                echo("xtask fuzz: `unshare --net` is not available; running with the network");
            }
            let mut all = Vec::new();
            for t in &targets {
                all.push(run_one(&root, t, secs, isolate)?);
            }
            echo(&table(&all));
            for f in &all {
                for input in &f.slow {
                    echo(&format!("{}: slow input (over 10 s): {input}", f.target));
                }
            }
            let crashed: Vec<&Figures> = all.iter().filter(|f| !f.crashes.is_empty()).collect();
            if crashed.is_empty() {
                return Ok(());
            }
            for f in &crashed {
                for input in &f.crashes {
                    echo(&format!(
                        "reproduce: cargo +nightly fuzz run {} {} {input}",
                        BUILD_FLAGS.join(" "),
                        f.target
                    ));
                }
            }
            bail!("{} target(s) crashed", crashed.len())
        }
    }
}

/// `[TARGET] [--time SECS] [--check | --merge]`.
fn parse_args<'a>(args: &[&'a str]) -> anyhow::Result<(Mode, Option<&'a str>)> {
    let mut secs = None;
    let mut mode = None;
    let mut target = None;
    let mut rest = args.iter();
    while let Some(&arg) = rest.next() {
        match arg {
            "--time" => {
                let value = rest.next().context("--time needs a number of seconds")?;
                let n: u64 = value
                    .parse()
                    .with_context(|| format!("--time {value}: not a number of seconds"))?;
                if n == 0 {
                    bail!("--time must be at least 1 second");
                }
                secs = Some(n);
            }
            "--check" | "--merge" if mode.is_none() => {
                mode = Some(if arg == "--check" {
                    Mode::Check
                } else {
                    Mode::Merge
                });
            }
            "--check" | "--merge" => bail!("give one of --check and --merge"),
            flag if flag.starts_with('-') => bail!("unknown option `{flag}`"),
            name if target.is_none() => target = Some(name),
            name => bail!("one target at most (got `{name}` too)"),
        }
    }
    match (mode, secs) {
        (Some(_), Some(_)) => bail!("--time applies to fuzzing runs, not --check or --merge"),
        (Some(mode), None) => Ok((mode, target)),
        (None, secs) => Ok((Mode::Run(secs.unwrap_or(DEFAULT_SECS)), target)),
    }
}

/// Fuzzes `target` for `secs` seconds and reads the figures from its log.
fn run_one(root: &Path, target: &str, secs: u64, isolate: bool) -> anyhow::Result<Figures> {
    let started = Instant::now();
    let artifacts = root.join("fuzz/artifacts").join(target);
    let before = list(&artifacts);
    // libFuzzer writes inputs slower than `-report_slow_units` (10 s) as slow-unit-*.
    let log = fuzz(root, target, &Mode::Run(secs), isolate)?;
    let text =
        std::fs::read_to_string(&log).with_context(|| format!("reading {}", log.display()))?;
    let mut figures = figures(target, &text);
    figures.seconds = started.elapsed().as_secs();
    for new in list(&artifacts).into_iter().filter(|p| !before.contains(p)) {
        let name = new.file_name().map(|n| n.to_string_lossy().into_owned());
        let shown = new.display().to_string();
        if name.is_some_and(|n| n.starts_with("slow-unit-")) {
            figures.slow.push(shown);
        } else {
            figures.crashes.push(shown);
        }
    }
    Ok(figures)
}

/// Runs `cargo fuzz run` on `target` for `mode`: a check prints to the terminal and fails
/// if the target fails; a run or a merge writes to the log file (returned) and fails only if
/// it cannot start (a crash while fuzzing is reported from the artifacts instead).
fn fuzz(root: &Path, target: &str, mode: &Mode, isolate: bool) -> anyhow::Result<PathBuf> {
    let work = work_corpus(root, target);
    let seeds = root.join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    std::fs::create_dir_all(&seeds).with_context(|| format!("creating {}", seeds.display()))?;
    let mut args: Vec<String> = Vec::new();
    if isolate {
        args.extend(["unshare", "--net", "--map-root-user"].map(String::from));
    }
    args.extend(["cargo", "+nightly", "fuzz", "run"].map(String::from));
    args.extend(BUILD_FLAGS.map(String::from));
    args.push(target.to_owned());
    // libFuzzer adds new inputs to the first directory. A merge adds to the seeds a small
    // set of work inputs that cover the edges the seeds miss (set cover, edges only: hit
    // counts and value profiles would keep thousands of near-duplicates).
    let (corpora, options) = match mode {
        Mode::Check => (vec![seeds], vec!["-runs=0".to_owned()]),
        Mode::Merge => (
            vec![seeds, work],
            [
                "-set_cover_merge=1",
                "-use_counters=0",
                "-use_value_profile=0",
            ]
            .map(String::from)
            .to_vec(),
        ),
        Mode::Run(secs) => (vec![work, seeds], vec![format!("-max_total_time={secs}")]),
    };
    args.extend(corpora.iter().map(|p| p.display().to_string()));
    args.push("--".to_owned());
    args.extend(options);
    args.extend(["-print_final_stats=1", "-rss_limit_mb=2048", "-timeout=30"].map(String::from));
    let dict = root.join("fuzz/dict").join(format!("{target}.dict"));
    if dict.is_file() {
        args.push(format!("-dict={}", dict.display()));
    }

    let shown = Cmd::new(&args[0]).args(&args[1..]);
    let suffix = if *mode == Mode::Merge { ".merge" } else { "" };
    let log = root
        .join("fuzz/target/logs")
        .join(format!("{target}{suffix}.log"));
    let mut command = Command::new(&args[0]);
    command
        .args(&args[1..])
        .current_dir(root)
        // The build above fetched everything; inside a network namespace cargo must not try.
        .env("CARGO_NET_OFFLINE", "true");
    if *mode == Mode::Check {
        echo(&format!("$ {shown}"));
        let status = command
            .status()
            .with_context(|| format!("failed to start `{shown}`"))?;
        if !status.success() {
            bail!("`{shown}` failed ({status})");
        }
        return Ok(log);
    }
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    echo(&format!("$ {shown}  (output: {})", log.display()));
    command
        .stdin(Stdio::null())
        .stdout(out.try_clone().context("duplicating the log file")?)
        .stderr(out)
        .status()
        .with_context(|| format!("failed to start `{shown}`"))?;
    Ok(log)
}

/// The figures in a libFuzzer log: the last status line (coverage, features, inputs in
/// the corpus, seeds included) and the final stats.
fn figures(target: &str, log: &str) -> Figures {
    let mut f = Figures {
        target: target.to_owned(),
        ..Figures::default()
    };
    let stat = |name: &str| {
        log.lines()
            .filter_map(|l| l.strip_prefix(name))
            .filter_map(|v| v.trim().parse().ok())
            .next_back()
    };
    f.executions = stat("stat::number_of_executed_units:");
    f.per_second = stat("stat::average_exec_per_sec:");
    f.peak_rss_mb = stat("stat::peak_rss_mb:");
    // `#1234567	DONE   cov: 2100 ft: 8000 corp: 900/60Kb ...` (or the last pulse).
    if let Some(status) = log.lines().rfind(|l| l.contains(" cov: ")) {
        let after = |word: &str| {
            status
                .split_whitespace()
                .skip_while(|w| *w != word)
                .nth(1)
                .and_then(|v| v.split('/').next())
                .and_then(|v| v.parse().ok())
        };
        f.coverage = after("cov:");
        f.features = after("ft:");
        f.corpus = after("corp:");
    }
    f
}

/// The figures as a markdown table.
fn table(all: &[Figures]) -> String {
    let show = |v: Option<u64>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
    let mut out = String::from(
        "| target | seconds | executions | exec/s | corpus (files) | coverage (edges) | features | peak RSS (MB) | crashes |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for f in all {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            f.target,
            f.seconds,
            show(f.executions),
            show(f.per_second),
            show(f.corpus),
            show(f.coverage),
            show(f.features),
            show(f.peak_rss_mb),
            f.crashes.len()
        ));
    }
    out
}

/// The targets: the `[[bin]]` names of `fuzz/Cargo.toml`, in file order.
fn targets(root: &Path) -> anyhow::Result<Vec<String>> {
    let manifest = root.join("fuzz/Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let mut in_bin = false;
    let mut names = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if let Some(value) = line.strip_prefix("name =").filter(|_| in_bin) {
            names.push(value.trim().trim_matches('"').to_owned());
        }
    }
    if names.is_empty() {
        bail!("no [[bin]] targets in {}", manifest.display());
    }
    Ok(names)
}

/// Where libFuzzer keeps the inputs it finds for `target` (not committed).
fn work_corpus(root: &Path, target: &str) -> PathBuf {
    root.join("fuzz/target/corpus").join(target)
}

/// The files in `dir` (none if it does not exist).
fn list(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

/// The workspace root: the parent of this crate's directory.
fn workspace_root() -> anyhow::Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("xtask's manifest directory has no parent")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        assert_eq!(parse_args(&[]).unwrap(), (Mode::Run(600), None));
        assert_eq!(
            parse_args(&["router", "--time", "30"]).unwrap(),
            (Mode::Run(30), Some("router"))
        );
        assert_eq!(parse_args(&["--check"]).unwrap(), (Mode::Check, None));
        assert_eq!(
            parse_args(&["--merge", "hash_key"]).unwrap(),
            (Mode::Merge, Some("hash_key"))
        );
        for bad in [
            &["--time"][..],
            &["--time", "0"],
            &["--time", "x"],
            &["--check", "--time", "5"],
            &["--check", "--merge"],
            &["a", "b"],
            &["--fast"],
        ] {
            assert!(parse_args(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn figures_from_a_log() {
        let log = "#2\tINITED cov: 10 ft: 12 corp: 1/1b exec/s: 0 rss: 30Mb\n\
                   #500\tDONE   cov: 1234 ft: 5678 corp: 90/4321b lim: 4 exec/s: 250 rss: 60Mb\n\
                   Done 500 runs in 2 second(s)\n\
                   stat::number_of_executed_units: 500\n\
                   stat::average_exec_per_sec:     250\n\
                   stat::new_units_added:          89\n\
                   stat::peak_rss_mb:              60\n";
        let f = figures("t", log);
        assert_eq!(f.executions, Some(500));
        assert_eq!(f.per_second, Some(250));
        assert_eq!(f.coverage, Some(1234));
        assert_eq!(f.features, Some(5678));
        assert_eq!(f.peak_rss_mb, Some(60));
        assert_eq!(f.corpus, Some(90));
        assert!(table(&[f]).contains("| t | 0 | 500 | 250 | 90 | 1234 | 5678 | 60 | 0 |"));
    }
}
