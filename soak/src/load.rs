//! The mixed load: paced clients of three kinds (HTTP/1.1 keep-alive, HTTP/1.1 with a new
//! connection per request, HTTP/2 with prior knowledge) sending GETs to every upstream and
//! POST bodies to be echoed, until cancelled. Every answer is checked (status, the backend's
//! name or the echoed body) and counted in the [`Tally`].
//!
//! The load is bounded: a fixed number of clients, each pacing its requests
//! ([`Plan::rate`] requests per second in all), each exchange under [`REQUEST_TIMEOUT`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::tally::{Class, Conn, Kind, Method, Tally};

/// A request without a complete answer after this long is a timeout.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest POST body (a few are above the proxy's 64 KiB retry buffer, so streamed).
const MAX_BODY: usize = 128 * 1024;

/// How many clients of each kind, and how fast they go.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    /// HTTP/1.1 keep-alive connections, each one request at a time.
    pub(crate) keep_alive: usize,
    /// Clients opening a new HTTP/1.1 connection for every request.
    pub(crate) new_conn: usize,
    /// HTTP/2 connections.
    pub(crate) h2_conns: usize,
    /// Concurrent streams on each HTTP/2 connection.
    pub(crate) h2_streams: usize,
    /// Time between two requests of one HTTP/1.1 client.
    pub(crate) h1_pace: Duration,
    /// Time between two requests of one HTTP/2 stream loop.
    pub(crate) h2_pace: Duration,
}

impl Plan {
    /// The default soak load: about 240 requests per second, at most 16 in flight.
    pub(crate) const DEFAULT: Plan = Plan {
        keep_alive: 6,
        new_conn: 2,
        h2_conns: 2,
        h2_streams: 4,
        h1_pace: Duration::from_millis(50),
        h2_pace: Duration::from_millis(100),
    };

    /// The most requests in flight at once (one per HTTP/1.1 client and HTTP/2 stream).
    pub(crate) fn concurrency(&self) -> usize {
        self.keep_alive + self.new_conn + self.h2_conns * self.h2_streams
    }

    /// Requests per second when every answer is instant.
    pub(crate) fn rate(&self) -> f64 {
        let h1 = (self.keep_alive + self.new_conn) as f64 / self.h1_pace.as_secs_f64();
        let h2 = (self.h2_conns * self.h2_streams) as f64 / self.h2_pace.as_secs_f64();
        h1 + h2
    }
}

/// What a client needs: where the proxy listens, where to count, when to stop.
#[derive(Clone)]
pub(crate) struct Ctx {
    /// The proxy's plain listener.
    pub(crate) addr: SocketAddr,
    /// The counts.
    pub(crate) tally: Arc<Tally>,
    /// Cancelled at the deadline (or on Ctrl-C).
    pub(crate) stop: CancellationToken,
    /// The bytes POST bodies are cut from.
    pattern: Bytes,
}

impl Ctx {
    /// A context for clients of the proxy at `addr`.
    pub(crate) fn new(addr: SocketAddr, tally: Arc<Tally>, stop: CancellationToken) -> Self {
        let pattern: Vec<u8> = (0..MAX_BODY).map(|i| (i * 31 % 251) as u8).collect();
        Self {
            addr,
            tally,
            stop,
            pattern: Bytes::from(pattern),
        }
    }
}

/// Starts every client of `plan`; they end when `ctx.stop` is cancelled.
pub(crate) fn spawn(plan: Plan, ctx: &Ctx) -> JoinSet<()> {
    let mut set = JoinSet::new();
    let mut seed = 1;
    for _ in 0..plan.keep_alive {
        set.spawn(keep_alive(ctx.clone(), plan.h1_pace, seed));
        seed += 1;
    }
    for _ in 0..plan.new_conn {
        set.spawn(new_conn(ctx.clone(), plan.h1_pace, seed));
        seed += 1;
    }
    for _ in 0..plan.h2_conns {
        set.spawn(h2(ctx.clone(), plan, seed));
        seed += 100;
    }
    set
}

