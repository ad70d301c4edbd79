//! The `lb-proxy` binary as a server process: graceful shutdown on SIGTERM, the graceful
//! binary upgrade (SIGQUIT + `--upgrade`) under load, daemon mode with its pid file, and the
//! error log as JSON. Every test runs the real binary against real backends on loopback.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
#![allow(clippy::print_stderr)] // the upgrade test reports its counts

mod common;
mod process_support;
mod tls_kit;

use process_support::{
    busy_connection, client, config, get, listen_addr, signal, write, Proxy, Tally, BIN, CLIENTS,
    LOAD, STEP,
};

use std::process::{Command, Stdio};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lb_testkit::TestBackend;

#[tokio::test]
async fn sigterm_finishes_slow_requests_refuses_new_connections_and_exits_zero() {
    let backend = TestBackend::start("slow").await;
    backend.set_delay(Duration::from_millis(1500));
    let dir = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let file = write(
        dir.path(),
        "lb.toml",
        &config(
            listen,
            std::slice::from_ref(&backend),
            "grace_period = \"10s\"",
        ),
    );
    let mut proxy = Proxy::start(&["-c", file.to_str().unwrap()]);
    proxy.wait_for("lb-proxy started").await;

    let url: http::Uri = format!("http://{listen}/slow").parse().unwrap();
    let slow: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            // One client each: four connections, each with a request in flight.
            tokio::spawn(async move { get(&client(), &url).await })
        })
        .collect();
    tokio::time::timeout(STEP, backend.wait_for_hits(4))
        .await
        .unwrap();

    proxy.signal("TERM");
    // Logged once the accept loops have ended and the listening socket is closed.
    proxy.wait_for("shutting down").await;
    let refused = tokio::net::TcpStream::connect(listen).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);

    for request in slow {
        assert_eq!(
            request.await.unwrap(),
            Ok(200),
            "in-flight requests complete"
        );
    }
    assert_eq!(proxy.exit().await.code(), Some(0));
}

/// Issue 7's acceptance test: under load (CLIENTS busy connections for LOAD), SIGQUIT +
/// `--upgrade` hands both listening sockets over with zero failed requests and zero refused
/// connections; every busy connection moves; the old process drains and exits 0.
#[tokio::test]
async fn sigquit_hands_the_listeners_to_the_upgrade_process_under_load_with_no_failure() {
    let backends = TestBackend::start_many(2).await;
    let dir = tempfile::tempdir().unwrap();
    // A TLS listener too: it is handed over alike (matched by address).
    let ca = tls_kit::Ca::new("upgrade test CA");
    let files = tls_kit::Dir::new();
    files.write_leaf("site", &ca.server(&["localhost"]));
    let (listen, tls_listen) = (listen_addr(), listen_addr());
    let sock = dir.path().join("upgrade.sock");
    let pid_file = dir.path().join("lb.pid");
    let server = format!(
        "grace_period = \"6s\"\nupgrade_sock = \"{}\"\npid_file = \"{}\"\n\n\
         [[server.tls]]\nlisten = [\"{tls_listen}\"]\n\
         certificates = [{{ cert = \"{certs}/site.pem\", key = \"{certs}/site.key\" }}]",
        sock.display(),
        pid_file.display(),
        certs = files.path().display(),
    );
    let file = write(dir.path(), "lb.toml", &config(listen, &backends, &server));
    let path = file.to_str().unwrap();
    let mut old = Proxy::start(&["-c", path]);
    old.wait_for("pid file written").await;
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        old.pid().to_string()
    );

    // The load: CLIENTS tasks, each keeping one keep-alive connection busy with requests
    // back to back (reconnecting when an answer says `Connection: close`, as HTTP/1.1
    // clients must), until the end of LOAD.
    let tally = Arc::new(Tally::default());
    let end = tokio::time::Instant::now() + LOAD;
    let load: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let tally = tally.clone();
            tokio::spawn(async move {
                while tokio::time::Instant::now() < end {
                    if let Err(e) = busy_connection(listen, end, &tally).await {
                        if e.contains("ConnectionRefused") {
                            tally.refused.fetch_add(1, SeqCst);
                        }
                        tally.failed.fetch_add(1, SeqCst);
                        let at = LOAD.saturating_sub(end - tokio::time::Instant::now());
                        tally.errors.lock().push(format!("at {at:?}: {e}"));
                    }
                }
            })
        })
        .collect();

    // A third of the load before the upgrade.
    tokio::time::sleep(LOAD / 3).await;
    let before = tally.ok.load(SeqCst);
    assert!(before > 100, "the load runs: {before} requests");

    let mut new = Proxy::start(&["-u", "-c", path]);
    new.wait_for("waiting for the listening sockets").await;
    eprintln!(
        "SIGQUIT at {:?}",
        LOAD.saturating_sub(end - tokio::time::Instant::now())
    );
    old.signal("QUIT");
    new.wait_for("pid file written").await;
    let old_log = {
        old.wait_for("took over; draining").await;
        old.wait_for("drained; exiting").await
    };
    assert!(!old_log.is_empty());
    let status = old.exit().await;
    eprintln!(
        "old exited at {:?}",
        LOAD.saturating_sub(end - tokio::time::Instant::now())
    );
    assert_eq!(
        status.code(),
        Some(0),
        "the old process exits 0 after draining"
    );
    assert!(
        tokio::time::Instant::now() < end,
        "the old process drained before the load ended"
    );
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        new.pid().to_string(),
        "the new process owns the pid file"
    );
    let at_exit = tally.ok.load(SeqCst);

    for task in load {
        task.await.unwrap();
    }
    let (ok, failed, refused) = (
        tally.ok.load(SeqCst),
        tally.failed.load(SeqCst),
        tally.refused.load(SeqCst),
    );
    let errors = tally.errors.lock().clone();
    assert_eq!(
        (failed, refused),
        (0, 0),
        "{ok} ok; first errors: {:?}",
        &errors[..errors.len().min(10)]
    );
    let reconnects = tally.reconnects.load(SeqCst);
    eprintln!("upgrade under load: {ok} requests ({before} before the upgrade, {at_exit} when the old process had exited), {reconnects} connections closed by the draining process, {failed} failed, {refused} refused");
    assert!(
        reconnects >= CLIENTS as u64,
        "every busy connection moved: {reconnects}"
    );
    assert!(
        ok > at_exit + 100,
        "the new process served after the old one exited: {at_exit} then {ok}"
    );

    // The TLS listener was inherited too: the new process serves it.
    let answer = tls_kit::ClientOptions::trusting(&ca)
        .get(tls_listen, "localhost")
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    let inherited = new
        .seen
        .iter()
        .filter(|l| l.contains("listening on the socket of the previous process"))
        .count();
    assert_eq!(
        inherited, 2,
        "plain and TLS sockets inherited: {:#?}",
        new.seen
    );

    new.signal("TERM");
    assert_eq!(new.exit().await.code(), Some(0));
    assert!(!pid_file.exists(), "removed by the last process on exit");
}

