//! `on_change` hooks (`lb_proxy::notify`) against real components: a hyper server on loopback
//! receiving the webhook POSTs, real `sh` commands writing what they get to files, a webhook
//! that accepts and never answers, a command that never exits, and a full queue.

#![allow(clippy::unwrap_used)]

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use lb_core::{Backend, Health};
use lb_health::{CheckFailure, StatusChange};
use lb_proxy::config::PositiveDuration;
use lb_proxy::notify::{Notifier, NotifyStats, OnChangeConfig, WebhookUrl};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// One POST the webhook server received.
#[derive(Debug)]
struct Received {
    method: Method,
    content_type: Option<String>,
    body: String,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

struct Webhook {
    addr: SocketAddr,
    received: mpsc::UnboundedReceiver<Received>,
    /// One message when the first connection was accepted and left hanging.
    hung: mpsc::UnboundedReceiver<()>,
}

impl Webhook {
    /// A webhook answering `status`; with `hang_first`, the first connection is accepted and
    /// never read from or answered.
    async fn start(status: StatusCode, hang_first: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, received) = mpsc::unbounded_channel();
        let (hung_tx, hung) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut held = Vec::new();
            let mut hang = hang_first;
            while let Ok((stream, _)) = listener.accept().await {
                if std::mem::take(&mut hang) {
                    held.push(stream);
                    let _ = hung_tx.send(());
                    continue;
                }
                let tx = tx.clone();
                let svc = service_fn(move |req: Request<Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await?.to_bytes();
                        let _ = tx.send(Received {
                            method: parts.method,
                            content_type: parts
                                .headers
                                .get(header::CONTENT_TYPE)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned),
                            body: String::from_utf8(body.to_vec()).unwrap(),
                        });
                        let mut response = Response::new(Full::new(Bytes::new()));
                        *response.status_mut() = status;
                        Ok::<_, hyper::Error>(response)
                    }
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), svc));
            }
        });
        Self {
            addr,
            received,
            hung,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hooks/lb", self.addr)
    }

    async fn next(&mut self) -> Received {
        tokio::time::timeout(Duration::from_secs(10), self.received.recv())
            .await
            .expect("no POST within 10 s")
            .unwrap()
    }
}

fn config(
    webhook: Option<&str>,
    command: Option<Vec<String>>,
    timeout: Duration,
) -> OnChangeConfig {
    let config = OnChangeConfig {
        webhook: webhook.map(|w| WebhookUrl::parse(w).unwrap()),
        command,
        timeout: PositiveDuration(timeout),
    };
    config.check().unwrap();
    config
}

fn backend() -> Backend {
    Backend::parse("127.0.0.1:9001")
        .unwrap()
        .with_name("app.internal:9001")
}

fn refused() -> CheckFailure {
    CheckFailure::Connect(io::Error::new(
        io::ErrorKind::ConnectionRefused,
        "connection refused",
    ))
}

/// unknown -> healthy, healthy -> unhealthy (connection refused), unhealthy -> healthy.
fn send_three(n: &Notifier, b: &Backend) {
    let failure = refused();
    let changes = [
        (Health::Unknown, Health::Healthy, None, 1),
        (Health::Healthy, Health::Unhealthy, Some(&failure), 3),
        (Health::Unhealthy, Health::Healthy, None, 2),
    ];
    for (old, new, reason, streak) in changes {
        n.notify(
            "web",
            &StatusChange {
                backend: b,
                old,
                new,
                reason,
                streak,
                at: SystemTime::now(),
            },
        );
    }
}

/// The three events of [`send_three`], without `time`.
fn expected_three() -> [Value; 3] {
    let event = |old: &str, new: &str, reason: Value, streak: u32| {
        json!({
            "upstream": "web",
            "backend": "app.internal:9001",
            "address": "127.0.0.1:9001",
            "old": old,
            "new": new,
            "reason": reason,
            "streak": streak,
        })
    };
    [
        event("unknown", "healthy", Value::Null, 1),
        event(
            "healthy",
            "unhealthy",
            json!("connect failed: connection refused"),
            3,
        ),
        event("unhealthy", "healthy", Value::Null, 2),
    ]
}

