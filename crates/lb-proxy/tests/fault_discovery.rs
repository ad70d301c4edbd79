//! Fault: the discovery registries unreachable for a minute while traffic flows: a real etcd
//! (upstream `etcd`) and a real DNS server, dnsmasq (upstream `dns`, A records re-resolved
//! every 100 ms since dnsmasq serves them with TTL 0), both killed at once.
//!
//! The proxy keeps each upstream's last good backend set the whole time: every request
//! succeeds and every backend keeps serving. When the registries return (same ports and
//! data), a backend added there is picked up: the etcd watcher reconnects (backoff capped at
//! 5 s) and the DNS source retries (backoff capped at `max_refresh`).
//!
//! Needs the `etcd` and `dnsmasq` binaries (`apt-get install etcd-server dnsmasq`; `.ci/run`
//! installs them): without them the test fails with that instruction, as the other etcd
//! tests do. It takes about `OUTAGE` plus a few seconds; the load meanwhile is paced, so the
//! machine stays nearly idle.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // tests; figures go to the test output

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::load::{self, Load, Planned};
use common::Harness;
use http::Request;
use http_body_util::Full;
use lb_testkit::dnsmasq::Dnsmasq;
use lb_testkit::etcd::Etcd;
use lb_testkit::TestBackend;

/// How long the registries stay down.
const OUTAGE: Duration = Duration::from_secs(60);
/// Each client loop waits this long between requests.
const PACE: Duration = Duration::from_millis(20);
/// Client loops.
const CONCURRENCY: usize = 2;
/// An upper bound on the load's requests (about 100 per second are sent).
const MAX_REQUESTS: usize = 100 * (OUTAGE.as_secs() as usize + 60);
/// Every other wait of this test ends by this deadline.
const STEP: Duration = Duration::from_secs(20);
/// The name the DNS upstream resolves.
const NAME: &str = "web.test";

/// Waits (bounded) until `upstream`'s backend set is exactly `want`.
async fn until_set_is(h: &Harness, upstream: &str, want: &[SocketAddr]) {
    let mut rx = h
        .proxy
        .upstream(upstream)
        .unwrap()
        .balancer()
        .watch_backends();
    let mut want = want.to_vec();
    want.sort();
    let wait = rx.wait_for(|set| {
        let mut have: Vec<_> = set.iter().filter_map(|b| b.addr().as_inet()).collect();
        have.sort();
        have == want
    });
    tokio::time::timeout(STEP, wait)
        .await
        .unwrap_or_else(|_| panic!("{upstream}: the backend set did not converge"))
        .unwrap();
}

fn key(addr: SocketAddr) -> String {
    format!("/lb/web/{addr}")
}

fn value(addr: SocketAddr) -> String {
    format!("{{\"addr\": \"{addr}\"}}")
}

/// Three backends on one port (A records carry no port) at 127.0.0.2, .3 and .4.
async fn same_port_backends() -> Vec<TestBackend> {
    let first = TestBackend::start_on("d0", "127.0.0.2:0".parse().unwrap()).await;
    let port = first.addr().port();
    let mut out = vec![first];
    for (i, last) in [(1, 3u8), (2, 4)] {
        let addr = SocketAddr::from(([127, 0, 0, last], port));
        out.push(TestBackend::start_on(&format!("d{i}"), addr).await);
    }
    out
}

/// The DNS records of `backends`.
fn records(backends: &[TestBackend]) -> Vec<(IpAddr, &'static str)> {
    backends.iter().map(|b| (b.addr().ip(), NAME)).collect()
}

/// Requests alternate between the two upstreams.
fn plan(root: String) -> load::Plan {
    Arc::new(move |i| Planned {
        request: Request::get(format!("{root}/{}/", ["etcd", "dns"][i % 2]))
            .body(Full::<Bytes>::default())
            .unwrap(),
        expect_body: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registries_unreachable_for_a_minute_keep_the_last_sets_and_recover() {
    let mut etcd = Etcd::start().await;
    let from_etcd = [
        TestBackend::start("e0").await,
        TestBackend::start("e1").await,
        TestBackend::start("e2").await,
    ];
    let e: Vec<SocketAddr> = from_etcd.iter().map(TestBackend::addr).collect();
    let registry = etcd.client().await;
    for a in &e[..2] {
        registry.put(key(*a), value(*a)).await;
    }
    let from_dns = same_port_backends().await;
    let d: Vec<SocketAddr> = from_dns.iter().map(TestBackend::addr).collect();
    let mut dns = Dnsmasq::start(&records(&from_dns[..2])).await;

    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\n\
         [upstreams.etcd]\n\
         discovery = {{ kind = \"etcd\", endpoints = [\"{}\"], prefix = \"/lb/web/\" }}\n\n\
         [upstreams.dns]\n\
         discovery = {{ kind = \"dns\", name = \"{NAME}\", port = {}, resolver = \"{}\", \
         min_refresh = \"100ms\", max_refresh = \"2s\" }}\n\n\
         [[routes]]\nupstream = \"etcd\"\npath_prefix = \"/etcd/\"\n\n\
         [[routes]]\nupstream = \"dns\"\npath_prefix = \"/dns/\"\n",
        etcd.endpoint(),
        d[0].port(),
        dns.addr()
    );
    let (h, _) = Harness::start(&toml).await;
    until_set_is(&h, "etcd", &e[..2]).await;
    until_set_is(&h, "dns", &d[..2]).await;
    let client = load::client();
    let load = Load::start(&client, CONCURRENCY, MAX_REQUESTS, PACE, plan(h.url("")));
    load.wait_done(20, STEP).await;

    etcd.kill().await;
    dns.kill().await;
    let serving: Vec<&TestBackend> = from_etcd[..2].iter().chain(&from_dns[..2]).collect();
    let hits: Vec<usize> = serving.iter().map(|b| b.hits()).collect();
    // The outage itself: nothing to wait for but time.
    tokio::time::sleep(OUTAGE).await;
    until_set_is(&h, "etcd", &e[..2]).await;
    until_set_is(&h, "dns", &d[..2]).await;
    for (b, before) in serving.iter().zip(&hits) {
        assert!(
            b.hits() > before + 100,
            "{} served {} requests during the outage",
            b.name(),
            b.hits() - before
        );
    }
    let during = load.done();

    // They return; a backend added to each is picked up.
    let restarted = Instant::now();
    dns.set_records(&records(&from_dns));
    dns.restart().await;
    etcd.restart().await;
    let registry = etcd.client().await;
    registry.put(key(e[2]), value(e[2])).await;
    until_set_is(&h, "dns", &d).await;
    let dns_after = restarted.elapsed();
    until_set_is(&h, "etcd", &e).await;
    let etcd_after = restarted.elapsed();
    for added in [&from_etcd[2], &from_dns[2]] {
        tokio::time::timeout(STEP, added.wait_for_hits(20))
            .await
            .unwrap_or_else(|_| panic!("{} gets no traffic", added.name()));
    }

    load.stop();
    let report = load.finish().await;
    eprintln!(
        "etcd and DNS down {OUTAGE:?}: {during} requests by then, {} in all, {} failed; \
         changes applied {dns_after:?} (DNS) and {etcd_after:?} (etcd) after the \
         registries were started again",
        report.done,
        report.failures.len()
    );
    assert!(
        report.failures.is_empty(),
        "{} of {} failed: {:?}",
        report.failures.len(),
        report.done,
        report.failures
    );
    assert!(h.proxy.shutdown().await);
}
