//! Two building blocks for bodies that are polled frame by frame, written once for the
//! client and the proxy core:
//!
//! - [`OnEnd`] holds a guard (a pooled connection to give back, an in-flight count, a
//!   busy mark) for as long as its body streams, and lets go of it at the body's end: it
//!   is *finished* when the body ends (its last frame, or the end of the stream) and
//!   dropped without finishing when the body fails or is dropped early.
//! - [`FrameTimer`] limits one wait for the next frame (`read_timeout`,
//!   `body_read_timeout`): armed when a poll has to wait, re-armed (never re-allocated) at
//!   the start of the next wait, so time spent elsewhere between polls never counts.
//!
//! Neither allocates: both live inline in the body that uses them.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// What a guard does when the body it guards has ended well. The default is to drop it,
/// which suits a guard whose drop is its whole job (a counter's RAII guard); a pooled
/// connection instead goes back to its pool here, and is closed when merely dropped.
pub trait Finish: Sized {
    /// The body ended: let go of the guard the good way.
    fn finish(self) {
        drop(self);
    }
}

pin_project_lite::pin_project! {
    /// A body that holds `G` until it ends.
    ///
    /// The guard is finished ([`Finish::finish`]) as soon as a frame leaves the body at its
    /// end of stream or the end is polled, and when the wrapper is dropped after the body
    /// ended; it is dropped unfinished when the body yields an error or is dropped before
    /// its end.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use lb_client::frames::{Finish, OnEnd};
    ///
    /// static IN_FLIGHT: AtomicUsize = AtomicUsize::new(1);
    /// struct Count;
    /// impl Drop for Count {
    ///     fn drop(&mut self) {
    ///         IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    ///     }
    /// }
    /// impl Finish for Count {}
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let mut body = OnEnd::new(Full::new(Bytes::from_static(b"hi")), Some(Count));
    /// let frame = body.frame().await;
    /// assert!(frame.is_some());
    /// // The last frame has left: the count is released before the wrapper is dropped.
    /// assert_eq!(IN_FLIGHT.load(Ordering::Relaxed), 0);
    /// # });
    /// ```
    pub struct OnEnd<B, G>
    where
        B: Body,
        G: Finish,
    {
        #[pin]
        body: B,
        guard: Option<G>,
    }

    impl<B, G> PinnedDrop for OnEnd<B, G>
    where
        B: Body,
        G: Finish,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(guard) = this.guard.take() {
                if this.body.is_end_stream() {
                    guard.finish();
                }
            }
        }
    }
}

impl<B: Body, G: Finish> OnEnd<B, G> {
    /// `body`, holding `guard` (none: nothing to hold) until it ends.
    pub fn new(body: B, guard: Option<G>) -> Self {
        Self { body, guard }
    }
}

impl<B: Body, G: Finish> Body for OnEnd<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let Poll::Ready(polled) = this.body.as_mut().poll_frame(cx) else {
            return Poll::Pending;
        };
        if this.guard.is_some() {
            let ended = match &polled {
                None => true,
                Some(Ok(_)) => this.body.is_end_stream(),
                // A failed body leaves what it guards in an unknown state: not finished.
                Some(Err(_)) => {
                    drop(this.guard.take());
                    false
                }
            };
            if ended {
                if let Some(guard) = this.guard.take() {
                    guard.finish();
                }
            }
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<B: Body + std::fmt::Debug, G: Finish> std::fmt::Debug for OnEnd<B, G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnEnd")
            .field("body", &self.body)
            .field("guarded", &self.guard.is_some())
            .finish()
    }
}

pin_project_lite::pin_project! {
    /// The limit on one wait for a body's next frame.
    ///
    /// Call [`poll_wait`](Self::poll_wait) when the body's poll returned `Pending` and
    /// [`stop`](Self::stop) when it returned a frame or its end. The tokio timer is created
    /// inline on the first wait and reset at the start of each later one.
    #[derive(Debug)]
    pub struct FrameTimer {
        limit: Duration,
        armed: bool,
        #[pin]
        sleep: Option<Sleep>,
    }
}

impl FrameTimer {
    /// A timer allowing `limit` per wait.
    pub fn new(limit: Duration) -> Self {
        Self {
            limit,
            armed: false,
            sleep: None,
        }
    }

    /// The body made progress: the current wait (if any) is over.
    pub fn stop(self: Pin<&mut Self>) {
        *self.project().armed = false;
    }

