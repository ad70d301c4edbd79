//! The two-way copy between an upgraded client connection and its backend connection,
//! with an idle timeout: one future, two fixed buffers, no lock.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Bytes buffered per direction of a splice.
const SPLICE_BUFFER: usize = 16 * 1024;

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

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const LONG: Duration = Duration::from_secs(10);

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
