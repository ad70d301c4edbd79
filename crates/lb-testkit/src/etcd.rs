//! A real etcd for tests: the `etcd` binary (Debian package etcd-server) started on
//! free loopback ports with a temporary data directory, killed and started again on the
//! same ports and data to simulate a restart.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use etcd_client::Client;
use tokio::process::{Child, Command};

/// How long etcd may take to answer after a start.
const READY_DEADLINE: Duration = Duration::from_secs(20);

/// One etcd member, running or stopped.
pub struct Etcd {
    binary: PathBuf,
    data: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    /// The ports, reserved while the process is killed.
    hold: Option<crate::hold::PortHold>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `etcd` binary on PATH; a clear failure (not a skip) when it is missing.
fn etcd_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the etcd tests need the `etcd` binary on PATH: install it with \
                 `apt-get install etcd-server` (.ci/run does this when it is missing)"
            )
        })
}

impl Etcd {
    /// Starts a single-member cluster and waits until it answers.
    pub async fn start() -> Self {
        let mut this = Self {
            binary: etcd_binary(),
            data: tempfile::tempdir().unwrap(),
            client_port: free_port(),
            peer_port: free_port(),
            child: None,
            hold: None,
        };
        this.restart().await;
        this
    }

    /// The client URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Kills the process (SIGKILL: no graceful goodbye to watchers). Its ports stay
    /// reserved until [`restart`](Self::restart) (connections are refused meanwhile), so a
    /// long outage cannot lose them to another socket.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
            let ports =
                [self.client_port, self.peer_port].map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
            self.hold = Some(crate::hold::PortHold::new(&ports, &[]));
        }
    }

    /// Starts the process (again) on the same ports and data, and waits until it answers.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.hold = None;
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let client = self.endpoint();
        let log = std::fs::File::create(self.data.path().join("etcd.log")).unwrap();
        let child = Command::new(&self.binary)
            .arg("--name=default")
            .arg(format!(
                "--data-dir={}",
                self.data.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=default={peer}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                let log = std::fs::read_to_string(self.data.path().join("etcd.log"));
                panic!(
                    "etcd exited at start ({status}): {}",
                    log.unwrap_or_default()
                );
            }
            if let Ok(mut c) = Client::connect([self.endpoint()], None).await {
                let probe = tokio::time::timeout(Duration::from_millis(500), c.get("probe", None));
                if matches!(probe.await, Ok(Ok(_))) {
                    return;
                }
            }
            assert!(
                started.elapsed() < READY_DEADLINE,
                "etcd did not answer within {READY_DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A client for the test's own writes.
    pub async fn client(&self) -> Client {
        Client::connect([self.endpoint()], None).await.unwrap()
    }
}
