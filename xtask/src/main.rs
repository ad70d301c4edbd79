//! `cargo xtask`: project automation, written in Rust so it runs wherever
//! `cargo` does.
//!
//! Invoked through the alias in `.cargo/config.toml`
//! (`xtask = "run --quiet --package xtask --"`). This file only parses the
//! subcommand and dispatches; each task lives in its own module.
//!
//! `cargo xtask ci` is the one gate: the same command runs locally and in CI
//! (via `.ci/run`).

mod bench;
mod bench_all;
mod bench_health;
mod bench_peers;
mod ci;
mod cmd;
mod fuzz;
mod soak;

use std::process::ExitCode;

/// Usage text, shown by `help` and on a bad invocation.
const USAGE: &str = "\
Usage: cargo xtask <TASK>

Tasks:
  ci                    Run the CI gate: preflight (the programs the tests need), fmt, clippy,
                        tests, doc, the quick start on a fresh clone (stops at the first failure)
  structure             Check the source shape alone (the step ci runs after fmt): no module
                        import cycle inside a crate, no file over 500 lines, main.rs under 80
  bench [FILTER]        Run the criterion benches of lb-selection and lb-balancer and
                        print the median tables (not part of ci); `bench --report`
                        reprints the tables of the last run
  bench all             Run every benchmark (criterion, health scheduler, the side-by-side
                        proxy harness bench/peers.sh against the release lb-proxy) and
                        write the tables into docs/benchmarks.md; BENCH_PARTS and
                        SCENARIOS select parts (see xtask/src/bench_all.rs)
  bench-peers [FILTER]  Compare selection with pingora-load-balancing in one run and print
                        the ratio table (not part of ci; builds bench/pingora-compare,
                        needs cmake); `bench-peers --report` reprints the last table
  bench-health [ARGS]   Measure TCP health checks of 10,000 loopback backends at 1s (CPU,
                        peak RSS, lateness; 3 runs and the median; not part of ci)
  fuzz [TARGET] [ARGS]  Run the libFuzzer targets of fuzz/, 600 s each or `--time SECS`
                        (not part of ci; needs nightly and cargo-fuzz); `fuzz --check`
                        builds them and runs the seeds once, `fuzz --merge` adds the
                        inputs that reached new coverage to the seeds
  soak [--minutes N]    Soak lb-proxy (release) under mixed load with discovery churn and a
                        reload a minute; RSS, fd and error verdicts (default 10 min; not part of ci)
  help                  Show this message
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    // One arm per task. Future tasks get an arm and a
    // module here, and a line in `USAGE`.
    let result = match args.as_slice() {
        ["ci"] => ci::run(),
        ["structure"] => ci::structure(),
        ["bench", "all", args @ ..] => bench_all::run(args),
        ["bench", args @ ..] => bench::run(args),
        ["bench-peers", args @ ..] => bench_peers::run(args),
        ["bench-health", args @ ..] => bench_health::run(args),
        ["fuzz", args @ ..] => fuzz::run(args),
        ["soak", args @ ..] => soak::run(args),
        ["help" | "--help" | "-h"] => {
            cmd::echo(USAGE.trim_end());
            Ok(())
        }
        [] => return usage_error("no task given"),
        [task, ..] if matches!(*task, "ci" | "help" | "--help" | "-h") => {
            return usage_error(&format!("`{task}` takes no arguments"));
        }
        [task, ..] => return usage_error(&format!("unknown task `{task}`")),
    };

    // Report failures ourselves rather than returning `Err` from `main`: with
    // `RUST_BACKTRACE=1` (common in CI) that would bury the one useful line
    // under an xtask backtrace.
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            cmd::echo(&format!("xtask: error: {err:#}"));
            ExitCode::FAILURE
        }
    }
}

/// Reports a bad invocation with the usage text; exit status 2, like other
/// command-line tools on a usage error.
fn usage_error(problem: &str) -> ExitCode {
    cmd::echo(&format!("xtask: {problem}\n\n{}", USAGE.trim_end()));
    ExitCode::from(2)
}
