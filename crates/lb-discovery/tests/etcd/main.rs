//! etcd discovery against a real `etcd` (Debian package etcd-server) started by each test
//! on free loopback ports: register, deregister, lease expiry, and etcd restarted while the
//! watch stream is consumed (resumed by revision, and re-read after a compaction).
#![allow(clippy::unwrap_used)]

use lb_testkit::etcd as server;

use std::time::Duration;

use etcd_client::{CompactionOptions, PutOptions};
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
    let mut c = etcd.client().await;
    c.put(key("a"), r#"{"addr": "127.0.0.1:9001", "weight": 2}"#, None)
        .await
        .unwrap();
    c.put(
        key("b"),
        r#"{"addr": "127.0.0.1:9002", "enabled": false}"#,
        None,
    )
    .await
    .unwrap();
    c.put(key("broken"), "{not json", None).await.unwrap();
    c.put("/services/other/x", r#""127.0.0.1:9999""#, None)
        .await
        .unwrap();

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

    c.put(key("c"), r#"{"addr": "127.0.0.1:9003"}"#, None)
        .await
        .unwrap();
    converge(
        &mut stream,
        &["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"],
    )
    .await;
    c.delete(key("a"), None).await.unwrap();
    converge(&mut stream, &["127.0.0.1:9002", "127.0.0.1:9003"]).await;
    c.put(key("b"), r#""127.0.0.1:9002""#, None).await.unwrap();
    let enabled = next(&mut stream, "b enabled again").await.unwrap();
    assert!(enabled.disabled.is_empty());
    assert_eq!(d.error_count(), 0);
}

#[tokio::test]
async fn an_expired_lease_removes_its_backend() {
    let etcd = server::Etcd::start().await;
    let mut c = etcd.client().await;
    c.put(key("stays"), r#""127.0.0.1:9001""#, None)
        .await
        .unwrap();
    let lease = c.lease_grant(2, None).await.unwrap().id();
    c.put(
        key("leased"),
        r#""127.0.0.1:9002""#,
        Some(PutOptions::new().with_lease(lease)),
    )
    .await
    .unwrap();
    // The service keeps its lease alive once, then dies without deregistering.
    let (mut keeper, mut answers) = c.lease_keep_alive(lease).await.unwrap();
    keeper.keep_alive().await.unwrap();
    assert!(answers.message().await.unwrap().unwrap().ttl() > 0);
    drop((keeper, answers));

    let mut stream = discovery(&etcd).watch().unwrap();
    let first = next(&mut stream, "the current set").await.unwrap();
    assert_eq!(names(&first), ["127.0.0.1:9001", "127.0.0.1:9002"]);
    converge(&mut stream, &["127.0.0.1:9001"]).await;
}

#[tokio::test]
async fn a_restarted_etcd_is_followed_again_from_the_last_revision() {
    let mut etcd = server::Etcd::start().await;
    let mut c = etcd.client().await;
    c.put(key("a"), r#""127.0.0.1:9001""#, None).await.unwrap();
    c.put(key("b"), r#""127.0.0.1:9002""#, None).await.unwrap();
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
    let mut c = etcd.client().await;
    c.delete(key("b"), None).await.unwrap();
    c.put(key("c"), r#""127.0.0.1:9003""#, None).await.unwrap();
    let after = converge(&mut stream, &["127.0.0.1:9001", "127.0.0.1:9003"]).await;
    assert_eq!(
        after.backends[0], before.backends[0],
        "the backend that stayed is the same"
    );
}

#[tokio::test]
async fn a_compacted_revision_after_a_restart_is_read_again_whole() {
    let mut etcd = server::Etcd::start().await;
    let mut c = etcd.client().await;
    c.put(key("a"), r#""127.0.0.1:9001""#, None).await.unwrap();
    let mut stream = discovery(&etcd).watch().unwrap();
    next(&mut stream, "the current set").await.unwrap();

    // The stream learns etcd is gone, then is not polled (so it does not reconnect) while
    // etcd comes back, changes, and compacts away the revision the stream would resume at.
    etcd.kill().await;
    next(&mut stream, "an error once etcd is gone")
        .await
        .unwrap_err();
    etcd.restart().await;
    let mut c = etcd.client().await;
    c.delete(key("a"), None).await.unwrap();
    c.put(key("b"), r#""127.0.0.1:9002""#, None).await.unwrap();
    let revision = c
        .put(key("c"), r#""127.0.0.1:9003""#, None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    c.compact(revision, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();

    converge(&mut stream, &["127.0.0.1:9002", "127.0.0.1:9003"]).await;
}
