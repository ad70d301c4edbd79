//! The HTTP/1.1 transport to etcd's JSON gateway: a connection per call, a long-lived one
//! per watch, the members tried in turn.
//!
//! - **Calls** (`/v3/kv/range`) open a connection, send one `POST` with a JSON body, read
//!   the whole answer (at most [`MAX_MESSAGE`] bytes) and close. Discovery calls rarely (a
//!   read at start and after a resynchronisation, a probe while a watch is idle), so a
//!   pool would only keep sockets open.
//! - **Watches** (`/v3/watch`) keep their connection: the gateway streams one JSON object
//!   per line for as long as the watch lives. TCP keep-alive is set on that socket
//!   (probes after `keep_alive` of silence, the connection dropped when one goes
//!   unanswered for as long again), so a vanished host or a cut network ends the stream.
//! - **Members.** Requests go to one member until a failure moves them to the next
//!   ([`Gateway::fail_over`]), as etcd's own client does when a member stops answering.
//!
//! The connection is driven inside the caller's future (no task is spawned): dropping a
//! call or a watch closes its socket at once.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

use super::api::{GatewayStatus, WatchLine, WatchResponse};
use super::endpoint::Endpoint;

/// The largest answer or watch message read (a registry of tens of thousands of keys).
pub(super) const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// Why a request to the gateway failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The member's host name did not resolve.
    #[error("cannot resolve {endpoint}")]
    Resolve {
        /// The member's URL.
        endpoint: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// No TCP connection could be opened in time (refused, unreachable, timed out).
    #[error("cannot connect to {endpoint}")]
    Connect {
        /// The member's URL.
        endpoint: String,
        /// The last connection error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange broke (connection reset, closed early, malformed HTTP).
    #[error("HTTP exchange with {endpoint} failed")]
    Http {
        /// The member's URL.
        endpoint: String,
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
    /// The gateway answered with an error status (the gRPC status it carries).
    #[error("{endpoint} answered {status}: {message}")]
    Status {
        /// The member's URL.
        endpoint: String,
        /// The HTTP status (200 for an error inside a watch stream).
        status: u16,
        /// The gRPC status code, when the answer has one (14: unavailable, ...).
        code: Option<i32>,
        /// The server's message.
        message: String,
    },
    /// An answer was not the JSON etcd sends.
    #[error("{endpoint} sent an answer that is not etcd's JSON")]
    Decode {
        /// The member's URL.
        endpoint: String,
        /// What did not parse.
        #[source]
        source: serde_json::Error,
    },
    /// An answer or watch message was longer than `limit` bytes (64 MiB).
    #[error("{endpoint} sent a message over {limit} bytes")]
    TooLarge {
        /// The member's URL.
        endpoint: String,
        /// The limit.
        limit: usize,
    },
}

/// The members of the cluster and the one requests go to.
#[derive(Debug)]
pub(super) struct Gateway {
    endpoints: Vec<Endpoint>,
    current: AtomicUsize,
    connect_timeout: Duration,
    keep_alive: Duration,
}

/// A connection being driven while its response is read.
type Connection = Pin<Box<http1::Connection<TokioIo<TcpStream>, Full<Bytes>>>>;

/// A response whose body is being read; the connection is driven alongside.
struct Exchange {
    endpoint: String,
    status: StatusCode,
    body: Incoming,
    connection: Connection,
    connection_done: bool,
}

/// An open watch: the lines of one streaming response.
pub(super) struct WatchStream {
    exchange: Exchange,
    buffer: BytesMut,
    /// How much of `buffer` is known to hold no line end.
    scanned: usize,
}

impl Gateway {
    /// The members at `endpoints` (non-empty, already parsed).
    pub(super) fn new(
        endpoints: Vec<Endpoint>,
        connect_timeout: Duration,
        keep_alive: Duration,
    ) -> Self {
        Self {
            endpoints,
            current: AtomicUsize::new(0),
            connect_timeout,
            keep_alive,
        }
    }

    /// Sends the next requests to the next member (after a failure).
    pub(super) fn fail_over(&self) {
        self.current.fetch_add(1, Ordering::Relaxed);
    }

    fn endpoint(&self) -> &Endpoint {
        let i = self.current.load(Ordering::Relaxed) % self.endpoints.len().max(1);
        &self.endpoints[i]
    }

    /// `POST path` with `request` as JSON; the decoded answer.
    pub(super) async fn call<Q: Serialize, A: DeserializeOwned>(
        &self,
        path: &'static str,
        request: &Q,
    ) -> Result<A, GatewayError> {
        let mut exchange = self.post(path, request, false).await?;
        let body = exchange.read_to_end().await?;
        if !exchange.status.is_success() {
            return Err(exchange.status_error(&body));
        }
        serde_json::from_slice(&body).map_err(|source| exchange.decode_error(source))
    }

    /// Opens a watch (`POST /v3/watch` with `request`); its messages follow.
    pub(super) async fn watch<Q: Serialize>(
        &self,
        request: &Q,
    ) -> Result<WatchStream, GatewayError> {
        let mut exchange = self.post("/v3/watch", request, true).await?;
        if !exchange.status.is_success() {
            let body = exchange.read_to_end().await?;
            return Err(exchange.status_error(&body));
        }
        Ok(WatchStream {
            exchange,
            buffer: BytesMut::new(),
            scanned: 0,
        })
    }

    async fn post<Q: Serialize>(
        &self,
        path: &'static str,
        body: &Q,
        long_lived: bool,
    ) -> Result<Exchange, GatewayError> {
        let endpoint = self.endpoint();
        let name = endpoint.to_string();
        let body = serde_json::to_vec(body).map_err(|source| GatewayError::Decode {
            endpoint: name.clone(),
            source,
        })?;
        let stream = self.connect(endpoint).await?;
        if long_lived {
            let keep_alive = TcpKeepalive::new()
                .with_time(self.keep_alive)
                .with_interval(self.keep_alive)
                .with_retries(1);
            // Without it a dead peer is still found by the idle probe (watch.rs).
            if let Err(error) = SockRef::from(&stream).set_tcp_keepalive(&keep_alive) {
                tracing::debug!(endpoint = %name, %error, "cannot set TCP keep-alive on the etcd watch");
            }
        }
        let http = |source| GatewayError::Http {
            endpoint: name.clone(),
            source,
        };
        let (mut sender, connection) =
            http1::handshake(TokioIo::new(stream)).await.map_err(http)?;
        let mut connection = Box::pin(connection);
        let mut request = Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = Uri::from_static(path);
        let headers = request.headers_mut();
        headers.insert(HOST, endpoint.host_header.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let send = sender.send_request(request);
        tokio::pin!(send);
        let mut connection_done = false;
        let response = tokio::select! {
            biased;
            response = &mut send => response,
            // The connection ended first: the send resolves now, with the answer the
            // connection delivered on its way out or with why it closed.
            ended = &mut connection => {
                connection_done = true;
                ended.map_err(http)?;
                send.await
            }
        }
        .map_err(http)?;
        // No other request goes on this connection: it closes once the body is read.
        drop(sender);
        let (parts, body) = response.into_parts();
        Ok(Exchange {
            endpoint: name,
            status: parts.status,
            body,
            connection,
            connection_done,
        })
    }

    /// A TCP connection to the first of the member's addresses that accepts, all within
    /// the connect timeout.
    async fn connect(&self, endpoint: &Endpoint) -> Result<TcpStream, GatewayError> {
        let name = || endpoint.to_string();
        let attempt = async {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port))
                    .await
                    .map_err(|source| GatewayError::Resolve {
                        endpoint: name(),
                        source,
                    })?
                    .collect();
            let mut last =
                std::io::Error::new(std::io::ErrorKind::NotFound, "the name has no address");
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(stream) => {
                        // Only a latency tweak: a socket that refuses it still works.
                        let _ = stream.set_nodelay(true);
                        return Ok(stream);
                    }
                    Err(e) => last = e,
                }
            }
            Err(GatewayError::Connect {
                endpoint: name(),
                source: last,
            })
        };
        tokio::time::timeout(self.connect_timeout, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(GatewayError::Connect {
                    endpoint: name(),
                    source: std::io::ErrorKind::TimedOut.into(),
                })
            })
    }
}