/// Which upstream a request is for, and so what the answer must be.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// The body and `x-backend` are the name of a backend whose name starts with one of these.
    Backend(&'static [u8]),
    /// The body is the request body.
    Echo,
}

/// One request to make.
struct Spec {
    method: Method,
    path: String,
    /// `x-pool: disc` routes to the discovery upstream.
    disc: bool,
    body: Bytes,
    expect: Expect,
}

impl Spec {
    /// A random request of the mix: 45% GET web, 15% GET api, 20% GET disc, 5% GET of the
    /// route a reload adds and removes (web or api), 10% POST to api, 5% POST to disc.
    fn random(rng: &mut fastrand::Rng, n: u64, pattern: &Bytes) -> Self {
        let get = |path: String, disc, expect| Spec {
            method: Method::Get,
            path,
            disc,
            body: Bytes::new(),
            expect,
        };
        let post = |disc, len: usize, rng: &mut fastrand::Rng| {
            let start = rng.usize(0..=pattern.len() - len);
            Spec {
                method: Method::Post,
                path: "/echo".to_owned(),
                disc,
                body: pattern.slice(start..start + len),
                expect: Expect::Echo,
            }
        };
        match rng.u32(0..100) {
            0..45 => get(format!("/web/{n}"), false, Expect::Backend(b"w")),
            45..60 => get(format!("/api/{n}"), false, Expect::Backend(b"a")),
            60..80 => get(format!("/disc/{n}"), true, Expect::Backend(b"d")),
            80..85 => get(format!("/extra/{n}"), false, Expect::Backend(b"wa")),
            85..95 => post(false, rng.usize(0..16 * 1024), rng),
            // One disc POST in ten is larger than the retry buffer, so streamed.
            _ if rng.u32(0..10) == 0 => post(true, MAX_BODY, rng),
            _ => post(true, rng.usize(1..16 * 1024), rng),
        }
    }

    /// The request: origin form with `Host` for HTTP/1.1, absolute for HTTP/2 (`:authority`).
    fn request(&self, addr: SocketAddr, conn: Conn, close: bool) -> Request<Full<Bytes>> {
        let method = match self.method {
            Method::Get => http::Method::GET,
            Method::Post => http::Method::POST,
        };
        let uri = match conn {
            Conn::H2 => format!("http://{addr}{}", self.path),
            Conn::KeepAlive | Conn::PerRequest => self.path.clone(),
        };
        let mut builder = Request::builder().method(method).uri(uri);
        if conn != Conn::H2 {
            builder = builder.header(header::HOST, addr.to_string());
        }
        if self.disc {
            builder = builder.header("x-pool", "disc");
        }
        if close {
            builder = builder.header(header::CONNECTION, "close");
        }
        // Every part above is valid; an error here would be a bug of this file.
        builder
            .body(Full::new(self.body.clone()))
            .unwrap_or_else(|_| Request::new(Full::new(Bytes::new())))
    }

    fn kind(&self, conn: Conn) -> Kind {
        Kind::new(conn, self.method)
    }
}

/// Why an exchange failed.
enum Failure {
    Status(u16, String),
    Error(String),
    Mismatch(String),
}

/// Sends through `send`, reads the whole answer and checks it against `spec`; true when the
/// answer says `Connection: close`.
async fn exchange<F>(send: F, spec: &Spec) -> Result<bool, Failure>
where
    F: Future<Output = hyper::Result<Response<Incoming>>>,
{
    let resp = send
        .await
        .map_err(|e| Failure::Error(format!("send: {e}")))?;
    let status = resp.status();
    let close = resp
        .headers()
        .get(header::CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    let backend = resp.headers().get("x-backend").cloned();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| Failure::Error(format!("body: {e}")))?
        .to_bytes();
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        return Err(Failure::Status(status.as_u16(), text));
    }
    match spec.expect {
        Expect::Echo if body == spec.body => Ok(close),
        Expect::Echo => Err(Failure::Mismatch(format!(
            "echo of {} bytes came back as {} bytes",
            spec.body.len(),
            body.len()
        ))),
        Expect::Backend(prefixes) => {
            let named = backend.is_some_and(|b| b.as_bytes() == &body[..]);
            if named && body.first().is_some_and(|c| prefixes.contains(c)) {
                Ok(close)
            } else {
                Err(Failure::Mismatch(format!(
                    "{} answered by {:?}",
                    spec.path,
                    String::from_utf8_lossy(&body)
                )))
            }
        }
    }
}

