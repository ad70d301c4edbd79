//! The quick-start step of `cargo xtask ci`: proves README's quick start on what a new user
//! has, a fresh clone and an empty target directory, with no `protoc` on the machine.
//!
//! 1. `git clone` of this checkout into a temporary folder, at the committed `HEAD`
//!    (uncommitted changes are not in the clone; a log line says how many there are);
//! 2. `cargo build -p lb-proxy --locked` there, with [`PROTOC`] pointing at nothing and
//!    `CARGO_TARGET_DIR` an empty folder inside the temporary one;
//! 3. the demo: the built `lb-proxy` with no configuration, `--listen 127.0.0.1:0` (the
//!    demo's own default, 127.0.0.1:8080, may be taken on a CI machine; the port it got is
//!    read from its banner), waited for until it accepts (polled, with a deadline);
//! 4. three `curl` requests, as a user would: three different demo backends must answer;
//! 5. SIGTERM to the demo, which must exit (killed after a deadline, a failure);
//! 6. `cargo build -p lb-balancer --locked` in the same clone (the library alone);
//! 7. the temporary folder is removed, on success and on failure alike.
//!
//! A failure names the sub-step and shows its output. The figures (clone, cold build,
//! demo, lb-balancer) are logged: the cold build is most of it. Measured on 2 idle cores:
//! the whole step 95 s (lb-proxy 74 s, lb-balancer 20 s); 406 s when the cores were shared
//! with two other builds.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};

use crate::cmd::{echo, Cmd};

/// What `PROTOC` is set to for the builds: a path where no `protoc` is, so that a build
/// script needing one fails here rather than on a user's machine.
pub(crate) const PROTOC: &str = "/nonexistent/protoc";

/// How long the demo may take to print its banner (it binds before printing).
const START_DEADLINE: Duration = Duration::from_secs(30);

/// How long the demo may take to exit after SIGTERM (nothing is in flight).
const STOP_DEADLINE: Duration = Duration::from_secs(15);

/// The interval of the polls (the banner, the first accepted connection, the exit).
const POLL: Duration = Duration::from_millis(50);

/// Runs the step from the workspace `root`; `locked` is `["--locked"]` when the lock file
/// is committed, as for the other steps.
pub(crate) fn run(root: &Path, locked: &[&str]) -> anyhow::Result<()> {
    let started = Instant::now();
    let head = capture(Command::new("git").args(["rev-parse", "HEAD"]), root)
        .context("quick start: cannot read the checkout's HEAD")?;
    let head = head.trim();
    let changes = capture(Command::new("git").args(["status", "--porcelain"]), root)
        .context("quick start: cannot read the checkout's status")?
        .lines()
        .count();
    let short = head.get(..12).unwrap_or(head);
    if changes == 0 {
        echo(&format!(
            "xtask ci: quick start: a fresh clone of HEAD {short} (the working tree is clean)"
        ));
    } else {
        echo(&format!(
            "xtask ci: quick start: a fresh clone of the committed HEAD {short}; the {changes} \
             uncommitted change(s) of this checkout are NOT in it (commit them to check them)"
        ));
    }

    let scratch = Scratch::new()?;
    let clone = scratch.0.join("lb");
    let target = scratch.0.join("target");
    let target_text = target.to_string_lossy();
    let clone_text = clone.to_string_lossy();
    let root_text = root.to_string_lossy();

    let t = Instant::now();
    Cmd::new("git")
        .args(["clone", "--quiet", "--no-checkout", &root_text, &clone_text])
        .run(&scratch.0)
        .context("quick start: git clone failed")?;
    Cmd::new("git")
        .args(["checkout", "--quiet", "--detach", head])
        .run(&clone)
        .context("quick start: git checkout failed")?;
    let clone_time = t.elapsed();

    let build = |package: &str| {
        Cmd::new("cargo")
            .env("PROTOC", PROTOC)
            .env("CARGO_TARGET_DIR", &target_text)
            .args(["build", "-p", package])
            .args(locked)
            .run(&clone)
            .with_context(|| {
                format!(
                    "quick start: `cargo build -p {package}` failed in a fresh clone with \
                     PROTOC={PROTOC} and an empty target directory (its output is above)"
                )
            })
    };
    let t = Instant::now();
    build("lb-proxy")?;
    let build_time = t.elapsed();

    let t = Instant::now();
    let binary = target.join("debug").join("lb-proxy");
    demo(&binary, &scratch.0).context("quick start: the demo failed")?;
    let demo_time = t.elapsed();

    let t = Instant::now();
    build("lb-balancer")?;
    let balancer_time = t.elapsed();

    drop(scratch);
    echo(&format!(
        "xtask ci: quick start passed in {}s (clone {}s, cold build of lb-proxy {}s, demo {}s, \
         lb-balancer {}s)",
        started.elapsed().as_secs(),
        clone_time.as_secs(),
        build_time.as_secs(),
        demo_time.as_secs(),
        balancer_time.as_secs(),
    ));
    Ok(())
}

/// Starts the demo, sends it three requests with curl, checks that three different backends
/// answered, and stops it.
fn demo(binary: &Path, dir: &Path) -> anyhow::Result<()> {
    let mut demo = Demo::start(binary, dir)?;
    let addr = demo.wait_for_banner()?;
    demo.wait_accepting(addr)?;
    let mut answers = Vec::new();
    for _ in 0..3 {
        let answer = curl(addr, dir).with_context(|| demo.output())?;
        answers.push(answer);
    }
    let mut names: Vec<&str> = answers.iter().filter_map(|a| backend_name(a)).collect();
    ensure!(
        names.len() == answers.len(),
        "an answer does not name its backend: {answers:?}\n{}",
        demo.output()
    );
    names.sort_unstable();
    names.dedup();
    ensure!(
        names.len() == 3,
        "three requests reached {} different backend(s), not 3: {answers:?}\n{}",
        names.len(),
        demo.output()
    );
    echo(&format!(
        "xtask ci: quick start: three backends answered: {}",
        names.join(", ")
    ));
    demo.stop()
}

