//! Hot reload through the real binary: SIGHUP and `POST /reload` under load, with real
//! backends on loopback, checked from the outside (the clients' answers, the backends' hit
//! counts, `/status` and `/metrics` of the admin listener, the log).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
#![allow(clippy::print_stderr)] // the load test reports its counts

mod common;
mod process_support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

use lb_testkit::TestBackend;
use process_support::{busy_connection, listen_addr, write, Proxy, Tally, CLIENTS, LOAD, STEP};
use serde_json::Value;

/// The configuration file: upstream `web` over `backends`, checked every 100 ms, rising
/// after 3 passes from `initial = "unhealthy"` (so a backend whose state was reset would be
/// out of service for 300 ms, which `/status` shows).
fn config(listen: SocketAddr, admin: SocketAddr, backends: &[&TestBackend]) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("\"{}\"", b.addr()))
        .collect();
    format!(
        "[server]\nlisten = [\"{listen}\"]\n\n\
         [admin]\nlisten = \"{admin}\"\n\n\
         [upstreams.web]\nbackends = [{}]\n\
         health_check = {{ kind = \"tcp\", interval = \"100ms\", rise = 3, fall = 3, initial = \"unhealthy\" }}\n\n\
         [[routes]]\nupstream = \"web\"\n",
        list.join(", ")
    )
}

