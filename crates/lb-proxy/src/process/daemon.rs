//! `-d`: detaching into the background.
//!
//! The binary re-executes itself with the same arguments and a marker in the environment
//! ([`CHILD_ENV`]) rather than forking a process that may already run threads. The child
//! starts a new session ([`detach`], so it has no controlling terminal), starts the proxy,
//! writes the pid file, then tells the parent it is ready ([`ready`]) and points its
//! stdout and stderr to `/dev/null`. The parent ([`spawn`]) waits for that word, or for
//! the child to exit, and exits accordingly, as nginx does: start-up errors still reach the
//! terminal, and once `lb-proxy -d` has returned 0 the proxy serves.

use std::io::{self, BufRead, BufReader, Write};
use std::process::{Command, ExitStatus, Stdio};

/// The environment variable marking the re-executed, detached child.
pub const CHILD_ENV: &str = "LB_PROXY_DAEMON_CHILD";

/// The line the child writes to the parent once it serves.
const READY: &str = "ready";

/// Why the background process could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The binary could not be re-executed, or its output read.
    #[error("cannot start the background process: {0}")]
    Spawn(#[from] io::Error),
    /// The background process exited before it was ready (its errors went to stderr or
    /// the error log).
    #[error("the background process exited before serving: {0}")]
    Exited(ExitStatus),
}

/// True in the re-executed child.
pub fn is_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// The parent's side: re-executes this binary with the same arguments in the background,
/// and waits until it is ready (returns its pid) or has exited (an error). Stderr is
/// shared until the child is ready, so start-up errors show.
pub fn spawn() -> Result<u32, DaemonError> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(CHILD_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let pid = child.id();
    let ready = match child.stdout.take() {
        // The child writes the word once, or closes its stdout by exiting.
        Some(out) => BufReader::new(out)
            .lines()
            .next()
            .and_then(Result::ok)
            .is_some_and(|line| line == READY),
        None => false,
    };
    if ready {
        return Ok(pid);
    }
    Err(DaemonError::Exited(child.wait()?))
}

/// The child's first step: a new session without a controlling terminal, and the marker
/// removed so programs it runs (health hooks) do not inherit it. Call it before any
/// thread starts.
pub fn detach() -> io::Result<()> {
    std::env::remove_var(CHILD_ENV);
    nix::unistd::setsid().map_err(io::Error::from)?;
    Ok(())
}

/// The child's last start-up step: tells the parent it serves, then points stdout and
/// stderr to `/dev/null` (logs go to the error log, if one is configured).
pub fn ready() -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{READY}")?;
    out.flush()?;
    drop(out);
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    nix::unistd::dup2_stdout(&null).map_err(io::Error::from)?;
    nix::unistd::dup2_stderr(&null).map_err(io::Error::from)?;
    Ok(())
}
