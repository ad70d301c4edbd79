//! The `lb-proxy` binary as a child process, for the tests that signal it (process.rs,
//! reload.rs): start it, read its log lines, signal it, wait for its exit; and a load of
//! busy keep-alive connections that counts every failure.

#![allow(dead_code, unreachable_pub)] // each test binary uses a part; `pub` is for them

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use lb_testkit::TestBackend;
use tokio::sync::mpsc;

use crate::common::{self, free_port};

pub const BIN: &str = env!("CARGO_BIN_EXE_lb-proxy");

/// Every wait of these tests is bounded by this.
pub const STEP: Duration = Duration::from_secs(20);

/// A running `lb-proxy`, killed if the test fails; its stderr lines arrive on `lines`.
pub struct Proxy {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    pub seen: Vec<String>,
}

impl Proxy {
    /// `lb-proxy ARGS`.
    pub fn start(args: &[&str]) -> Self {
        let mut command = Command::new(BIN);
        command.args(args);
        Self::spawn(command)
    }

    /// The proxy as `command` starts it (for instance through `sh -c 'ulimit ...; exec'`),
    /// logging at `info` to a pipe the test reads.
    pub fn spawn(mut command: Command) -> Self {
        let mut child = command
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The lines logged since the last call, without waiting.
    pub fn drain(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(line) = self.lines.try_recv() {
            out.push(line);
        }
        self.seen.extend(out.iter().cloned());
        out
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a log line containing `needle`.
    pub async fn wait_for(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Ok(None) => panic!("stderr closed before {needle:?}: {:#?}", self.seen),
                Err(_) => panic!("no {needle:?} within {STEP:?}: {:#?}", self.seen),
            }
        }
    }

    pub fn signal(&self, name: &str) {
        signal(self.pid(), name);
    }

    /// Waits for the process to exit.
    pub async fn exit(mut self) -> ExitStatus {
        let mut child = std::mem::replace(&mut self.child, dummy_child());
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + STEP;
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    return status;
                }
                assert!(Instant::now() < deadline, "no exit within {STEP:?}");
                std::thread::park_timeout(Duration::from_millis(20));
            }
        })
        .await
        .unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An already-finished child, to leave in a `Proxy` whose real child was taken.
fn dummy_child() -> Child {
    let mut child = Command::new("true").spawn().unwrap();
    let _ = child.wait();
    child
}

pub fn signal(pid: u32, name: &str) {
    let sent = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{name} {pid}");
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

pub fn config(listen: SocketAddr, backends: &[TestBackend], server_extra: &str) -> String {
    format!(
        "[server]\nlisten = [\"{listen}\"]\n{server_extra}\n\n\
         [upstreams.web]\nbackends = [{}]\n\n[[routes]]\nupstream = \"web\"\n",
        common::backend_list(backends)
    )
}

pub fn listen_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

pub type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build_http()
}

/// GET `url`; the status, or the error text.
pub async fn get(client: &HttpClient, url: &http::Uri) -> Result<u16, String> {
    let resp = client
        .get(url.clone())
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    resp.into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e:?}"))?;
    Ok(status)
}

/// How long the load runs: 10 s, as the acceptance test of issue 7 asks, the upgrade in
/// the middle of it.
pub const LOAD: Duration = Duration::from_secs(10);
/// Busy connections.
pub const CLIENTS: usize = 32;

#[derive(Default)]
pub struct Tally {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub refused: AtomicU64,
    pub reconnects: AtomicU64,
    pub errors: parking_lot::Mutex<Vec<String>>,
}

/// One connection to `addr` kept busy with GETs until `end` or until an answer says
/// `Connection: close`; counts each 200 in `tally.ok`, fails on anything else.
pub async fn busy_connection(
    addr: SocketAddr,
    end: tokio::time::Instant,
    tally: &Tally,
) -> Result<(), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {:?}", e.kind()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e:?}"))?;
    tokio::spawn(conn);
    while tokio::time::Instant::now() < end {
        let req = http::Request::get("/load")
            .header(http::header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = tokio::time::timeout(STEP, sender.send_request(req))
            .await
            .map_err(|_| "no answer within STEP".to_owned())?
            .map_err(|e| format!("{e:?}"))?;
        let status = resp.status();
        let close = resp
            .headers()
            .get(http::header::CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        resp.into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e:?}"))?;
        if status != 200 {
            return Err(format!("status {status}"));
        }
        tally.ok.fetch_add(1, SeqCst);
        if close {
            tally.reconnects.fetch_add(1, SeqCst);
            return Ok(());
        }
    }
    Ok(())
}
