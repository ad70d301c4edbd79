//! The task of an HTTP/1.x connection (plain, or TLS once ALPN chose HTTP/1.1): hyper
//! serves it, and once it has been idle
//! for `release_idle_after` (`[server.limits]`), hyper's connection is dropped and only
//! the socket kept ("parked", see `protect/park.rs`) until the client sends again; then a
//! new hyper connection takes over from the bytes still unread in the socket.
//!
//! Shutdown: the task holds its graceful-shutdown [`Watcher`] for the connection's whole
//! life (so `GracefulShutdown::count` and `shutdown` count it, parked or not) without
//! handing it to hyper, and acts on the proxy's `stop` signal itself, which is sent before
//! the graceful shutdown: a serving connection gets hyper's graceful shutdown (the request
//! in progress finishes, then the connection closes), a parked one closes at once, as an
//! idle keep-alive connection does. A serving connection notices `stop` at its next
//! park check, at most the longer of `release_idle_after` and 100 ms later, with no
//! per-request cost.

use std::error::Error as StdError;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use hyper_util::server::graceful::{GracefulConnection, Watcher};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::hooks::ConnInfo;
use crate::protect::park::{ParkSlot, Parkable, ParkingIo};
use crate::protect::Activity;
use crate::worker::OpenConn;

/// The error a connection ends with.
type BoxError = Box<dyn StdError + Send + Sync>;

/// How often, at least, a busy connection's park check runs.
const BUSY_CHECK: Duration = Duration::from_millis(100);

/// Serves an HTTP/1.x connection until it closes, parking it whenever it rests: `connect`
/// makes hyper's connection over the stream (the listener's service on it), again after
/// each park; `stop` is the proxy's stop signal, `park_after` its `release_idle_after`.
/// The task holds `watcher` and `open` (the connection's count on its worker) to the end.
///
/// An `async` block, not an `async fn`: an `async fn` keeps its arguments twice in the
/// task (as captured, and as locals), about 450 bytes per connection here.
#[allow(clippy::manual_async_fn)] // on purpose, see above
pub(crate) fn serve_parking<I, F, C>(
    mut connect: F,
    mut stop: watch::Receiver<bool>,
    park_after: Duration,
    (watcher, open): (Watcher, OpenConn),
    mut io: I,
    info: ConnInfo,
    activity: Arc<Activity>,
) -> impl Future<Output = ()> + Send
where
    I: Parkable,
    F: FnMut(ParkingIo<I>, Arc<Activity>) -> C + Send,
    C: GracefulConnection<Error = BoxError> + Send,
{
    async move {
        let slot = Arc::new(ParkSlot::default());
        // Bounded: each pass serves until hyper's connection ends; it repeats only after a
        // park and new bytes from the client.
        loop {
            let conn = connect(ParkingIo::new(io, slot.clone()), activity.clone());
            // Boxed, and dropped when it ends: parked, the task keeps only the socket.
            let ended = until_rest(Box::pin(conn), &slot, &activity, &stop, park_after).await;
            if let Err(error) = ended {
                tracing::debug!(peer = %info.peer, error = &*error as &dyn StdError, "connection ended with an error");
            }
            let Some(parked) = slot.take() else {
                break;
            };
            io = parked;
            io.release_buffers();
            open.set_parked(true);
            let resume = {
                let mut stopped = pin!(stop.wait_for(|s| *s));
                poll_fn(|cx| {
                    if stopped.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(false);
                    }
                    io.poll_readable(cx).map(|readable| readable.is_ok())
                })
                .await
            };
            open.set_parked(false);
            if !resume {
                break;
            }
        }
        drop(watcher);
        drop(open);
    }
}

/// Runs hyper's connection until it ends: closed, failed, or parked once the connection
/// has rested for `park_after` (then `slot` holds the stream). Checks the rest, and the
/// proxy's `stop` signal, on a timer: while requests keep coming, once per
/// `max(park_after, 100 ms)`; nothing per request.
async fn until_rest<I, C>(
    mut conn: Pin<Box<C>>,
    slot: &ParkSlot<I>,
    activity: &Activity,
    stop: &watch::Receiver<bool>,
    park_after: Duration,
) -> Result<(), BoxError>
where
    C: GracefulConnection<Error = BoxError>,
{
    // While the connection is busy, the check runs this often (it also notices `stop`).
    let busy_check = park_after.max(BUSY_CHECK);
    let mut check = pin!(tokio::time::sleep(park_after));
    let mut stopping = false;
    let mut armed = false;
    poll_fn(|cx| {
        if let Poll::Ready(ended) = conn.as_mut().poll(cx) {
            return Poll::Ready(ended);
        }
        if !armed {
            // A timer is registered by its first poll.
            armed = true;
            if check.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        // An atomic load: the timer's own wake-up brings the task here.
        if stopping || !check.is_elapsed() {
            return Poll::Pending;
        }
        if stop.has_changed().is_err() || *stop.borrow() {
            stopping = true;
            conn.as_mut().graceful_shutdown();
            return conn.as_mut().poll(cx);
        }
        let now = Instant::now();
        let next = match activity.idle_for(now) {
            Some(idle) if idle >= park_after => {
                slot.request();
                // hyper reads at once, sees the end of the stream if at rest, and ends.
                if let Poll::Ready(ended) = conn.as_mut().poll(cx) {
                    return Poll::Ready(ended);
                }
                now + busy_check
            }
            Some(idle) => now + (park_after - idle),
            None => now + busy_check,
        };
        check.as_mut().reset(next);
        // Registers the timer's wake-up (pending: its deadline is ahead).
        let _ = check.as_mut().poll(cx);
        Poll::Pending
    })
    .await
}
