//! The access log (`[access_log]`): one line per request, written off the request path.
//!
//! The request path builds a `Record` (cheap clones of the request head's parts) and
//! hands it to a bounded channel with `try_send`: it never waits. When the writer falls
//! behind and the channel is full, the line is dropped and counted
//! (`lb_access_log_dropped_total`). One background task formats the lines
//! ([`format`]) and appends them to the file, or to standard output, flushing whenever the
//! channel runs empty.

mod format;

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Method, Uri, Version};
use lb_core::Backend;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::config::{AccessLogConfig, AccessLogFormat};
use crate::stats::Stats;

/// Why the access log could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the access log {path}")]
pub struct AccessLogError {
    /// The file.
    path: PathBuf,
    /// Why.
    #[source]
    source: io::Error,
}

/// One request, as the access log records it.
#[derive(Debug)]
pub(crate) struct Record {
    /// When the request arrived.
    pub(crate) time: SystemTime,
    /// The client (as trusted proxies vouch for it).
    pub(crate) client: IpAddr,
    /// The request line.
    pub(crate) method: Method,
    /// The request target.
    pub(crate) uri: Uri,
    /// The client's HTTP version.
    pub(crate) version: Version,
    /// The status sent to the client.
    pub(crate) status: u16,
    /// The response body length, when the response head announced it.
    pub(crate) bytes: Option<u64>,
    /// The matched route's index.
    pub(crate) route: Option<usize>,
    /// The routed upstream's index.
    pub(crate) upstream: Option<usize>,
    /// The backend of the last attempt.
    pub(crate) backend: Option<Backend>,
    /// From arrival to the response head.
    pub(crate) duration: Duration,
    /// The last attempt's time to the backend's response head.
    pub(crate) upstream_time: Option<Duration>,
    /// Attempts after the first.
    pub(crate) retries: u32,
    /// `Referer`.
    pub(crate) referer: Option<HeaderValue>,
    /// `User-Agent`.
    pub(crate) user_agent: Option<HeaderValue>,
}

/// The sending side, held by the proxy.
#[derive(Debug)]
pub struct AccessLog {
    tx: mpsc::Sender<Record>,
    stats: Arc<Stats>,
}

/// Names for the indexes in records.
#[derive(Debug)]
pub struct Names {
    /// Route labels, by index.
    pub(crate) routes: Vec<String>,
    /// Upstream names, by index.
    pub(crate) upstreams: Vec<String>,
}

impl Names {
    /// The names of `routes` routes (their index) and of the upstreams, in order.
    pub fn new<'a>(routes: usize, upstreams: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            routes: (0..routes).map(|i| i.to_string()).collect(),
            upstreams: upstreams.into_iter().map(str::to_owned).collect(),
        }
    }
}

impl AccessLog {
    /// Opens the destination and starts the writer, which runs until every sender is gone
    /// (the proxy dropped), flushing after each batch so that nothing waits in memory.
    pub async fn start(
        config: &AccessLogConfig,
        names: Names,
        stats: Arc<Stats>,
    ) -> Result<Self, AccessLogError> {
        let out: Box<dyn AsyncWrite + Send + Unpin> = if config.is_stdout() {
            Box::new(tokio::io::stdout())
        } else {
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&config.path)
                .await
                .map_err(|source| AccessLogError {
                    path: config.path.clone(),
                    source,
                })?;
            Box::new(file)
        };
        let (tx, rx) = mpsc::channel(config.buffer.get());
        tokio::spawn(write_lines(rx, out, config.format, names));
        Ok(Self { tx, stats })
    }

    /// Queues `record` without waiting; counts it as dropped when the queue is full.
    pub(crate) fn log(&self, record: Record) {
        if self.tx.try_send(record).is_err() {
            self.stats.process.access_log_dropped.fetch_add(1, Relaxed);
        }
    }
}

/// The writer task.
async fn write_lines(
    mut rx: mpsc::Receiver<Record>,
    mut out: Box<dyn AsyncWrite + Send + Unpin>,
    format: AccessLogFormat,
    names: Names,
) {
    let mut buf = String::with_capacity(64 * 1024);
    while let Some(first) = rx.recv().await {
        format::line(&first, format, &names, &mut buf);
        // Batch what is already queued, then write and flush once.
        while buf.len() < 60 * 1024 {
            match rx.try_recv() {
                Ok(r) => format::line(&r, format, &names, &mut buf),
                Err(_) => break,
            }
        }
        if let Err(error) = write_all(&mut out, buf.as_bytes()).await {
            tracing::warn!(%error, "cannot write the access log");
        }
        buf.clear();
    }
    let _ = out.flush().await;
}

async fn write_all(out: &mut (dyn AsyncWrite + Send + Unpin), bytes: &[u8]) -> io::Result<()> {
    out.write_all(bytes).await?;
    out.flush().await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn record() -> Record {
        Record {
            time: SystemTime::now(),
            client: IpAddr::from([127, 0, 0, 1]),
            method: Method::GET,
            uri: Uri::from_static("/"),
            version: Version::HTTP_11,
            status: 200,
            bytes: None,
            route: None,
            upstream: None,
            backend: None,
            duration: Duration::ZERO,
            upstream_time: None,
            retries: 0,
            referer: None,
            user_agent: None,
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let stats = Arc::new(Stats::new(0, []));
        let (tx, mut rx) = mpsc::channel(2);
        let log = AccessLog {
            tx,
            stats: stats.clone(),
        };
        for _ in 0..5 {
            log.log(record());
        }
        assert_eq!(stats.process.access_log_dropped.load(Relaxed), 3);
        assert!(rx.try_recv().is_ok() && rx.try_recv().is_ok() && rx.try_recv().is_err());
    }
}
