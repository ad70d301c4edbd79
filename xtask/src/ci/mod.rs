//! `cargo xtask ci`: the one gate. Runs, in order and stopping at the first
//! failure, from the workspace root:
//!
//! 0. the preflight ([`preflight`]): every program the tests and the steps run is
//!    installed, or it stops at once with one line saying what to install
//! 1. `cargo fmt --all -- --check`, then the [`mod@structure`] check (no module import
//!    cycle inside any crate, no source file over 500 lines, tests excepted, `main.rs` at
//!    most 80; it reads the sources, builds nothing, and also runs alone as
//!    `cargo xtask structure`)
//! 2. `cargo clippy --workspace --all-targets --locked -- -D warnings`, then the
//!    [`features`] step, each library crate alone: `cargo clippy -p CRATE` (the library,
//!    then `--all-targets`; `-D warnings`) with `--no-default-features`, `--all-features`
//!    and some single features; without features also `cargo doc -p CRATE --no-deps`
//!    (rustdoc `-D warnings`) and `cargo test -p CRATE --doc`
//! 3. tests: `cargo nextest run --workspace --no-fail-fast --locked` then
//!    `cargo test --workspace --doc --locked` (nextest does not run doctests)
//!    if cargo-nextest is installed, else
//!    `cargo test --workspace --no-fail-fast --locked`
//! 4. `RUSTDOCFLAGS='-D warnings' cargo doc --workspace --no-deps --locked`
//! 5. the quick start ([`quickstart`]): a fresh clone builds `lb-proxy` with no `protoc`
//!    and an empty target directory, the demo serves three backends, and `lb-balancer`
//!    builds. Last, since it is the longest (a cold build) and checks only the committed
//!    `HEAD`
//!
//! `--locked` is passed only when `Cargo.lock` exists (it is committed).

mod features;
mod preflight;
mod quickstart;
mod structure;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;

use crate::cmd::{echo, Cmd};

/// Runs every check; the first failure is returned as the error.
pub(crate) fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    let root = workspace_root()?;
    let locked: &[&str] = if root.join("Cargo.lock").is_file() {
        &["--locked"]
    } else {
        &[]
    };

    // 0. The programs the tests and steps need, before anything builds.
    preflight::check(&root)?;

    // 1. Formatting, and the shape of the sources.
    Cmd::new("cargo")
        .args(["fmt", "--all", "--", "--check"])
        .run(&root)?;
    structure::run(&root)?;

    // 2. Lints, on every target (tests, examples, benches too).
    Cmd::new("cargo")
        .args(["clippy", "--workspace", "--all-targets"])
        .args(locked)
        .args(["--", "-D", "warnings"])
        .run(&root)?;
    features::run(&root, locked)?;

    // 3. Tests.
    if Cmd::new("cargo")
        .args(["nextest", "--version"])
        .succeeds(&root)
    {
        Cmd::new("cargo")
            .args(["nextest", "run", "--workspace", "--no-fail-fast"])
            .args(locked)
            .run(&root)?;
        Cmd::new("cargo")
            .args(["test", "--workspace", "--doc"])
            .args(locked)
            .run(&root)?;
    } else {
        echo("xtask ci: cargo-nextest not found, falling back to cargo test");
        Cmd::new("cargo")
            .args(["test", "--workspace", "--no-fail-fast"])
            .args(locked)
            .run(&root)?;
    }

    // 4. Docs, with rustdoc warnings (broken intra-doc links, ...) as errors.
    Cmd::new("cargo")
        .env("RUSTDOCFLAGS", "-D warnings")
        .args(["doc", "--workspace", "--no-deps"])
        .args(locked)
        .run(&root)?;

    // 5. The quick start on a fresh clone.
    quickstart::run(&root, locked)?;

    echo(&format!(
        "xtask ci: all checks passed (preflight, fmt, structure, clippy, tests, doc, quick start) in {}s",
        started.elapsed().as_secs()
    ));
    Ok(())
}

/// `cargo xtask structure`: the structure step alone.
pub(crate) fn structure() -> anyhow::Result<()> {
    structure::run(&workspace_root()?)
}

/// The workspace root: the parent of this crate's directory.
fn workspace_root() -> anyhow::Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("xtask's manifest directory has no parent")
}