#[tokio::test]
async fn daemon_mode_detaches_writes_the_pid_file_and_logs_to_the_error_log() {
    let backend = TestBackend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let file = write(
        dir.path(),
        "lb.toml",
        &config(listen, std::slice::from_ref(&backend), ""),
    );
    let pid_file = dir.path().join("run/lb.pid");
    std::fs::create_dir(dir.path().join("run")).unwrap();
    let log = dir.path().join("error.log");
    let started = Instant::now();
    let out = Command::new(BIN)
        .arg("-d")
        .arg("-c")
        .arg(&file)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg("--error-log")
        .arg(&log)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(started.elapsed() < STEP);
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(stderr.contains(&format!("pid {pid}")), "{stderr}");
    // Detached: its own session (the session id is field 6 of /proc/PID/stat).
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(fields[3], pid.to_string(), "session id: {stat}");

    let url: http::Uri = format!("http://{listen}/").parse().unwrap();
    assert_eq!(get(&client(), &url).await, Ok(200));

    signal(pid, "TERM");
    // The pid file goes once it has drained, just before it exits.
    let deadline = Instant::now() + STEP;
    while pid_file.exists() {
        assert!(Instant::now() < deadline, "the daemon did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("lb-proxy started"), "{text}");
    assert!(text.contains("SIGTERM received"), "{text}");
}

#[tokio::test]
async fn json_logs_go_to_the_error_log_one_object_per_line() {
    let backend = TestBackend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let log = dir.path().join("logs/lb.log");
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    // Relative to the configuration file's directory.
    let file = write(
        dir.path(),
        "lb.toml",
        &config(
            listen,
            std::slice::from_ref(&backend),
            "log_format = \"json\"\nerror_log = \"logs/lb.log\"",
        ),
    );
    let mut child = Command::new(BIN)
        .arg("-c")
        .arg(&file)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url: http::Uri = format!("http://{listen}/").parse().unwrap();
    let http = client();
    let deadline = Instant::now() + STEP;
    // The log file is the only output: wait for the listener by trying it.
    while get(&http, &url).await != Ok(200) {
        assert!(Instant::now() < deadline, "never served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(child.id(), "TERM");
    let status = tokio::task::spawn_blocking(move || {
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        (status, stderr)
    })
    .await
    .unwrap();
    assert_eq!(status.0.code(), Some(0));
    assert_eq!(status.1, "", "nothing on stderr");
    let text = std::fs::read_to_string(&log).unwrap();
    let mut messages = Vec::new();
    for line in text.lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            value["timestamp"].is_string() && value["level"].is_string(),
            "{line}"
        );
        messages.push(value["fields"]["message"].as_str().unwrap().to_owned());
    }
    assert!(
        messages.iter().any(|m| m == "lb-proxy started"),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m == "SIGTERM received"),
        "{messages:?}"
    );
}

#[test]
fn upgrade_without_upgrade_sock_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "lb.toml",
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[upstreams.web]\nbackends = [\"127.0.0.1:9\"]\n\n\
         [[routes]]\nupstream = \"web\"\n",
    );
    let out = Command::new(BIN)
        .arg("-u")
        .arg("-c")
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--upgrade needs `upgrade_sock`"),
        "{stderr}"
    );
}
