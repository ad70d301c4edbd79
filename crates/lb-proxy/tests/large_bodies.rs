//! A 1 GiB upload and a 1 GiB download through the real `lb-proxy` process, whose peak
//! resident memory must stay under 64 MiB: bodies stream, they are never buffered whole
//! (the replay buffer for retries keeps at most `retry.buffer` bytes, then lets go).

#![allow(clippy::unwrap_used)]

mod common;

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::free_port;
use futures_util::stream;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

const BIN: &str = env!("CARGO_BIN_EXE_lb-proxy");
const GIB: u64 = 1 << 30;
const CHUNK: usize = 256 * 1024;
static ZEROS: [u8; CHUNK] = [0; CHUNK];

type Chunks = StreamBody<
    stream::Iter<std::iter::Map<std::ops::Range<u64>, fn(u64) -> Result<Frame<Bytes>, Infallible>>>,
>;

/// `total` bytes of zeros in 256 KiB frames, without allocating per frame.
fn zeros(total: u64) -> Chunks {
    fn frame(_: u64) -> Result<Frame<Bytes>, Infallible> {
        Ok(Frame::data(Bytes::from_static(&ZEROS)))
    }
    let frames = total / CHUNK as u64;
    StreamBody::new(stream::iter((0..frames).map(frame as fn(u64) -> _)))
}

/// A backend: `POST /sink` counts the bytes it reads and answers the count;
/// `GET /source` answers 1 GiB.
async fn backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    if req.uri().path() == "/sink" {
                        let mut body = req.into_body();
                        let mut n = 0u64;
                        while let Some(frame) = body.frame().await {
                            if let Ok(data) = frame.unwrap().into_data() {
                                n += data.len() as u64;
                            }
                        }
                        let body = zeros(0).boxed();
                        let mut resp = Response::new(body);
                        resp.headers_mut().insert("x-received", n.into());
                        Ok::<_, Infallible>(resp)
                    } else {
                        let mut resp = Response::new(zeros(GIB).boxed());
                        resp.headers_mut()
                            .insert(http::header::CONTENT_LENGTH, GIB.into());
                        Ok(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// The peak resident set size of process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gibibyte_each_way_streams_in_bounded_memory() {
    let backend = backend().await;
    let port = free_port();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("large-bodies-{}.toml", std::process::id()));
    let mut file = std::fs::File::create(&path).unwrap();
    write!(
        file,
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\nthreads = 2\n\n\
         [upstreams.big]\nbackends = [\"{backend}\"]\n\n[[routes]]\nupstream = \"big\"\n"
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (started_tx, started) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut tx = Some(started_tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("lb-proxy started") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(());
                }
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), started)
        .await
        .expect("lb-proxy did not start")
        .unwrap();

    let client = Client::builder(TokioExecutor::new()).build_http::<Chunks>();
    let deadline = Duration::from_secs(120);

    // Upload: 1 GiB streamed to the backend, which counts every byte.
    let req = Request::post(format!("http://127.0.0.1:{port}/sink"))
        .body(zeros(GIB))
        .unwrap();
    let resp = tokio::time::timeout(deadline, client.request(req))
        .await
        .expect("upload timed out")
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-received"], GIB.to_string().as_str());

    // Download: 1 GiB streamed back, counted by the client.
    let req = Request::get(format!("http://127.0.0.1:{port}/source"))
        .body(zeros(0))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut received = 0u64;
    let counted = tokio::time::timeout(deadline, async {
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                received += data.len() as u64;
            }
        }
    })
    .await;
    assert!(counted.is_ok(), "download timed out after {received} bytes");
    assert_eq!(received, GIB);

    let peak = peak_rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&path);
    println!("lb-proxy peak RSS after 1 GiB each way: {} KiB", peak);
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB is over 64 MiB");
}
