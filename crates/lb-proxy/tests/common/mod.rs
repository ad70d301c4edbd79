//! Shared helpers of the proxy's integration tests: start the real proxy in-process from
//! TOML text, record health transitions, and talk to it with a real HTTP client.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

pub mod load;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use lb_core::Health;
use lb_proxy::config::Config;
use lb_proxy::{Proxy, RunningProxy};
use lb_testkit::TestBackend;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

/// One health transition seen by the proxy's hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub upstream: String,
    pub backend: SocketAddr,
    pub old: Health,
    pub new: Health,
    pub reason: Option<String>,
}

pub struct Harness {
    pub proxy: RunningProxy,
    pub client: Client<HttpConnector, Full<Bytes>>,
}

/// The health transitions the proxy reported, in order.
pub struct Transitions(mpsc::UnboundedReceiver<Transition>);

/// A port that was free a moment ago (bind to port 0, read it, release it), for processes
/// that must be told their port on the command line.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `"127.0.0.1:p1", "127.0.0.1:p2", ...` for a TOML array.
pub fn backend_list(backends: &[TestBackend]) -> String {
    backends
        .iter()
        .map(|b| format!("\"{}\"", b.addr()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A one-upstream (`web`) config over `backends`, listening on a free port, with `extra`
/// appended to the `[upstreams.web]` table (for instance a health check table).
pub fn config(backends: &[TestBackend], extra: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\ngrace_period = \"5s\"\n\n\
         [upstreams.web]\nbackends = [{}]\n{extra}\n\n[[routes]]\nupstream = \"web\"\n",
        backend_list(backends)
    )
}

impl Harness {
    pub async fn start(toml: &str) -> (Self, Transitions) {
        let config = Config::from_toml_str(toml, "test.toml").unwrap();
        let (tx, transitions) = mpsc::unbounded_channel();
        let proxy = Proxy::new(config)
            .on_health_change(move |upstream, change| {
                let _ = tx.send(Transition {
                    upstream: upstream.to_owned(),
                    backend: change.backend.addr().as_inet().unwrap(),
                    old: change.old,
                    new: change.new,
                    reason: change.reason.map(ToString::to_string),
                });
            })
            .start()
            .await
            .unwrap();
        let client = Client::builder(TokioExecutor::new()).build_http();
        (Self { proxy, client }, Transitions(transitions))
    }

    pub fn addr(&self) -> SocketAddr {
        self.proxy.local_addrs()[0]
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    /// GET `path`; the status and the body as text.
    pub async fn get(&self, path: &str) -> (StatusCode, String) {
        let req = Request::get(self.url(path)).body(Full::default()).unwrap();
        self.send(req).await
    }

    pub async fn send(&self, req: Request<Full<Bytes>>) -> (StatusCode, String) {
        let resp = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .expect("request timed out")
            .expect("request failed");
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

impl Transitions {
    /// The next transition, waiting at most 10 s.
    pub async fn next(&mut self) -> Transition {
        tokio::time::timeout(Duration::from_secs(10), self.0.recv())
            .await
            .expect("no health transition within 10 s")
            .expect("hook dropped")
    }

    /// Asserts no transition is pending right now.
    pub fn assert_none(&mut self) {
        if let Ok(t) = self.0.try_recv() {
            panic!("unexpected transition {t:?}");
        }
    }
}

/// Reads one response with a `Content-Length` (or none) from `stream` into `data`, drains
/// it from there (what follows stays for the next call), and returns its status line in
/// lower case. Bounded by 10 s.
pub async fn read_response<S: AsyncRead + Unpin>(stream: &mut S, data: &mut Vec<u8>) -> String {
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |n| n.trim().parse().unwrap());
                if data.len() >= end + 4 + length {
                    data.drain(..end + 4 + length);
                    return head.lines().next().unwrap_or_default().to_owned();
                }
            }
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "closed mid-response: {:?}",
                String::from_utf8_lossy(data)
            );
            data.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .unwrap()
}

/// Waits (bounded, 10 s) until `parked` connections are parked on the proxy's workers.
pub async fn wait_parked(proxy: &RunningProxy, parked: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    // Bounded by the deadline; the gauge changes on the proxy's own timer, no event to await.
    loop {
        let now: usize = proxy
            .worker_stats()
            .iter()
            .map(|w| w.parked_connections)
            .sum();
        if now == parked {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{now} parked connections, expected {parked}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
