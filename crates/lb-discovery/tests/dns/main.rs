//! DNS discovery against a real DNS server over UDP on loopback (hickory-server, started by
//! each test on a free port, with a zone the test edits): A/AAAA answers (over UDP and
//! TCP), SRV weights and
//! priority tiers, a change picked up after its TTL, and an outage that keeps the last set.
#![allow(clippy::unwrap_used)]

mod server;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lb_core::BackendAddr;
use lb_discovery::dns::{Dns, DnsConfig, DnsError, DnsProtocol, SrvRecord};
use lb_discovery::{Discovered, DiscoveryError, DiscoveryStream, ServiceDiscovery};
use server::DnsServer;

/// Logs of the library on the test's output (shown for failing tests), `RUST_LOG` to tune.
fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "lb_discovery=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Every wait of these tests ends by this deadline.
const DEADLINE: Duration = Duration::from_secs(10);

fn config(server: &DnsServer) -> DnsConfig {
    init_logs();
    DnsConfig {
        resolver: Some(server.addr()),
        min_refresh: Duration::from_millis(100),
        max_refresh: Duration::from_secs(5),
        timeout: Duration::from_millis(300),
        attempts: 1,
        ..DnsConfig::default()
    }
}

/// `(address, name, weight)` of every backend, sorted.
fn summary(found: &Discovered) -> Vec<(String, String, u32)> {
    found
        .backends
        .iter()
        .map(|b| (b.addr().to_string(), b.name().to_owned(), b.weight().get()))
        .collect()
}

fn addrs(list: &[&str]) -> HashSet<BackendAddr> {
    list.iter()
        .map(|a| BackendAddr::Inet(a.parse::<SocketAddr>().unwrap()))
        .collect()
}

/// The next stream item, or a failure naming what was awaited.
async fn next(stream: &mut DiscoveryStream, what: &str) -> Result<Discovered, DiscoveryError> {
    tokio::time::timeout(DEADLINE, stream.next())
        .await
        .unwrap_or_else(|_| panic!("no stream item within {DEADLINE:?}: {what}"))
        .expect("DNS streams never end")
}

#[tokio::test]
async fn a_and_aaaa_records_become_backends_named_as_configured() {
    let mut dns = DnsServer::start().await;
    dns.set_ips("web.test.", 30, &["127.0.0.11", "127.0.0.12", "::1"])
        .await;
    dns.set_ips("v4only.test.", 30, &["127.0.0.13"]).await;
    let cfg = config(&dns);

    let web = Dns::a_aaaa_with("web.test", 8080, &cfg).unwrap();
    let found = web.discover().await.unwrap();
    let n = "web.test:8080".to_owned();
    assert_eq!(
        summary(&found),
        [
            ("127.0.0.11:8080".to_owned(), n.clone(), 1),
            ("127.0.0.12:8080".to_owned(), n.clone(), 1),
            ("[::1]:8080".to_owned(), n, 1),
        ]
    );
    assert!(found.backups.is_empty() && found.disabled.is_empty());
    let (_, refresh) = web.resolve().await.unwrap();
    assert_eq!(
        refresh,
        Duration::from_secs(5),
        "TTL 30 s clamped to max_refresh"
    );

    let v4 = Dns::a_aaaa_with("v4only.test", 80, &cfg).unwrap();
    assert_eq!(
        v4.discover().await.unwrap().backends.len(),
        1,
        "no AAAA is fine"
    );

    let tcp = DnsConfig {
        protocol: DnsProtocol::Tcp,
        ..cfg.clone()
    };
    let over_tcp = Dns::a_aaaa_with("web.test", 8080, &tcp).unwrap();
    assert_eq!(
        over_tcp.discover().await.unwrap(),
        found,
        "same answer over TCP"
    );

    let missing = Dns::a_aaaa_with("missing.test", 80, &cfg).unwrap();
    let err = missing.discover().await.unwrap_err();
    assert!(err.chain().contains("missing.test"), "{}", err.chain());
    assert_eq!(missing.error_count(), 1);
    assert!(matches!(
        Dns::a_aaaa_with("bad..name", 80, &cfg),
        Err(DnsError::InvalidName { .. })
    ));
}

