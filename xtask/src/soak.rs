//! `cargo xtask soak [--minutes N]`: the soak run of issue 9, not part of `ci` (it takes
//! ten minutes by default and wants a quiet machine; `nice` it on a shared one).
//!
//! Builds `lb-proxy` and the soak driver (`soak/`, package `lb-soak`) in release, then runs
//! `target/release/lb-soak --proxy target/release/lb-proxy --minutes N`, which starts the
//! backends and the proxy, runs the mixed load with discovery churn and a reload every
//! minute, samples the proxy's RSS and descriptors, prints the tables and the verdicts, and
//! exits non-zero when a criterion failed. What it checks and why:
//! `docs/reliability.md`, section "Soak".

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::cmd::Cmd;

/// Builds and runs the soak; `args` is empty or `--minutes N`.
pub(crate) fn run(args: &[&str]) -> anyhow::Result<()> {
    let minutes = match args {
        [] => "10".to_owned(),
        ["--minutes", n] => {
            let value: f64 = n
                .parse()
                .with_context(|| format!("--minutes {n}: not a number"))?;
            if !(0.1..=1440.0).contains(&value) {
                bail!("--minutes {n}: from 0.1 to 1440");
            }
            (*n).to_owned()
        }
        _ => bail!("usage: cargo xtask soak [--minutes N]"),
    };
    let root = workspace_root()?;
    let locked: &[&str] = if root.join("Cargo.lock").is_file() {
        &["--locked"]
    } else {
        &[]
    };
    Cmd::new("cargo")
        .args(["build", "--release", "-p", "lb-proxy", "-p", "lb-soak"])
        .args(locked)
        .run(&root)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("release");
    let proxy = target.join("lb-proxy");
    let driver = target.join("lb-soak");
    Cmd::new(&driver.to_string_lossy())
        .args(["--proxy", &proxy.to_string_lossy(), "--minutes", &minutes])
        .run(&root)
}

/// The workspace root: the parent of this crate's directory.
fn workspace_root() -> anyhow::Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("xtask's manifest directory has no parent")
}
