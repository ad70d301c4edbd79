//! WebSocket through the real proxy: a real tokio-tungstenite client, a real WebSocket echo
//! backend behind a hyper server, messages both ways, closes from either side, the idle
//! timeout, a refused upgrade, and the backend's upgraded connection kept out of the pool.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Harness;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Bound for every wait in these tests.
const WAIT: Duration = Duration::from_secs(10);

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the backend saw.
#[derive(Debug)]
enum Event {
    /// An upgrade request arrived with these headers.
    Upgrade(HeaderMap),
    /// A WebSocket session ended: `"closed"` after a close handshake, else the error.
    Ended(String),
}

/// A real WebSocket echo server on loopback (HTTP/1.1 via hyper, frames via tungstenite).
///
/// - `/ws` upgrades and echoes text and binary messages; on the text `close-me` it starts
///   a close handshake, on `drop-me` it drops the connection without one;
/// - `/refuse` answers `400 no websocket here`;
/// - anything else answers `200 plain`.
struct WsBackend {
    addr: SocketAddr,
    events: mpsc::UnboundedReceiver<Event>,
    task: JoinHandle<()>,
}

impl WsBackend {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let tx = tx.clone();
                let svc = hyper::service::service_fn(move |req| handle(req, tx.clone()));
                conns.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Self { addr, events, task }
    }

    async fn next_event(&mut self) -> Event {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("no backend event in time")
            .unwrap()
    }

    /// Waits for the end of a session and returns how it ended.
    async fn ended(&mut self) -> String {
        loop {
            if let Event::Ended(how) = self.next_event().await {
                return how;
            }
        }
    }
}

impl Drop for WsBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    mut req: Request<Incoming>,
    events: mpsc::UnboundedSender<Event>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let plain = |status: StatusCode, text: &'static str| {
        let mut resp = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *resp.status_mut() = status;
        Ok(resp)
    };
    match req.uri().path() {
        "/refuse" => plain(StatusCode::BAD_REQUEST, "no websocket here"),
        "/ws" => {
            let Some(key) = req.headers().get("sec-websocket-key") else {
                return plain(StatusCode::BAD_REQUEST, "not a websocket request");
            };
            let accept = derive_accept_key(key.as_bytes());
            let _ = events.send(Event::Upgrade(req.headers().clone()));
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let io = on_upgrade.await.unwrap();
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, None).await;
                let how = echo(ws).await;
                let _ = events.send(Event::Ended(how));
            });
            Ok(Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-accept", accept)
                .body(Full::default())
                .unwrap())
        }
        _ => plain(StatusCode::OK, "plain"),
    }
}

async fn echo(mut ws: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>) -> String {
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Text(t)) if t.as_str() == "close-me" => {
                if let Err(e) = ws.close(None).await {
                    return format!("error: {e}");
                }
            }
            Ok(Message::Text(t)) if t.as_str() == "drop-me" => return "dropped".into(),
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                if let Err(e) = ws.send(m).await {
                    return format!("error: {e}");
                }
            }
            Ok(_) => {} // ping/pong/close: tungstenite answers by itself
            Err(e) => return format!("error: {e}"),
        }
    }
    "closed".into()
}

/// The proxy in front of `backend`, with `extra` in `[upstreams.web]` and `server` in
/// `[server]`.
async fn proxy(backend: &WsBackend, server: &str, extra: &str) -> Harness {
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\ngrace_period = \"5s\"\n{server}\n\n\
         [upstreams.web]\nbackends = [\"{}\"]\n{extra}\n\n[[routes]]\nupstream = \"web\"\n",
        backend.addr
    );
    Harness::start(&toml).await.0
}

async fn connect(h: &Harness, path: &str) -> Result<Client, WsError> {
    let url = format!("ws://{}{path}", h.addr());
    let (ws, resp) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("handshake timed out")?;
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    Ok(ws)
}

/// The next message, waiting at most [`WAIT`].
async fn recv(ws: &mut Client) -> Option<Result<Message, WsError>> {
    tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("nothing received in time")
}

/// Waits until the client's stream ends (cleanly or with an error); how long it took.
async fn until_closed(ws: &mut Client) -> Duration {
    let start = Instant::now();
    for _ in 0..16 {
        match recv(ws).await {
            None | Some(Err(_)) => return start.elapsed(),
            Some(Ok(Message::Close(_))) => {} // the stream ends right after
            Some(Ok(other)) => panic!("unexpected message {other:?}"),
        }
    }
    panic!("the stream did not end");
}

#[tokio::test]
async fn messages_flow_both_ways() {
    let mut backend = WsBackend::start().await;
    let h = proxy(&backend, "", "").await;
    let mut ws = connect(&h, "/ws").await.unwrap();
    let Event::Upgrade(seen) = backend.next_event().await else {
        panic!("no upgrade request")
    };
    assert_eq!(seen["upgrade"], "websocket");
    assert!(seen["connection"]
        .to_str()
        .unwrap()
        .eq_ignore_ascii_case("upgrade"));
    assert!(seen.contains_key("sec-websocket-key"));
    assert_eq!(
        seen["x-forwarded-for"], "127.0.0.1",
        "forwarding headers as for any request"
    );

    for i in 0..20 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
    }
    for i in 0..20 {
        let msg = recv(&mut ws).await.unwrap().unwrap();
        assert_eq!(msg, Message::text(format!("hello {i}")));
    }
    // Far larger than the splice buffers.
    let big = Bytes::from(vec![0xa5u8; 1 << 20]);
    ws.send(Message::Binary(big.clone())).await.unwrap();
    assert_eq!(recv(&mut ws).await.unwrap().unwrap(), Message::Binary(big));
}

