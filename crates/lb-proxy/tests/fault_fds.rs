//! Fault: file descriptor exhaustion. The real `lb-proxy` binary runs under `ulimit -n 64`
//! (set by `sh` before it `exec`s the proxy) and the test opens far more connections than
//! that. `accept` then fails with `EMFILE`: the failure is logged and the accept loop waits
//! and tries again instead of spinning or exiting. Once the flood closes, new requests
//! succeed on the same process.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // tests; figures go to the test output

mod common;
mod process_support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::free_port;
use http::StatusCode;
use lb_testkit::TestBackend;
use process_support::{Proxy, BIN};
use tokio::net::TcpStream;

/// The proxy's descriptor limit.
const FD_LIMIT: usize = 64;
/// Connections the test opens at once: half again the limit, which also fits in the listen
/// backlog (128) on top of what the proxy accepts, so every connect completes.
const FLOOD: usize = FD_LIMIT + FD_LIMIT / 2;
/// Every wait of this test ends by this deadline (process_support waits as long).
const STEP: Duration = process_support::STEP;

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
    let mut start = Command::new("sh");
    start
        .arg("-c")
        .arg(format!("ulimit -n {FD_LIMIT} && exec \"$0\" -c \"$1\""))
        .arg(BIN)
        .arg(&config);
    let mut proxy = Proxy::spawn(start);
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
    assert!(proxy.is_running(), "the proxy exited");
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
    assert!(proxy.is_running(), "the proxy exited");
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
