//! Listeners: binding, the accept loops, and one task per connection.
//!
//! A plain listener serves HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on the same port.
//! A TLS listener runs the handshake in the connection's own task (never in the accept
//! loop, so a slow or silent client delays no one), bounded by its `handshake_timeout`,
//! then serves HTTP/2 when ALPN agreed on `h2` and HTTP/1.1 otherwise. Either way the
//! service receives a [`ConnInfo`] with every request.
//!
//! Draining (after a binary upgrade handed the sockets over): the accept loops end, and
//! every HTTP/1.x response carries `Connection: close`, so busy keep-alive connections move
//! to the new process after their current request instead of racing an idle close.

use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulConnection, GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::config::{ServerConfig, ServerLimits};
use crate::hooks::{ConnInfo, ProxyHttp};
use crate::parking::serve_parking;
use crate::pipeline;
use crate::protect::{self, Activity, ConnIo, FramedIo, Protect, TrackedBody};
use crate::sockets::Inherited;
use crate::worker::{OpenConn, Workers};

/// Back-off after an accept error (for instance out of file descriptors), so the loop does
/// not spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Why a listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The address could not be bound (or the socket not duplicated for a worker).
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The certificates or settings of `[[server.tls]]` table `index` cannot be used.
    #[error("TLS listener {index}")]
    Tls {
        /// Which `[[server.tls]]` table (from 0).
        index: usize,
        /// Why.
        #[source]
        source: crate::tls::TlsError,
    },
}

/// The error a connection ends with.
type BoxError = Box<dyn StdError + Send + Sync>;

/// A bound listener, plain or TLS.
pub struct Listener {
    tcp: TcpListener,
    local: SocketAddr,
    tls: Option<Tls>,
}

/// What a TLS listener needs per connection.
#[derive(Clone)]
struct Tls {
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
}

/// The connection builders, configured once: plain listeners auto-detect HTTP/1.1 or h2c;
/// TLS connections are told the protocol by ALPN. They carry `[server.limits]` (protect/).
pub struct Builders {
    pub(crate) auto: auto::Builder<TokioExecutor>,
    http1: auto::Builder<TokioExecutor>,
    http2: auto::Builder<TokioExecutor>,
    pub(crate) protect: Protect,
}

/// What every connection task needs (cheap to clone). The `GracefulShutdown` itself stays
/// with the accept loops: shutdown takes it back once they have ended.
pub struct Serving<H> {
    /// The decisions of the request path (the TOML-driven proxy, or a user's).
    pub hooks: Arc<H>,
    /// The HTTP connection builders.
    pub builders: Arc<Builders>,
    /// Set to true when the proxy stops.
    pub stop: watch::Receiver<bool>,
    /// Set to true when the proxy drains after a hand-over: stop accepting, close
    /// HTTP/1.x connections after their current response.
    pub drain: watch::Receiver<bool>,
    /// The workers that accept and serve connections.
    pub workers: Workers,
}

impl<H> Clone for Serving<H> {
    fn clone(&self) -> Self {
        Self {
            hooks: self.hooks.clone(),
            builders: self.builders.clone(),
            stop: self.stop.clone(),
            drain: self.drain.clone(),
            workers: self.workers.clone(),
        }
    }
}

impl Builders {
    /// HTTP/1.1 and HTTP/2 with hyper's timers; `auto` detects h2c prior knowledge.
    /// `limits` (hostile clients) set hyper's own limits and the connection protection.
    pub fn with_limits(limits: &ServerLimits) -> Self {
        Self::build(limits, Protect::new(limits))
    }

    /// The builders of a reloaded configuration: `limits` apply to connections accepted
    /// from now on, and the connections open under `previous` count against the new
    /// `max_connections`.
    pub fn reloaded(limits: &ServerLimits, previous: &Self) -> Self {
        let gate = previous.protect.gate.resized(limits.max_connections.get());
        Self::build(limits, Protect::with_gate(limits, gate))
    }