    /// The body has to wait: starts the wait's clock if this is its first poll, and is
    /// `Ready` with the limit once the wait has lasted that long.
    pub fn poll_wait(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Duration> {
        let mut this = self.project();
        if !*this.armed {
            let deadline = Instant::now() + *this.limit;
            match this.sleep.as_mut().as_pin_mut() {
                Some(sleep) => sleep.reset(deadline),
                None => this.sleep.set(Some(tokio::time::sleep_until(deadline))),
            }
            *this.armed = true;
        }
        match this.sleep.as_pin_mut().map(|sleep| sleep.poll(cx)) {
            Some(Poll::Ready(())) => {
                *this.armed = false;
                Poll::Ready(*this.limit)
            }
            _ => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use std::collections::VecDeque;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};

    use super::*;

    /// Counts finishes and plain drops.
    struct Probe {
        finished: Arc<AtomicU32>,
        dropped: Arc<AtomicU32>,
        done: bool,
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            if !self.done {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    impl Finish for Probe {
        fn finish(mut self) {
            self.done = true;
            self.finished.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn probe() -> (Probe, Arc<AtomicU32>, Arc<AtomicU32>) {
        let finished = Arc::new(AtomicU32::new(0));
        let dropped = Arc::new(AtomicU32::new(0));
        let probe = Probe {
            finished: finished.clone(),
            dropped: dropped.clone(),
            done: false,
        };
        (probe, finished, dropped)
    }

    /// A body of given frames, which does not know its end before it is polled.
    struct Frames(VecDeque<Result<Frame<Bytes>, std::io::Error>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            Poll::Ready(self.0.pop_front())
        }
    }

    fn frames(items: Vec<Result<Frame<Bytes>, std::io::Error>>) -> Frames {
        Frames(items.into())
    }

    #[tokio::test]
    async fn finishes_at_the_last_frame_of_a_sized_body() {
        let (guard, finished, dropped) = probe();
        let mut body = OnEnd::new(Full::new(Bytes::from_static(b"abc")), Some(guard));
        assert!(body.frame().await.is_some());
        assert_eq!(finished.load(Ordering::Relaxed), 1);
        drop(body);
        assert_eq!(dropped.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn finishes_at_the_end_of_a_stream() {
        let (guard, finished, _) = probe();
        let mut body = OnEnd::new(
            frames(vec![Ok(Frame::data(Bytes::from_static(b"x")))]),
            Some(guard),
        );
        assert!(body.frame().await.is_some());
        assert_eq!(finished.load(Ordering::Relaxed), 0, "not over yet");
        assert!(body.frame().await.is_none());
        assert_eq!(finished.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn an_error_drops_the_guard_unfinished() {
        let (guard, finished, dropped) = probe();
        let mut body = OnEnd::new(
            frames(vec![Err(std::io::Error::other("torn"))]),
            Some(guard),
        );
        assert!(matches!(body.frame().await, Some(Err(_))));
        assert_eq!(dropped.load(Ordering::Relaxed), 1);
        assert!(body.frame().await.is_none());
        assert_eq!(finished.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn dropped_early_drops_the_guard_unfinished() {
        let (guard, finished, dropped) = probe();
        let body = OnEnd::new(Full::new(Bytes::from_static(b"abc")), Some(guard));
        drop(body);
        assert_eq!(
            (
                finished.load(Ordering::Relaxed),
                dropped.load(Ordering::Relaxed)
            ),
            (0, 1)
        );
    }

    #[tokio::test]
    async fn dropped_after_an_empty_body_finishes() {
        let (guard, finished, _) = probe();
        drop(OnEnd::new(Full::new(Bytes::new()), Some(guard)));
        assert_eq!(finished.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_counts_one_wait_and_rearms_after_progress() {
        let mut timer = std::pin::pin!(FrameTimer::new(Duration::from_secs(5)));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(timer.as_mut().poll_wait(&mut cx).is_pending());
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(timer.as_mut().poll_wait(&mut cx).is_pending());
        // Progress: the next wait starts from zero.
        timer.as_mut().stop();
        assert!(timer.as_mut().poll_wait(&mut cx).is_pending());
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(timer.as_mut().poll_wait(&mut cx).is_pending());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            timer.as_mut().poll_wait(&mut cx),
            Poll::Ready(Duration::from_secs(5))
        );
    }
}
