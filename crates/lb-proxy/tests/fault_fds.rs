//! Fault: file descriptor exhaustion. The real `lb-proxy` binary runs under `ulimit -n 64`
//! (set by `sh` before it `exec`s the proxy) and the test opens far more connections than
//! that. `accept` then fails with `EMFILE`: the failure is logged and the accept loop waits
//! and tries again instead of spinning or exiting. Once the flood closes, new requests
//! succeed on the same process.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // tests; figures go to the test output

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;
use http::StatusCode;
use lb_testkit::TestBackend;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const BIN: &str = env!("CARGO_BIN_EXE_lb-proxy");
/// The proxy's descriptor limit.
const FD_LIMIT: usize = 64;
/// Connections the test opens at once: half again the limit, which also fits in the listen
/// backlog (128) on top of what the proxy accepts, so every connect completes.
const FLOOD: usize = FD_LIMIT + FD_LIMIT / 2;
/// Every wait of this test ends by this deadline.
const STEP: Duration = Duration::from_secs(20);

/// The proxy process, killed when dropped; its stderr lines arrive on `lines`.
struct Proxy {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Proxy {
    fn start(config: &std::path::Path) -> Self {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -n {FD_LIMIT} && exec \"$0\" -c \"$1\""))
            .arg(BIN)
            .arg(config)
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

    /// Waits for a log line containing `needle`.
    async fn wait_for(&mut self, needle: &str) -> String {
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

    /// The lines logged since the last call, without waiting.
    fn drain(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(line) = self.lines.try_recv() {
            out.push(line);
        }
        self.seen.extend(out.iter().cloned());
        out
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP/1.1 connection to the proxy, opened once and kept.
type Conn = hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>;

/// Opens a connection to `addr`.
async fn connect(addr: SocketAddr) -> Result<Conn, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(sender)
}

/// GET `/` on `conn`; the status, or why there was none.
async fn get_on(conn: &mut Conn) -> Result<StatusCode, String> {
    let req = http::Request::get("/")
        .header(http::header::HOST, "test")
        .body(http_body_util::Empty::new())
        .unwrap();
    let resp = conn.send_request(req).await.map_err(|e| e.to_string())?;
    Ok(resp.status())
}

/// GET `/` on a fresh connection.
async fn get(addr: SocketAddr) -> Result<StatusCode, String> {
    get_on(&mut connect(addr).await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_is_logged_survived_and_recovered() {
    let backend = TestBackend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = dir.path().join("lb.toml");
    // Active checks and passive health, both of which must not blame the backend for the
    // proxy's own shortage; no idle pool, so every request needs a new upstream socket.
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = [\"{listen}\"]\nthreads = 2\n\n[upstreams.web]\nbackends = \
             [\"{}\"]\npool_max_idle = 0\npassive = {{ max_fails = 1 }}\n\n\
             [upstreams.web.health_check]\ninterval = \"100ms\"\nfall = 2\n\n\
             [[routes]]\nupstream = \"web\"\n",
            backend.addr()
        ),
    )
    .unwrap();
    let mut proxy = Proxy::start(&config);
    proxy.wait_for("lb-proxy started").await;
    let mut held = connect(listen).await.unwrap();
    assert_eq!(get_on(&mut held).await, Ok(StatusCode::OK));

    // The flood: connections that send nothing. The kernel completes them (the listen
    // backlog); the proxy accepts until it has no descriptor left.
    let mut flood = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        let connect = tokio::time::timeout(STEP, TcpStream::connect(listen));
        flood.push(connect.await.unwrap().unwrap());
    }
    let line = proxy.wait_for("accept failed").await;
    assert!(
        line.contains("Too many open files") || line.contains("os error 24"),
        "{line}"
    );
    let exhausted = Instant::now();
    // A request on a connection accepted before: no socket for the backend, 502.
    assert_eq!(get_on(&mut held).await, Ok(StatusCode::BAD_GATEWAY));
    // Still exhausted a while later (five check intervals), still alive: the loop backs
    // off and retries.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let logged = 1 + proxy
        .drain()
        .iter()
        .filter(|l| l.contains("accept failed"))
        .count();
    assert!(
        proxy.child.try_wait().unwrap().is_none(),
        "the proxy exited"
    );
    let per_second = logged as f64 / exhausted.elapsed().as_secs_f64();

    drop(flood);
    let recovering = Instant::now();
    let deadline = recovering + STEP;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(2), get(listen)).await {
            Ok(Ok(StatusCode::OK)) => break,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "no successful request {STEP:?} after the flood closed: {other:?}"
                );
                seen.push(format!("{other:?}"));
                // Pace the attempts while the proxy frees its descriptors.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    let recovered_after = recovering.elapsed();
    for _ in 0..50 {
        assert_eq!(get(listen).await, Ok(StatusCode::OK));
    }
    assert!(
        proxy.child.try_wait().unwrap().is_none(),
        "the proxy exited"
    );
    // The backend was never blamed: no check verdict, no ejection, no 503.
    proxy.drain();
    let blamed: Vec<&String> = proxy
        .seen
        .iter()
        .filter(|l| l.contains("backend is unhealthy") || l.contains("backend ejected"))
        .collect();
    assert!(blamed.is_empty(), "{blamed:#?}");
    assert!(
        !seen.iter().any(|s| s.contains("503")),
        "answers before the first success: {seen:?}"
    );
    eprintln!(
        "ulimit -n {FD_LIMIT}, {FLOOD} connections: accept errors logged ({per_second:.0} \
         lines/s while exhausted), first request served {recovered_after:?} after the flood \
         closed"
    );
}
