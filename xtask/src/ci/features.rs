//! The feature step of `cargo xtask ci`: each library crate on its own, with no features
//! and with all of them, linted (`clippy -D warnings`) as a library and with all its
//! targets; then, without features, its docs built (`rustdoc -D warnings`) and its
//! doctests run (a crate-level example must not need a feature).
//!
//! Why each crate alone: the workspace build turns every feature on (lb-proxy asks for all
//! of them, and cargo unifies features across the packages of one build), so code that
//! uses a gated module or an optional dependency without its feature compiles there and
//! breaks only for a library user with `default-features = false`. A crate built alone
//! gets exactly the features it asks for.
//!
//! Why the library on its own as well as `--all-targets`: dev-dependencies (test servers,
//! `tokio/test-util`) add crates and features to the build of every target, so only the
//! library build proves the library does not lean on them.
//!
//! The single features whose code meets other gated code (`lb-health`'s `http` without
//! `tls`, each `lb-discovery` source alone) are linted too. Results are cached like any
//! clippy run (doctests are not): on a warm tree the step costs about ten seconds.

use std::path::Path;

use crate::cmd::Cmd;

/// The library crates, each with the single features to lint besides none and all.
const CRATES: [(&str, &[&str]); 5] = [
    ("lb-core", &[]),
    ("lb-selection", &[]),
    ("lb-health", &["http", "tls"]),
    ("lb-discovery", &["dns", "etcd", "file"]),
    ("lb-balancer", &[]),
];

/// Lints every crate of [`CRATES`] alone with each feature set, as a library and with all
/// targets, then builds its docs and runs its doctests without features; the first failure
/// is the error.
pub(crate) fn run(root: &Path, locked: &[&str]) -> anyhow::Result<()> {
    for (krate, singles) in CRATES {
        let mut sets = vec![
            vec!["--no-default-features".to_owned()],
            vec!["--all-features".to_owned()],
        ];
        sets.extend(singles.iter().map(|feature| {
            vec![
                "--no-default-features".to_owned(),
                "--features".to_owned(),
                (*feature).to_owned(),
            ]
        }));
        for features in &sets {
            for targets in [&[][..], &["--all-targets"][..]] {
                Cmd::new("cargo")
                    .args(["clippy", "-p", krate])
                    .args(features)
                    .args(targets)
                    .args(locked)
                    .args(["--", "-D", "warnings"])
                    .run(root)?;
            }
        }
        Cmd::new("cargo")
            .env("RUSTDOCFLAGS", "-D warnings")
            .args(["doc", "-p", krate, "--no-deps", "--no-default-features"])
            .args(locked)
            .run(root)?;
        Cmd::new("cargo")
            .args(["test", "-p", krate, "--doc", "--no-default-features"])
            .args(locked)
            .run(root)?;
    }
    Ok(())
}
