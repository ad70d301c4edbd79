//! Backends added and removed through discovery (a file, and etcd) while the proxy is under
//! continuous load: no request fails for a backend removed gracefully (taken out of
//! discovery before it is stopped), and an added backend receives traffic.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Harness;
use lb_testkit::etcd::Etcd;
use lb_testkit::TestBackend;
use tokio::task::JoinSet;

/// Two client loops sending GETs until stopped, at most `MAX` requests each.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    first_failure: Arc<std::sync::OnceLock<String>>,
    tasks: JoinSet<()>,
}

const MAX: usize = 50_000;

impl Load {
    fn start(h: &Harness) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let first_failure = Arc::new(std::sync::OnceLock::new());
        let mut tasks = JoinSet::new();
        for _ in 0..2 {
            let (client, url) = (h.client.clone(), h.url("/"));
            let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
            let first_failure = first_failure.clone();
            tasks.spawn(async move {
                for _ in 0..MAX {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let outcome = match client.get(url.parse().unwrap()).await {
                        Ok(resp) if resp.status() == 200 => Ok(()),
                        Ok(resp) => {
                            let status = resp.status();
                            let body = http_body_util::BodyExt::collect(resp.into_body()).await;
                            let body = body.map(|b| b.to_bytes()).unwrap_or_default();
                            Err(format!("{status}: {}", String::from_utf8_lossy(&body)))
                        }
                        Err(e) => Err(format!("client error: {e:?}")),
                    };
                    sent.fetch_add(1, Ordering::SeqCst);
                    if let Err(why) = outcome {
                        failed.fetch_add(1, Ordering::SeqCst);
                        let _ = first_failure.set(why);
                    }
                }
            });
        }
        Self {
            stop,
            sent,
            failed,
            first_failure,
            tasks,
        }
    }

    /// Stops the loops; `(sent, failed, first failure)`.
    async fn finish(mut self) -> (usize, usize, String) {
        self.stop.store(true, Ordering::SeqCst);
        while self.tasks.join_next().await.is_some() {}
        let first = self.first_failure.get().cloned().unwrap_or_default();
        let sent = self.sent.load(Ordering::SeqCst);
        (sent, self.failed.load(Ordering::SeqCst), first)
    }
}

/// Waits (bounded) until the upstream's backend set is exactly `want`.
async fn until_set_is(h: &Harness, want: &[SocketAddr]) {
    let mut rx = h.proxy.upstream("web").unwrap().balancer().watch_backends();
    let mut want: Vec<_> = want.to_vec();
    want.sort();
    let wait = rx.wait_for(|set| {
        let mut have: Vec<_> = set.iter().filter_map(|b| b.addr().as_inet()).collect();
        have.sort();
        have == want
    });
    tokio::time::timeout(Duration::from_secs(15), wait)
        .await
        .expect("discovery did not converge within 15 s")
        .unwrap();
}

/// The proxy's own handle on the backend at `addr` (its in-flight count outlives removal).
fn proxy_backend(h: &Harness, addr: SocketAddr) -> lb_core::Backend {
    let set = h.proxy.upstream("web").unwrap().balancer().backends();
    set.iter()
        .find(|b| b.addr().as_inet() == Some(addr))
        .cloned()
        .unwrap()
}

/// The drain period of a graceful removal: waits (bounded) until no request the proxy has
/// assigned to `b` is still on its way. Nothing signals it, so the count is polled.
async fn drained(b: &lb_core::Backend) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while b.state().in_flight() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "requests still in flight to {b}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Waits (bounded) until `b` has served `more` requests beyond what it has now.
async fn until_served(b: &TestBackend, more: usize) {
    let target = b.hits() + more;
    tokio::time::timeout(Duration::from_secs(15), b.wait_for_hits(target))
        .await
        .expect("backend got no traffic within 15 s");
}

