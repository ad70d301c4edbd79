//! A real etcd for tests: the `etcd` binary (Debian package etcd-server) started on
//! free loopback ports with a temporary data directory, killed and started again on the
//! same ports and data to simulate a restart, or frozen (SIGSTOP) to simulate a hung
//! server.
//!
//! The tests' own writes go through [`EtcdClient`], a few calls of etcd's v3 JSON gateway
//! made with hyper's plain client: independent of the discovery code under test, so a
//! bug there cannot hide itself in the fixture.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
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

/// The test's own etcd client: puts, deletes, leases and compaction over the JSON gateway.
/// Every call panics with etcd's answer when it fails (test support).
#[derive(Clone)]
pub struct EtcdClient {
    http: Client<HttpConnector, Full<Bytes>>,
    endpoint: String,
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

    /// Freezes the process (SIGSTOP): its connections stay open and the kernel still
    /// accepts new ones, but nothing is answered, as with a hung server.
    pub fn freeze(&self) {
        crate::process::signal(self.pid(), "STOP");
    }

    /// Lets a frozen process run again (SIGCONT).
    pub fn thaw(&self) {
        crate::process::signal(self.pid(), "CONT");
    }

    fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .and_then(Child::id)
            .expect("etcd is running")
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
        let client = self.client().await;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                let log = std::fs::read_to_string(self.data.path().join("etcd.log"));
                panic!(
                    "etcd exited at start ({status}): {}",
                    log.unwrap_or_default()
                );
            }
            let probe = client.try_call("/v3/kv/range", json!({ "key": b64("probe") }));
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), probe).await {
                return;
            }
            assert!(
                started.elapsed() < READY_DEADLINE,
                "etcd did not answer within {READY_DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A client for the test's own writes.
    pub async fn client(&self) -> EtcdClient {
        EtcdClient {
            http: Client::builder(TokioExecutor::new()).build_http(),
            endpoint: self.endpoint(),
        }
    }
}

impl EtcdClient {
    /// Sets `key` to `value`; the revision of the write.
    pub async fn put(&self, key: impl AsRef<str>, value: impl AsRef<str>) -> i64 {
        let body = json!({ "key": b64(key.as_ref()), "value": b64(value.as_ref()) });
        revision(&self.call("/v3/kv/put", body).await)
    }

    /// Sets `key` to `value`, attached to `lease` (deleted when the lease expires).
    pub async fn put_with_lease(
        &self,
        key: impl AsRef<str>,
        value: impl AsRef<str>,
        lease: i64,
    ) -> i64 {
        let body = json!({
            "key": b64(key.as_ref()),
            "value": b64(value.as_ref()),
            "lease": lease.to_string(),
        });
        revision(&self.call("/v3/kv/put", body).await)
    }

    /// Deletes `key`; the revision of the deletion.
    pub async fn delete(&self, key: impl AsRef<str>) -> i64 {
        revision(
            &self
                .call("/v3/kv/deleterange", json!({ "key": b64(key.as_ref()) }))
                .await,
        )
    }

    /// Grants a lease of `ttl` seconds; its id.
    pub async fn lease_grant(&self, ttl: i64) -> i64 {
        let answer = self
            .call("/v3/lease/grant", json!({ "TTL": ttl.to_string() }))
            .await;
        int64(&answer["ID"])
    }

    /// Renews `lease` once; the TTL etcd granted (0 when the lease is gone).
    pub async fn lease_keep_alive_once(&self, lease: i64) -> i64 {
        let answer = self
            .call("/v3/lease/keepalive", json!({ "ID": lease.to_string() }))
            .await;
        int64(&answer["result"]["TTL"])
    }

    /// Compacts the history up to `revision` and waits until the compaction is applied.
    pub async fn compact(&self, revision: i64) {
        let body = json!({ "revision": revision.to_string(), "physical": true });
        self.call("/v3/kv/compaction", body).await;
    }

    async fn call(&self, path: &str, body: Value) -> Value {
        self.try_call(path, body.clone())
            .await
            .unwrap_or_else(|e| panic!("etcd {path} {body}: {e}"))
    }

    async fn try_call(&self, path: &str, body: Value) -> Result<Value, String> {
        let request = http::Request::post(format!("{}{path}", self.endpoint))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let text = String::from_utf8_lossy(&body);
        if !status.is_success() {
            return Err(format!("{status}: {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
    }
}

fn b64(text: &str) -> String {
    STANDARD.encode(text)
}

/// An int64 of etcd's JSON (a string), 0 when absent.
fn int64(value: &Value) -> i64 {
    match value {
        Value::String(s) => s.parse().unwrap(),
        Value::Number(n) => n.as_i64().unwrap(),
        _ => 0,
    }
}

fn revision(answer: &Value) -> i64 {
    int64(&answer["header"]["revision"])
}
