//! Heap allocations per proxied keep-alive `GET`, counted in the proxy alone, with a ceiling
//! so that a regression on the request path fails CI.
//!
//! The proxy runs on its own runtime (one worker thread); a counting global allocator counts
//! only on that runtime's threads (flagged by `on_thread_start`). The backend (lb-testkit) and
//! the client (a hyper HTTP/1.1 connection, kept alive) run on the test's runtime, so their
//! allocations are not counted. After a warm-up (the upstream connection is pooled, buffers
//! have grown) it sends `REQUESTS` sequential requests and divides.
//!
//! The figure it prints is the one `docs/benchmarks.md` reports; the ceiling sits a little
//! above it.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // tests: a failed unwrap is a failed test

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use lb_proxy::config::Config;
use lb_proxy::Proxy;
use lb_testkit::TestBackend;

/// Counts the allocations (and reallocations) made on threads that set [`COUNTED`].
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    // `try_with`: a thread being torn down has no thread-locals left.
    if COUNTED.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged; counting only reads a
// thread-local flag and bumps an atomic (neither allocates).
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Requests measured after the warm-up.
const REQUESTS: u64 = 2_000;
/// Requests sent before counting starts.
const WARM_UP: u64 = 200;
/// The regression ceiling, in allocations per request (measured: see the test's output).
const CEILING: f64 = 10.5;

/// One upstream of three backends, round robin, default settings (read timeout on,
/// forwarding headers, no retry buffer).
fn config(backends: &[TestBackend]) -> Config {
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("\"{}\"", b.addr()))
        .collect();
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[upstreams.web]\nbackends = [{}]\n\n\
         [[routes]]\nupstream = \"web\"\n",
        list.join(", ")
    );
    Config::from_toml_str(&toml, "allocs.toml").unwrap()
}

#[tokio::test]
async fn a_keep_alive_get_allocates_at_most_the_ceiling() {
    let backends = TestBackend::start_many(3).await;
    let config = config(&backends);
    // The proxy's own runtime: every thread it starts counts.
    let proxy_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .on_thread_start(|| COUNTED.with(|c| c.set(true)))
        .build()
        .unwrap();
    let running = proxy_rt
        .spawn(async move { Proxy::new(config).start().await.unwrap() })
        .await
        .unwrap();
    let addr = running.local_addrs()[0];

    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let mut get = async || {
        let req = Request::get("/allocs")
            .header("host", "allocs.test")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
            .await
            .expect("the proxy answers within 10 s")
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.into_body().collect().await.unwrap();
    };
    for _ in 0..WARM_UP {
        get().await;
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..REQUESTS {
        get().await;
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    drop(sender);
    conn.abort();
    proxy_rt
        .spawn(async move { running.shutdown().await })
        .await
        .unwrap();
    proxy_rt.shutdown_background();

    let per_request = allocations as f64 / REQUESTS as f64;
    eprintln!(
        "proxy allocations per keep-alive GET: {per_request:.2} ({allocations} over {REQUESTS})"
    );
    assert!(
        per_request <= CEILING,
        "{per_request:.2} allocations per request, ceiling {CEILING}"
    );
    // The instrument works: the warm-up and the measured requests did allocate in the proxy.
    assert!(
        allocations > 0,
        "nothing counted: is the allocator in place?"
    );
}
