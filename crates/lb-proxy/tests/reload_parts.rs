//! Hot reload through the library ([`RunningProxy::reload`]): listeners added and removed
//! without closing the ones that stay, certificates read again, an upstream rebuilt for a
//! changed setting with its backends' health carried over, and a configuration that cannot
//! be applied (a port in use) leaving everything as it was.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;
mod tls_kit;

use std::net::SocketAddr;
use std::time::Duration;

use lb_core::Health;
use lb_proxy::config::Config;
use lb_proxy::{Proxy, RunningProxy};
use lb_testkit::TestBackend;

fn parse(text: &str, dir: &std::path::Path) -> Config {
    Config::from_toml_str(text, dir.join("lb.toml")).unwrap()
}

async fn status_of(addr: SocketAddr) -> Result<u16, String> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let uri: http::Uri = format!("http://{addr}/").parse().unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.get(uri))
        .await
        .map_err(|_| "timeout".to_owned())?
        .map_err(|e| format!("{e:?}"))?;
    Ok(resp.status().as_u16())
}

fn upstream(backends: &[&TestBackend], extra: &str) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("\"{}\"", b.addr()))
        .collect();
    format!(
        "[upstreams.web]\nbackends = [{}]\n{extra}\n\n[[routes]]\nupstream = \"web\"\n",
        list.join(", ")
    )
}

