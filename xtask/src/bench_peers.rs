//! `cargo xtask bench-peers`: our selection against `pingora-load-balancing`, same inputs,
//! same run. Not part of `ci`: it builds Pingora (and its C dependencies: `cmake` must be
//! installed), which the workspace never depends on.
//!
//! The comparison is the crate `bench/pingora-compare`, outside the workspace (its manifest
//! has its own `[workspace]`, so `cargo --workspace` never builds it). This task:
//!
//! 1. removes that crate's `target/criterion`, so every figure comes from this one run;
//! 2. runs `cargo bench --manifest-path bench/pingora-compare/Cargo.toml --bench compare`;
//! 3. runs its `report` binary, which prints markdown tables of the medians, ours against
//!    Pingora's, with the ratio (the target: Pingora's median at least 2x ours).
//!
//! `cargo xtask bench-peers --report` only prints the tables of the last run. Other
//! arguments are passed to criterion as a filter (then earlier results are kept).

use anyhow::Context as _;

use crate::bench::workspace_root;
use crate::cmd::{echo, Cmd};

/// Runs the comparison and prints the table; with `--report`, only prints the table.
pub(crate) fn run(args: &[&str]) -> anyhow::Result<()> {
    let root = workspace_root()?;
    let dir = root.join("bench/pingora-compare");
    let manifest = dir.join("Cargo.toml");
    let manifest = manifest.to_string_lossy();
    let report_only = args == ["--report"];
    if !report_only {
        if args.is_empty() {
            let results = dir.join("target/criterion");
            match std::fs::remove_dir_all(&results) {
                Ok(()) => echo(&format!("xtask bench-peers: removed {}", results.display())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).context(format!("removing {}", results.display())),
            }
        }
        Cmd::new("cargo")
            .args([
                "bench",
                "--manifest-path",
                &manifest,
                "--bench",
                "compare",
                "--",
            ])
            .args(args)
            .run(&root)?;
    }
    Cmd::new("cargo")
        .args(["run", "--quiet", "--release", "--manifest-path", &manifest])
        .args(["--bin", "report"])
        .run(&root)
}