/// Removes `time` after checking it is RFC 3339 UTC and recent.
fn without_time(mut event: Value) -> Value {
    let time = event.as_object_mut().unwrap().remove("time").unwrap();
    let time = time.as_str().unwrap();
    assert!(time.ends_with('Z'), "{time} is not UTC");
    let at = humantime::parse_rfc3339(time).unwrap();
    let age = std::time::SystemTime::now().duration_since(at).unwrap();
    assert!(age < Duration::from_secs(60), "{time} is not now");
    event
}

/// Waits (at most 10 s) until the counters satisfy `done`.
async fn settle(n: &Notifier, done: impl Fn(NotifyStats) -> bool) -> NotifyStats {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = n.stats();
        if done(stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "counters stuck at {stats:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A fresh directory for one test's files.
fn scratch(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("on_change-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sh(script: &str, args: &[&PathBuf]) -> Vec<String> {
    let mut argv = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        script.to_owned(),
        "sh".to_owned(),
    ];
    argv.extend(args.iter().map(|p| p.display().to_string()));
    argv
}

fn lines(path: &PathBuf) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn webhook_gets_each_transition_as_json_in_order() {
    let mut hook = Webhook::start(StatusCode::NO_CONTENT, false).await;
    let n = Notifier::new(&config(Some(&hook.url()), None, Duration::from_secs(5)));
    send_three(&n, &backend());
    for expected in expected_three() {
        let got = hook.next().await;
        assert_eq!(got.method, Method::POST);
        assert_eq!(got.content_type.as_deref(), Some("application/json"));
        assert!(
            got.body.starts_with(r#"{"upstream":"web","backend":"#),
            "{}",
            got.body
        );
        assert_eq!(without_time(got.json()), expected);
    }
    let stats = settle(&n, |s| s.delivered == 3).await;
    assert_eq!(
        stats,
        NotifyStats {
            delivered: 3,
            failed: 0,
            dropped: 0
        }
    );
}

#[tokio::test]
async fn webhook_error_status_is_a_failure() {
    let mut hook = Webhook::start(StatusCode::INTERNAL_SERVER_ERROR, false).await;
    let n = Notifier::new(&config(Some(&hook.url()), None, Duration::from_secs(5)));
    send_three(&n, &backend());
    for _ in 0..3 {
        hook.next().await;
    }
    let stats = settle(&n, |s| s.failed == 3).await;
    assert_eq!(stats.delivered, 0);
}

#[tokio::test]
async fn command_gets_json_on_stdin_and_the_environment() {
    let dir = scratch("command");
    let (events, env) = (dir.join("events.jsonl"), dir.join("env.txt"));
    let script = r#"cat >> "$1"; echo "$LB_UPSTREAM|$LB_BACKEND|$LB_ADDRESS|$LB_OLD|$LB_NEW|$LB_REASON|$LB_STREAK" >> "$2""#;
    let n = Notifier::new(&config(
        None,
        Some(sh(script, &[&events, &env])),
        Duration::from_secs(5),
    ));
    send_three(&n, &backend());
    let stats = settle(&n, |s| s.delivered == 3).await;
    assert_eq!(
        stats,
        NotifyStats {
            delivered: 3,
            failed: 0,
            dropped: 0
        }
    );

    let got: Vec<Value> = lines(&events)
        .iter()
        .map(|l| without_time(serde_json::from_str(l).unwrap()))
        .collect();
    assert_eq!(got, expected_three());
    assert_eq!(
        lines(&env),
        [
            "web|app.internal:9001|127.0.0.1:9001|unknown|healthy||1",
            "web|app.internal:9001|127.0.0.1:9001|healthy|unhealthy|connect failed: connection refused|3",
            "web|app.internal:9001|127.0.0.1:9001|unhealthy|healthy||2",
        ]
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn both_hooks_run_and_command_failures_count() {
    let mut hook = Webhook::start(StatusCode::OK, false).await;
    let argv = sh(r#"test "$LB_NEW" = healthy"#, &[]);
    let n = Notifier::new(&config(
        Some(&hook.url()),
        Some(argv),
        Duration::from_secs(5),
    ));
    send_three(&n, &backend());
    for _ in 0..3 {
        hook.next().await;
    }
    // Three POSTs, two commands exiting 0, one (the fall to unhealthy) exiting 1.
    let stats = settle(&n, |s| s.delivered + s.failed == 6).await;
    assert_eq!(
        stats,
        NotifyStats {
            delivered: 5,
            failed: 1,
            dropped: 0
        }
    );

    let missing = vec!["/nonexistent/on-change-hook".to_owned()];
    let n = Notifier::new(&config(None, Some(missing), Duration::from_secs(5)));
    send_three(&n, &backend());
    settle(&n, |s| s.failed == 3).await;
}

#[tokio::test]
async fn hung_webhook_is_cut_at_the_timeout_and_the_next_event_goes_through() {
    let timeout = Duration::from_millis(300);
    let mut hook = Webhook::start(StatusCode::OK, true).await;
    let n = Notifier::new(&config(Some(&hook.url()), None, timeout));
    let b = backend();
    let start = Instant::now();
    let first = StatusChange {
        backend: &b,
        old: Health::Unknown,
        new: Health::Healthy,
        reason: None,
        streak: 1,
        at: SystemTime::now(),
    };
    n.notify("web", &first);
    tokio::time::timeout(Duration::from_secs(10), hook.hung.recv())
        .await
        .unwrap();

    // The first delivery is stuck on the server; notify still returns at once.
    let failure = refused();
    let second = StatusChange {
        backend: &b,
        old: Health::Healthy,
        new: Health::Unhealthy,
        reason: Some(&failure),
        streak: 3,
        at: SystemTime::now(),
    };
    n.notify("web", &second);
    assert_eq!(
        n.stats(),
        NotifyStats::default(),
        "notify waited for a delivery"
    );
    assert!(hook.received.try_recv().is_err());

    let got = hook.next().await;
    assert!(
        start.elapsed() >= timeout,
        "the hung POST was cut before its timeout"
    );
    assert_eq!(got.json()["new"], "unhealthy");
    let stats = settle(&n, |s| s.delivered == 1).await;
    assert_eq!(
        stats,
        NotifyStats {
            delivered: 1,
            failed: 1,
            dropped: 0
        }
    );
}

#[tokio::test]
async fn hung_command_is_killed_at_the_timeout() {
    let dir = scratch("hung-command");
    let (events, pid) = (dir.join("events.jsonl"), dir.join("pid"));
    let script =
        r#"if [ "$LB_NEW" = unhealthy ]; then echo $$ > "$2"; exec sleep 30; fi; cat >> "$1""#;
    let timeout = Duration::from_millis(300);
    let n = Notifier::new(&config(None, Some(sh(script, &[&events, &pid])), timeout));
    let start = Instant::now();
    send_three(&n, &backend());
    let stats = settle(&n, |s| s.delivered + s.failed == 3).await;
    assert_eq!(
        stats,
        NotifyStats {
            delivered: 2,
            failed: 1,
            dropped: 0
        }
    );
    assert!(start.elapsed() >= timeout);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "waited for the hung command"
    );

    let got: Vec<Value> = lines(&events)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0]["streak"].as_u64(), got[1]["streak"].as_u64()),
        (Some(1), Some(2))
    );
    let pid = std::fs::read_to_string(&pid).unwrap();
    let alive = std::process::Command::new("kill")
        .args(["-0", pid.trim()])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(
        !alive.success(),
        "the hung command {} still runs",
        pid.trim()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn full_queue_drops_and_counts_and_events_wait_for_a_runtime() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut hook = runtime.block_on(Webhook::start(StatusCode::OK, false));
    let n = Notifier::with_capacity(&config(Some(&hook.url()), None, Duration::from_secs(5)), 2);
    let b = backend();
    let change = |streak| StatusChange {
        backend: &b,
        old: Health::Unhealthy,
        new: Health::Healthy,
        reason: None,
        streak,
        at: SystemTime::now(),
    };

    // Outside any runtime: nothing is delivered, two events wait, three are dropped.
    for streak in 1..=5 {
        n.notify("web", &change(streak));
    }
    assert_eq!(
        n.stats(),
        NotifyStats {
            delivered: 0,
            failed: 0,
            dropped: 3
        }
    );

    runtime.block_on(async {
        // Inside one: this notify starts delivery, but the queue is still full.
        n.notify("web", &change(6));
        assert_eq!(n.stats().dropped, 4);
        for streak in [1, 2] {
            assert_eq!(hook.next().await.json()["streak"], streak);
        }
        let stats = settle(&n, |s| s.delivered == 2).await;
        assert_eq!(
            stats,
            NotifyStats {
                delivered: 2,
                failed: 0,
                dropped: 4
            }
        );

        // With room again, events flow.
        n.notify("web", &change(7));
        assert_eq!(hook.next().await.json()["streak"], 7);
    });
}

#[derive(Debug, serde::Deserialize)]
struct Section {
    #[allow(dead_code)]
    on_change: OnChangeConfig,
}

fn parse(table: &str) -> Result<OnChangeConfig, String> {
    toml::from_str::<Section>(&format!("# hooks\non_change = {table}\n"))
        .map(|s| s.on_change)
        .map_err(|e| e.to_string())
}

#[test]
fn config_parses_and_defaults() {
    let c = parse(r#"{ webhook = "http://127.0.0.1:9000/hook" }"#).unwrap();
    assert_eq!(c.webhook.unwrap().to_string(), "http://127.0.0.1:9000/hook");
    assert_eq!(c.command, None);
    assert_eq!(c.timeout.get(), Duration::from_secs(5));

    let c = parse(r#"{ command = ["/usr/bin/logger", "-t", "lb"], timeout = "250ms" }"#).unwrap();
    assert_eq!(c.command.unwrap(), ["/usr/bin/logger", "-t", "lb"]);
    assert_eq!(c.timeout.get(), Duration::from_millis(250));
}

#[test]
fn config_errors_are_clear_and_located() {
    for (table, message) in [
        (
            r#"{ webhook = "https://example.com/" }"#,
            "https is not supported",
        ),
        (
            r#"{ webhook = "ftp://example.com/" }"#,
            "is not an http:// URL",
        ),
        (r#"{ webhook = "/hook" }"#, "is not an http:// URL"),
        (
            r#"{ webhook = "http://user:pw@example.com/" }"#,
            "credentials in the URL",
        ),
        (r#"{ webhook = "http://exa mple/" }"#, "is not a URL"),
        ("{ command = [] }", "needs at least the program"),
        (r#"{ command = [""] }"#, "empty program name"),
        (
            r#"{ timeout = "1s" }"#,
            "needs `webhook`, `command` or both",
        ),
        (
            r#"{ command = ["true"], timeout = "0s" }"#,
            "greater than zero",
        ),
        (
            r#"{ command = ["true"], shell = true }"#,
            "unknown field `shell`",
        ),
    ] {
        let err = parse(table).unwrap_err();
        assert!(err.contains(message), "{table}: {err}");
        assert!(err.contains("line 2"), "{table}: not located: {err}");
    }
}

/// Through the real proxy: a backend that is down at start-up is reported to the configured
/// command as unknown -> unhealthy, with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_runs_on_change_for_real_transitions() {
    let mut backends = lb_testkit::TestBackend::start_many(2).await;
    backends[1].stop().await;
    let out = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("on-change-proxy-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&out);
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[upstreams.web]\nbackends = [\"{}\", \"{}\"]\n\n\
         [upstreams.web.health_check]\ninterval = \"1h\"\n\
         on_change = {{ command = [\"sh\", \"-c\", \"cat >> \\\"$0\\\"\", \"{}\"], timeout = \"5s\" }}\n\n\
         [[routes]]\nupstream = \"web\"\n",
        backends[0].addr(),
        backends[1].addr(),
        out.display()
    );
    let config = lb_proxy::config::Config::from_toml_str(&toml, "on_change.toml").unwrap();
    let proxy = lb_proxy::Proxy::new(config).start().await.unwrap();
    // The command runs in the background; nothing signals its end but the file: poll it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if text.lines().count() >= 2 {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "on_change wrote: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let down = format!("\"address\":\"{}\"", backends[1].addr());
    let event = lines.lines().find(|l| l.contains(&down)).unwrap();
    assert!(event.contains("\"upstream\":\"web\""), "{event}");
    assert!(
        event.contains("\"old\":\"unknown\",\"new\":\"unhealthy\""),
        "{event}"
    );
    assert!(event.contains("\"reason\":\"connect failed"), "{event}");
    let up = format!("\"address\":\"{}\"", backends[0].addr());
    assert!(lines
        .lines()
        .any(|l| l.contains(&up) && l.contains("\"new\":\"healthy\"")));
    assert!(proxy.shutdown().await);
}
