//! etcd discovery against a real `etcd` (Debian package etcd-server) started by each test
//! on free loopback ports: register, deregister, lease expiry, etcd restarted while the
//! watch stream is consumed (resumed by revision, and re-read after a compaction), and a
//! frozen etcd found by the idle probe.
#![allow(clippy::unwrap_used)]

use lb_testkit::etcd as server;

use std::time::Duration;

use futures_util::StreamExt;
use lb_discovery::etcd::{Etcd, EtcdConfig};
use lb_discovery::{Discovered, DiscoveryError, DiscoveryStream, ServiceDiscovery};

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
const DEADLINE: Duration = Duration::from_secs(15);

const PREFIX: &str = "/services/web/";

fn discovery(etcd: &server::Etcd) -> Etcd {
    init_logs();
    let mut config = EtcdConfig::new([etcd.endpoint()], PREFIX);
    config.request_timeout = Duration::from_secs(2);
    config.connect_timeout = Duration::from_secs(1);
    config.keep_alive = Duration::from_secs(2);
    config.reconnect_max = Duration::from_millis(500);
    Etcd::new(config).unwrap()
}

fn key(name: &str) -> String {
    format!("{PREFIX}{name}")
}

/// The backends' names, in set order.
fn names(found: &Discovered) -> Vec<String> {
    found.backends.iter().map(|b| b.name().to_owned()).collect()
}

/// The next stream item, or a failure naming what was awaited.
async fn next(stream: &mut DiscoveryStream, what: &str) -> Result<Discovered, DiscoveryError> {
    tokio::time::timeout(DEADLINE, stream.next())
        .await
        .unwrap_or_else(|_| panic!("no stream item within {DEADLINE:?}: {what}"))
        .expect("etcd streams never end")
}

/// Consumes the stream until a set with exactly `want` (names) arrives, keeping the last
/// good set as a consumer would; errors on the way are allowed.
async fn converge(stream: &mut DiscoveryStream, want: &[&str]) -> Discovered {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let item = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("the set did not converge to {want:?} within {DEADLINE:?}"))
            .expect("etcd streams never end");
        if let Ok(found) = item {
            if names(&found) == want {
                return found;
            }
        }
    }
}

