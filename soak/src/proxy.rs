//! The release `lb-proxy` as a child process: started with the soak's configuration, its
//! JSON log read line by line on a thread (copied to a file, warnings and errors counted,
//! the addresses it bound picked out), signalled for reloads, and always killed: a drop
//! guard kills it when the driver returns, fails or panics, and a Ctrl-C at the terminal
//! reaches it too (it stays in the driver's process group).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::mpsc;

/// How long the proxy may take to start serving.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The running proxy.
pub(crate) struct ProxyChild {
    child: Option<Child>,
    pid: Pid,
    /// What its log said so far.
    pub(crate) log: Arc<Mutex<LogStats>>,
}

/// The addresses the proxy bound (configured with port 0).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bound {
    /// The plain listener.
    pub(crate) listen: SocketAddr,
    /// The admin listener.
    pub(crate) admin: SocketAddr,
}

/// Warnings and errors in the proxy's log, by message.
#[derive(Debug, Default)]
pub(crate) struct LogStats {
    /// `(level, message)` to how many lines said it.
    pub(crate) by_message: BTreeMap<(String, String), u64>,
    /// Lines that were not JSON (a panic message, for instance).
    pub(crate) other: Vec<String>,
}

impl ProxyChild {
    /// Starts `bin -c config` with its log copied to `log_file`, and waits until it serves.
    pub(crate) async fn start(
        bin: &Path,
        config: &Path,
        log_file: &Path,
    ) -> anyhow::Result<(Self, Bound)> {
        let mut child = Command::new(bin)
            .arg("-c")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = Pid::from_raw(i32::try_from(child.id()).context("pid out of range")?);
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let file = std::fs::File::create(log_file)
            .with_context(|| format!("creating {}", log_file.display()))?;
        let log = Arc::new(Mutex::new(LogStats::default()));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let stats = log.clone();
        std::thread::Builder::new()
            .name("proxy-log".into())
            .spawn(move || read_log(stderr, file, &stats, &tx))
            .context("starting the log reader")?;
        // From here the guard owns the child: any early return kills it.
        let proxy = Self {
            child: Some(child),
            pid,
            log,
        };
        let (mut listen, mut admin) = (None, None);
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        while listen.is_none() || admin.is_none() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Started::Listen(a))) => listen = Some(a),
                Ok(Some(Started::Admin(a))) => admin = Some(a),
                Ok(None) => bail!(
                    "lb-proxy exited during start-up; see {}",
                    log_file.display()
                ),
                Err(_) => bail!(
                    "lb-proxy did not start within {START_TIMEOUT:?}; see {}",
                    log_file.display()
                ),
            }
        }
        let (Some(listen), Some(admin)) = (listen, admin) else {
            bail!("unreachable: both addresses were read");
        };
        Ok((proxy, Bound { listen, admin }))
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> Pid {
        self.pid
    }

    /// Sends `signal` to it.
    pub(crate) fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        kill(self.pid, signal).with_context(|| format!("kill -{signal} {}", self.pid))
    }

    /// SIGTERM, then waits up to `grace` for the exit (SIGKILL after that): the exit status
    /// of a graceful stop, or an error when it had to be killed.
    pub(crate) async fn stop(mut self, grace: Duration) -> anyhow::Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("already stopped");
        };
        let _ = kill(self.pid, Signal::SIGTERM);
        tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + grace;
            loop {
                if let Some(status) = child.try_wait()? {
                    return Ok(status);
                }
                if std::time::Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("lb-proxy did not exit within {grace:?} of SIGTERM; killed");
                }
                std::thread::park_timeout(Duration::from_millis(20));
            }
        })
        .await?
    }
}

impl Drop for ProxyChild {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An address the proxy announced in its start-up log.
enum Started {
    Listen(SocketAddr),
    Admin(SocketAddr),
}

/// Copies the proxy's stderr to `file` line by line; counts warnings and errors; sends the
/// bound addresses on `tx`. Ends when the proxy closes stderr (exits).
fn read_log(
    stderr: std::process::ChildStderr,
    file: std::fs::File,
    stats: &Mutex<LogStats>,
    tx: &mpsc::UnboundedSender<Started>,
) {
    let mut out = std::io::BufWriter::new(file);
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
        let Ok(json) = serde_json::from_str::<Value>(&line) else {
            let mut stats = stats.lock();
            if stats.other.len() < 20 {
                stats.other.push(line);
            }
            continue;
        };
        let level = json["level"].as_str().unwrap_or("");
        let message = json["fields"]["message"].as_str().unwrap_or("");
        match (level, message) {
            ("INFO", "lb-proxy started") => {
                let listen = json["fields"]["listen"].as_str().unwrap_or("");
                if let Some(addr) = first_addr(listen) {
                    let _ = tx.send(Started::Listen(addr));
                }
            }
            ("INFO", "admin listener started") => {
                let listen = json["fields"]["listen"].as_str().unwrap_or("");
                if let Some(addr) = first_addr(listen) {
                    let _ = tx.send(Started::Admin(addr));
                }
            }
            ("WARN" | "ERROR", _) => {
                *stats
                    .lock()
                    .by_message
                    .entry((level.to_owned(), message.to_owned()))
                    .or_default() += 1;
            }
            _ => {}
        }
    }
}

/// The first socket address in `text`: `127.0.0.1:8080`, or a list `[127.0.0.1:8080, ...]`.
fn first_addr(text: &str) -> Option<SocketAddr> {
    let inner = text.trim().trim_start_matches('[').trim_end_matches(']');
    inner.split(", ").next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_addresses_of_the_start_up_log() {
        assert_eq!(
            first_addr("[127.0.0.1:4000, 127.0.0.1:4001]"),
            Some("127.0.0.1:4000".parse().unwrap())
        );
        assert_eq!(
            first_addr("127.0.0.1:9901"),
            Some("127.0.0.1:9901".parse().unwrap())
        );
        assert_eq!(first_addr("[]"), None);
    }
}
