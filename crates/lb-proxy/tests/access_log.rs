//! The access log against a real proxy and real backends: one line per request, in the
//! combined and the JSON format, with route, upstream, backend, status, bytes, durations
//! and retries.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use common::{backend_list, Harness};
use http::{Request, StatusCode};
use http_body_util::Full;
use lb_testkit::TestBackend;

/// The file's lines once it has `n` of them (the writer flushes each batch); at most 10 s.
async fn lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(tokio::time::Instant::now() < deadline, "only {lines:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn config(backends: &[TestBackend], log: &Path, format: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\
         [access_log]\npath = \"{}\"\nformat = \"{format}\"\n\
         [upstreams.web]\nbackends = [{}]\n\
         [[routes]]\nupstream = \"web\"\npath_prefix = \"/api/\"\n",
        log.display(),
        backend_list(backends)
    )
}

#[tokio::test]
async fn combined_lines_for_each_request() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let backends = TestBackend::start_many(1).await;
    let (h, _) = Harness::start(&config(&backends, &log, "combined")).await;
    let req = Request::get(h.url("/api/one?x=1"))
        .header("user-agent", "admin-test/1.0")
        .header("referer", "http://example.test/")
        .body(Full::<Bytes>::default())
        .unwrap();
    assert_eq!(h.send(req).await.0, StatusCode::OK);
    assert_eq!(h.get("/nowhere").await.0, StatusCode::NOT_FOUND);
    let lines = lines(&log, 2).await;
    let backend = backends[0].addr().to_string();
    let first = &lines[0];
    assert!(first.starts_with("127.0.0.1 - - ["), "{first}");
    assert!(
        first.contains("\"GET /api/one?x=1 HTTP/1.1\" 200 "),
        "{first}"
    );
    assert!(
        first.contains("\"http://example.test/\" \"admin-test/1.0\""),
        "{first}"
    );
    assert!(
        first.contains(&format!("route=0 upstream=web backend={backend} rt=")),
        "{first}"
    );
    assert!(
        first.contains(" urt=0.") && first.ends_with(" retries=0"),
        "{first}"
    );
    let second = &lines[1];
    assert!(
        second.contains(
            "\"GET /nowhere HTTP/1.1\" 404 - \"-\" \"-\" route=- upstream=- backend=- rt="
        ),
        "{second}"
    );
    assert!(second.contains("urt=- retries=0"), "{second}");
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn json_lines_count_retries() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.json");
    let mut backends = TestBackend::start_many(2).await;
    backends[0].stop().await;
    let (h, _) = Harness::start(&config(&backends, &log, "json")).await;
    for _ in 0..2 {
        assert_eq!(h.get("/api/x").await.0, StatusCode::OK);
    }
    let lines = lines(&log, 2).await;
    let v: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let alive = backends[1].addr().to_string();
    for v in &v {
        assert_eq!(v["status"], 200, "{v}");
        assert_eq!(v["route"], "0");
        assert_eq!(v["upstream"], "web");
        assert_eq!(v["backend"], alive.as_str(), "{v}");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["uri"], "/api/x");
        assert!(v["duration_ms"].as_f64().unwrap() >= v["upstream_ms"].as_f64().unwrap());
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }
    // Round robin sends at least one request to the stopped backend first: each request
    // that went there was retried once on the live one.
    let retries: Vec<u64> = v.iter().map(|v| v["retries"].as_u64().unwrap()).collect();
    assert!(retries.iter().all(|&r| r <= 1), "{lines:?}");
    assert!(retries.iter().sum::<u64>() >= 1, "{lines:?}");
    h.proxy.shutdown().await;
}