#[tokio::test]
async fn registrations_and_deregistrations_are_discovered_and_pushed() {
    let etcd = server::Etcd::start().await;
    let c = etcd.client().await;
    c.put(key("a"), r#"{"addr": "127.0.0.1:9001", "weight": 2}"#)
        .await;
    c.put(key("b"), r#"{"addr": "127.0.0.1:9002", "enabled": false}"#)
        .await;
    c.put(key("broken"), "{not json").await;
    c.put("/services/other/x", r#""127.0.0.1:9999""#).await;

    let d = discovery(&etcd);
    let found = d.discover().await.unwrap();
    assert_eq!(names(&found), ["127.0.0.1:9001", "127.0.0.1:9002"]);
    assert_eq!(found.backends[0].weight().get(), 2);
    assert!(found.is_enabled(found.backends[0].addr()));
    assert!(
        !found.is_enabled(found.backends[1].addr()),
        "enabled: false"
    );

    let mut stream = d.watch().unwrap();
    let first = next(&mut stream, "the current set").await.unwrap();
    assert_eq!(first, found);

    c.put(key("c"), r#"{"addr": "127.0.0.1:9003"}"#).await;
    converge(
        &mut stream,
        &["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"],
    )
    .await;
    c.delete(key("a")).await;
    converge(&mut stream, &["127.0.0.1:9002", "127.0.0.1:9003"]).await;
    c.put(key("b"), r#""127.0.0.1:9002""#).await;
    let enabled = next(&mut stream, "b enabled again").await.unwrap();
    assert!(enabled.disabled.is_empty());
    assert_eq!(d.error_count(), 0);
}

#[tokio::test]
async fn an_expired_lease_removes_its_backend() {
    let etcd = server::Etcd::start().await;
    let c = etcd.client().await;
    c.put(key("stays"), r#""127.0.0.1:9001""#).await;
    let lease = c.lease_grant(2).await;
    c.put_with_lease(key("leased"), r#""127.0.0.1:9002""#, lease)
        .await;
    // The service keeps its lease alive once, then dies without deregistering.
    assert!(c.lease_keep_alive_once(lease).await > 0);

    let mut stream = discovery(&etcd).watch().unwrap();
    let first = next(&mut stream, "the current set").await.unwrap();
    assert_eq!(names(&first), ["127.0.0.1:9001", "127.0.0.1:9002"]);
    converge(&mut stream, &["127.0.0.1:9001"]).await;
}

#[tokio::test]
async fn a_restarted_etcd_is_followed_again_from_the_last_revision() {
    let mut etcd = server::Etcd::start().await;
    let c = etcd.client().await;
    c.put(key("a"), r#""127.0.0.1:9001""#).await;
    c.put(key("b"), r#""127.0.0.1:9002""#).await;
    let d = discovery(&etcd);
    let mut stream = d.watch().unwrap();
    let before = next(&mut stream, "the current set").await.unwrap();

    etcd.kill().await;
    let err = next(&mut stream, "an error once etcd is gone")
        .await
        .unwrap_err();
    assert!(err.chain().contains(PREFIX), "{}", err.chain());
    assert!(d.discover().await.is_err(), "polling fails too");
    assert!(d.error_count() >= 2);

    etcd.restart().await;
    let c = etcd.client().await;
    c.delete(key("b")).await;
    c.put(key("c"), r#""127.0.0.1:9003""#).await;
    let after = converge(&mut stream, &["127.0.0.1:9001", "127.0.0.1:9003"]).await;
    assert_eq!(
        after.backends[0], before.backends[0],
        "the backend that stayed is the same"
    );
}

#[tokio::test]
async fn a_compacted_revision_after_a_restart_is_read_again_whole() {
    let mut etcd = server::Etcd::start().await;
    let c = etcd.client().await;
    c.put(key("a"), r#""127.0.0.1:9001""#).await;
    let mut stream = discovery(&etcd).watch().unwrap();
    next(&mut stream, "the current set").await.unwrap();

    // The stream learns etcd is gone, then is not polled (so it does not reconnect) while
    // etcd comes back, changes, and compacts away the revision the stream would resume at.
    etcd.kill().await;
    next(&mut stream, "an error once etcd is gone")
        .await
        .unwrap_err();
    etcd.restart().await;
    let c = etcd.client().await;
    c.delete(key("a")).await;
    c.put(key("b"), r#""127.0.0.1:9002""#).await;
    let revision = c.put(key("c"), r#""127.0.0.1:9003""#).await;
    c.compact(revision).await;

    converge(&mut stream, &["127.0.0.1:9002", "127.0.0.1:9003"]).await;
}

#[tokio::test]
async fn a_frozen_etcd_is_found_by_the_idle_probe_and_followed_again() {
    let etcd = server::Etcd::start().await;
    let c = etcd.client().await;
    c.put(key("a"), r#""127.0.0.1:9001""#).await;
    let d = discovery(&etcd);
    let mut stream = d.watch().unwrap();
    next(&mut stream, "the current set").await.unwrap();

    // Connections stay open and are accepted, but nothing answers: only the probe
    // (keep_alive 2 s, then request_timeout 2 s) can tell.
    etcd.freeze();
    let err = next(&mut stream, "an error once the probe gets no answer")
        .await
        .unwrap_err();
    assert!(err.chain().contains("probe"), "{}", err.chain());

    etcd.thaw();
    c.put(key("b"), r#""127.0.0.1:9002""#).await;
    converge(&mut stream, &["127.0.0.1:9001", "127.0.0.1:9002"]).await;
}

#[tokio::test]
async fn a_server_that_is_not_etcd_is_a_clear_error() {
    init_logs();
    // A plain HTTP server answering every request with its name as text.
    let backend = lb_testkit::TestBackend::start("not-etcd").await;
    let mut config = EtcdConfig::new([format!("http://{}", backend.addr())], PREFIX);
    config.request_timeout = Duration::from_secs(2);
    let d = Etcd::new(config).unwrap();
    let err = d.discover().await.unwrap_err();
    assert!(err.chain().contains("not etcd's JSON"), "{}", err.chain());

    // Nothing listens: a connect error naming the member.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let d = Etcd::new(EtcdConfig::new([format!("http://{addr}")], PREFIX)).unwrap();
    let err = d.discover().await.unwrap_err();
    assert!(
        err.chain()
            .contains(&format!("cannot connect to http://{addr}")),
        "{}",
        err.chain()
    );

    let bad = Etcd::new(EtcdConfig::new(["https://127.0.0.1:2379"], PREFIX)).unwrap_err();
    assert!(
        bad.to_string().contains("TLS to etcd is not supported yet"),
        "{bad}"
    );
}
