//! Test support for the workspace: real HTTP backends on loopback.
//!
//! A [`TestBackend`] is a hyper server bound to a free port on 127.0.0.1. It answers every
//! request with its name (and an `x-backend` header), or echoes the request body on
//! `/echo`, counts requests, remembers the last request's headers, and can be told to answer
//! with another status or after a delay. On `/stall-body` it sends the head and one chunk,
//! then never finishes the body. It counts the connections it accepted and saw close, and
//! remembers the last client address, HTTP version and (TLS) server name.
//!
//! [`TestBackend::start_tls`] serves over TLS with certificates made by [`tls::TestCa`],
//! optionally offering HTTP/2 through ALPN and requiring client certificates. [`TestBackend::stop`] closes the listener and drops
//! every open connection, as a crashed server would; [`TestBackend::start_again`] binds the
//! same port again.
//!
//! [`etcd::Etcd`] runs a real `etcd` (Debian package etcd-server) on free ports, and can kill
//! and restart it on the same ports and data. [`dnsmasq::Dnsmasq`] does the same for a real
//! DNS server (Debian package dnsmasq) answering from a hosts file.
//!
//! For fault tests: [`raw::RawBackend`] misbehaves at the TCP level (hangs, answers garbage,
//! closes mid-head or mid-body), [`flap::Flapper`] crashes and restarts a backend over and
//! over, and [`process::BackendProcess`] runs a backend in a child process that can be
//! frozen and SIGKILLed.
//!
//! Not published; used by the tests of the other crates.

#![allow(clippy::unwrap_used, missing_docs)]

pub mod dnsmasq;
pub mod etcd;
pub mod flap;
pub mod hold;
pub mod process;
pub mod raw;
pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body::Frame;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::tls::TlsServer;

#[derive(Default)]
struct Shared {
    hits: AtomicUsize,
    status: AtomicU16,
    delay_ms: AtomicU64,
    arrived: tokio::sync::Notify,
    last_headers: parking_lot_free::Slot<HeaderMap>,
    last_version: parking_lot_free::Slot<Version>,
    connections: AtomicUsize,
    closed: AtomicUsize,
    /// Notified when a connection opens or closes.
    conn_event: tokio::sync::Notify,
    last_peer: parking_lot_free::Slot<SocketAddr>,
    last_sni: parking_lot_free::Slot<String>,
}

/// A tiny lock around an `Option`, to keep this crate free of extra dependencies.
mod parking_lot_free {
    pub(crate) struct Slot<T>(tokio::sync::Mutex<Option<T>>);

    impl<T> Default for Slot<T> {
        fn default() -> Self {
            Self(tokio::sync::Mutex::new(None))
        }
    }

    impl<T: Clone> Slot<T> {
        pub(crate) async fn set(&self, v: T) {
            *self.0.lock().await = Some(v);
        }
        pub(crate) async fn get(&self) -> Option<T> {
            self.0.lock().await.clone()
        }
    }
}

/// A real HTTP/1.1 + HTTP/2 (h2c) server on loopback for tests.
pub struct TestBackend {
    name: String,
    addr: SocketAddr,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
    running: Option<(oneshot::Sender<Stop>, tokio::task::JoinHandle<()>)>,
}

/// How a backend stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// Every connection dropped at once, as a crashed server.
    Crash,
    /// No new connections; requests in progress finish first, as a server draining on SIGTERM.
    Graceful,
}

