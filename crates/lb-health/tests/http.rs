//! The HTTP check against real loopback servers whose status, body, headers and delay the
//! test changes: exact rise/fall counts, one hook call per transition with the typed
//! reason, body matching, the validator, timeouts under paused time, keep-alive reuse
//! counted in the server's own listener, and a hung backend that blocks no other.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::time::Duration;

use lb_core::{Backend, Health};
use lb_health::{HealthMonitor, HttpHealthCheck, StatusSet};
use lb_testkit::TestBackend;
use support::{hold_clock, params, recording, HttpServer, HungServer};

#[tokio::test]
async fn status_outside_the_set_flips_after_fall_and_back_after_rise() {
    let server = TestBackend::start("alpha").await;
    let backend = Backend::new(server.addr());
    let check = HttpHealthCheck::builder(params(2, 2, Duration::from_secs(5)))
        .path("/healthz")
        .build()
        .unwrap();
    let (monitor, log) = recording(check);

    assert_eq!(
        monitor.check_one(&backend).await,
        Some(Health::Healthy),
        "unknown settles at once"
    );
    server.set_status(503);
    assert_eq!(monitor.check_one(&backend).await, None, "failure 1 < fall");
    assert_eq!(monitor.check_one(&backend).await, Some(Health::Unhealthy));
    server.set_status(404);
    assert_eq!(
        monitor.check_one(&backend).await,
        None,
        "404 is outside 2xx,3xx too"
    );
    server.set_status(302);
    assert_eq!(monitor.check_one(&backend).await, None, "pass 1 < rise");
    assert_eq!(
        monitor.check_one(&backend).await,
        Some(Health::Healthy),
        "3xx passes by default"
    );
    assert_eq!(server.hits(), 6);

    let log = log.lock();
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(
        (log[1].old, log[1].new),
        (Health::Healthy, Health::Unhealthy)
    );
    assert_eq!(log[1].status, Some(503));
    assert_eq!(
        log[1].reason.as_deref(),
        Some("unexpected status 503 (expected 2xx,3xx)")
    );
    assert_eq!(
        (log[2].new, log[2].reason.as_deref()),
        (Health::Healthy, None)
    );
}

#[tokio::test]
async fn an_explicit_status_set_decides() {
    let server = HttpServer::start("").await;
    let backend = Backend::new(server.addr);
    let check = HttpHealthCheck::builder(params(1, 1, Duration::from_secs(5)))
        .expect_status("2xx,404".parse().unwrap())
        .build()
        .unwrap();
    let (monitor, log) = recording(check);
    server.set_status(404);
    assert_eq!(monitor.check_one(&backend).await, Some(Health::Healthy));
    server.set_status(301);
    assert_eq!(monitor.check_one(&backend).await, Some(Health::Unhealthy));
    assert_eq!(log.lock()[1].status, Some(301));
    assert_eq!(
        "2xx,404".parse::<StatusSet>().unwrap().to_string(),
        "2xx,404"
    );
}