#[tokio::test]
async fn listeners_follow_the_configuration_and_the_ones_that_stay_never_close() {
    let backend = TestBackend::start("web").await;
    let dir = tempfile::tempdir().unwrap();
    let web = upstream(&[&backend], "");
    let first = format!("[server]\nlisten = [\"127.0.0.1:0\"]\n{web}");
    let proxy: RunningProxy = Proxy::new(parse(&first, dir.path())).start().await.unwrap();
    let one = proxy.local_addrs()[0];
    assert_eq!(status_of(one).await, Ok(200));

    // Add a second listener: the first keeps its (ephemeral) port.
    let extra = common::free_port();
    let two: SocketAddr = format!("127.0.0.1:{extra}").parse().unwrap();
    let second = format!("[server]\nlisten = [\"127.0.0.1:0\", \"{two}\"]\n{web}");
    let done = proxy.reload(parse(&second, dir.path())).await.unwrap();
    assert_eq!(done.listening, [one, two]);
    assert_eq!(proxy.local_addrs(), [one, two]);
    assert_eq!(status_of(one).await, Ok(200));
    assert_eq!(status_of(two).await, Ok(200));
    assert_eq!(done.upstreams.kept, ["web"]);

    // Remove the first: it refuses connections, the second serves.
    let third = format!("[server]\nlisten = [\"{two}\"]\n{web}");
    proxy.reload(parse(&third, dir.path())).await.unwrap();
    assert_eq!(proxy.local_addrs(), [two]);
    let refused = tokio::net::TcpStream::connect(one).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    assert_eq!(status_of(two).await, Ok(200));

    // A listener that cannot be bound (the port is taken): nothing changes.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap();
    let other = TestBackend::start("other").await;
    let fourth = format!(
        "[server]\nlisten = [\"{two}\", \"{busy}\"]\n{}",
        upstream(&[&other], "")
    );
    let error = proxy.reload(parse(&fourth, dir.path())).await.unwrap_err();
    assert!(error.to_string().contains(&busy.to_string()), "{error}");
    assert_eq!(proxy.local_addrs(), [two]);
    assert_eq!(status_of(two).await, Ok(200));
    assert_eq!(
        other.hits(),
        0,
        "the refused configuration's backend got nothing"
    );
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn a_changed_setting_rebuilds_the_upstream_and_backends_keep_their_state() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let dir = tempfile::tempdir().unwrap();
    // Two passes 100 ms apart make a backend healthy: a rebuilt upstream that reset the
    // verdicts would have none healthy for 100 ms after the reload.
    let checks = "health_check = { kind = \"tcp\", interval = \"100ms\", rise = 2, initial = \"unhealthy\" }";
    let text = |selection: &str| {
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n{}",
            upstream(&[&a, &b], &format!("selection = \"{selection}\"\n{checks}"))
        )
    };
    let proxy = Proxy::new(parse(&text("round_robin"), dir.path()))
        .start()
        .await
        .unwrap();
    let web = proxy.upstream("web").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    // Polled: a health verdict has no event the test can await.
    while web
        .balancer()
        .backends()
        .iter()
        .any(|x| x.state().health() != Health::Healthy)
    {
        assert!(tokio::time::Instant::now() < deadline, "first checks");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // An operator hold on b (what `POST /backends/web/B/disable` sets).
    let b_addr = lb_core::BackendAddr::from(b.addr());
    let old_b = web
        .balancer()
        .backends()
        .iter()
        .find(|x| *x.addr() == b_addr)
        .unwrap()
        .clone();
    old_b.state().set_maintenance(true);
    let addr = proxy.local_addrs()[0];

    let done = proxy
        .reload(parse(&text("least_conn"), dir.path()))
        .await
        .unwrap();
    assert_eq!(done.upstreams.rebuilt, ["web"]);
    let rebuilt = proxy.upstream("web").unwrap();
    assert!(!std::sync::Arc::ptr_eq(&rebuilt, &web));
    let set = rebuilt.balancer().backends();
    assert!(
        set.iter().all(|x| x.state().health() == Health::Healthy),
        "verdicts carried over, not reset to `initial`"
    );
    let new_b = set.iter().find(|x| *x.addr() == b_addr).unwrap();
    assert!(std::sync::Arc::ptr_eq(
        new_b.shared_state(),
        old_b.shared_state()
    ));
    assert!(!new_b.state().is_usable(), "the hold carried over");
    for _ in 0..10 {
        assert_eq!(status_of(addr).await, Ok(200));
    }
    assert_eq!(b.hits(), 0, "b stays out");
    assert!(a.hits() >= 10);
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn tls_certificates_are_read_again_on_reload() {
    let backend = TestBackend::start("web").await;
    let (old_ca, new_ca) = (tls_kit::Ca::new("old CA"), tls_kit::Ca::new("new CA"));
    let files = tls_kit::Dir::new();
    files.write_leaf("site", &old_ca.server(&["localhost"]));
    let text = format!(
        "[server]\n[[server.tls]]\nlisten = [\"127.0.0.1:0\"]\n\
         certificates = [{{ cert = \"{d}/site.pem\", key = \"{d}/site.key\" }}]\n{}",
        upstream(&[&backend], ""),
        d = files.path().display()
    );
    let proxy = Proxy::new(parse(&text, files.path()))
        .start()
        .await
        .unwrap();
    let addr = proxy.tls_addrs()[0];
    let old = tls_kit::ClientOptions::trusting(&old_ca);
    assert_eq!(old.get(addr, "localhost").await.unwrap().status, 200);

    // A renewed certificate, same file names, same configuration text.
    files.write_leaf("site", &new_ca.server(&["localhost"]));
    proxy.reload(parse(&text, files.path())).await.unwrap();
    assert_eq!(proxy.tls_addrs(), [addr], "the same socket");
    let new = tls_kit::ClientOptions::trusting(&new_ca);
    assert_eq!(new.get(addr, "localhost").await.unwrap().status, 200);
    assert!(
        old.get(addr, "localhost").await.is_err(),
        "the old certificate is gone"
    );
    assert!(proxy.shutdown().await);
}

#[tokio::test]
async fn server_limits_apply_to_connections_accepted_after_a_reload() {
    let backend = TestBackend::start("web").await;
    let dir = tempfile::tempdir().unwrap();
    let text = |max_uri: &str| {
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n[server.limits]\nmax_uri_length = \"{max_uri}\"\n{}",
            upstream(&[&backend], "")
        )
    };
    let proxy = Proxy::new(parse(&text("8KiB"), dir.path()))
        .start()
        .await
        .unwrap();
    let addr = proxy.local_addrs()[0];
    let long = format!("/{}", "a".repeat(3000));
    let get = |path: String| async move {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<bytes::Bytes>>();
        let uri: http::Uri = format!("http://{addr}{path}").parse().unwrap();
        client.get(uri).await.unwrap().status().as_u16()
    };
    assert_eq!(get(long.clone()).await, 200);
    proxy
        .reload(parse(&text("2KiB"), dir.path()))
        .await
        .unwrap();
    assert_eq!(
        get(long).await,
        414,
        "the new limit holds on a new connection"
    );
    assert_eq!(get("/short".to_owned()).await, 200);
    assert!(proxy.shutdown().await);
}