    fn build(limits: &ServerLimits, protect: Protect) -> Self {
        let mut auto = auto::Builder::new(TokioExecutor::new());
        auto.http1().timer(TokioTimer::new());
        auto.http2().timer(TokioTimer::new());
        protect::configure(&mut auto, limits);
        Self {
            http1: auto.clone().http1_only(),
            http2: auto.clone().http2_only(),
            auto,
            protect,
        }
    }
}

impl Listener {
    /// A plain (HTTP/1.1 and h2c) listener over a bound socket.
    pub(crate) fn plain(tcp: TcpListener) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        Ok(Self {
            tcp,
            local,
            tls: None,
        })
    }

    /// The bound address (with the real port where the config said port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The listening socket (duplicated for a hand-over to a new binary).
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.tcp)
    }

    /// Whether this is a TLS listener.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// Builds every TLS listener's rustls configuration, then binds every address: the plain
/// ones (`server.listen`) first, then each `[[server.tls]]` table's in order. Fails before
/// serving anything. An address whose socket was `inherited` from the previous process
/// (binary upgrade) takes that socket instead of binding.
pub async fn bind_all(
    server: &ServerConfig,
    inherited: &mut Inherited,
) -> Result<Vec<Listener>, ListenError> {
    let mut tls = Vec::with_capacity(server.tls.len());
    for (index, t) in server.tls.iter().enumerate() {
        let config =
            crate::tls::server_config(t).map_err(|source| ListenError::Tls { index, source })?;
        let settings = Tls {
            acceptor: TlsAcceptor::from(config),
            handshake_timeout: t.handshake_timeout.get(),
        };
        tls.extend(t.listen.iter().map(|addr| (*addr, Some(settings.clone()))));
    }
    let plain = server.listen.iter().map(|addr| (*addr, None));
    let mut listeners = Vec::with_capacity(server.listen.len() + tls.len());
    for (addr, tls) in plain.chain(tls) {
        let (tcp, local) = inherited
            .take_or_bind(addr)
            .await
            .map_err(|source| ListenError::Listen { addr, source })?;
        listeners.push(Listener { tcp, local, tls });
    }
    Ok(listeners)
}

/// Starts `listener`'s accept loops: one on the current runtime (worker 0) and one on
/// each other worker's runtime, over a duplicate of the socket registered there. Returns
/// their tasks (awaitable from any runtime).
pub fn spawn_accept_loops<H: ProxyHttp>(
    listener: Listener,
    serving: &Serving<H>,
    graceful: &Arc<GracefulShutdown>,
    retire: &watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>, ListenError> {
    let workers = &serving.workers;
    let mut tasks = Vec::with_capacity(workers.count());
    for index in 1..workers.count() {
        let Some(runtime) = workers.handle(index) else {
            continue;
        };
        let std = listener
            .as_fd()
            .try_clone_to_owned()
            .map(std::net::TcpListener::from)
            .map_err(|source| ListenError::Listen {
                addr: listener.local,
                source,
            })?;
        let (local, tls) = (listener.local, listener.tls.clone());
        let (serving, graceful, retire) = (serving.clone(), graceful.clone(), retire.clone());
        tasks.push(runtime.spawn(async move {
            // Registered with this worker's reactor (the socket is already non-blocking).
            match TcpListener::from_std(std) {
                Ok(tcp) => {
                    let listener = Listener { tcp, local, tls };
                    accept_loop(listener, serving, graceful, retire, index).await;
                }
                Err(error) => tracing::error!(%error, addr = %local, worker = index, "cannot register the listening socket; this worker does not accept on it"),
            }
        }));
    }
    tasks.push(tokio::spawn(accept_loop(
        listener,
        serving.clone(),
        graceful.clone(),
        retire.clone(),
        0,
    )));
    Ok(tasks)
}

/// Accepts connections on `listener` until the stop flag is set (or `retire`, when a
/// reload replaced this loop by another on the same socket), each served in its own
/// task on this worker (`worker`), or on a less loaded one (see [`Workers::pick`]); the
/// listener is dropped when the loop ends (new connections are refused unless another
/// copy of the socket stays open).
pub(crate) async fn accept_loop<H: ProxyHttp>(
    listener: Listener,
    serving: Serving<H>,
    graceful: Arc<GracefulShutdown>,
    mut retire: watch::Receiver<bool>,
    worker: usize,
) {
    let mut stop = serving.stop.clone();
    let mut drain = serving.drain.clone();
    let mut full_warning = None;
    loop {
        // protect/: a connection slot first (max_connections); while none is free, new
        // connections wait in the listen backlog.
        let gate = &serving.builders.protect.gate;
        let Some(permit) = gate.admit(&mut stop, &mut drain, &mut full_warning).await else {
            break;
        };
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            Ok(_) = retire.wait_for(|r| *r) => break,
            // An `Err` (the sender dropped) disables this branch rather than stopping.
            Ok(_) = drain.wait_for(|d| *d) => break,
            accepted = listener.tcp.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(error) => {
                tracing::warn!(%error, "accept failed; retrying");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, %peer, "cannot set TCP_NODELAY");
        }
        // The listener's address is exact unless it is a wildcard (0.0.0.0, [::]).
        let local = if listener.local.ip().is_unspecified() {
            stream.local_addr().unwrap_or(listener.local)
        } else {
            listener.local
        };
        let info = ConnInfo {
            peer,
            local,
            tls: listener.tls.is_some(),
        };
        // Counted on the worker that will serve it from now on, so that the next pick
        // sees it even before a handed-over connection reached its worker.
        let target = serving.workers.pick(worker);
        let accepted = Accepted {
            info,
            tls: listener.tls.clone(),
            serving: serving.clone(),
            watcher: graceful.watcher(),
            permit,
            open: serving.workers.open(target),
        };
        match serving.workers.handle(target) {
            Some(runtime) if target != worker => hand_over(stream, accepted, runtime),
            _ => accepted.start(stream),
        }
    }
}

