//! `/metrics` is valid for strict parsers in both formats it serves, under load and after a
//! reload: the whole OpenMetrics page goes through Python's
//! `prometheus_client.openmetrics.parser` (the strict one: `+Inf` bounds, `# EOF`, units,
//! grouping, counter names) and the classic page through `prometheus_client.parser`
//! (lax, so every family must also come out with its declared type, and the two pages
//! must describe the same families and series), each run as `python3 -c` reading the page
//! on stdin. Real backends on loopback; a DNS upstream (real dnsmasq) whose two backends
//! share one host name; an upstream whose name needs escaping in a label value.
//!
//! Needs `python3` with `prometheus_client` (`python3 -m pip install prometheus-client`, or
//! Debian's `python3-prometheus-client`; `.ci/run` installs it) and `dnsmasq`.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use common::load::{self, Load, Planned};
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use lb_proxy::config::Config;
use lb_proxy::{Proxy, RunningProxy};
use lb_testkit::dnsmasq::Dnsmasq;
use lb_testkit::TestBackend;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// The upstream whose name needs escaping: a quote, a backslash, a space.
const ODD: &str = r#"odd "q" \ n"#;

/// The host name both DNS backends answer for.
const NAME: &str = "multi.metrics.test";

/// Every wait of the test is bounded by this.
const STEP: Duration = Duration::from_secs(20);

/// What Prometheus 2 sends by default (OpenMetrics preferred).
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0;q=0.5,\
     application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";

/// Parses the page on stdin with the parser named by argv[1]; prints every family (name,
/// type, its series sorted) as JSON; fails on a parse error or a family without its type.
const PARSE: &str = r#"
import json, sys
if sys.argv[1] == "openmetrics":
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
else:
    from prometheus_client.parser import text_string_to_metric_families
families = []
for f in text_string_to_metric_families(sys.stdin.read()):
    if f.type in ("unknown", "untyped"):
        sys.exit("a family without its declared type: %s %r" % (f.name, f.samples[:3]))
    series = sorted([s.name, sorted(s.labels.items())] for s in f.samples)
    families.append({"name": f.name, "type": f.type, "series": series, "values": {
        s.name + json.dumps(sorted(s.labels.items())): s.value for s in f.samples}})
json.dump(families, sys.stdout)
"#;

/// Backends at 127.0.0.2 and 127.0.0.3 on one port (A records carry no port).
async fn same_port_backends() -> Vec<TestBackend> {
    let first = TestBackend::start_on("m0", "127.0.0.2:0".parse().unwrap()).await;
    let port = first.addr().port();
    let second = TestBackend::start_on("m1", SocketAddr::from(([127, 0, 0, 3], port))).await;
    vec![first, second]
}

fn config(web: &[&TestBackend], odd: &TestBackend, multi_port: u16, dns: &Dnsmasq) -> String {
    let list: Vec<String> = web.iter().map(|b| format!("\"{}\"", b.addr())).collect();
    let odd_key = ODD.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\ngrace_period = \"5s\"\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [upstreams.web]\nbackends = [{}]\npassive = {{ max_fails = 3 }}\n\
         health_check = {{ kind = \"tcp\", interval = \"100ms\" }}\n\n\
         [upstreams.\"{odd_key}\"]\nbackends = [\"{}\"]\n\
         health_check = {{ kind = \"tcp\", interval = \"100ms\" }}\n\n\
         [upstreams.multi]\n\
         discovery = {{ kind = \"dns\", name = \"{NAME}\", port = {multi_port}, resolver = \"{}\", \
         min_refresh = \"1s\" }}\n\
         health_check = {{ kind = \"tcp\", interval = \"100ms\" }}\n\n\
         [[routes]]\nupstream = \"{odd_key}\"\npath_prefix = \"/odd/\"\n\n\
         [[routes]]\nupstream = \"multi\"\npath_prefix = \"/multi/\"\n\n\
         [[routes]]\nupstream = \"web\"\n",
        list.join(", "),
        odd.addr(),
        dns.addr(),
    )
}

async fn start(path: &Path) -> RunningProxy {
    let text = std::fs::read_to_string(path).unwrap();
    let config = Config::from_toml_str(&text, path.display().to_string()).unwrap();
    Proxy::new(config).config_file(path).start().await.unwrap()
}

/// A request to the admin listener: status, `Content-Type`, body.
async fn admin(
    proxy: &RunningProxy,
    method: http::Method,
    path: &str,
    accept: Option<&str>,
) -> (StatusCode, String, String) {
    let addr = proxy.admin_addr().unwrap();
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(accept) = accept {
        req = req.header(header::ACCEPT, accept);
    }
    let client = load::client();
    let resp = tokio::time::timeout(STEP, client.request(req.body(Full::default()).unwrap()))
        .await
        .expect("the admin listener did not answer")
        .unwrap();
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

/// The page parsed by `parser` (`openmetrics` or `classic`): its families as JSON.
async fn parse(parser: &str, page: &str) -> Vec<Value> {
    let mut child = tokio::process::Command::new("python3")
        .args(["-c", PARSE, parser])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run python3 ({e}): the metrics format tests need python3 with \
                 prometheus_client (`python3 -m pip install prometheus-client`; .ci/run does)"
            )
        });
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(page.as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(STEP, child.wait_with_output())
        .await
        .expect("the parser did not finish")
        .unwrap();
    assert!(
        out.status.success(),
        "the {parser} parser refused the page: {}\n--- page ---\n{page}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Family names, types and series, without the values (the two pages are scraped at two
/// moments under load).
fn shape(families: &[Value]) -> Vec<(String, String, String)> {
    families
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_owned(),
                f["type"].as_str().unwrap().to_owned(),
                f["series"].to_string(),
            )
        })
        .collect()
}