/// `GET http://{admin}{path}` with a fresh connection: status and body.
async fn admin(method: &str, admin: SocketAddr, path: &str) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(admin).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, admin.to_string())
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(STEP, sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let status = resp.status().as_u16();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The `/status` entry of each backend of upstream `web`, by address.
async fn backends(admin_addr: SocketAddr) -> Vec<(String, Value)> {
    let (status, body) = admin("GET", admin_addr, "/status").await;
    assert_eq!(status, 200, "{body}");
    let json: Value = serde_json::from_str(&body).unwrap();
    let web = json["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "web")
        .unwrap()
        .clone();
    web["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["addr"].as_str().unwrap().to_owned(), b.clone()))
        .collect()
}

/// Waits (polling `/status`: health has no event the test can await) until every backend
/// of `web` is healthy.
async fn all_healthy(admin_addr: SocketAddr) {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let list = backends(admin_addr).await;
        if list.iter().all(|(_, b)| b["health"] == "healthy") {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all healthy: {list:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of the `lb_config_reloads_total` sample with `result`, parsed with a real
/// Prometheus text parser.
async fn reloads(admin_addr: SocketAddr, result: &str) -> f64 {
    let (status, body) = admin("GET", admin_addr, "/metrics").await;
    assert_eq!(status, 200);
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    scrape
        .samples
        .iter()
        .find(|s| s.metric == "lb_config_reloads_total" && s.labels.get("result") == Some(result))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{other:?}"),
        })
        .unwrap()
}

fn rewrite(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// Issue 7's acceptance test: under load (CLIENTS busy connections for LOAD), SIGHUP with
/// a configuration that adds one backend and removes another: zero failed requests, the new
/// backend gets traffic, the removed one gets no new requests, and the backend that stays
/// keeps its health state (still healthy at once, same `since`, its check counters going
/// on) while the new one starts from its initial health.
#[tokio::test]
async fn sighup_adds_and_removes_backends_under_load_with_no_failure() {
    let (a, b, c) = (
        TestBackend::start("a").await,
        TestBackend::start("b").await,
        TestBackend::start("c").await,
    );
    let dir = tempfile::tempdir().unwrap();
    let (listen, admin_addr) = (listen_addr(), listen_addr());
    let file = write(
        dir.path(),
        "lb.toml",
        &config(listen, admin_addr, &[&a, &b]),
    );
    let mut proxy = Proxy::start(&["-c", file.to_str().unwrap()]);
    proxy.wait_for("lb-proxy started").await;
    all_healthy(admin_addr).await;

    let tally = Arc::new(Tally::default());
    let end = tokio::time::Instant::now() + LOAD;
    let load: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let tally = tally.clone();
            tokio::spawn(async move {
                while tokio::time::Instant::now() < end {
                    if let Err(e) = busy_connection(listen, end, &tally).await {
                        tally.failed.fetch_add(1, SeqCst);
                        tally.errors.lock().push(e);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(LOAD / 3).await;
    let before = tally.ok.load(SeqCst);
    assert!(before > 100, "the load runs: {before} requests");
    let b_before = backends(admin_addr)
        .await
        .into_iter()
        .find(|(addr, _)| *addr == b.addr().to_string())
        .unwrap()
        .1;

    // Remove a, keep b, add c.
    rewrite(&file, &config(listen, admin_addr, &[&b, &c]));
    proxy.signal("HUP");
    proxy.wait_for("configuration reloaded").await;
    let a_at_reload = a.hits();
    let after = backends(admin_addr).await;
    let addrs: Vec<&str> = after.iter().map(|(addr, _)| addr.as_str()).collect();
    assert_eq!(addrs.len(), 2, "{after:#?}");
    assert!(
        addrs.contains(&b.addr().to_string().as_str())
            && addrs.contains(&c.addr().to_string().as_str())
    );
    let b_after = &after
        .iter()
        .find(|(addr, _)| *addr == b.addr().to_string())
        .unwrap()
        .1;
    assert_eq!(
        b_after["health"], "healthy",
        "b kept its state: {b_after:#}"
    );
    assert_eq!(
        b_after["since"], b_before["since"],
        "no new transition for b"
    );
    assert!(
        b_after["consecutive_passes"].as_u64() >= b_before["consecutive_passes"].as_u64(),
        "b's check counters go on: {b_before:#} then {b_after:#}"
    );
    let c_after = &after
        .iter()
        .find(|(addr, _)| *addr == c.addr().to_string())
        .unwrap()
        .1;
    assert_ne!(
        c_after["health"], "healthy",
        "c starts from its initial health"
    );

    // The new backend rises (3 checks) and takes traffic while the load goes on.
    tokio::time::timeout(STEP, c.wait_for_hits(50))
        .await
        .unwrap();
    for task in load {
        task.await.unwrap();
    }
    let (ok, failed) = (tally.ok.load(SeqCst), tally.failed.load(SeqCst));
    let errors = tally.errors.lock().clone();
    eprintln!(
        "reload under load: {ok} requests ({before} before the reload), {failed} failed; \
         hits a={} b={} c={}",
        a.hits(),
        b.hits(),
        c.hits()
    );
    assert_eq!(
        failed,
        0,
        "first errors: {:?}",
        &errors[..errors.len().min(10)]
    );
    assert!(ok > before + 100, "the load went on after the reload");
    // Requests already in flight to `a` when the configuration changed may still reach it,
    // at most one per busy connection; none is started after.
    assert!(
        a.hits() <= a_at_reload + CLIENTS,
        "a got new requests after its removal: {a_at_reload} then {}",
        a.hits()
    );
    assert_eq!(reloads(admin_addr, "success").await, 1.0);

    proxy.signal("TERM");
    assert_eq!(proxy.exit().await.code(), Some(0));
}

/// A reload with an invalid file (SIGHUP, then `POST /reload`) changes nothing: the same
/// backends serve, the log says why, and `lb_config_reloads_total{result="failure"}`
/// counts both. A valid file through `POST /reload` answers what changed.
#[tokio::test]
async fn an_invalid_configuration_changes_nothing_and_is_reported() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let dir = tempfile::tempdir().unwrap();
    let (listen, admin_addr) = (listen_addr(), listen_addr());
    let good = config(listen, admin_addr, &[&a]);
    let file = write(dir.path(), "lb.toml", &good);
    let mut proxy = Proxy::start(&["-c", file.to_str().unwrap()]);
    proxy.wait_for("lb-proxy started").await;
    all_healthy(admin_addr).await;
    let url: http::Uri = format!("http://{listen}/").parse().unwrap();
    let http = process_support::client();

    // An unknown key, with b added: nothing of it may take effect.
    rewrite(
        &file,
        &config(listen, admin_addr, &[&a, &b])
            .replace("[upstreams.web]", "[upstreams.web]\nselektion = \"random\""),
    );
    proxy.signal("HUP");
    let line = proxy.wait_for("reload refused").await;
    assert!(line.contains("selektion"), "the log names the key: {line}");
    assert!(line.contains("lb.toml"), "and the file: {line}");
    for _ in 0..20 {
        assert_eq!(process_support::get(&http, &url).await, Ok(200));
    }
    assert_eq!(
        b.hits(),
        0,
        "the refused configuration's backend got nothing"
    );
    assert_eq!(backends(admin_addr).await.len(), 1);
    assert_eq!(reloads(admin_addr, "failure").await, 1.0);

    // The same through the admin listener: 400 with the reason.
    let (status, body) = admin("POST", admin_addr, "/reload").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("selektion"), "{body}");
    assert_eq!(reloads(admin_addr, "failure").await, 2.0);
    assert_eq!(reloads(admin_addr, "success").await, 0.0);

    // Fixed: POST /reload applies it and says what changed.
    rewrite(&file, &config(listen, admin_addr, &[&a, &b]));
    let (status, body) = admin("POST", admin_addr, "/reload").await;
    assert_eq!(status, 200, "{body}");
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        json["upstreams"]["relisted"],
        serde_json::json!(["web"]),
        "{body}"
    );
    assert_eq!(
        json["listen"],
        serde_json::json!([listen.to_string()]),
        "{body}"
    );
    all_healthy(admin_addr).await;
    tokio::time::timeout(STEP, async {
        while b.hits() == 0 {
            assert_eq!(process_support::get(&http, &url).await, Ok(200));
        }
    })
    .await
    .unwrap();
    assert_eq!(reloads(admin_addr, "success").await, 1.0);
    let (status, _) = admin("GET", admin_addr, "/reload").await;
    assert_eq!(status, 405);

    proxy.signal("TERM");
    assert_eq!(proxy.exit().await.code(), Some(0));
}
