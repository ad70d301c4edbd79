//! The embedded demo: small backends on loopback and a configuration balancing over them.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use lb_core::Backend;
use tokio::net::TcpListener;

use crate::config::{BackendList, Config};

/// Starts `n` demo backends on free loopback ports; each answers every request with
/// `hello from demo backend N (ADDR)`. They run until the runtime stops.
pub async fn start_backends(n: usize) -> std::io::Result<Vec<SocketAddr>> {
    let mut addrs = Vec::with_capacity(n);
    for i in 1..=n {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let body = Bytes::from(format!("hello from demo backend {i} ({addr})\n"));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let body = body.clone();
                let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
                    let body = body.clone();
                    async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
                });
                tokio::spawn(async move {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        addrs.push(addr);
    }
    Ok(addrs)
}

/// The demo configuration: round robin over `backends` with TCP checks, on `listen`.
pub fn config(listen: Vec<SocketAddr>, backends: &[SocketAddr]) -> Config {
    let list = BackendList(backends.iter().map(|a| Backend::new(*a)).collect());
    Config::quick(listen, list)
}
