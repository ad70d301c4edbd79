//! Prints the comparison as markdown tables: our median, Pingora's, and the ratio.
//!
//! Reads every `new/benchmark.json` + `new/estimates.json` pair under criterion's output
//! directory (`target/criterion` of this crate, or the directory given as the only argument)
//! and pairs the `lb` and `pingora` sides of each `<level>/<algo>/<side>[/<n>]` benchmark.
//! The ratio is Pingora's median divided by ours: above 1.0 we are faster, and the issue's
//! target is 2.0.

// A report tool: standard output is its purpose.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use pingora_compare::{OURS, PINGORA};
use serde_json::Value;

/// Levels in the order they are printed, with their titles.
const LEVELS: [(&str, &str); 4] = [
    ("lb_select", "`LoadBalancer::select(key, 256)`, one thread"),
    (
        "lb_select_2t",
        "`LoadBalancer::select(key, 256)`, two threads contending",
    ),
    ("selector", "Selector only, `iter(key).next()`, one thread"),
    ("build_10k", "Selector build, 10,000 backends"),
];
/// Algorithms in the order they are printed.
const ALGOS: [&str; 5] = [
    "round_robin",
    "round_robin_weighted",
    "random",
    "fnv",
    "consistent",
];

/// `(level, algo, backends)` to `side` to median nanoseconds.
type Results = BTreeMap<(String, String, String), BTreeMap<String, f64>>;

fn main() -> ExitCode {
    let root = std::env::args_os().nth(1).map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/criterion"),
        PathBuf::from,
    );
    let mut results = Results::new();
    if let Err(e) = collect(&root, &mut results) {
        eprintln!("report: cannot read {}: {e}", root.display());
        return ExitCode::FAILURE;
    }
    if results.is_empty() {
        eprintln!(
            "report: no results under {}; run the bench first",
            root.display()
        );
        return ExitCode::FAILURE;
    }
    print!("{}", render(&results));
    ExitCode::SUCCESS
}

/// Walks `dir` for criterion's `new/benchmark.json` files and records their medians.
fn collect(dir: &Path, out: &mut Results) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.ends_with("new/benchmark.json") {
            if let Some((key, side, median)) = read_pair(&path) {
                out.entry(key).or_default().insert(side, median);
            }
        }
    }
    Ok(())
}

/// The benchmark's `(level, algo, backends)`, side and median (ns), if it is one of ours.
fn read_pair(benchmark_json: &Path) -> Option<((String, String, String), String, f64)> {
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(benchmark_json).ok()?).ok()?;
    let estimates = benchmark_json.with_file_name("estimates.json");
    let est: Value = serde_json::from_str(&std::fs::read_to_string(estimates).ok()?).ok()?;
    let median = est["median"]["point_estimate"].as_f64()?;
    let level = meta["group_id"].as_str()?.to_owned();
    let (algo, side) = meta["function_id"].as_str()?.rsplit_once('/')?;
    let backends = meta["value_str"].as_str().unwrap_or("10000").to_owned();
    Some(((level, algo.to_owned(), backends), side.to_owned(), median))
}

/// Nanoseconds in a readable unit.
fn time(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

fn render(results: &Results) -> String {
    let mut s = String::new();
    for (level, title) in LEVELS {
        let rows: Vec<_> = ALGOS
            .iter()
            .flat_map(|algo| {
                let mut sizes: Vec<_> = results
                    .iter()
                    .filter(|((l, a, _), _)| l == level && a == algo)
                    .collect();
                sizes.sort_by_key(|((_, _, n), _)| n.parse::<u64>().unwrap_or(0));
                sizes
            })
            .collect();
        if rows.is_empty() {
            continue;
        }
        s.push_str(&format!(
            "\n#### {title}\n\n| algorithm | backends | lb | pingora | pingora / lb |\n|---|---:|---:|---:|---:|\n"
        ));
        for ((_, algo, n), sides) in rows {
            let (ours, theirs) = (sides.get(OURS), sides.get(PINGORA));
            let ratio = match (ours, theirs) {
                (Some(o), Some(t)) if *o > 0.0 => {
                    let r = t / o;
                    let target = level != "build_10k";
                    let mark = if target && r < 2.0 { " **(< 2x)**" } else { "" };
                    // Build-time ratios can be tiny (our weighted round robin precomputes
                    // a whole cycle): keep two significant digits.
                    let digits = if r >= 0.1 { 2 } else { 4 };
                    format!("{r:.digits$}x{mark}")
                }
                _ => "–".to_owned(),
            };
            s.push_str(&format!(
                "| {algo} | {n} | {} | {} | {ratio} |\n",
                ours.map_or("–".to_owned(), |v| time(*v)),
                theirs.map_or("–".to_owned(), |v| time(*v)),
            ));
        }
    }
    s
}
