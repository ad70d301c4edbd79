//! A [`TestBackend`] in a process of its own, that a test can freeze (SIGSTOP) and kill
//! (SIGKILL) as a real crash: the kernel, not the test, closes its sockets.
//!
//! There is no separate binary to build: the test binary runs itself again. The test file
//! declares an ignored test that calls [`serve_if_child`], and [`BackendProcess::spawn`]
//! starts the current executable with only that test selected and [`CHILD_ENV`] set; in
//! that process `serve_if_child` serves until its parent goes away (its stdin closes) or
//! it is killed. Run normally, the ignored test is skipped, and would return at once.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::TestBackend;

/// Set in the child's environment to `NAME,DELAY_MS`: serve as a backend named `NAME`
/// answering after `DELAY_MS` milliseconds.
pub const CHILD_ENV: &str = "LB_TESTKIT_BACKEND_PROCESS";

/// The line prefix the child announces its address with on stdout.
const LISTENING: &str = "LB_TESTKIT_LISTENING ";

/// How long a child may take to announce its address.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// A backend running in a child process.
pub struct BackendProcess {
    child: Child,
    addr: SocketAddr,
}

impl BackendProcess {
    /// Runs this test binary again as a backend named `name` answering after `delay`:
    /// `child_test` is the (ignored) test that calls [`serve_if_child`], by its full name
    /// in the test binary. Returns once it listens.
    pub async fn spawn(child_test: &str, name: &str, delay: Duration) -> Self {
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new(exe)
            .args([
                "--exact",
                child_test,
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("{name},{}", delay.as_millis()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let announce = async {
            while let Some(line) = lines.next_line().await.unwrap() {
                // The harness may have started the line ("test backend_process ... ").
                if let Some((_, addr)) = line.split_once(LISTENING) {
                    return addr.trim().parse::<SocketAddr>().unwrap();
                }
            }
            panic!("the backend process exited before it listened");
        };
        let addr = tokio::time::timeout(START_DEADLINE, announce)
            .await
            .expect("the backend process did not listen in time");
        // Keep draining its stdout (the test harness's own lines) so it never blocks.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { child, addr }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// Freezes it (SIGSTOP): connections stay open and the kernel still accepts new ones,
    /// but nothing is answered.
    pub fn freeze(&self) {
        signal(self.pid(), "STOP");
    }

    /// Kills it (SIGKILL) and waits until it is gone, so its sockets are closed.
    pub async fn kill(&mut self) {
        self.child.kill().await.unwrap();
    }
}

/// Sends signal `name` (`STOP`, `CONT`, ...) to `pid` with kill(1).
pub(crate) fn signal(pid: u32, name: &str) {
    let sent = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{name} {pid}");
}

/// In a process started by [`BackendProcess::spawn`], serves until the parent goes away;
/// anywhere else, returns at once.
pub fn serve_if_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (name, delay) = spec.split_once(',').unwrap();
    let delay = Duration::from_millis(delay.parse().unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let backend = TestBackend::start(name).await;
        backend.set_delay(delay);
        let mut out = std::io::stdout().lock();
        writeln!(out, "{LISTENING}{}", backend.addr()).unwrap();
        out.flush().unwrap();
        drop(out);
        // Until the parent closes our stdin (it exited, or dropped its handle).
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 64];
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    std::process::exit(0);
}