/// A connection accepted and admitted, not yet served.
struct Accepted<H> {
    info: ConnInfo,
    tls: Option<Tls>,
    serving: Serving<H>,
    watcher: Watcher,
    permit: OwnedSemaphorePermit,
    /// Counts the connection on its worker.
    open: OpenConn,
}

impl<H: ProxyHttp> Accepted<H> {
    /// Spawns the connection's task on the current runtime (its worker's).
    fn start(self, stream: TcpStream) {
        let Self {
            info,
            tls,
            serving,
            watcher,
            permit,
            open,
        } = self;
        // protect/: keepalive_timeout and send_timeout; the socket holds the permit.
        let (stream, activity) = ConnIo::new(stream, serving.builders.protect.timeouts, permit);
        match tls {
            None => {
                // protect/: HTTP/1.x heads are framing-checked before hyper parses them
                // (an HTTP/2 preface turns the check off).
                let limits = serving.builders.protect.framing;
                let stream = FramedIo::new(stream, activity.clone(), limits, true);
                // parking.rs: hyper's state is released while the connection is idle.
                let stop = serving.stop.clone();
                let park_after = serving.builders.protect.park_after;
                let connect =
                    move |io, activity| serve(&serving.builders.auto, &serving, io, info, activity);
                let parking = (watcher, open);
                tokio::spawn(serve_parking(
                    connect, stop, park_after, parking, stream, info, activity,
                ));
            }
            Some(tls) => {
                let io = (stream, activity, open);
                tokio::spawn(handshake_then_serve(tls, serving, watcher, io, info));
            }
        }
    }
}

/// Moves an accepted connection to another worker's `runtime`: out of this worker's
/// reactor, into that one's, before anything was read from it.
fn hand_over<H: ProxyHttp>(stream: TcpStream, accepted: Accepted<H>, runtime: &Handle) {
    let peer = accepted.info.peer;
    let std = match stream.into_std() {
        Ok(std) => std,
        Err(error) => {
            tracing::debug!(%error, %peer, "cannot move the connection to another worker; closed");
            return;
        }
    };
    runtime.spawn(async move {
        match TcpStream::from_std(std) {
            Ok(stream) => accepted.start(stream),
            Err(error) => tracing::debug!(%error, %peer, "cannot register the connection on its worker; closed"),
        }
    });
}

