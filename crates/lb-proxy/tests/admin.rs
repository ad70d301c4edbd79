//! The admin listener against a real proxy, real backends and a real HTTP client:
//! `/metrics` (parsed with `prometheus-parse`) counts exactly the requests sent; `/status`
//! shows a stopped backend as down once the health check notices; disable, enable and
//! drain behave as HAProxy's runtime API (drain lets the in-flight request finish); the
//! bearer token is enforced everywhere but `/healthz`.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use common::{backend_list, Harness};
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use lb_testkit::TestBackend;
use serde_json::Value;

/// GET/POST on the admin listener: status, body.
async fn admin(
    h: &Harness,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String) {
    let addr = h.proxy.admin_addr().unwrap();
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    h.send(req.body(Full::<Bytes>::default()).unwrap()).await
}

async fn status_json(h: &Harness) -> Value {
    let (code, body) = admin(h, Method::GET, "/status", &[]).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn backend<'a>(status: &'a Value, upstream: &str, addr: &str) -> &'a Value {
    status["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == upstream)
        .and_then(|u| {
            u["backends"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["name"] == addr)
        })
        .unwrap_or_else(|| panic!("{upstream}/{addr} not in {status}"))
}

/// The value of the sample `name` whose labels include all of `labels`.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .collect();
    assert_eq!(found.len(), 1, "{name}{labels:?}: {found:?}");
    found[0]
}

async fn scrape(h: &Harness) -> (prometheus_parse::Scrape, String) {
    let (code, body) = admin(h, Method::GET, "/metrics", &[]).await;
    assert_eq!(code, StatusCode::OK);
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    (prometheus_parse::Scrape::parse(lines).unwrap(), body)
}