#[tokio::test]
async fn body_substring_and_regex_within_the_read_limit() {
    let server = HttpServer::start("status: up").await;
    let backend = Backend::new(server.addr).with_initial_health(Health::Healthy);
    let contains = HttpHealthCheck::builder(params(1, 2, Duration::from_secs(5)))
        .expect_body_contains("up")
        .build()
        .unwrap();
    let (monitor, log) = recording(contains);
    let monitor = monitor.with_initial_health(Health::Healthy);
    assert_eq!(monitor.check_one(&backend).await, None, "already healthy");
    server.set_body("status: down");
    assert_eq!(monitor.check_one(&backend).await, None, "failure 1 < fall");
    assert_eq!(monitor.check_one(&backend).await, Some(Health::Unhealthy));
    {
        let log = log.lock();
        assert_eq!(log.len(), 1);
        assert!(log[0].body);
        assert_eq!(
            log[0].reason.as_deref(),
            Some(r#"body does not contain "up" (read 12 bytes)"#)
        );
    }

    let regex = HttpHealthCheck::builder(params(1, 1, Duration::from_secs(5)))
        .expect_body_regex(r"^status: (up|degraded)$")
        .build()
        .unwrap();
    let (monitor, log) = recording(regex);
    let fresh = Backend::new(server.addr);
    assert_eq!(monitor.check_one(&fresh).await, Some(Health::Unhealthy));
    server.set_body("status: degraded");
    assert_eq!(monitor.check_one(&fresh).await, Some(Health::Healthy));
    assert!(log.lock()[0]
        .reason
        .as_deref()
        .unwrap()
        .contains("match /^status: (up|degraded)$/"));

    // Only the first max_body_bytes are searched: a marker past 64 KiB is not seen.
    let mut big = vec![b'.'; 70 * 1024];
    big.extend_from_slice(b"MARKER");
    server.set_body(big);
    let capped = HttpHealthCheck::builder(params(1, 1, Duration::from_secs(5)))
        .expect_body_contains("MARKER")
        .build()
        .unwrap();
    let (capped, log) = recording(capped);
    assert_eq!(
        capped.check_one(&Backend::new(server.addr)).await,
        Some(Health::Unhealthy)
    );
    assert!(log.lock()[0]
        .reason
        .as_deref()
        .unwrap()
        .ends_with("(read 65536 bytes)"));
    let wide = HttpHealthCheck::builder(params(1, 1, Duration::from_secs(5)))
        .expect_body_contains("MARKER")
        .max_body_bytes(128 * 1024)
        .build()
        .unwrap();
    assert_eq!(
        HealthMonitor::new(std::sync::Arc::new(wide))
            .check_one(&Backend::new(server.addr))
            .await,
        Some(Health::Healthy)
    );
}

#[tokio::test]
async fn the_validator_sees_status_headers_and_body() {
    let server = HttpServer::start("ok").await;
    let backend = Backend::new(server.addr);
    let check = HttpHealthCheck::builder(params(1, 1, Duration::from_secs(5)))
        .validator(|status, headers, body| {
            match (
                status.as_u16(),
                headers.get("x-ready").map(|v| v.as_bytes()),
                body,
            ) {
                (200, Some(b"1"), b"ok") => Ok(()),
                (s, ready, _) => Err(format!("status {s}, x-ready {ready:?}")),
            }
        })
        .build()
        .unwrap();
    let (monitor, log) = recording(check);
    assert_eq!(monitor.check_one(&backend).await, Some(Health::Unhealthy));
    server.set_ready_header(Some("1"));
    assert_eq!(monitor.check_one(&backend).await, Some(Health::Healthy));
    let log = log.lock();
    assert!(log[0].validator);
    assert_eq!(
        log[0].reason.as_deref(),
        Some("validator refused the response: status 200, x-ready None")
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_answer_fails_by_the_timeout() {
    let server = HttpServer::start("ok").await;
    let backend = Backend::new(server.addr);
    let (monitor, log) = recording(
        HttpHealthCheck::builder(params(1, 1, Duration::from_millis(500)))
            .build()
            .unwrap(),
    );
    let _clock = hold_clock();
    server.set_delay(Duration::from_secs(2));

    let started = tokio::time::Instant::now();
    let check = monitor.check_one(&backend);
    tokio::pin!(check);
    // The request reaches the server (real I/O) while the clock stands still...
    tokio::select! {
        _ = &mut check => panic!("finished before the timeout"),
        () = server.wait_for_requests(1) => {}
    }
    assert_eq!(started.elapsed(), Duration::ZERO);
    // ...and the check fails exactly when the timeout is over, not at the 2s answer.
    tokio::time::advance(Duration::from_millis(500)).await;
    assert_eq!(check.await, Some(Health::Unhealthy));
    assert_eq!(started.elapsed(), Duration::from_millis(500));
    assert!(log.lock()[0].timeout);

    let snap = &monitor.snapshot()[0];
    assert_eq!(snap.last_latency, Some(Duration::from_millis(500)));
    assert_eq!(snap.last_failure.as_deref(), Some("timed out after 500ms"));
    assert_eq!(
        (
            snap.total_passes,
            snap.total_failures,
            snap.consecutive_failures
        ),
        (0, 1, 1)
    );
}

#[tokio::test]
async fn keep_alive_reuses_one_connection_and_reopens_after_a_failure() {
    let server = HttpServer::start("ok").await;
    let backend = Backend::new(server.addr);
    let check = HttpHealthCheck::builder(params(1, 1, Duration::from_secs(5)))
        .reuse_connection(true)
        .build()
        .unwrap();
    let check = std::sync::Arc::new(check);
    let monitor = HealthMonitor::new(check.clone());
    for _ in 0..5 {
        monitor.check_one(&backend).await;
    }
    assert_eq!(
        (server.accepted(), server.requests()),
        (1, 5),
        "five checks, one connection"
    );
    assert_eq!(check.kept_connections(), 1);

    server.set_status(500);
    assert_eq!(monitor.check_one(&backend).await, Some(Health::Unhealthy));
    assert_eq!(check.kept_connections(), 0, "dropped on failure");
    server.set_status(200);
    assert_eq!(monitor.check_one(&backend).await, Some(Health::Healthy));
    monitor.check_one(&backend).await;
    assert_eq!((server.accepted(), server.requests()), (2, 8));

    monitor.retain(&[]);
    assert_eq!(
        check.kept_connections(),
        0,
        "a removed backend's connection is closed"
    );

    // Without reuse, one connection per check (with `Connection: close`).
    let fresh = HttpServer::start("ok").await;
    let plain = HealthMonitor::new(std::sync::Arc::new(
        HttpHealthCheck::builder(params(1, 1, Duration::from_secs(5)))
            .build()
            .unwrap(),
    ));
    for _ in 0..3 {
        plain.check_one(&Backend::new(fresh.addr)).await;
    }
    assert_eq!((fresh.accepted(), fresh.requests()), (3, 3));
}

#[tokio::test]
async fn port_override_and_the_default_host_header() {
    let server = HttpServer::start("ok").await;
    // Configured as svc.internal:1; the check goes to the server's port instead.
    let backend = Backend::parse("127.0.0.1:1")
        .unwrap()
        .with_name("svc.internal:1");
    let check = HttpHealthCheck::builder(params(1, 1, Duration::from_secs(5)))
        .port(server.addr.port())
        .build()
        .unwrap();
    let monitor = HealthMonitor::new(std::sync::Arc::new(check));
    assert_eq!(monitor.check_one(&backend).await, Some(Health::Healthy));
    let expected = format!("svc.internal:{}", server.addr.port());
    assert_eq!(
        server.answer.last_host.lock().as_deref(),
        Some(expected.as_str())
    );

    let explicit = HttpHealthCheck::builder(params(1, 1, Duration::from_secs(5)))
        .port(server.addr.port())
        .host("status.example")
        .header("x-probe", "lb")
        .method("HEAD")
        .build()
        .unwrap();
    let monitor = HealthMonitor::new(std::sync::Arc::new(explicit));
    let fresh = Backend::parse("127.0.0.1:1").unwrap().with_name("other:1");
    assert_eq!(monitor.check_one(&fresh).await, Some(Health::Healthy));
    assert_eq!(
        server.answer.last_host.lock().as_deref(),
        Some("status.example")
    );
}

#[test]
fn invalid_settings_are_build_errors() {
    let p = params(1, 1, Duration::from_secs(1));
    for (builder, what) in [
        (HttpHealthCheck::builder(p).path("healthz"), "path"),
        (HttpHealthCheck::builder(p).method("GE T"), "method"),
        (
            HttpHealthCheck::builder(p).header("bad name", "v"),
            "header",
        ),
        (
            HttpHealthCheck::builder(p).expect_body_regex("(unclosed"),
            "regex",
        ),
    ] {
        let err = builder.build().unwrap_err();
        assert!(err.to_string().contains(what), "{what}: {err}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_hung_backend_fails_by_the_timeout_and_blocks_no_other() {
    let hung = HungServer::start().await;
    let fine = HttpServer::start("ok").await;
    let hung_b = Backend::new(hung.addr);
    let fine_b = Backend::new(fine.addr);
    let (monitor, log) = recording(
        HttpHealthCheck::builder(params(1, 1, Duration::from_millis(300)))
            .build()
            .unwrap(),
    );
    let _clock = hold_clock();

    let started = tokio::time::Instant::now();
    let all = [hung_b.clone(), fine_b.clone()];
    let round = monitor.check_all(&all);
    tokio::pin!(round);
    // The fine backend is settled by real I/O while the clock stands still at zero.
    tokio::select! {
        () = &mut round => panic!("the round ended before the hung backend's timeout"),
        () = log.wait_for(1) => {}
    }
    assert_eq!(fine_b.state().health(), Health::Healthy);
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(hung_b.state().health(), Health::Unknown);

    tokio::time::advance(Duration::from_millis(299)).await;
    tokio::select! {
        biased;
        () = &mut round => panic!("failed before its timeout"),
        () = tokio::task::yield_now() => {}
    }
    tokio::time::advance(Duration::from_millis(1)).await;
    round.await;
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(300),
        "by the timeout, not later"
    );
    assert_eq!(hung_b.state().health(), Health::Unhealthy);
    let log = log.lock();
    assert_eq!(log.len(), 2);
    assert!(log.iter().any(|t| t.new == Health::Unhealthy && t.timeout));
}
