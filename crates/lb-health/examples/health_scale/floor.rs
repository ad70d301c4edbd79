//! The variants that are not shipped checks: the `floor` loop (blocking connects at the
//! same rate) and [`ResetTcpCheck`] (a TCP check closed with a reset).

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use async_trait::async_trait;
use lb_core::{Backend, BackendAddr};
use lb_health::{CheckFailure, CheckParams, HealthCheck};
use tokio::net::TcpStream;

use crate::options::Options;

/// Counters of the floor loop.
#[derive(Debug, Default)]
pub(crate) struct FloorStats {
    pub(crate) started: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) lateness_ns: AtomicU64,
    pub(crate) max_lateness_ns: AtomicU64,
}

/// Not a health check: the same connections at the same rate, opened and closed with
/// blocking `std` sockets from one task, in batches of 100 on a fixed pace. No reactor
/// registration, no scheduler, no per-check future: what the kernel alone charges for
/// a connect and a close. It blocks its runtime worker on purpose (the checker process
/// runs nothing else); lateness is that of each batch's start.
pub(crate) async fn floor(
    options: Options,
    stats: Arc<FloorStats>,
    shutdown: tokio::time::Instant,
) {
    const BATCH: usize = 100;
    let addrs: Vec<SocketAddr> = (0..options.count).map(|i| options.addr(i)).collect();
    // One batch every `interval * BATCH / count`, so each address once per interval.
    let period = options
        .interval
        .mul_f64(BATCH as f64 / options.count as f64);
    let begin = tokio::time::Instant::now();
    for (k, batch) in (0u32..).zip(addrs.chunks(BATCH).cycle()) {
        let due = begin + period * k;
        if due >= shutdown {
            return;
        }
        tokio::time::sleep_until(due).await;
        let late = tokio::time::Instant::now().saturating_duration_since(due);
        let late_ns = u64::try_from(late.as_nanos()).unwrap_or(u64::MAX);
        stats.started.fetch_add(batch.len() as u64, Relaxed);
        stats
            .lateness_ns
            .fetch_add(late_ns.saturating_mul(batch.len() as u64), Relaxed);
        stats.max_lateness_ns.fetch_max(late_ns, Relaxed);
        for addr in batch {
            if std::net::TcpStream::connect(addr).is_err() {
                stats.failures.fetch_add(1, Relaxed);
            }
        }
    }
}

/// [`TcpHealthCheck`] with an abortive close: `SO_LINGER` 0, so dropping the socket sends
/// a reset instead of the FIN exchange and leaves no `TIME_WAIT` behind. Here to measure
/// what that change to `TcpHealthCheck` would save.
#[derive(Debug)]
pub(crate) struct ResetTcpCheck {
    pub(crate) params: CheckParams,
}

#[async_trait]
impl HealthCheck for ResetTcpCheck {
    async fn check(&self, backend: &Backend) -> std::result::Result<(), CheckFailure> {
        let BackendAddr::Inet(addr) = backend.addr() else {
            return Err(CheckFailure::other("a TCP address is expected"));
        };
        let stream = TcpStream::connect(addr)
            .await
            .map_err(CheckFailure::Connect)?;
        // Zero linger never blocks on close; a socket that refuses it closes normally.
        let _ = stream.set_zero_linger();
        Ok(())
    }

    fn params(&self) -> CheckParams {
        self.params
    }
}
