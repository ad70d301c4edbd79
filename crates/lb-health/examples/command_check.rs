//! A custom health check that runs a command, as HAProxy's `external-check command` does:
//! the backend is healthy when the command exits with status 0.
//!
//! The command gets the backend in its environment (`LB_BACKEND_ADDR`, `LB_BACKEND_NAME`,
//! and `LB_BACKEND_HOST`/`LB_BACKEND_PORT` for TCP backends). It is spawned with
//! `kill_on_drop`, so when the monitor's timeout cancels the check, dropping the future
//! kills the child: a hung script cannot pile up processes. Only the child itself is
//! killed, so a shell script should `exec` its last long-running command (as below) or
//! the command should be run in its own process group.
//!
//! Run it with `cargo run -p lb-health --example command_check`.

#![allow(clippy::print_stdout)] // an example talks to its user

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lb_core::{Backend, BackendAddr};
use lb_health::{CheckFailure, CheckParams, HealthCheck, HealthMonitor, StatusChange};
use tokio::process::Command;

/// Runs `program args...`; exit status 0 passes.
#[derive(Debug)]
struct CommandCheck {
    program: String,
    args: Vec<String>,
    params: CheckParams,
}

/// Why the command failed, kept as the check's failure source.
#[derive(Debug, thiserror::Error)]
enum CommandFailure {
    #[error("could not start `{program}`")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("exited with {status}: {stderr}")]
    Exit {
        status: std::process::ExitStatus,
        stderr: String,
    },
}

#[async_trait]
impl HealthCheck for CommandCheck {
    async fn check(&self, backend: &Backend) -> Result<(), CheckFailure> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env("LB_BACKEND_ADDR", backend.addr().to_string())
            .env("LB_BACKEND_NAME", backend.name())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // The monitor cancels a check past its timeout by dropping it: kill the child then.
            .kill_on_drop(true);
        if let BackendAddr::Inet(addr) = backend.addr() {
            cmd.env("LB_BACKEND_HOST", addr.ip().to_string())
                .env("LB_BACKEND_PORT", addr.port().to_string());
        }
        let out = cmd.output().await.map_err(|source| {
            CheckFailure::other(CommandFailure::Spawn {
                program: self.program.clone(),
                source,
            })
        })?;
        if out.status.success() {
            Ok(())
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            Err(CheckFailure::other(CommandFailure::Exit {
                status: out.status,
                stderr,
            }))
        }
    }

    fn params(&self) -> CheckParams {
        self.params
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let params = CheckParams {
        timeout: Duration::from_millis(500),
        ..CheckParams::default()
    };
    // Port 9001 is "up", anything else is "down"; a port of 9003 hangs past the timeout.
    let script = r#"case "$LB_BACKEND_PORT" in
        9001) exit 0 ;;
        9003) exec sleep 5 ;;
        *) echo "port $LB_BACKEND_PORT is not served" >&2; exit 1 ;;
    esac"#;
    let check = CommandCheck {
        program: "sh".to_owned(),
        args: vec!["-c".to_owned(), script.to_owned()],
        params,
    };
    let monitor = HealthMonitor::new(Arc::new(check));
    monitor.subscribe(Arc::new(|c: &StatusChange<'_>| {
        let why = c.reason.map(|r| format!(" ({r})")).unwrap_or_default();
        println!("{} is now {}{why}", c.backend, c.new);
    }));
    let backends = [
        Backend::parse("127.0.0.1:9001")?,
        Backend::parse("127.0.0.1:9002")?,
        Backend::parse("127.0.0.1:9003")?,
    ];
    monitor.check_all(&backends).await;
    for h in monitor.snapshot() {
        println!(
            "{}: {} after {:?}{}",
            h.name,
            h.health,
            h.last_latency.unwrap_or_default(),
            h.last_failure.map(|f| format!(", {f}")).unwrap_or_default()
        );
    }
    Ok(())
}
