//! A check that cannot run because this process is out of file descriptors is not counted
//! against the backend: no streak, no transition, no hook; the status page says why.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::io;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lb_core::{Backend, Health};
use lb_health::{CheckFailure, CheckParams, HealthCheck, HealthMonitor};
use nix::errno::Errno;

/// A check that passes while `errno` is 0, and else fails to connect with that `errno`.
struct Scripted {
    errno: AtomicI32,
}

#[async_trait]
impl HealthCheck for Scripted {
    async fn check(&self, _backend: &Backend) -> Result<(), CheckFailure> {
        match self.errno.load(Ordering::SeqCst) {
            0 => Ok(()),
            code => Err(CheckFailure::Connect(io::Error::from_raw_os_error(code))),
        }
    }

    fn params(&self) -> CheckParams {
        CheckParams {
            rise: NonZeroU32::new(2).unwrap(),
            fall: NonZeroU32::new(2).unwrap(),
            timeout: Duration::from_secs(1),
        }
    }
}

#[tokio::test]
async fn running_out_of_descriptors_is_not_the_backends_failure() {
    let check = Arc::new(Scripted {
        errno: AtomicI32::new(0),
    });
    let monitor = HealthMonitor::new(check.clone());
    let backend = Backend::parse("127.0.0.1:9").unwrap();
    assert_eq!(monitor.check_one(&backend).await, Some(Health::Healthy));

    for errno in [Errno::EMFILE, Errno::ENFILE] {
        check.errno.store(errno as i32, Ordering::SeqCst);
        for _ in 0..5 {
            assert_eq!(monitor.check_one(&backend).await, None, "{errno}");
        }
        assert_eq!(backend.state().health(), Health::Healthy);
        let row = monitor.snapshot().remove(0);
        assert_eq!(row.consecutive_failures, 0);
        assert_eq!(row.total_failures, 0);
        let why = row.last_failure.unwrap();
        assert!(why.starts_with("not counted: connect failed"), "{why}");
    }

    // A refused connection is the backend's: it falls after `fall` failures.
    check
        .errno
        .store(Errno::ECONNREFUSED as i32, Ordering::SeqCst);
    assert_eq!(monitor.check_one(&backend).await, None);
    assert_eq!(monitor.check_one(&backend).await, Some(Health::Unhealthy));
}
