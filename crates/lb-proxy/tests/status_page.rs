//! The status page in a real headless browser (Debian's `chromium`): a backend stopped
//! while the proxy runs is shown as down in the rendered page, and a phone-sized
//! screenshot is saved as `target/status.png` for review. Skipped, with a note, only when
//! chromium is not installed or cannot start.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // tests: unwrap fails the test; the note

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::{backend_list, Harness};
use lb_core::Health;
use lb_testkit::TestBackend;
use tokio::process::Command;

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"].into_iter().find(|c| {
        std::process::Command::new(c)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Runs chromium headless with `args` then `url`; its stdout, or None if it failed.
async fn headless(browser: &str, args: &[&str], url: &str) -> Option<String> {
    let mut cmd = Command::new(browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
    ])
    .args(args)
    .arg(url)
    .stdin(Stdio::null())
    .stderr(Stdio::null())
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .ok()?
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_shows_the_stopped_backend_as_down() {
    let Some(browser) = chromium() else {
        eprintln!("note: chromium is not installed; the status page browser test is skipped");
        return;
    };
    let mut backends = TestBackend::start_many(3).await;
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [upstreams.web]\nbackends = [{}]\n\
         [upstreams.web.health_check]\nkind = \"tcp\"\ninterval = \"100ms\"\ntimeout = \"1s\"\nrise = 1\nfall = 1\n\
         [upstreams.api]\nbackends = [{}]\n\
         [[routes]]\nupstream = \"web\"\n",
        backend_list(&backends[..2]),
        backend_list(&backends[2..])
    );
    let (h, mut transitions) = Harness::start(&toml).await;
    for _ in 0..2 {
        transitions.next().await;
    }
    for _ in 0..5 {
        h.get("/").await;
    }
    let down = backends[1].addr();
    backends[1].stop().await;
    loop {
        let t = transitions.next().await;
        if t.backend == down && t.new == Health::Unhealthy {
            break;
        }
    }
    let url = format!("http://{}/status.html", h.proxy.admin_addr().unwrap());
    let Some(dom) = headless(browser, &["--dump-dom"], &url).await else {
        eprintln!("note: {browser} cannot run here; the status page browser test is skipped");
        return;
    };
    let card = format!("<div class=\"b down\" data-state=\"down\"><span class=\"n\">{down}</span>");
    assert!(
        dom.contains(&card),
        "the stopped backend is not shown as down:\n{dom}"
    );
    let up = format!(
        "data-state=\"up\"><span class=\"n\">{}</span>",
        backends[0].addr()
    );
    assert!(dom.contains(&up), "{dom}");

    let shot = target_dir().join("status.png");
    let _ = std::fs::remove_file(&shot);
    let arg = format!("--screenshot={}", shot.display());
    headless(browser, &[&arg, "--window-size=412,900"], &url)
        .await
        .expect("chromium ran for the DOM but not for the screenshot");
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 1000,
        "{} bytes",
        png.len()
    );
    h.proxy.shutdown().await;
}