/// The series of `family` as `{label: value}` maps.
fn series<'a>(families: &'a [Value], family: &str) -> Vec<&'a Value> {
    let f = families
        .iter()
        .find(|f| f["name"] == family)
        .unwrap_or_else(|| panic!("no family {family}"));
    f["series"].as_array().unwrap().iter().collect()
}

/// Scrapes both formats and checks each with its parser and against the other; returns
/// the OpenMetrics families.
async fn check_both(proxy: &RunningProxy) -> Vec<Value> {
    let (status, content_type, om) = admin(
        proxy,
        http::Method::GET,
        "/metrics",
        Some(PROMETHEUS_ACCEPT),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("le=\"+Inf\""), "{om}");
    assert!(!om.contains("le=\"inf\""), "{om}");
    assert!(
        om.contains("# UNIT lb_request_duration_seconds seconds\n"),
        "{om}"
    );
    // Help texts are written as given: they must need no escaping in either format.
    for help in om.lines().filter(|l| l.starts_with("# HELP ")) {
        assert!(!help.contains(['"', '\\']), "{help}");
    }

    let (status, content_type, classic) = admin(
        proxy,
        http::Method::GET,
        "/metrics",
        Some("text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(
        !classic.contains("# EOF") && !classic.contains("# UNIT"),
        "{classic}"
    );
    assert!(
        classic.contains("# TYPE lb_requests_total counter\n"),
        "{classic}"
    );

    let (strict, lax) = tokio::join!(parse("openmetrics", &om), parse("classic", &classic));
    assert_eq!(shape(&strict), shape(&lax), "the two formats disagree");

    // The Rust parser of the classic format sees counters as counters.
    let lines = classic.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    let total = scrape
        .samples
        .iter()
        .find(|s| s.metric == "lb_requests_total")
        .unwrap();
    assert!(
        matches!(total.value, prometheus_parse::Value::Counter(_)),
        "{total:?}"
    );
    strict
}

/// Polls `/metrics` until `backend` (an address) has an `lb_backend_up` series and a
/// check duration (the reload is applied when `POST /reload` answers; the first check of
/// the new backend comes within an interval).
async fn wait_for_backend(proxy: &RunningProxy, backend: SocketAddr) {
    let needle = format!("addr=\"{backend}\"");
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let (_, _, page) = admin(proxy, http::Method::GET, "/metrics", None).await;
        let has = |family: &str| {
            page.lines()
                .any(|l| l.starts_with(family) && l.contains(&needle))
        };
        if has("lb_backend_up{") && has("lb_health_check_duration_seconds{") {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{backend} not in /metrics: {page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_parses_strictly_under_load_and_after_a_reload() {
    let web = TestBackend::start_many(3).await;
    let odd = TestBackend::start("odd").await;
    let multi = same_port_backends().await;
    let records: Vec<_> = multi.iter().map(|b| (b.addr().ip(), NAME)).collect();
    let dns = Dnsmasq::start(&records).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lb.toml");
    let port = multi[0].addr().port();
    std::fs::write(&path, config(&[&web[0], &web[1]], &odd, port, &dns)).unwrap();
    let proxy = start(&path).await;
    for b in [&web[0], &web[1], &odd, &multi[0], &multi[1]] {
        wait_for_backend(&proxy, b.addr()).await;
    }

    // Requests flowing to every upstream while the pages are scraped (a bounded count).
    let root = format!("http://{}", proxy.local_addrs()[0]);
    let plan: load::Plan = std::sync::Arc::new(move |i| Planned {
        request: Request::get(format!("{root}{}", ["/", "/odd/", "/multi/"][i % 3]))
            .body(Full::<Bytes>::default())
            .unwrap(),
        expect_body: None,
    });
    let client = load::client();
    let load = Load::start(&client, 4, 20_000, Duration::from_millis(2), plan);
    load.wait_done(100, STEP).await;
    for _ in 0..3 {
        check_both(&proxy).await;
    }

    // The odd name comes back unescaped; the DNS backends share `backend`, not `addr`.
    let families = check_both(&proxy).await;
    let up = series(&families, "lb_backend_up");
    let text: Vec<String> = up.iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|s| s.contains(&serde_json::to_string(ODD).unwrap())),
        "{text:?}"
    );
    let multi_rows: BTreeSet<String> = text
        .iter()
        .filter(|s| s.contains("\"multi\""))
        .cloned()
        .collect();
    assert_eq!(multi_rows.len(), 2, "{multi_rows:?}");
    let host = format!("{NAME}:{port}");
    assert!(
        multi_rows.iter().all(|s| s.contains(&host)),
        "{multi_rows:?}"
    );

    // A reload (POST /reload) that adds a backend to `web`, the load still running.
    std::fs::write(
        &path,
        config(&[&web[0], &web[1], &web[2]], &odd, port, &dns),
    )
    .unwrap();
    let (status, _, body) = admin(&proxy, http::Method::POST, "/reload", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_for_backend(&proxy, web[2].addr()).await;
    assert!(load.done() < 20_000, "the load ended before the reload");
    let mut families = Vec::new();
    for _ in 0..3 {
        families = check_both(&proxy).await;
    }
    let reloads = families
        .iter()
        .find(|f| f["name"] == "lb_config_reloads")
        .unwrap();
    let success = &reloads["values"][r#"lb_config_reloads_total[["result", "success"]]"#];
    assert_eq!(success.as_f64(), Some(1.0), "{reloads}");

    load.stop();
    let report = load.finish().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(report.done >= 100, "{}", report.done);
    assert!(proxy.shutdown().await);
}
