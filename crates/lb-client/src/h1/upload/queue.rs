//! The bytes of an upload queued for the connection ([`Queue`]): a part of the connection's
//! head buffer (the request head, a chunk-size line), a data frame's bytes (never copied)
//! and a static tail (a chunk's end, the last-chunk), written with one vectored write.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::AsyncWrite;

use crate::stream::Stream;

/// What is queued for the connection: the connection's head buffer from `head` on, then
/// `data`, then `tail`.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    pub(crate) head: usize,
    pub(crate) data: Bytes,
    pub(crate) tail: &'static [u8],
}

impl Queue {
    /// Writes what is queued; `wrote` is set once the connection took a byte.
    pub(crate) fn poll_write(
        &mut self,
        stream: &mut Stream,
        out: &[u8],
        wrote: &mut bool,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        // Bounded: each pass writes at least one byte or returns.
        loop {
            let q = &mut *self;
            let head = out.get(q.head..).unwrap_or_default();
            if head.is_empty() && q.data.is_empty() && q.tail.is_empty() {
                return Poll::Ready(Ok(()));
            }
            let bufs = [
                IoSlice::new(head),
                IoSlice::new(&q.data),
                IoSlice::new(q.tail),
            ];
            let mut n = ready!(Pin::new(&mut *stream).poll_write_vectored(cx, &bufs))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *wrote = true;
            let from_head = n.min(head.len());
            q.head += from_head;
            n -= from_head;
            let from_data = n.min(q.data.len());
            q.data.advance(from_data);
            n -= from_data;
            q.tail = q.tail.get(n..).unwrap_or_default();
        }
    }
}

/// `fmt::Write` into a byte buffer (for the chunk-size and length lines).
pub(crate) struct Text<'a>(pub(crate) &'a mut Vec<u8>);

impl std::fmt::Write for Text<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}
