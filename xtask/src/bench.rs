//! `cargo xtask bench`: the criterion benchmarks of the workspace. Not part of `ci` (CI
//! only compiles the benches, through `cargo clippy --all-targets`); run it by hand on a
//! quiet machine and record the figures in `docs/benchmarks.md`.
//!
//! Runs, from the workspace root:
//!
//! 1. `cargo bench -p lb-selection --bench select`: one selection
//!    (`selector.iter(key).next()`) per algorithm with 3, 100 and 10,000 backends, on one
//!    thread and with two threads contending, and each selector's build time for 10,000.
//! 2. `cargo bench -p lb-balancer --bench select`: `LoadBalancer::select(key, 256)`
//!    (usability check and in-flight guard included), the same matrix.
//!
//! then prints the medians as markdown tables (from criterion's
//! `target/criterion/**/new/estimates.json`). `cargo xtask bench --report` only prints the
//! tables of the last run; other arguments are passed to criterion as a filter
//! (`cargo xtask bench consistent` runs only the ids containing `consistent`).
//!
//! The side-by-side comparison with Pingora is `cargo xtask bench-peers`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::cmd::{echo, Cmd};

/// Algorithms in the order the benches list them; others follow alphabetically.
const ORDER: [&str; 11] = [
    "round_robin",
    "round_robin_weighted",
    "random",
    "p2c",
    "least_conn",
    "fnv",
    "consistent",
    "consistent_weighted",
    "nginx_hash",
    "ip_hash",
    "maglev",
];

/// Runs both benches and prints the tables; with `--report`, only prints the tables.
pub(crate) fn run(args: &[&str]) -> anyhow::Result<()> {
    let root = workspace_root()?;
    if args != ["--report"] {
        let locked: &[&str] = if root.join("Cargo.lock").is_file() {
            &["--locked"]
        } else {
            &[]
        };
        for package in ["lb-selection", "lb-balancer"] {
            Cmd::new("cargo")
                .args(["bench", "-p", package, "--bench", "select"])
                .args(locked)
                .args(["--"])
                .args(args)
                .run(&root)?;
        }
    }
    let dir = root.join("target/criterion");
    let medians = read_medians(&dir).with_context(|| format!("reading {}", dir.display()))?;
    echo(&tables(&medians));
    Ok(())
}

/// The workspace root: the parent of this crate's directory.
pub(crate) fn workspace_root() -> anyhow::Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("xtask's manifest directory has no parent")
}

/// Criterion medians in nanoseconds: group id to function id to value (`""` if none).
pub(crate) type Medians = BTreeMap<String, BTreeMap<String, BTreeMap<String, f64>>>;

/// Every `new/benchmark.json` under `dir` with the median of its `estimates.json`.
pub(crate) fn read_medians(dir: &Path) -> anyhow::Result<Medians> {
    let mut out = Medians::new();
    if dir.is_dir() {
        walk(dir, &mut out)?;
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Medians) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.ends_with("new/benchmark.json") {
            let meta = std::fs::read_to_string(&path)?;
            let estimates = std::fs::read_to_string(path.with_file_name("estimates.json"))?;
            let (Some(group), Some(function), Some(median)) = (
                json_string(&meta, "group_id"),
                json_string(&meta, "function_id"),
                median(&estimates),
            ) else {
                continue;
            };
            let value = json_string(&meta, "value_str").unwrap_or_default();
            out.entry(group)
                .or_default()
                .entry(function)
                .or_default()
                .insert(value, median);
        }
    }
    Ok(())
}

/// The string value of `"key":"..."` in criterion's flat JSON (ids need no unescaping).
fn json_string(json: &str, key: &str) -> Option<String> {
    let start = json.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let len = json[start..].find('"')?;
    Some(json[start..start + len].to_owned())
}

