//! Small helpers shared by the tasks: talk to the person at the terminal and
//! run external commands, echoing each one before it runs.

use std::ffi::OsStr;
use std::fmt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};

/// Writes one message to stderr.
///
/// xtask is a tool a person watches, so it does talk to the terminal; this is
/// the one place that does, which keeps the workspace's `print_stderr` lint
/// meaningful everywhere else. stderr, not stdout, so the echo lines interleave
/// correctly with the output of the commands being run.
#[allow(clippy::print_stderr)]
pub(crate) fn echo(message: &str) {
    eprintln!("{message}");
}

/// An external command to run from a given directory.
#[derive(Debug)]
pub(crate) struct Cmd {
    program: String,
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

impl Cmd {
    /// A command running `program` with no arguments yet.
    pub(crate) fn new(program: &str) -> Self {
        Self {
            program: program.to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
        }
    }

    /// Appends arguments.
    pub(crate) fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.args
            .extend(args.into_iter().map(|arg| arg.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the command (shown in the echo).
    pub(crate) fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Echoes the command (`$ cargo fmt --all -- --check`), runs it in `dir`
    /// with inherited stdio, and fails unless it exits successfully.
    pub(crate) fn run(&self, dir: &Path) -> anyhow::Result<()> {
        echo(&format!("$ {self}"));
        let status = self
            .command(dir)
            .status()
            .with_context(|| format!("failed to start `{self}`"))?;
        if !status.success() {
            bail!("`{self}` failed ({status})");
        }
        Ok(())
    }

    /// Runs the command in `dir` silently and reports whether it succeeded;
    /// for probing whether a tool is available. Not echoed.
    pub(crate) fn succeeds(&self, dir: &Path) -> bool {
        self.command(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    fn command(&self, dir: &Path) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args).current_dir(dir);
        // What cargo set for xtask itself must not leak into the cargo it runs: build
        // scripts that watch these (ring's does) would see them change between a plain
        // `cargo build` and `cargo xtask`, and rebuild everything above them each time.
        for (key, _) in std::env::vars_os() {
            let name = key.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_BIN_")
                || matches!(
                    &*name,
                    "CARGO_MANIFEST_DIR"
                        | "CARGO_MANIFEST_PATH"
                        | "CARGO_CRATE_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                )
            {
                command.env_remove(&key);
            }
        }
        for (key, value) in &self.envs {
            command.env(OsStr::new(key), OsStr::new(value));
        }
        command
    }
}

impl fmt::Display for Cmd {
    /// Shell-like rendering: `KEY='v a l' program arg ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (key, value) in &self.envs {
            write!(f, "{key}={} ", quote(value))?;
        }
        f.write_str(&quote(&self.program))?;
        for arg in &self.args {
            write!(f, " {}", quote(arg))?;
        }
        Ok(())
    }
}

/// Single-quotes `word` if a shell would otherwise split or expand it.
fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}
