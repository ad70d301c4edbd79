//! A real DNS server for tests: `dnsmasq` (Debian package dnsmasq) answering A records from
//! a hosts file, on a free loopback port, that can be killed and started again on the same
//! port (a resolver outage). It forwards nothing: only the names in the file exist.

use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// How long dnsmasq may take to answer after a start.
const READY_DEADLINE: Duration = Duration::from_secs(20);

/// Ports tried before giving up on finding one free for both UDP and TCP.
const PORT_ATTEMPTS: usize = 50;

/// One dnsmasq process, running or stopped.
pub struct Dnsmasq {
    binary: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    /// The ports, reserved while the process is killed.
    hold: Option<crate::hold::PortHold>,
}

/// The `dnsmasq` binary on PATH or in the sbin directories; a clear failure (not a skip)
/// when it is missing.
fn dnsmasq_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join("dnsmasq"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the DNS outage test needs the `dnsmasq` binary: install it with \
                 `apt-get install dnsmasq` (.ci/run does this when it is missing)"
            )
        })
}

/// A loopback port free for both UDP and TCP a moment ago.
fn free_port() -> u16 {
    for _ in 0..PORT_ATTEMPTS {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

/// The user dnsmasq keeps running as: the current one (as root it would otherwise switch
/// to `nobody`, which cannot read the test's private directory).
fn current_user() -> String {
    let out = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

impl Dnsmasq {
    /// Starts a server answering `records` (`(address, name)`, several addresses per
    /// name allowed) and waits until it answers.
    pub async fn start(records: &[(IpAddr, &str)]) -> Self {
        let mut this = Self {
            binary: dnsmasq_binary(),
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            child: None,
            hold: None,
        };
        this.set_records(records);
        this.restart().await;
        this
    }

    /// The server's address, for a resolver setting.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Rewrites the records. A running server keeps its old answers until it is started
    /// again: call this while it is down, then [`restart`](Self::restart).
    pub fn set_records(&self, records: &[(IpAddr, &str)]) {
        let text: String = records
            .iter()
            .map(|(ip, name)| format!("{ip} {name}\n"))
            .collect();
        std::fs::write(self.hosts(), text).unwrap();
    }

    fn hosts(&self) -> PathBuf {
        self.dir.path().join("hosts")
    }

    /// Kills the process (SIGKILL): queries go unanswered (TCP ones are refused) until a
    /// restart. The port stays reserved meanwhile, so a long outage cannot lose it to
    /// another socket.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
            let addr = self.addr();
            self.hold = Some(crate::hold::PortHold::new(&[addr], &[addr]));
        }
    }

    /// Starts the process (again) on the same port, reading the records as they are now,
    /// and waits until it answers.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.hold = None;
        let log = std::fs::File::create(self.dir.path().join("dnsmasq.log")).unwrap();
        let child = Command::new(&self.binary)
            .arg("--keep-in-foreground")
            .arg(format!("--port={}", self.port))
            .arg("--listen-address=127.0.0.1")
            .arg("--bind-interfaces")
            .arg("--no-resolv")
            .arg("--no-hosts")
            .arg(format!("--addn-hosts={}", self.hosts().display()))
            .arg("--pid-file=")
            .arg(format!("--user={}", current_user()))
            .arg("--log-facility=-")
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
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.connect(self.addr()).await.unwrap();
        let mut buf = [0u8; 512];
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                let log = std::fs::read_to_string(self.dir.path().join("dnsmasq.log"));
                panic!(
                    "dnsmasq exited at start ({status}): {}",
                    log.unwrap_or_default()
                );
            }
            // Any answer (an A query for `probe.`) means it serves.
            let _ = socket.send(&PROBE).await;
            let answer = tokio::time::timeout(Duration::from_millis(100), socket.recv(&mut buf));
            if matches!(answer.await, Ok(Ok(n)) if n >= 12 && buf[..2] == PROBE[..2]) {
                return;
            }
            assert!(
                started.elapsed() < READY_DEADLINE,
                "dnsmasq did not answer within {READY_DEADLINE:?}"
            );
            // A refused query returns at once: pace the probes.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A DNS query (id 0x1234, recursion desired) for the A record of `probe.`.
const PROBE: [u8; 23] = [
    0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 5, b'p', b'r', b'o',
    b'b', b'e', 0, 0x00, 0x01, 0x00, 0x01,
];
