//! The `lb-proxy` binary: `-t` validation, the file-less balancer, the demo, and SIGTERM.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use common::free_port;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use lb_testkit::TestBackend;

const BIN: &str = env!("CARGO_BIN_EXE_lb-proxy");

fn check_config(text: &str) -> (ExitStatus, String) {
    let mut file = tempfile();
    file.1.write_all(text.as_bytes()).unwrap();
    let out = Command::new(BIN)
        .args(["-t", "-c"])
        .arg(&file.0)
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A file under the target directory, removed by the OS on reboot at worst.
fn tempfile() -> (std::path::PathBuf, std::fs::File) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let path = dir.join(format!("cli-{}-{n}.toml", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    (path, file)
}

const GOOD: &str = r#"[server]
listen = ["127.0.0.1:8080"]

[upstreams.web]
selection = "round_robin"
backends = ["127.0.0.1:9001", { addr = "127.0.0.1:9002", weight = 2 }]

[upstreams.web.health_check]
kind = "tcp"
interval = "1s"
timeout = "500ms"
rise = 2
fall = 3

[[routes]]
upstream = "web"
"#;

#[test]
fn dash_t_accepts_a_valid_file() {
    let (status, stderr) = check_config(GOOD);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("test is successful"), "{stderr}");
}

#[test]
fn every_shipped_example_passes_dash_t() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = Command::new(BIN)
                .arg("-t")
                .arg("-c")
                .arg(&path)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(0), "{}: {stderr}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 3, "examples/*.toml found: {checked}");
}

#[test]
fn dash_t_refuses_bad_files_naming_file_line_and_key() {
    let cases = [
        (
            GOOD.replace("fall = 3", "fall = 3\nfal = 3"),
            ":14:1: upstreams.web.health_check.fal: unknown field `fal`",
        ),
        (
            GOOD.replace("\"1s\"", "\"1 fortnight\""),
            ":10:12: upstreams.web.health_check.interval: invalid duration",
        ),
        (
            GOOD.replace("upstream = \"web\"", "upstream = \"api\""),
            ":16:12: routes[0].upstream: upstream `api` is not defined",
        ),
    ];
    for (text, expected) in cases {
        let (status, stderr) = check_config(&text);
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(".toml") && stderr.contains(expected),
            "want {expected:?} in {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let missing = Command::new(BIN)
        .args(["-t", "-c", "/nonexistent/lb.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read /nonexistent/lb.toml"));
}

/// Runs the binary until the readiness line `curl http://ADDR/` shows on stdout (demo), or
/// until the port answers (other modes); returns the child and the address.
struct Running {
    child: Child,
}

impl Running {
    fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit within 10 s of SIGTERM");
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn demo_mode_serves_and_exits_zero_on_sigterm() {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let running = Running { child };
    let url = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .take(50)
            .map_while(Result::ok)
            .find_map(|l| l.trim().strip_prefix("curl ").map(str::to_owned))
    })
    .await
    .unwrap()
    .expect("the demo prints how to try it");
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..3 {
        let resp = client.get(url.parse().unwrap()).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.starts_with("hello from demo backend"), "{text}");
        seen.insert(text);
    }
    assert_eq!(seen.len(), 3, "three demo backends in rotation");
    drop(client);
    assert_eq!(running.terminate().code(), Some(0));
}

#[tokio::test]
async fn listen_and_backend_flags_run_a_balancer_without_a_file() {
    let backends = TestBackend::start_many(2).await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    // The comma-separated `--backends` and `--workers` spellings of bench scripts.
    let mut child = Command::new(BIN)
        .args(["--listen", &listen, "--backends"])
        .arg(format!("{},{}", backends[0].addr(), backends[1].addr()))
        .args(["--workers", "1"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let running = Running { child };
    let started = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stderr).lines();
        let found = lines
            .by_ref()
            .take(50)
            .map_while(Result::ok)
            .any(|l| l.contains("lb-proxy started"));
        // Keep draining so the child never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        found
    });
    assert!(started.await.unwrap(), "lb-proxy logs that it started");
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let url: http::Uri = format!("http://{listen}/").parse().unwrap();
    let first = client.get(url.clone()).await.unwrap();
    assert_eq!(first.status(), 200);
    drop(first);
    for _ in 0..4 {
        assert_eq!(client.get(url.clone()).await.unwrap().status(), 200);
    }
    assert!(backends[0].hits() >= 2 && backends[1].hits() >= 2);
    assert_eq!(running.terminate().code(), Some(0));
}