/// Runs `exchange` under the request timeout and counts the outcome: whether the answer
/// said `Connection: close`, or the class of the failure.
async fn counted<F>(ctx: &Ctx, kind: Kind, spec: &Spec, fut: F) -> Result<bool, Class>
where
    F: Future<Output = Result<bool, Failure>>,
{
    let started = Instant::now();
    let outcome = tokio::time::timeout(REQUEST_TIMEOUT, fut).await;
    let took = started.elapsed();
    let tally = &ctx.tally;
    let (class, detail) = match outcome {
        Ok(Ok(close)) => {
            tally.record(kind, Class::Ok, took, "");
            return Ok(close);
        }
        Ok(Err(Failure::Status(code, text))) => {
            tally.status(code);
            (Class::Status, format!("{} {code}: {text}", spec.path))
        }
        Ok(Err(Failure::Error(e))) => (Class::Error, format!("{}: {e}", spec.path)),
        Ok(Err(Failure::Mismatch(e))) => (Class::Mismatch, e),
        Err(_) => (
            Class::Timeout,
            format!("{} after {REQUEST_TIMEOUT:?}", spec.path),
        ),
    };
    tally.record(kind, class, took, &detail);
    Err(class)
}

/// A pacing timer that does not burst after a stall.
fn pacer(pace: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(pace);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick
}

type H1Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// A new HTTP/1.1 connection to `addr`, its driver spawned.
async fn connect_h1(ctx: &Ctx) -> Result<H1Sender, Failure> {
    let tcp = TcpStream::connect(ctx.addr)
        .await
        .map_err(|e| Failure::Error(format!("connect: {e}")))?;
    ctx.tally.connections.fetch_add(1, Relaxed);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| Failure::Error(format!("handshake: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One HTTP/1.1 client that keeps its connection for a few hundred requests (then opens
/// another, as real clients recycle theirs), one request every `pace`.
async fn keep_alive(ctx: Ctx, pace: Duration, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut tick = pacer(pace);
    let mut sender: Option<H1Sender> = None;
    let mut left = 0u32;
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = ctx.stop.cancelled() => return,
        }
        n += 1;
        let spec = Spec::random(&mut rng, n, &ctx.pattern);
        // A connection the proxy closed while it was idle is not a failed request: the
        // request was never written, and goes on a new connection as with any client.
        if let Some(s) = sender.as_mut() {
            let ready = tokio::time::timeout(REQUEST_TIMEOUT, s.ready()).await;
            if !matches!(ready, Ok(Ok(()))) {
                ctx.tally.closed_between_requests.fetch_add(1, Relaxed);
                sender = None;
            }
        }
        let fresh = sender.is_none();
        let kind = spec.kind(Conn::KeepAlive);
        let close = counted(&ctx, kind, &spec, keep_alive_once(&ctx, &mut sender, &spec)).await;
        if fresh {
            left = rng.u32(200..1000);
        }
        match close {
            Ok(false) if left > 1 => left -= 1,
            // Recycled, closed by the proxy, or failed (perhaps mid-request): a new one.
            _ => sender = None,
        }
    }
}

/// One request on the client's connection, opened first if there is none.
async fn keep_alive_once(
    ctx: &Ctx,
    slot: &mut Option<H1Sender>,
    spec: &Spec,
) -> Result<bool, Failure> {
    let sender = match slot {
        Some(sender) => sender,
        None => slot.insert(connect_h1(ctx).await?),
    };
    let req = spec.request(ctx.addr, Conn::KeepAlive, false);
    exchange(sender.send_request(req), spec).await
}

/// One HTTP/1.1 client that opens a new connection for every request, one every `pace`;
/// half of them ask for `Connection: close` (the proxy closes), the others are closed by
/// the client after the answer.
async fn new_conn(ctx: Ctx, pace: Duration, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut tick = pacer(pace);
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = ctx.stop.cancelled() => return,
        }
        n += 1;
        let spec = Spec::random(&mut rng, n, &ctx.pattern);
        let close = rng.bool();
        let kind = spec.kind(Conn::PerRequest);
        // Counted; nothing to do either way (the connection is dropped).
        let _ = counted(&ctx, kind, &spec, async {
            let mut sender = connect_h1(&ctx).await?;
            let req = spec.request(ctx.addr, Conn::PerRequest, close);
            exchange(sender.send_request(req), &spec).await
        })
        .await;
    }
}

