//! HTTP/1.1 protocol upgrades (WebSocket and any other `Upgrade` token): forward the
//! request's `Connection: upgrade` and `Upgrade`, and when the backend answers
//! `101 Switching Protocols`, answer 101 to the client and splice the two connections
//! together both ways until they close or stay silent for the idle timeout.
//!
//! The crate-internal API, used by the request path:
//! - [`UpgradeRequest::take`] before the request headers are rewritten;
//! - [`UpgradeRequest::restore_headers`] after hop-by-hop removal;
//! - [`UpgradeRequest::switch`] when the backend answered 101.
//!
//! The backend's connection is never returned to the client pool: hyper-util's legacy
//! client hands an upgraded HTTP/1.1 connection over to [`hyper::upgrade::on`] and treats
//! its sender as closed, so the pool drops it.
//!
//! Not supported: HTTP/2 extended CONNECT (RFC 8441, WebSocket over HTTP/2) and `h2c`
//! upgrades. An HTTP/2 request is never treated as an upgrade, and `Upgrade: h2c` (or an
//! `Upgrade` that is not ASCII) is removed as hop-by-hop, as before.
//!
//! Spliced connections are not part of graceful shutdown: they go on until they close or
//! time out, or until the process exits.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Response, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use lb_core::InFlight;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::body::ProxyBody;
use crate::headers;

/// Bytes buffered per direction of a splice.
const SPLICE_BUFFER: usize = 16 * 1024;

static UPGRADE_TOKEN: HeaderValue = HeaderValue::from_static("upgrade");

/// An HTTP/1.1 upgrade the client asked for: the protocol to forward and the client's
/// half of the connection, available once the 101 has been sent.
#[derive(Debug)]
pub(crate) struct UpgradeRequest {
    protocol: HeaderValue,
    downstream: OnUpgrade,
}

impl UpgradeRequest {
    /// Takes the upgrade out of `parts` when it is an HTTP/1.1 request with `Upgrade` and a
    /// `Connection` field naming `upgrade`; `None` (and `parts` untouched) otherwise, and
    /// for `h2c`: a client upgrading to HTTP/2 cleartext would bypass the proxy's
    /// per-request handling for the rest of the connection (h2c is served directly,
    /// with prior knowledge, instead).
    pub(crate) fn take(parts: &mut Parts) -> Option<Self> {
        if parts.version != Version::HTTP_11 || !connection_has_upgrade(&parts.headers) {
            return None;
        }
        let protocol = parts.headers.get(header::UPGRADE)?.clone();
        let to_h2c = protocol.to_str().map_or(true, |p| {
            p.split(',').any(|t| t.trim().eq_ignore_ascii_case("h2c"))
        });
        if to_h2c {
            return None;
        }
        let downstream = parts.extensions.remove::<OnUpgrade>()?;
        Some(Self {
            protocol,
            downstream,
        })
    }

    /// Puts `Connection: upgrade` and the `Upgrade` protocol back, after hop-by-hop removal.
    pub(crate) fn restore_headers(&self, headers: &mut HeaderMap) {
        headers.insert(header::CONNECTION, UPGRADE_TOKEN.clone());
        headers.insert(header::UPGRADE, self.protocol.clone());
    }

    /// The backend accepted (`resp` is its 101): returns the 101 for the client and spawns
    /// the splice, which holds `guard` (the backend counts the connection as in flight)
    /// until it ends. `idle` closes both sides after that long without a byte either way.
    pub(crate) fn switch(
        self,
        mut resp: Response<Incoming>,
        guard: InFlight,
        idle: Duration,
    ) -> Response<ProxyBody> {
        let upstream = hyper::upgrade::on(&mut resp);
        let (mut parts, _empty) = resp.into_parts();
        let protocol = parts.headers.get(header::UPGRADE).cloned();
        headers::strip_hop_by_hop(&mut parts.headers);
        parts
            .headers
            .insert(header::CONNECTION, UPGRADE_TOKEN.clone());
        parts
            .headers
            .insert(header::UPGRADE, protocol.unwrap_or(self.protocol));
        let downstream = self.downstream;
        tokio::spawn(async move {
            let backend = guard.backend().clone();
            let (client, server) = match tokio::try_join!(downstream, upstream) {
                Ok(both) => both,
                Err(error) => {
                    tracing::debug!(%backend, error = &error as &dyn std::error::Error, "upgrade did not complete");
                    return;
                }
            };
            tracing::debug!(%backend, "upgraded connection spliced");
            let stats = splice(TokioIo::new(client), TokioIo::new(server), idle).await;
            drop(guard);
            match &stats.end {
                SpliceEnd::Error(error) => tracing::debug!(
                    %backend,
                    to_backend = stats.to_b,
                    to_client = stats.to_a,
                    error = error as &dyn std::error::Error,
                    "upgraded connection failed"
                ),
                end => tracing::debug!(
                    %backend,
                    to_backend = stats.to_b,
                    to_client = stats.to_a,
                    timed_out = matches!(end, SpliceEnd::IdleTimeout),
                    "upgraded connection ended"
                ),
            }
        });
        Response::from_parts(parts, ProxyBody::local(""))
    }
}