#[tokio::test]
async fn srv_records_give_ports_weights_and_backup_tiers() {
    let mut dns = DnsServer::start().await;
    dns.set_srv(
        "_http._tcp.svc.test.",
        30,
        &[
            (10, 5, 8001, "a.test."),
            (10, 0, 8002, "b.test."),
            (10, 9, 8009, "gone.test."), // no address: skipped
            (20, 1, 8003, "c.test."),
            (30, 1, 8004, "d.test."),
        ],
    )
    .await;
    dns.set_ips("a.test.", 30, &["127.0.1.1", "::2"]).await;
    dns.set_ips("b.test.", 30, &["127.0.1.2"]).await;
    dns.set_ips("c.test.", 30, &["127.0.1.3"]).await;
    dns.set_ips("d.test.", 30, &["127.0.1.4"]).await;

    let srv = Dns::srv_with("_http._tcp.svc.test", &config(&dns)).unwrap();
    let found = srv.discover().await.unwrap();
    assert_eq!(
        summary(&found),
        [
            ("127.0.1.1:8001".into(), "a.test:8001".into(), 5),
            ("127.0.1.2:8002".into(), "b.test:8002".into(), 1), // SRV weight 0 -> 1
            ("127.0.1.3:8003".into(), "c.test:8003".into(), 1),
            ("127.0.1.4:8004".into(), "d.test:8004".into(), 1),
            ("[::2]:8001".into(), "a.test:8001".into(), 5),
        ]
    );
    assert_eq!(
        found.backups,
        addrs(&["127.0.1.3:8003", "127.0.1.4:8004"]),
        "priority 20 and 30 are backups of priority 10"
    );
    let b = &found.backends[1];
    assert_eq!(
        b.metadata().get::<SrvRecord>(),
        Some(&SrvRecord {
            priority: 10,
            weight: 0,
            port: 8002,
            target: "b.test".into()
        })
    );

    // The primaries lose their addresses: the next reachable tier becomes primary.
    dns.set_ips("a.test.", 30, &[]).await;
    dns.set_ips("b.test.", 30, &[]).await;
    let found = srv.discover().await.unwrap();
    assert_eq!(found.backends.len(), 2);
    assert_eq!(found.backups, addrs(&["127.0.1.4:8004"]));
}

#[tokio::test]
async fn a_record_change_is_picked_up_after_its_ttl() {
    let mut dns = DnsServer::start().await;
    dns.set_ips("web.test.", 1, &["127.0.0.21"]).await;
    let web = Dns::a_aaaa_with("web.test", 80, &config(&dns)).unwrap();
    let mut stream = web.watch().unwrap();

    let first = next(&mut stream, "the current set").await.unwrap();
    assert_eq!(first.backends[0].addr().to_string(), "127.0.0.21:80");
    let (_, refresh) = web.resolve().await.unwrap();
    assert_eq!(refresh, Duration::from_secs(1), "the record's TTL");

    dns.set_ips("web.test.", 1, &["127.0.0.22", "127.0.0.23"])
        .await;
    let changed_at = Instant::now();
    let next_set = next(&mut stream, "the changed records").await.unwrap();
    assert_eq!(
        summary(&next_set)
            .into_iter()
            .map(|(a, ..)| a)
            .collect::<Vec<_>>(),
        ["127.0.0.22:80", "127.0.0.23:80"]
    );
    assert!(
        changed_at.elapsed() < Duration::from_secs(3),
        "picked up after the 1 s TTL, well before max_refresh (5 s): {:?}",
        changed_at.elapsed()
    );
    assert_eq!(web.error_count(), 0);
}

#[tokio::test]
async fn an_outage_keeps_the_last_set_and_recovery_is_seen() {
    let mut dns = DnsServer::start().await;
    dns.set_ips("web.test.", 1, &["127.0.0.31"]).await;
    let web = Dns::a_aaaa_with("web.test", 80, &config(&dns)).unwrap();
    let mut stream = web.watch().unwrap();

    // A consumer that keeps its last good set, as a load balancer does.
    let mut last_good = next(&mut stream, "the current set").await.unwrap();
    let before = last_good.clone();

    dns.stop().await;
    let mut errors = 0;
    while errors < 2 {
        match next(&mut stream, "an error while the server is down").await {
            Ok(found) => last_good = found,
            Err(e) => {
                assert!(e.chain().contains("web.test"), "{}", e.chain());
                errors += 1;
            }
        }
    }
    assert_eq!(last_good, before, "errors never change the consumer's set");
    assert!(web.error_count() >= 2);
    assert!(web.discover().await.is_err(), "polling fails too");

    // The server comes back with a new answer: the stream recovers by itself.
    dns.set_ips("web.test.", 1, &["127.0.0.32"]).await;
    dns.restart().await;
    let recovered = loop {
        if let Ok(found) = next(&mut stream, "recovery after the restart").await {
            break found;
        }
    };
    assert_eq!(recovered.backends[0].addr().to_string(), "127.0.0.32:80");
}