/// `median.point_estimate` of criterion's `estimates.json`.
fn median(json: &str) -> Option<f64> {
    let at = json.find("\"median\":")?;
    let rest = &json[at..];
    let start = rest.find("\"point_estimate\":")? + "\"point_estimate\":".len();
    let end = rest[start..].find([',', '}'])?;
    rest[start..start + end].trim().parse().ok()
}

/// Nanoseconds in a readable unit.
pub(crate) fn time(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.1} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

/// Algorithms of `functions` in [`ORDER`], unknown ones after.
fn ordered<V>(functions: &BTreeMap<String, V>) -> Vec<&str> {
    let mut names: Vec<&str> = ORDER
        .iter()
        .copied()
        .filter(|a| functions.contains_key(*a))
        .collect();
    names.extend(
        functions
            .keys()
            .map(String::as_str)
            .filter(|a| !ORDER.contains(a)),
    );
    names
}

/// Markdown: one table per pair of (one thread, two threads) groups, then build times.
pub(crate) fn tables(medians: &Medians) -> String {
    let mut s = String::new();
    let empty = BTreeMap::new();
    for (one, two, title) in [
        ("select", "select_2t", "Selector: `iter(key).next()`"),
        (
            "lb_select",
            "lb_select_2t",
            "`LoadBalancer::select(key, 256)`",
        ),
    ] {
        let (Some(single), pair) = (medians.get(one), medians.get(two).unwrap_or(&empty)) else {
            continue;
        };
        let _ = write!(
            s,
            "\n{title}, median per selection (2t: two threads contending, as one thread sees it)\n\n\
             | algorithm | 3 | 100 | 10,000 | 3, 2t | 100, 2t | 10,000, 2t |\n\
             |---|---:|---:|---:|---:|---:|---:|\n"
        );
        for algo in ordered(single) {
            let _ = write!(s, "| {algo} |");
            for group in [single, pair] {
                for n in ["3", "100", "10000"] {
                    let cell = group
                        .get(algo)
                        .and_then(|v| v.get(n))
                        .map_or("–".to_owned(), |ns| time(*ns));
                    let _ = write!(s, " {cell} |");
                }
            }
            s.push('\n');
        }
    }
    if let Some(build) = medians.get("build_10k") {
        s.push_str(
            "\nSelector build from 10,000 backends, median\n\n| algorithm | build |\n|---|---:|\n",
        );
        for algo in ordered(build) {
            if let Some(ns) = build.get(algo).and_then(|v| v.get("")) {
                let _ = writeln!(s, "| {algo} | {} |", time(*ns));
            }
        }
    }
    if s.is_empty() {
        s.push_str("xtask bench: no results in target/criterion yet");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_criterion_json() {
        let meta =
            r#"{"group_id":"select","function_id":"fnv","value_str":"100","throughput":null}"#;
        assert_eq!(json_string(meta, "group_id").as_deref(), Some("select"));
        assert_eq!(json_string(meta, "value_str").as_deref(), Some("100"));
        let build = r#"{"group_id":"build_10k","function_id":"fnv","value_str":null}"#;
        assert_eq!(json_string(build, "value_str"), None);
        let est = r#"{"mean":{"point_estimate":2.5,"standard_error":0.1},"median":{"confidence_interval":{"lower_bound":1.0},"point_estimate":1.25,"standard_error":0.2}}"#;
        assert_eq!(median(est), Some(1.25));
    }

    #[test]
    fn tables_order_algorithms_and_sizes() {
        let mut m = Medians::new();
        for (algo, n, ns) in [
            ("fnv", "3", 20.0),
            ("round_robin", "3", 9.5),
            ("round_robin", "10000", 1500.0),
        ] {
            m.entry("select".into())
                .or_default()
                .entry(algo.into())
                .or_default()
                .insert(n.into(), ns);
        }
        let t = tables(&m);
        assert!(
            t.find("| round_robin | 9.5 ns | – | 1.50 µs |").unwrap() < t.find("| fnv |").unwrap(),
            "{t}"
        );
    }
}