impl TestBackend {
    /// Starts a backend named `name` on a free loopback port.
    pub async fn start(name: &str) -> Self {
        Self::start_on(name, "127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts a backend named `name` listening on `addr` (port 0 picks a free one; use
    /// `[::1]:0` for IPv6).
    pub async fn start_on(name: &str, addr: SocketAddr) -> Self {
        Self::start_with(name, addr, None).await
    }

    /// Starts a backend named `name` serving TLS on a free loopback port.
    pub async fn start_tls(name: &str, tls: TlsServer) -> Self {
        Self::start_with(name, "127.0.0.1:0".parse().unwrap(), Some(tls.acceptor())).await
    }

    async fn start_with(name: &str, addr: SocketAddr, tls: Option<TlsAcceptor>) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            status: AtomicU16::new(200),
            ..Shared::default()
        });
        let mut backend = Self {
            name: name.to_owned(),
            addr,
            shared,
            tls,
            running: None,
        };
        backend.serve(listener);
        backend
    }

    /// Starts `n` backends named `b0`, `b1`, ...
    pub async fn start_many(n: usize) -> Vec<Self> {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            out.push(Self::start(&format!("b{i}")).await);
        }
        out
    }

    fn serve(&mut self, listener: TcpListener) {
        let (stop_tx, mut stop_rx) = oneshot::channel();
        let name: Bytes = Bytes::from(self.name.clone());
        let shared = self.shared.clone();
        let tls = self.tls.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            let graceful = hyper_util::server::graceful::GracefulShutdown::new();
            let mode = loop {
                tokio::select! {
                    mode = &mut stop_rx => break mode.unwrap_or(Stop::Crash),
                    accepted = listener.accept() => {
                        let Ok((stream, peer)) = accepted else { continue };
                        let name = name.clone();
                        let shared = shared.clone();
                        let watcher = graceful.watcher();
                        let tls = tls.clone();
                        conns.spawn(async move {
                            shared.last_peer.set(peer).await;
                            shared.connections.fetch_add(1, Ordering::SeqCst);
                            shared.conn_event.notify_waiters();
                            let _closed = Closed(shared.clone());
                            let handler = shared.clone();
                            let svc = hyper::service::service_fn(move |req| {
                                handle(req, name.clone(), handler.clone())
                            });
                            let builder = auto::Builder::new(TokioExecutor::new());
                            match tls {
                                None => {
                                    let conn = builder
                                        .serve_connection_with_upgrades(TokioIo::new(stream), svc);
                                    let _ = watcher.watch(conn.into_owned()).await;
                                }
                                Some(acceptor) => {
                                    let Ok(stream) = acceptor.accept(stream).await else {
                                        return;
                                    };
                                    if let Some(sni) = stream.get_ref().1.server_name() {
                                        shared.last_sni.set(sni.to_owned()).await;
                                    }
                                    let conn = builder
                                        .serve_connection_with_upgrades(TokioIo::new(stream), svc);
                                    let _ = watcher.watch(conn.into_owned()).await;
                                }
                            }
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            };
            drop(listener);
            if mode == Stop::Graceful {
                // Idle keep-alive connections close now; busy ones after their response.
                let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
            }
            conns.shutdown().await;
        });
        self.running = Some((stop_tx, task));
    }

    /// The address it listens on (the same across restarts).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its name, which is also its response body.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Requests served since start (restarts do not reset it).
    pub fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests have arrived (been counted in [`hits`](Self::hits)).
    pub async fn wait_for_hits(&self, n: usize) {
        loop {
            // Created before the check, so a hit in between still wakes it.
            let arrived = self.shared.arrived.notified();
            if self.hits() >= n {
                return;
            }
            arrived.await;
        }
    }

    /// Headers of the last request served.
    pub async fn last_headers(&self) -> Option<HeaderMap> {
        self.shared.last_headers.get().await
    }

    /// Connections accepted since start (TLS handshakes that failed included).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Connections that have closed since start.
    pub fn closed_connections(&self) -> usize {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` connections have closed.
    pub async fn wait_for_closed(&self, n: usize) {
        loop {
            let event = self.shared.conn_event.notified();
            if self.closed_connections() >= n {
                return;
            }
            event.await;
        }
    }

    /// The client address of the last connection accepted.
    pub async fn last_peer(&self) -> Option<SocketAddr> {
        self.shared.last_peer.get().await
    }

    /// The server name (SNI) the last TLS client sent, if any did.
    pub async fn last_sni(&self) -> Option<String> {
        self.shared.last_sni.get().await
    }

    /// The HTTP version of the last request served.
    pub async fn last_version(&self) -> Option<Version> {
        self.shared.last_version.get().await
    }

    /// Answers with `status` from now on.
    pub fn set_status(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// Waits `delay` before answering from now on.
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Closes the listener and drops every open connection at once, as a crash would;
    /// returns when the port is free.
    pub async fn stop(&mut self) {
        self.stop_with(Stop::Crash).await;
    }

    /// Closes the listener and lets requests in progress finish (at most 10 s) before closing
    /// their connections, as a server draining on SIGTERM; returns when the port is free.
    pub async fn stop_gracefully(&mut self) {
        self.stop_with(Stop::Graceful).await;
    }

    async fn stop_with(&mut self, mode: Stop) {
        if let Some((stop, task)) = self.running.take() {
            let _ = stop.send(mode);
            let _ = task.await;
        }
    }

    /// Binds the same port again and serves.
    pub async fn start_again(&mut self) {
        assert!(self.running.is_none(), "already running");
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        if let Some((_, task)) = self.running.take() {
            task.abort();
        }
    }
}

async fn handle(
    req: Request<Incoming>,
    name: Bytes,
    shared: Arc<Shared>,
) -> Result<Response<BoxBody<Bytes, hyper::Error>>, Infallible> {
    shared.last_headers.set(req.headers().clone()).await;
    shared.last_version.set(req.version()).await;
    shared.hits.fetch_add(1, Ordering::SeqCst);
    shared.arrived.notify_waiters();
    let delay = shared.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = StatusCode::from_u16(shared.status.load(Ordering::SeqCst)).unwrap();
    let body = if req.uri().path() == "/echo" {
        req.into_body().boxed()
    } else if req.uri().path() == "/stall-body" {
        Stall(Some(name.clone())).boxed()
    } else {
        Full::new(name.clone())
            .map_err(|never| match never {})
            .boxed()
    };
    let resp = Response::builder()
        .status(status)
        .header("x-backend", &name[..])
        .body(body)
        .unwrap();
    Ok(resp)
}

/// Counts a connection as closed when its task ends, however it ends.
struct Closed(Arc<Shared>);

impl Drop for Closed {
    fn drop(&mut self) {
        self.0.closed.fetch_add(1, Ordering::SeqCst);
        self.0.conn_event.notify_waiters();
    }
}

/// A body that sends one chunk and then never ends (until its connection closes).
struct Stall(Option<Bytes>);

impl http_body::Body for Stall {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.0.take() {
            Some(chunk) => std::task::Poll::Ready(Some(Ok(Frame::data(chunk)))),
            None => std::task::Poll::Pending,
        }
    }
}
