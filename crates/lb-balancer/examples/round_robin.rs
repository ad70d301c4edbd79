//! The README's library example: round robin over two backends with TCP health checks,
//! a subscriber told of each health transition, the background task, and one selection.
//!
//! Run with `cargo run -p lb-balancer --example round_robin`. With nothing listening on
//! 127.0.0.1:9001-9002 it reports both backends unhealthy and finds no usable backend;
//! start something there (`python3 -m http.server 9001`) and it picks one.

// An example talks to the person running it.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use lb_balancer::LoadBalancer;
use lb_health::{CheckParams, StatusChange, TcpHealthCheck};
use lb_selection::RoundRobin;

#[tokio::main]
async fn main() -> Result<(), lb_core::Error> {
    // Parses the addresses and resolves host names. The balancer is usable at once.
    let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(["127.0.0.1:9001", "127.0.0.1:9002"])?;
    let params = CheckParams {
        rise: NonZeroU32::new(2).unwrap(),
        fall: NonZeroU32::new(3).unwrap(),
        timeout: Duration::from_millis(500),
    };
    lb.set_health_check(TcpHealthCheck::new(params));
    // The monitor announces each transition to its subscribers.
    if let Some(monitor) = lb.health_monitor() {
        monitor.subscribe(Arc::new(|c: &StatusChange<'_>| {
            let why = c.reason.map(|r| format!(" ({r})")).unwrap_or_default();
            eprintln!("{} is now {}{why}", c.backend, c.new);
        }));
    }
    lb.health_check_frequency = Some(Duration::from_secs(1));
    let lb = Arc::new(lb);

    // Health checks (and discovery refreshes, if `update_frequency` is set) run until `stop` fires.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let background = tokio::spawn({
        let lb = lb.clone();
        async move {
            lb.run(async {
                let _ = stopped.await;
            })
            .await
        }
    });

    // One round now, so the first verdicts are in before we select (the background task
    // also ran one at start-up; subscribers hear of each transition once either way).
    lb.run_health_check().await;

    // Per request: a hash key (round robin ignores it) and the most candidates to try.
    match lb.select(b"", 256) {
        Some(backend) => println!("send it to {} at {}", backend.name(), backend.addr()),
        None => println!("no usable backend: answer 503"),
    }
    // The InFlight guard was dropped at the end of the match, so the request no longer counts.

    let _ = stop.send(());
    let _ = background.await;
    Ok(())
}