impl Exchange {
    /// The next piece of the body, `None` at its end.
    async fn chunk(&mut self) -> Result<Option<Bytes>, GatewayError> {
        loop {
            tokio::select! {
                frame = self.body.frame() => match frame {
                    None => return Ok(None),
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            if !data.is_empty() {
                                return Ok(Some(data));
                            }
                        }
                    }
                    Some(Err(source)) => return Err(self.http_error(source)),
                },
                ended = &mut self.connection, if !self.connection_done => {
                    self.connection_done = true;
                    if let Err(source) = ended {
                        return Err(self.http_error(source));
                    }
                }
            }
        }
    }

    /// The whole body, at most [`MAX_MESSAGE`] bytes.
    async fn read_to_end(&mut self) -> Result<BytesMut, GatewayError> {
        let mut body = BytesMut::new();
        while let Some(data) = self.chunk().await? {
            if body.len() + data.len() > MAX_MESSAGE {
                return Err(self.too_large());
            }
            body.extend_from_slice(&data);
        }
        Ok(body)
    }

    fn http_error(&self, source: hyper::Error) -> GatewayError {
        GatewayError::Http {
            endpoint: self.endpoint.clone(),
            source,
        }
    }

    fn decode_error(&self, source: serde_json::Error) -> GatewayError {
        GatewayError::Decode {
            endpoint: self.endpoint.clone(),
            source,
        }
    }

    fn too_large(&self) -> GatewayError {
        GatewayError::TooLarge {
            endpoint: self.endpoint.clone(),
            limit: MAX_MESSAGE,
        }
    }

    /// The error an unsuccessful status stands for, with the gateway's message if the body
    /// has one.
    fn status_error(&self, body: &[u8]) -> GatewayError {
        let status: GatewayStatus =
            serde_json::from_slice(body).unwrap_or_else(|_| GatewayStatus {
                code: None,
                message: String::from_utf8_lossy(&body[..body.len().min(256)]).into_owned(),
            });
        GatewayError::Status {
            endpoint: self.endpoint.clone(),
            status: self.status.as_u16(),
            code: status.code,
            message: status.message,
        }
    }
}

impl WatchStream {
    /// The next message of the watch; `None` when the server ended the stream.
    ///
    /// Cancel-safe: a line read in part stays buffered for the next call.
    pub(super) async fn message(&mut self) -> Result<Option<WatchResponse>, GatewayError> {
        loop {
            if let Some(offset) = self.buffer[self.scanned..].iter().position(|&b| b == b'\n') {
                let line = self.buffer.split_to(self.scanned + offset + 1);
                self.scanned = 0;
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                let parsed: WatchLine = serde_json::from_slice(line)
                    .map_err(|source| self.exchange.decode_error(source))?;
                if let Some(error) = parsed.error {
                    return Err(GatewayError::Status {
                        endpoint: self.exchange.endpoint.clone(),
                        status: self.exchange.status.as_u16(),
                        code: error.code,
                        message: error.message,
                    });
                }
                if let Some(response) = parsed.result {
                    return Ok(Some(response));
                }
                continue;
            }
            self.scanned = self.buffer.len();
            if self.buffer.len() > MAX_MESSAGE {
                return Err(self.exchange.too_large());
            }
            match self.exchange.chunk().await? {
                Some(data) => self.buffer.extend_from_slice(&data),
                None => return Ok(None),
            }
        }
    }
}