/// A TLS connection's first task: the handshake (bounded, and abandoned when the proxy
/// stops); it then spawns the connection's serving task, HTTP/2 or HTTP/1.1 as ALPN decided.
async fn handshake_then_serve<H: ProxyHttp>(
    tls: Tls,
    mut serving: Serving<H>,
    watcher: Watcher,
    (stream, activity, open): (ConnIo<TcpStream>, Arc<Activity>, OpenConn),
    info: ConnInfo,
) {
    let handshake = tokio::time::timeout(tls.handshake_timeout, tls.acceptor.accept(stream));
    let stream = tokio::select! {
        biased;
        _ = serving.stop.wait_for(|s| *s) => return,
        done = handshake => match done {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::debug!(peer = %info.peer, %error, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(peer = %info.peer, timeout = ?tls.handshake_timeout, "TLS handshake timed out");
                return;
            }
        },
    };
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    // protect/: the framing check, for HTTP/1.x only.
    let limits = serving.builders.protect.framing;
    let stream = FramedIo::new(stream, activity.clone(), limits, !h2);
    if h2 {
        let conn = serve(&serving.builders.http2, &serving, stream, info, activity);
        // Its own task, not awaited here: this function's state would keep the connection
        // future twice (the local and the awaitee) beside what the handshake left, about
        // 8 KB per TLS connection for as long as it stays open.
        tokio::spawn(finish(watcher, conn, info, open));
        return;
    }
    // parking.rs: hyper's state is released while the connection is idle, as on a plain
    // listener (rustls's state stays: the keys, and a record buffer it shrinks itself).
    let (stop, park_after) = (serving.stop.clone(), serving.builders.protect.park_after);
    let connect = move |io, activity| serve(&serving.builders.http1, &serving, io, info, activity);
    let parking = (watcher, open);
    tokio::spawn(serve_parking(
        connect, stop, park_after, parking, stream, info, activity,
    ));
}

/// The HTTP connection future for `io`, each request handed to the service with `info`.
pub(crate) fn serve<H: ProxyHttp, I>(
    builder: &auto::Builder<TokioExecutor>,
    serving: &Serving<H>,
    io: I,
    info: ConnInfo,
    activity: Arc<Activity>,
) -> impl GracefulConnection<Error = BoxError> + Send + 'static
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let hooks = serving.hooks.clone();
    let drain = serving.drain.clone();
    let limits = serving.builders.protect.request;
    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let http1 = req.version() < Version::HTTP_2;
        // protect/: the connection is busy (no keepalive_timeout) until the body ends; a
        // stand-in for a head the framing check refused carries the refusal from here.
        let busy = activity.enter(req.extensions_mut());
        let drain = drain.clone();
        // A combinator, not an `async` block: a block awaiting `handle` would keep the
        // pipeline's future twice (captured, then awaited), and hyper allocates room for
        // this future on every connection (and moved it on every request).
        pipeline::handle(hooks.clone(), info, req, limits).map(move |handled| {
            let Ok(mut response) = handled;
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                busy.set_upgraded();
            }
            // Draining: this HTTP/1.x connection closes after this response (hyper honours
            // the header), so the client's next request opens one to the new process.
            if http1 && response.status() != StatusCode::SWITCHING_PROTOCOLS && *drain.borrow() {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, std::convert::Infallible>(response.map(|b| TrackedBody::new(b, Some(busy))))
        })
    });
    builder
        .serve_connection_with_upgrades(TokioIo::new(io), svc)
        .into_owned()
}

/// Runs a connection to its end under graceful shutdown; `open` counts it on its worker
/// meanwhile. A combinator, not an `async fn`: one would keep the connection's state twice
/// in the task (the argument, then the awaited future).
fn finish<C>(watcher: Watcher, conn: C, info: ConnInfo, open: OpenConn) -> impl Future<Output = ()>
where
    C: GracefulConnection<Error = BoxError>,
{
    watcher.watch(conn).map(move |ended| {
        if let Err(error) = ended {
            tracing::debug!(peer = %info.peer, tls = info.tls, error = &*error as &dyn StdError, "connection ended with an error");
        }
        drop(open);
    })
}