/// True when a `Connection` field lists the `upgrade` token.
fn connection_has_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// How a splice ended.
#[derive(Debug)]
pub(crate) enum SpliceEnd {
    /// Both sides closed their sending half (each close was passed on to the other side).
    Closed,
    /// No byte moved either way for the idle timeout.
    IdleTimeout,
    /// A read or write failed (a reset, for instance); both connections were dropped.
    Error(io::Error),
}

/// The outcome of a [`splice`].
#[derive(Debug)]
pub(crate) struct SpliceStats {
    /// Why it ended.
    pub(crate) end: SpliceEnd,
    /// Bytes copied from `a` to `b`.
    pub(crate) to_b: u64,
    /// Bytes copied from `b` to `a`.
    pub(crate) to_a: u64,
}

/// Copies bytes both ways between `a` and `b` until both directions have ended, one fails,
/// or no byte has moved for `idle`.
///
/// When one side closes its sending half, the close is passed on (`shutdown`) and the other
/// direction goes on until it closes as well, as TCP half-close works. One task, two fixed
/// buffers, no lock: both directions are polled from the same future.
pub(crate) async fn splice<A, B>(mut a: A, mut b: B, idle: Duration) -> SpliceStats
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut a_to_b = Half::new();
    let mut b_to_a = Half::new();
    let timer = tokio::time::sleep(idle);
    tokio::pin!(timer);
    let end = poll_fn(|cx| {
        let mut moved = false;
        if !a_to_b.done {
            match a_to_b.poll_copy(cx, &mut a, &mut b, &mut moved) {
                Poll::Ready(Ok(())) => a_to_b.done = true,
                Poll::Ready(Err(e)) => return Poll::Ready(SpliceEnd::Error(e)),
                Poll::Pending => {}
            }
        }
        if !b_to_a.done {
            match b_to_a.poll_copy(cx, &mut b, &mut a, &mut moved) {
                Poll::Ready(Ok(())) => b_to_a.done = true,
                Poll::Ready(Err(e)) => return Poll::Ready(SpliceEnd::Error(e)),
                Poll::Pending => {}
            }
        }
        if a_to_b.done && b_to_a.done {
            return Poll::Ready(SpliceEnd::Closed);
        }
        if moved {
            timer.as_mut().reset(Instant::now() + idle);
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(SpliceEnd::IdleTimeout),
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    SpliceStats {
        end,
        to_b: a_to_b.copied,
        to_a: b_to_a.copied,
    }
}

/// One direction of a splice: a buffer, what is left to write, and whether the reader
/// has ended.
struct Half {
    buf: Box<[u8]>,
    pos: usize,
    filled: usize,
    eof: bool,
    need_flush: bool,
    done: bool,
    copied: u64,
}

impl Half {
    fn new() -> Self {
        Self {
            buf: vec![0; SPLICE_BUFFER].into_boxed_slice(),
            pos: 0,
            filled: 0,
            eof: false,
            need_flush: false,
            done: false,
            copied: 0,
        }
    }

    /// Moves bytes from `r` to `w` until `r` would block (then `Pending`) or has ended and
    /// `w` is shut down (then `Ready(Ok)`). Sets `moved` when any byte was read or written.
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        r: &mut R,
        w: &mut W,
        moved: &mut bool,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            if self.pos == self.filled && !self.eof {
                let mut buf = ReadBuf::new(&mut self.buf);
                match Pin::new(&mut *r).poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(())) => {
                        let n = buf.filled().len();
                        if n == 0 {
                            self.eof = true;
                        } else {
                            (self.pos, self.filled) = (0, n);
                            *moved = true;
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        // Nothing more to send for now: push out what the writer buffers.
                        if self.need_flush {
                            ready!(Pin::new(&mut *w).poll_flush(cx))?;
                            self.need_flush = false;
                        }
                        return Poll::Pending;
                    }
                }
            }
            while self.pos < self.filled {
                let n = ready!(Pin::new(&mut *w).poll_write(cx, &self.buf[self.pos..self.filled]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.pos += n;
                self.copied += n as u64;
                self.need_flush = true;
                *moved = true;
            }
            if self.eof {
                ready!(Pin::new(&mut *w).poll_shutdown(cx))?;
                return Poll::Ready(Ok(()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use http::Request;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const LONG: Duration = Duration::from_secs(10);

    #[test]
    fn only_http11_requests_naming_upgrade_are_upgrades() {
        let parts = |req: http::request::Builder| {
            let (mut parts, ()) = req.body(()).unwrap().into_parts();
            // hyper puts an OnUpgrade in every HTTP/1.1 request it serves.
            parts
                .extensions
                .insert(hyper::upgrade::on(Request::new(())));
            parts
        };
        let ws = || {
            Request::get("/")
                .header("connection", "keep-alive, Upgrade")
                .header("upgrade", "websocket")
        };
        let mut p = parts(ws());
        let up = UpgradeRequest::take(&mut p).unwrap();
        assert_eq!(up.protocol, "websocket");
        let mut h = HeaderMap::new();
        up.restore_headers(&mut h);
        assert_eq!(
            (&h["connection"], &h["upgrade"]),
            (&UPGRADE_TOKEN, &up.protocol)
        );

        assert!(UpgradeRequest::take(&mut parts(ws().version(Version::HTTP_2))).is_none());
        assert!(UpgradeRequest::take(&mut parts(ws().version(Version::HTTP_10))).is_none());
        let no_token = Request::get("/")
            .header("connection", "keep-alive")
            .header("upgrade", "websocket");
        assert!(UpgradeRequest::take(&mut parts(no_token)).is_none());
        let no_protocol = Request::get("/").header("connection", "upgrade");
        assert!(UpgradeRequest::take(&mut parts(no_protocol)).is_none());
        let h2c = Request::get("/")
            .header("connection", "Upgrade, HTTP2-Settings")
            .header("upgrade", "H2C");
        assert!(UpgradeRequest::take(&mut parts(h2c)).is_none());
    }

    #[tokio::test]
    async fn bytes_flow_both_ways_and_closes_pass_on() {
        let (mut client, proxy_a) = tokio::io::duplex(64);
        let (proxy_b, mut server) = tokio::io::duplex(64);
        let task = tokio::spawn(splice(proxy_a, proxy_b, LONG));
        // Larger than every buffer on the way, both ways at once.
        let big = vec![7u8; 200_000];
        let (w, r) = tokio::join!(client.write_all(&big), async {
            let mut got = vec![0u8; big.len()];
            server.read_exact(&mut got).await.map(|_| got)
        });
        w.unwrap();
        assert_eq!(r.unwrap(), big);
        server.write_all(b"pong").await.unwrap();
        let mut pong = [0u8; 4];
        client.read_exact(&mut pong).await.unwrap();
        assert_eq!(&pong, b"pong");
        // The client closes; the server sees the end, then closes too.
        client.shutdown().await.unwrap();
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        server.write_all(b"bye").await.unwrap();
        server.shutdown().await.unwrap();
        let mut bye = Vec::new();
        client.read_to_end(&mut bye).await.unwrap();
        assert_eq!(bye, b"bye", "the other direction outlives a half close");
        let stats = tokio::time::timeout(LONG, task).await.unwrap().unwrap();
        assert!(matches!(stats.end, SpliceEnd::Closed), "{stats:?}");
        assert_eq!((stats.to_b, stats.to_a), (200_000, 7));
    }

    #[tokio::test(start_paused = true)]
    async fn silence_ends_the_splice_and_traffic_defers_it() {
        let idle = Duration::from_secs(60);
        let (mut client, proxy_a) = tokio::io::duplex(64);
        let (proxy_b, mut server) = tokio::io::duplex(64);
        let started = Instant::now();
        let task = tokio::spawn(splice(proxy_a, proxy_b, idle));
        // Traffic every 40 s keeps it open past the timeout.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(40)).await;
            client.write_all(b"x").await.unwrap();
            let mut x = [0u8; 1];
            server.read_exact(&mut x).await.unwrap();
        }
        let stats = task.await.unwrap();
        assert!(matches!(stats.end, SpliceEnd::IdleTimeout), "{stats:?}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(180) && took < Duration::from_secs(181),
            "{took:?}"
        );
        // Both ends see the connection go.
        let mut rest = Vec::new();
        assert_eq!(client.read_to_end(&mut rest).await.unwrap(), 0);
        assert_eq!(server.read_to_end(&mut rest).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_failing_side_ends_both() {
        let (client, proxy_a) = tokio::io::duplex(64);
        let (proxy_b, mut server) = tokio::io::duplex(64);
        let task = tokio::spawn(splice(proxy_a, proxy_b, LONG));
        // Dropping a duplex end makes writes to it fail (broken pipe).
        drop(client);
        server.write_all(b"into the void").await.unwrap();
        let stats = tokio::time::timeout(LONG, task).await.unwrap().unwrap();
        assert!(
            matches!(stats.end, SpliceEnd::Error(_) | SpliceEnd::Closed),
            "{stats:?}"
        );
        let mut rest = Vec::new();
        assert_eq!(server.read_to_end(&mut rest).await.unwrap(), 0);
    }
}