/// The running demo, its output going to files in the temporary folder; killed if dropped
/// while it runs.
struct Demo {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Demo {
    fn start(binary: &Path, dir: &Path) -> anyhow::Result<Self> {
        let stdout = dir.join("demo.stdout");
        let stderr = dir.join("demo.stderr");
        echo(&format!("$ {} --listen 127.0.0.1:0", binary.display()));
        let child = Command::new(binary)
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout)?)
            .stderr(fs::File::create(&stderr)?)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        Ok(Self {
            child,
            stdout,
            stderr,
        })
    }

    /// Polls the banner until it names the address (`curl http://ADDR/`), or the deadline.
    fn wait_for_banner(&mut self) -> anyhow::Result<SocketAddr> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let banner = fs::read_to_string(&self.stdout).unwrap_or_default();
            if let Some(addr) = banner_addr(&banner) {
                return Ok(addr);
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the demo exited ({status}) before printing its banner\n{}",
                    self.output()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "no banner within {}s\n{}",
                    START_DEADLINE.as_secs(),
                    self.output()
                );
            }
            pause();
        }
    }

    /// Polls `addr` until a connection is accepted, or the deadline.
    fn wait_accepting(&mut self, addr: SocketAddr) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_DEADLINE;
        while TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
            if Instant::now() >= deadline {
                bail!("{addr} accepts nothing\n{}", self.output());
            }
            pause();
        }
        Ok(())
    }

    /// SIGTERM, then waits for a clean exit; kills it (and fails) after the deadline.
    fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status()?;
        ensure!(sent.success(), "kill -TERM {pid} failed ({sent})");
        let deadline = Instant::now() + STOP_DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "the demo did not exit within {}s of SIGTERM (killed)\n{}",
                    STOP_DEADLINE.as_secs(),
                    self.output()
                );
            }
            pause();
        };
        ensure!(
            status.success(),
            "the demo exited with {status} after SIGTERM\n{}",
            self.output()
        );
        echo("xtask ci: quick start: the demo stopped on SIGTERM");
        Ok(())
    }

    /// What the demo printed so far, for a failure message.
    fn output(&self) -> String {
        let read = |p: &Path| fs::read_to_string(p).unwrap_or_default();
        format!(
            "--- demo stdout ---\n{}--- demo stderr ---\n{}",
            read(&self.stdout),
            read(&self.stderr)
        )
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The pause between two polls. xtask runs no async runtime, so the workspace's ban on
/// `std::thread::sleep` (it would block a runtime worker) does not apply: this blocks
/// nothing else.
#[allow(clippy::disallowed_methods)]
fn pause() {
    std::thread::sleep(POLL);
}

/// One `curl` GET of `http://addr/`, bypassing any proxy of the environment: the body.
fn curl(addr: SocketAddr, dir: &Path) -> anyhow::Result<String> {
    let url = format!("http://{addr}/");
    echo(&format!("$ curl -sS --noproxy '*' --max-time 10 {url}"));
    let out = Command::new("curl")
        .args(["-sS", "--noproxy", "*", "--max-time", "10", &url])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .context("cannot run curl")?;
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "curl {url} failed ({}): {}{body}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(body)
}

/// The address in the demo's banner line `    curl http://ADDR/`.
fn banner_addr(banner: &str) -> Option<SocketAddr> {
    banner.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("curl http://")?;
        rest.strip_suffix('/')?.parse().ok()
    })
}

/// The backend a demo answer names: `demo backend 2` in `hello from demo backend 2
/// (127.0.0.1:40001)`.
fn backend_name(answer: &str) -> Option<&str> {
    let rest = answer.trim().strip_prefix("hello from ")?;
    let (name, addr) = rest.split_once(" (")?;
    (name.starts_with("demo backend ") && addr.ends_with(')')).then_some(name)
}

/// A temporary folder, removed when dropped (the cold build leaves about 1 GB in it).
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("lb-quickstart-{}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("cannot empty {}", dir.display()))?;
        }
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        echo(&format!(
            "xtask ci: quick start: working in {}",
            dir.display()
        ));
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(error) = fs::remove_dir_all(&self.0) {
            echo(&format!(
                "xtask ci: quick start: cannot remove {}: {error}",
                self.0.display()
            ));
        }
    }
}

/// Runs `command` in `dir` and returns its stdout; fails with its stderr.
fn capture(command: &mut Command, dir: &Path) -> anyhow::Result<String> {
    let out = command
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    ensure!(
        out.status.success(),
        "{command:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn reads_the_banner_and_the_answers() {
        let banner = "\nlb-proxy demo: round robin over 3 demo backends (...).\n\n    \
                      curl http://127.0.0.1:41234/\n\nRepeat it: ...\n";
        assert_eq!(
            banner_addr(banner),
            Some("127.0.0.1:41234".parse().unwrap())
        );
        assert_eq!(banner_addr("lb-proxy demo: round robin\n"), None);
        assert_eq!(
            backend_name("hello from demo backend 2 (127.0.0.1:40001)\n"),
            Some("demo backend 2")
        );
        assert_eq!(backend_name("502 Bad Gateway"), None);
    }
}