#[tokio::test]
async fn metrics_count_the_requests_sent() {
    let backends = TestBackend::start_many(2).await;
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [upstreams.web]\nbackends = [{}]\n\
         [[routes]]\nupstream = \"web\"\npath_prefix = \"/api/\"\n",
        backend_list(&backends)
    );
    let (h, _) = Harness::start(&toml).await;
    backends[1].set_status(500);
    for _ in 0..10 {
        h.get("/api/x").await;
    }
    for _ in 0..3 {
        assert_eq!(h.get("/elsewhere").await.0, StatusCode::NOT_FOUND);
    }
    let (s, text) = scrape(&h).await;
    let route = [("route", "0"), ("upstream", "web")];
    let two = sample(
        &s,
        "lb_requests_total",
        &[route[0], route[1], ("class", "2xx")],
    );
    let five = sample(
        &s,
        "lb_requests_total",
        &[route[0], route[1], ("class", "5xx")],
    );
    assert_eq!((two, five), (5.0, 5.0), "{text}");
    let unrouted = sample(
        &s,
        "lb_requests_total",
        &[("route", "none"), ("class", "4xx")],
    );
    assert_eq!(unrouted, 3.0);
    assert_eq!(
        sample(
            &s,
            "lb_upstream_requests_total",
            &[("upstream", "web"), ("class", "2xx")]
        ),
        5.0
    );
    for (b, class) in [(&backends[0], "2xx"), (&backends[1], "5xx")] {
        let name = b.addr().to_string();
        let labels = [("backend", name.as_str()), ("class", class)];
        assert_eq!(sample(&s, "lb_backend_responses_total", &labels), 5.0);
        let l = [("backend", name.as_str())];
        assert_eq!(sample(&s, "lb_backend_in_flight", &l), 0.0);
        assert_eq!(sample(&s, "lb_backend_up", &l), 1.0);
        // The time-to-first-byte histogram saw every attempt.
        let hist = s
            .samples
            .iter()
            .find(|x| {
                x.metric == "lb_backend_response_time_seconds"
                    && x.labels.get("backend") == Some(&name)
            })
            .unwrap();
        let prometheus_parse::Value::Histogram(buckets) = &hist.value else {
            panic!("{hist:?}")
        };
        assert_eq!(buckets.last().unwrap().count, 5.0, "{hist:?}");
    }
    assert_eq!(
        sample(&s, "lb_config_reloads_total", &[("result", "failure")]),
        0.0
    );
    assert!(sample(&s, "lb_open_connections", &[]) >= 1.0, "{text}");
    // One worker: the test's runtime, which served every connection.
    assert!(
        sample(&s, "lb_worker_connections_total", &[("worker", "0")]) >= 1.0,
        "{text}"
    );
    assert!(
        sample(&s, "lb_worker_open_connections", &[("worker", "0")]) >= 1.0,
        "{text}"
    );
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn status_shows_a_stopped_backend_as_down() {
    let mut backends = TestBackend::start_many(2).await;
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [upstreams.web]\nbackends = [{}]\n\
         [upstreams.web.health_check]\nkind = \"tcp\"\ninterval = \"100ms\"\ntimeout = \"1s\"\nrise = 1\nfall = 1\n\
         [[routes]]\nupstream = \"web\"\n",
        backend_list(&backends)
    );
    let (h, mut transitions) = Harness::start(&toml).await;
    let down = backends[1].addr();
    // Both become healthy, then the stopped one goes down.
    for _ in 0..2 {
        transitions.next().await;
    }
    backends[1].stop().await;
    loop {
        let t = transitions.next().await;
        if t.backend == down && t.new == lb_core::Health::Unhealthy {
            break;
        }
    }
    let status = status_json(&h).await;
    let b = backend(&status, "web", &down.to_string());
    assert_eq!(b["state"], "down", "{b}");
    assert_eq!(b["health"], "unhealthy");
    assert_eq!(b["usable"], false);
    assert!(b["consecutive_failures"].as_u64().unwrap() >= 1);
    assert!(b["last_failure"].is_string(), "{b}");
    let up = backend(&status, "web", &backends[0].addr().to_string());
    assert_eq!(up["state"], "up");
    assert!(up["last_check_ms"].is_number());
    // Health metrics agree.
    let (s, _) = scrape(&h).await;
    let name = down.to_string();
    let l = [("backend", name.as_str()), ("state", "unhealthy")];
    assert_eq!(sample(&s, "lb_backend_health", &l), 1.0);
    assert!(
        sample(
            &s,
            "lb_health_checks_total",
            &[("backend", name.as_str()), ("result", "fail")]
        ) >= 1.0
    );
    // The HTML page, for a browser.
    let (code, html) = admin(&h, Method::GET, "/status", &[("accept", "text/html")]).await;
    assert_eq!(code, StatusCode::OK);
    assert!(
        html.contains(&format!("data-state=\"down\"><span class=\"n\">{name}")),
        "{html}"
    );
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn disable_enable_and_drain() {
    let backends = TestBackend::start_many(2).await;
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [upstreams.web]\nbackends = [{}]\n[[routes]]\nupstream = \"web\"\n",
        backend_list(&backends)
    );
    let (h, _) = Harness::start(&toml).await;
    let (a, b) = (
        backends[0].addr().to_string(),
        backends[1].addr().to_string(),
    );

    let (code, body) = admin(&h, Method::POST, &format!("/backends/web/{a}/disable"), &[]).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    for _ in 0..6 {
        assert_eq!(h.get("/").await.0, StatusCode::OK);
    }
    assert_eq!(
        (backends[0].hits(), backends[1].hits()),
        (0, 6),
        "a disabled backend gets nothing"
    );
    assert_eq!(
        backend(&status_json(&h).await, "web", &a)["state"],
        "disabled"
    );

    admin(&h, Method::POST, &format!("/backends/web/{a}/enable"), &[]).await;
    for _ in 0..6 {
        h.get("/").await;
    }
    assert_eq!(backends[0].hits(), 3, "enabled again: round robin resumes");

    // Drain `b` while a slow request is in flight on it.
    admin(&h, Method::POST, &format!("/backends/web/{a}/disable"), &[]).await;
    backends[1].set_delay(Duration::from_millis(600));
    let slow = {
        let client = h.client.clone();
        let url = h.url("/slow");
        tokio::spawn(async move {
            let req = Request::get(url).body(Full::<Bytes>::default()).unwrap();
            client.request(req).await.unwrap().status()
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while backend(&status_json(&h).await, "web", &b)["in_flight"] != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow request never arrived"
        );
        tokio::task::yield_now().await;
    }
    backends[1].wait_for_hits(backends[1].hits().max(1)).await;
    let hits = backends[1].hits();
    let (code, body) = admin(&h, Method::POST, &format!("/backends/web/{b}/drain"), &[]).await;
    assert_eq!(code, StatusCode::OK);
    let drained: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(drained["state"], "draining");
    assert_eq!(drained["drained"], false, "one request is still in flight");
    assert_eq!(
        h.get("/").await.0,
        StatusCode::SERVICE_UNAVAILABLE,
        "no new requests"
    );
    assert_eq!(
        slow.await.unwrap(),
        StatusCode::OK,
        "the in-flight request finished"
    );
    assert_eq!(backends[1].hits(), hits, "it was the only one");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let s = status_json(&h).await;
        if backend(&s, "web", &b)["drained"] == true {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never drained: {s}");
        tokio::task::yield_now().await;
    }
    admin(&h, Method::POST, &format!("/backends/web/{b}/enable"), &[]).await;
    backends[1].set_delay(Duration::ZERO);
    assert_eq!(h.get("/").await.0, StatusCode::OK);

    // Unknown names and actions.
    let (code, _) = admin(&h, Method::POST, "/backends/web/10.9.9.9:1/disable", &[]).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, _) = admin(
        &h,
        Method::POST,
        &format!("/backends/nope/{a}/disable"),
        &[],
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, _) = admin(&h, Method::POST, &format!("/backends/web/{a}/explode"), &[]).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, _) = admin(&h, Method::GET, &format!("/backends/web/{a}/enable"), &[]).await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn the_token_guards_everything_but_healthz() {
    let backends = TestBackend::start_many(1).await;
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"s3cret\"\n\
         [upstreams.web]\nbackends = [{}]\n[[routes]]\nupstream = \"web\"\n",
        backend_list(&backends)
    );
    let (h, _) = Harness::start(&toml).await;
    let a = backends[0].addr();
    let paths: HashMap<&str, Method> = [
        ("/metrics", Method::GET),
        ("/status", Method::GET),
        ("/status.html", Method::GET),
        (
            &*Box::leak(format!("/backends/web/{a}/enable").into_boxed_str()),
            Method::POST,
        ),
    ]
    .into_iter()
    .collect();
    for (path, method) in &paths {
        let (code, _) = admin(&h, method.clone(), path, &[]).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{path} without a token");
        let (code, _) = admin(
            &h,
            method.clone(),
            path,
            &[("authorization", "Bearer wrong")],
        )
        .await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{path} with a wrong token");
        let (code, _) = admin(
            &h,
            method.clone(),
            path,
            &[("authorization", "Bearer s3cret")],
        )
        .await;
        assert_eq!(code, StatusCode::OK, "{path} with the token");
    }
    let (code, body) = admin(&h, Method::GET, "/healthz", &[]).await;
    assert_eq!((code, body.as_str()), (StatusCode::OK, "ok\n"));
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn backends_added_by_discovery_get_counters() {
    let backends = TestBackend::start_many(2).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("web.toml");
    let write = |list: &[TestBackend]| {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("backends = [{}]\n", backend_list(list))).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    };
    write(&backends[..1]);
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [upstreams.web]\ndiscovery = {{ kind = \"file\", path = \"{}\" }}\n\
         [[routes]]\nupstream = \"web\"\n",
        path.display()
    );
    let (h, _) = Harness::start(&toml).await;
    for _ in 0..2 {
        assert_eq!(h.get("/").await.0, StatusCode::OK);
    }
    write(&backends);
    // The new backend's counters exist once the set change reached the metrics.
    let added = backends[1].addr().to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (s, _) = scrape(&h).await;
        if s.samples.iter().any(|x| {
            x.metric == "lb_backend_responses_total" && x.labels.get("backend") == Some(&added)
        }) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{added} never counted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..4 {
        assert_eq!(h.get("/").await.0, StatusCode::OK);
    }
    let (s, _) = scrape(&h).await;
    let kept = backends[0].addr().to_string();
    let two = |b: &str| {
        sample(
            &s,
            "lb_backend_responses_total",
            &[("backend", b), ("class", "2xx")],
        )
    };
    assert_eq!(
        (two(&kept), two(&added)),
        (4.0, 2.0),
        "kept its count, and the new one counts"
    );
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn failed_attempts_and_retries_are_counted() {
    let mut backends = TestBackend::start_many(2).await;
    backends[0].stop().await;
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [upstreams.web]\nbackends = [{}]\n[[routes]]\nupstream = \"web\"\n",
        backend_list(&backends)
    );
    let (h, _) = Harness::start(&toml).await;
    for _ in 0..4 {
        assert_eq!(
            h.get("/").await.0,
            StatusCode::OK,
            "retried on the live backend"
        );
    }
    let (s, text) = scrape(&h).await;
    let dead = backends[0].addr().to_string();
    let connect = sample(
        &s,
        "lb_backend_failures_total",
        &[("backend", &dead), ("kind", "connect")],
    );
    let retries = sample(
        &s,
        "lb_upstream_retries_total",
        &[("upstream", "web"), ("reason", "error")],
    );
    assert!(connect >= 1.0, "{text}");
    assert_eq!(connect, retries, "each connect failure was retried: {text}");
    let live = backends[1].addr().to_string();
    assert_eq!(
        sample(
            &s,
            "lb_backend_responses_total",
            &[("backend", &live), ("class", "2xx")]
        ),
        4.0
    );
    assert_eq!(
        sample(&s, "lb_requests_total", &[("route", "0"), ("class", "2xx")]),
        4.0
    );
    let status = status_json(&h).await;
    let d = backend(&status, "web", &dead);
    assert_eq!(d["requests"], d["errors"], "{d}");
    assert_eq!(d["error_rate"], 1.0);
    h.proxy.shutdown().await;
}
