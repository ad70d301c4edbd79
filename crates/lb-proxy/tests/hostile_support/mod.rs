//! Shared tools of the hostile-input tests (`tests/hostile_*.rs`): a raw TCP backend that
//! records exactly the bytes of every request it receives, a raw client that sends bytes
//! and reads the answer until the proxy closes, and a well-behaved client that keeps
//! requesting while an attack runs.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One request as a backend received it.
#[derive(Clone, Debug)]
pub struct Received {
    /// The exact bytes, head and body.
    pub bytes: Vec<u8>,
    /// False when the connection ended before the request was complete.
    pub complete: bool,
}

impl Received {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The values of header `name` (case-insensitive) in the head.
    pub fn header(&self, name: &str) -> Vec<String> {
        let text = self.text();
        let head = text.split("\r\n\r\n").next().unwrap_or_default().to_owned();
        head.split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }

    /// The body after the head, as sent on the wire (chunked framing included).
    pub fn body(&self) -> Vec<u8> {
        let at = find(&self.bytes, b"\r\n\r\n").map_or(self.bytes.len(), |i| i + 4);
        self.bytes[at..].to_vec()
    }
}

/// A backend that parses just enough HTTP/1.1 to split requests (by `Content-Length` or
/// chunked framing), records each one's bytes, and answers `200 ok`.
pub struct RawBackend {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl RawBackend {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (r, c) = (received.clone(), connections.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve_raw(stream, r.clone()));
            }
        });
        Self {
            addr,
            received,
            connections,
            task,
        }
    }

    /// Every request received so far, complete or not.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().clone()
    }

    /// The complete requests received so far.
    pub fn complete(&self) -> Vec<Received> {
        self.received().into_iter().filter(|r| r.complete).collect()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_raw(mut stream: TcpStream, received: Arc<Mutex<Vec<Received>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        while let Some(n) = request_len(&buf) {
            let bytes: Vec<u8> = buf.drain(..n).collect();
            received.lock().push(Received {
                bytes,
                complete: true,
            });
            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
            if stream.write_all(answer).await.is_err() {
                return;
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                if !buf.is_empty() {
                    received.lock().push(Received {
                        bytes: buf,
                        complete: false,
                    });
                }
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The length of the first complete request in `buf`, if there is one.
fn request_len(buf: &[u8]) -> Option<usize> {
    let head_end = find(buf, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let header = |name: &str| {
        head.split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim() == name)
            .map(|(_, v)| v.trim().to_owned())
    };
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut at = head_end;
        loop {
            let line_end = at + find(&buf[at..], b"\r\n")?;
            let line = std::str::from_utf8(&buf[at..line_end]).ok()?;
            let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
            at = line_end + 2;
            if size == 0 {
                // Trailers, then an empty line.
                loop {
                    let end = at + find(&buf[at..], b"\r\n")?;
                    let empty = end == at;
                    at = end + 2;
                    if empty {
                        return Some(at);
                    }
                }
            }
            at += size + 2;
            if at > buf.len() {
                return None;
            }
        }
    }
    let len: usize = header("content-length").map_or(Some(0), |v| v.parse().ok())?;
    (buf.len() >= head_end + len).then_some(head_end + len)
}

/// What the proxy answered on a raw connection.
#[derive(Debug)]
pub struct Answer {
    pub bytes: Vec<u8>,
    /// The proxy closed the connection (EOF or reset) within the deadline.
    pub closed: bool,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The status of the first response, 0 when there is none.
    pub fn status(&self) -> u16 {
        self.statuses().first().copied().unwrap_or(0)
    }

    /// The statuses of every response, in order.
    pub fn statuses(&self) -> Vec<u16> {
        self.text()
            .match_indices("HTTP/1.1 ")
            .filter_map(|(i, _)| self.text().get(i + 9..i + 12)?.parse().ok())
            .collect()
    }
}

/// Sends `bytes` on a new connection to `addr` and reads until the proxy closes it, at
/// most `within`.
pub async fn exchange(addr: SocketAddr, bytes: &[u8], within: Duration) -> Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The proxy may close before reading everything (a rejected head): ignore write errors.
    let _ = stream.write_all(bytes).await;
    read_until_closed(&mut stream, within).await
}

/// Reads what `stream` receives until it closes, at most `within`.
pub async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Answer {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => {
                return Answer {
                    bytes,
                    closed: false,
                }
            }
            Ok(Ok(0) | Err(_)) => {
                return Answer {
                    bytes,
                    closed: true,
                }
            }
            Ok(Ok(n)) => bytes.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A well-behaved client requesting `url` in a loop until stopped: proves the proxy keeps
/// serving others during an attack.
pub struct GoodClient {
    stop: watch::Sender<bool>,
    task: JoinHandle<(usize, usize)>,
}

impl GoodClient {
    /// Starts requesting `url` every `every`.
    pub fn start(url: String, every: Duration) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
            let (mut ok, mut failed) = (0, 0);
            while !*stopped.borrow() {
                let req = Request::get(&url).body(Full::default()).unwrap();
                let sent = tokio::time::timeout(Duration::from_secs(2), async {
                    let resp = client.request(req).await.ok()?;
                    let status = resp.status();
                    resp.into_body().collect().await.ok()?;
                    Some(status)
                })
                .await;
                match sent {
                    Ok(Some(StatusCode::OK)) => ok += 1,
                    _ => failed += 1,
                }
                let _ = tokio::time::timeout(every, stopped.changed()).await;
            }
            (ok, failed)
        });
        Self { stop, task }
    }

    /// Stops; the number of successful and failed requests.
    pub async fn finish(self) -> (usize, usize) {
        let _ = self.stop.send(true);
        self.task.await.unwrap()
    }
}

/// Waits until `cond` holds, checking every 10 ms, at most `within`; false if it never did.
pub async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

/// A proxy config with one upstream `web` over `backends`, `limits` as the
/// `[server.limits]` table and `upstream_extra` in `[upstreams.web]`.
pub fn config(backends: &[SocketAddr], limits: &str, upstream_extra: &str) -> String {
    let list = backends
        .iter()
        .map(|b| format!("\"{b}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\ngrace_period = \"1s\"\n\n[server.limits]\n{limits}\n\n\
         [upstreams.web]\nbackends = [{list}]\n{upstream_extra}\n\n[[routes]]\nupstream = \"web\"\n"
    )
}
