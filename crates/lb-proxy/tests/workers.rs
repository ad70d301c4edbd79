//! The proxy started the way the binary starts it: one `current_thread` runtime per worker
//! (`Workers`), here two, with real loopback backends and real HTTP/1.1 clients. Checks that
//! both workers accept and serve, that a reload moves every worker to the new
//! configuration, and that shutdown closes the listeners of every worker.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use lb_proxy::config::Config;
use lb_proxy::{Proxy, WorkerStats, Workers};
use lb_testkit::TestBackend;

/// Bounds every network step of the test.
const STEP: Duration = Duration::from_secs(5);

/// Held-open client connections opened one after the other: with a worker more than one
/// connection ahead handing new ones to the other, four reach both workers (at worst 3
/// and 1).
const CONNECTIONS: usize = 4;

/// Opened after the reload, beside the first ones: five reach both workers even if the
/// first ones split 3 and 1 and the kernel gives every new one to the worker with 1 (its
/// fifth arrives when it holds 5, more than 3 + 1).
const MORE: usize = 5;

fn config(backends: &[&TestBackend]) -> Config {
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("\"{}\"", b.addr()))
        .collect();
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\ngrace_period = \"5s\"\n\n\
         [upstreams.web]\nbackends = [{}]\n\n[[routes]]\nupstream = \"web\"\n",
        list.join(", ")
    );
    Config::from_toml_str(&text, "workers.toml").unwrap()
}

/// A keep-alive HTTP/1.1 connection to `addr`.
async fn connect(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let tcp = tokio::time::timeout(STEP, tokio::net::TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    sender
}

/// `GET /` on `sender`: the answering backend's name.
async fn get(sender: &mut SendRequest<Empty<Bytes>>, addr: SocketAddr) -> String {
    let req = Request::get("/")
        .header(http::header::HOST, addr.to_string())
        .body(Empty::new())
        .unwrap();
    let resp = tokio::time::timeout(STEP, sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

/// Opens `n` connections one after the other, each answering one GET, and keeps them
/// open.
async fn open_all(addr: SocketAddr, n: usize) -> (Vec<SendRequest<Empty<Bytes>>>, Vec<String>) {
    let mut senders = Vec::new();
    let mut names = Vec::new();
    for _ in 0..n {
        let mut sender = connect(addr).await;
        names.push(get(&mut sender, addr).await);
        senders.push(sender);
    }
    (senders, names)
}

/// Per worker, how many connections it served between `before` and `after`.
fn served(before: &[WorkerStats], after: &[WorkerStats]) -> Vec<u64> {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| a.connections - b.connections)
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn two_workers_serve_reload_and_shut_down() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let workers = Workers::start(NonZeroUsize::new(2).unwrap()).unwrap();
    let running = Proxy::new(config(&[&a]))
        .workers(&workers)
        .start()
        .await
        .unwrap();
    let addr = running.local_addrs()[0];
    let start = running.worker_stats();
    assert_eq!(start.len(), 2);

    // Both workers accept and serve (every connection was answered), each forwarding
    // over its own upstream connection.
    let (mut senders, names) = open_all(addr, CONNECTIONS).await;
    assert!(names.iter().all(|n| n == "a"), "{names:?}");
    let first = running.worker_stats();
    let counts = served(&start, &first);
    assert!(
        counts.iter().all(|&conns| conns >= 1),
        "every worker serves: {counts:?}"
    );
    assert_eq!(counts.iter().sum::<u64>(), CONNECTIONS as u64);
    assert_eq!(
        first.iter().map(|s| s.open_connections).sum::<usize>(),
        CONNECTIONS
    );
    assert!(
        a.connections() >= 2,
        "one upstream pool per worker: {} upstream connections",
        a.connections()
    );

    // A reload: connections already open and new ones, on both workers, reach the new
    // backend list.
    running.reload(config(&[&b])).await.unwrap();
    for sender in &mut senders {
        assert_eq!(get(sender, addr).await, "b");
    }
    let (more, names) = open_all(addr, MORE).await;
    assert!(names.iter().all(|n| n == "b"), "{names:?}");
    let counts = served(&first, &running.worker_stats());
    assert!(
        counts.iter().all(|&conns| conns >= 1),
        "both workers accept after the reload: {counts:?}"
    );

    // Shutdown closes idle keep-alive connections and every worker's listening socket.
    assert!(
        running.shutdown().await,
        "shut down within the grace period"
    );
    let refused = tokio::time::timeout(STEP, tokio::net::TcpStream::connect(addr))
        .await
        .unwrap();
    assert!(refused.is_err(), "no worker accepts after shutdown");
    drop((senders, more));
    tokio::task::spawn_blocking(move || workers.join())
        .await
        .unwrap();
}