#[tokio::test]
async fn a_client_close_reaches_the_backend() {
    let mut backend = WsBackend::start().await;
    let h = proxy(&backend, "", "").await;

    // With the close handshake.
    let mut ws = connect(&h, "/ws").await.unwrap();
    ws.send(Message::text("x")).await.unwrap();
    recv(&mut ws).await.unwrap().unwrap();
    ws.close(None).await.unwrap();
    until_closed(&mut ws).await;
    assert_eq!(backend.ended().await, "closed");

    // Without one: the client's TCP connection just goes away.
    let mut ws = connect(&h, "/ws").await.unwrap();
    ws.send(Message::text("x")).await.unwrap();
    recv(&mut ws).await.unwrap().unwrap();
    drop(ws);
    let how = backend.ended().await;
    assert!(how.starts_with("error"), "{how}");
}

#[tokio::test]
async fn a_backend_close_reaches_the_client() {
    let mut backend = WsBackend::start().await;
    let h = proxy(&backend, "", "").await;

    let mut ws = connect(&h, "/ws").await.unwrap();
    ws.send(Message::text("close-me")).await.unwrap();
    match recv(&mut ws).await {
        Some(Ok(Message::Close(_))) => {}
        other => panic!("expected the backend's close frame, got {other:?}"),
    }
    until_closed(&mut ws).await;
    assert_eq!(backend.ended().await, "closed");

    let mut ws = connect(&h, "/ws").await.unwrap();
    ws.send(Message::text("drop-me")).await.unwrap();
    until_closed(&mut ws).await;
    assert_eq!(backend.ended().await, "dropped");
}

#[tokio::test]
async fn a_silent_connection_is_closed_at_the_idle_timeout() {
    // The upstream's own setting (the server's is longer), then the server-wide one.
    for (server, upstream) in [
        (
            "upgrade_idle_timeout = \"1h\"",
            "upgrade_idle_timeout = \"1s\"",
        ),
        ("upgrade_idle_timeout = \"1s\"", ""),
    ] {
        let mut backend = WsBackend::start().await;
        let h = proxy(&backend, server, upstream).await;
        let mut ws = connect(&h, "/ws").await.unwrap();

        // Traffic every 250 ms keeps it open well past the timeout.
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        for i in 0..7 {
            tick.tick().await;
            ws.send(Message::text(format!("{i}"))).await.unwrap();
            assert_eq!(
                recv(&mut ws).await.unwrap().unwrap(),
                Message::text(format!("{i}"))
            );
        }
        assert!(start.elapsed() >= Duration::from_millis(1500));

        // Then silence closes both sides, one timeout after the last byte moved (which was
        // a moment before the client read it).
        let waited = until_closed(&mut ws).await;
        assert!(waited >= Duration::from_millis(900), "{waited:?}");
        let how = backend.ended().await;
        assert!(how.starts_with("error"), "{how}");
    }
}

#[tokio::test]
async fn a_refused_upgrade_is_passed_through() {
    let backend = WsBackend::start().await;
    let h = proxy(&backend, "", "").await;
    match connect(&h, "/refuse").await {
        Err(WsError::Http(resp)) => {
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
            assert_eq!(resp.body().as_deref(), Some(&b"no websocket here"[..]));
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("the upgrade was refused by the backend"),
    }
    // The same request over a plain HTTP client: an ordinary response.
    let req = Request::get(h.url("/refuse"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .body(Full::default())
        .unwrap();
    assert_eq!(
        h.send(req).await,
        (StatusCode::BAD_REQUEST, "no websocket here".to_owned())
    );
}

/// A plain request to the same backend while a WebSocket is open: if the upgraded backend
/// connection had gone back to the pool, the request would be written into the WebSocket.
#[tokio::test]
async fn upgraded_connections_never_go_back_to_the_pool() {
    let backend = WsBackend::start().await;
    let h = proxy(&backend, "", "").await;
    // Warm the pool with a keep-alive connection first, then upgrade.
    assert_eq!(h.get("/").await, (StatusCode::OK, "plain".to_owned()));
    let mut ws = connect(&h, "/ws").await.unwrap();
    for i in 0..5 {
        assert_eq!(h.get("/").await, (StatusCode::OK, "plain".to_owned()));
        ws.send(Message::text(format!("m{i}"))).await.unwrap();
        assert_eq!(
            recv(&mut ws).await.unwrap().unwrap(),
            Message::text(format!("m{i}"))
        );
    }
    ws.close(None).await.unwrap();
    until_closed(&mut ws).await;
    assert_eq!(h.get("/").await, (StatusCode::OK, "plain".to_owned()));
}