type H2Sender = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

/// One HTTP/2 client: a connection with `plan.h2_streams` request loops on it, each pacing
/// its requests; after a few hundred requests per stream loop the connection is closed and
/// another opened.
async fn h2(ctx: Ctx, plan: Plan, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut n = 0u64;
    while !ctx.stop.is_cancelled() {
        let spec = Spec::random(&mut rng, n, &ctx.pattern);
        let kind = spec.kind(Conn::H2);
        let mut slot = None;
        // The connection is made under the first request's count, so a failed connect is
        // that request's failure.
        let opened = counted(&ctx, kind, &spec, async {
            let sender = slot.insert(connect_h2(&ctx).await?);
            let req = spec.request(ctx.addr, Conn::H2, false);
            exchange(sender.send_request(req), &spec).await
        })
        .await;
        n += 1;
        let Some(sender) = slot.filter(|_| opened.is_ok()) else {
            // Failed (and counted): wait one pace before the next attempt.
            tokio::select! {
                () = tokio::time::sleep(plan.h2_pace) => {}
                () = ctx.stop.cancelled() => {}
            }
            continue;
        };
        let mut streams = JoinSet::new();
        for s in 0..plan.h2_streams {
            let budget = rng.u32(200..1000);
            let seed = seed * 1000 + n + s as u64;
            streams.spawn(h2_stream(
                ctx.clone(),
                sender.clone(),
                plan.h2_pace,
                budget,
                seed,
            ));
        }
        drop(sender);
        while streams.join_next().await.is_some() {}
        n += 1000;
    }
}

/// A request loop on one HTTP/2 connection: `budget` requests, one every `pace`, until
/// cancelled or the connection breaks.
async fn h2_stream(ctx: Ctx, mut sender: H2Sender, pace: Duration, budget: u32, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut tick = pacer(pace);
    for n in 0..budget {
        tokio::select! {
            _ = tick.tick() => {}
            () = ctx.stop.cancelled() => return,
        }
        let spec = Spec::random(&mut rng, u64::from(n), &ctx.pattern);
        let ready = tokio::time::timeout(REQUEST_TIMEOUT, sender.ready()).await;
        if !matches!(ready, Ok(Ok(()))) {
            // Nothing was sent: a connection the proxy closed (GOAWAY); counted apart.
            ctx.tally.closed_between_requests.fetch_add(1, Relaxed);
            return;
        }
        let kind = spec.kind(Conn::H2);
        let req = spec.request(ctx.addr, Conn::H2, false);
        let outcome = counted(&ctx, kind, &spec, exchange(sender.send_request(req), &spec)).await;
        if matches!(outcome, Err(Class::Error | Class::Timeout)) {
            // The connection may be broken: this loop ends, the client opens a new one.
            return;
        }
    }
}

/// A new HTTP/2 connection (prior knowledge) to the proxy, its driver spawned.
async fn connect_h2(ctx: &Ctx) -> Result<H2Sender, Failure> {
    let tcp = TcpStream::connect(ctx.addr)
        .await
        .map_err(|e| Failure::Error(format!("connect: {e}")))?;
    ctx.tally.connections.fetch_add(1, Relaxed);
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| Failure::Error(format!("h2 handshake: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}