fn config(discovery: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[upstreams.web]\ndiscovery = {discovery}\n\n[[routes]]\nupstream = \"web\"\n"
    )
}

/// Adds `b2`, then removes `b0` gracefully, through `set`, under load.
async fn add_and_remove<F, Fut>(h: &Harness, backends: &mut [TestBackend], mut set: F)
where
    F: FnMut(Vec<SocketAddr>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let addrs: Vec<SocketAddr> = backends.iter().map(TestBackend::addr).collect();
    until_set_is(h, &addrs[..2]).await;
    let load = Load::start(h);
    until_served(&backends[0], 20).await;
    until_served(&backends[1], 20).await;

    set(addrs.clone()).await; // add b2
    until_set_is(h, &addrs).await;
    until_served(&backends[2], 50).await;

    let leaving = proxy_backend(h, addrs[0]);
    set(addrs[1..].to_vec()).await; // remove b0 from discovery first...
    until_set_is(h, &addrs[1..]).await;
    drained(&leaving).await;
    backends[0].stop_gracefully().await; // ...then stop it, draining
    until_served(&backends[1], 100).await;
    until_served(&backends[2], 100).await;

    let (sent, failed, first) = load.finish().await;
    assert!(sent > 300, "load ran: {sent} requests");
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed; first: {first}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_discovery_changes_under_load_lose_nothing() {
    let backends = TestBackend::start_many(3).await;
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("disc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("web.toml");
    let write = |addrs: Vec<SocketAddr>| {
        let list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
        // Atomic replace, as editors and config tools do.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("backends = [{}]\n", list.join(", "))).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    };
    write(backends[..2].iter().map(TestBackend::addr).collect());
    let (h, _events) = Harness::start(&config(&format!(
        "{{ kind = \"file\", path = \"{}\" }}",
        path.display()
    )))
    .await;
    let mut backends = backends;
    add_and_remove(&h, &mut backends, |addrs| {
        write(addrs);
        async {}
    })
    .await;

    assert!(h.proxy.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_discovery_changes_under_load_lose_nothing() {
    let mut etcd = Etcd::start().await;
    let backends = TestBackend::start_many(3).await;
    let client = etcd.client().await;
    let key = |a: &SocketAddr| format!("/lb/web/{a}");
    for b in &backends[..2] {
        let value = format!("{{\"addr\": \"{}\"}}", b.addr());
        client.put(key(&b.addr()), value).await;
    }
    let toml = config(&format!(
        "{{ kind = \"etcd\", endpoints = [\"{}\"], prefix = \"/lb/web/\" }}",
        etcd.endpoint()
    ));
    let (h, _events) = Harness::start(&toml).await;
    let all: Vec<SocketAddr> = backends.iter().map(TestBackend::addr).collect();
    let mut backends = backends;
    add_and_remove(&h, &mut backends, |want| {
        let (all, c, key) = (all.clone(), client.clone(), key);
        async move {
            for a in &all {
                if want.contains(a) {
                    c.put(key(a), format!("{{\"addr\": \"{a}\"}}")).await;
                } else {
                    c.delete(key(a)).await;
                }
            }
        }
    })
    .await;

    // etcd goes away while traffic flows: the last good set keeps serving.
    let load = Load::start(&h);
    etcd.kill().await;
    until_served(&backends[1], 100).await;
    until_served(&backends[2], 100).await;
    // It comes back (same ports and data); a change made now converges.
    etcd.restart().await;
    let client = etcd.client().await;
    let leaving = proxy_backend(&h, backends[1].addr());
    client.delete(key(&backends[1].addr())).await;
    until_set_is(&h, &[backends[2].addr()]).await;
    drained(&leaving).await;
    backends[1].stop_gracefully().await;
    until_served(&backends[2], 100).await;
    let (sent, failed, first) = load.finish().await;
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed across the etcd restart; first: {first}"
    );
    assert!(h.proxy.shutdown().await);
}
