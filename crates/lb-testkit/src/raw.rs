//! Raw TCP backends that misbehave on purpose, for fault tests: one that accepts and never
//! answers, one that answers something that is not HTTP, and ones that close the
//! connection in the middle of the response head or body.
//!
//! Each reads the request head (up to the blank line) before misbehaving, so the client
//! has really sent its request, and counts connections accepted, request heads read and
//! connections closed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Bytes of body that [`RawBackend::close_mid_body`] and
/// [`RawBackend::close_mid_chunked_body`] send before closing.
pub const PARTIAL_BODY_LEN: usize = 1000;

/// The `Content-Length` that [`RawBackend::close_mid_body`] announces (far more than it
/// sends).
pub const ANNOUNCED_BODY_LEN: usize = 100_000;

/// What the backend does once it has read a request head.
#[derive(Clone, Debug)]
enum Behaviour {
    /// Nothing: the connection stays open and silent until the client closes it.
    Hang,
    /// Writes these bytes, then closes the connection.
    ReplyThenClose(Arc<[u8]>),
}

#[derive(Default)]
struct Counters {
    connections: AtomicUsize,
    requests: AtomicUsize,
    closed: AtomicUsize,
    event: Notify,
}

/// A loopback TCP server that misbehaves in one fixed way; stops when dropped.
pub struct RawBackend {
    addr: SocketAddr,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl RawBackend {
    /// Accepts, reads the request head, and never answers: the connection stays open
    /// until the client gives up.
    pub async fn hang() -> Self {
        Self::start(Behaviour::Hang).await
    }

    /// Answers with a line that is not HTTP, then closes.
    pub async fn garbage() -> Self {
        Self::reply(b"HELLO, I AM NOT HTTP AT ALL\r\n\r\n".to_vec()).await
    }

    /// Sends the status line and half a header, then closes.
    pub async fn close_mid_headers() -> Self {
        Self::reply(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Cut-Here: ha".to_vec()).await
    }

    /// Sends a complete head announcing [`ANNOUNCED_BODY_LEN`] bytes, then
    /// [`PARTIAL_BODY_LEN`] bytes of `x`, then closes.
    pub async fn close_mid_body() -> Self {
        let mut bytes =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {ANNOUNCED_BODY_LEN}\r\n\r\n").into_bytes();
        bytes.extend(std::iter::repeat_n(b'x', PARTIAL_BODY_LEN));
        Self::reply(bytes).await
    }

    /// Sends a chunked head and one complete chunk of [`PARTIAL_BODY_LEN`] bytes of `x`,
    /// then closes without the last (zero-size) chunk.
    pub async fn close_mid_chunked_body() -> Self {
        let mut bytes = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{PARTIAL_BODY_LEN:x}\r\n"
        )
        .into_bytes();
        bytes.extend(std::iter::repeat_n(b'x', PARTIAL_BODY_LEN));
        bytes.extend_from_slice(b"\r\n");
        Self::reply(bytes).await
    }

    /// Answers every request with exactly `bytes`, then closes.
    pub async fn reply(bytes: Vec<u8>) -> Self {
        Self::start(Behaviour::ReplyThenClose(bytes.into())).await
    }

    async fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let shared = counters.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        shared.connections.fetch_add(1, Ordering::SeqCst);
                        shared.event.notify_waiters();
                        conns.spawn(serve(stream, behaviour.clone(), shared.clone()));
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Self {
            addr,
            counters,
            task,
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.counters.connections.load(Ordering::SeqCst)
    }

    /// Request heads read so far.
    pub fn requests(&self) -> usize {
        self.counters.requests.load(Ordering::SeqCst)
    }

    /// Connections that have ended so far (closed by either side).
    pub fn closed(&self) -> usize {
        self.counters.closed.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` request heads have been read.
    pub async fn wait_for_requests(&self, n: usize) {
        loop {
            let event = self.counters.event.notified();
            if self.requests() >= n {
                return;
            }
            event.await;
        }
    }

    /// Waits until every connection accepted so far has ended.
    pub async fn wait_all_closed(&self) {
        loop {
            let event = self.counters.event.notified();
            if self.closed() >= self.connections() {
                return;
            }
            event.await;
        }
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One connection: read the request head, misbehave, and count the end.
async fn serve(mut stream: TcpStream, behaviour: Behaviour, counters: Arc<Counters>) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let mut complete = true;
    // The request head: up to the first blank line.
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => {
                complete = false;
                break;
            }
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    if complete {
        counters.requests.fetch_add(1, Ordering::SeqCst);
        counters.event.notify_waiters();
        match &behaviour {
            // Silent until the client closes (whatever else it sends is read and ignored).
            Behaviour::Hang => while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {},
            Behaviour::ReplyThenClose(bytes) => {
                let _ = stream.write_all(bytes).await;
                let _ = stream.shutdown().await;
            }
        }
    }
    counters.closed.fetch_add(1, Ordering::SeqCst);
    counters.event.notify_waiters();
}
