//! Backend churn through file discovery: every few seconds the backend file of upstream
//! `disc` is rewritten (atomically) with one change, as a scheduler scaling a service would
//! make: a backend added (started again first if it was stopped), one removed (and, once the
//! proxy shows it gone, stopped gracefully, as a scaled-down instance drains and exits), a
//! weight changed, or a backend disabled or enabled. Each change must show in `/status`
//! within [`APPLY_TIMEOUT`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use lb_testkit::TestBackend;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::admin;
use crate::config::{self, DiscEntry};

/// A change must show in `/status` within this (the file watcher's quiet period is 100 ms).
const APPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// At least this many backends stay listed, at least one of them enabled.
const MIN_LISTED: usize = 2;

/// What the churn did.
#[derive(Debug, Default)]
pub(crate) struct ChurnReport {
    /// File rewrites the proxy applied.
    pub(crate) applied: u64,
    /// The slowest time from a rewrite to `/status` showing it.
    pub(crate) slowest: Duration,
    /// Backends stopped after their removal.
    pub(crate) stopped: u64,
    /// Backends started again before being added back.
    pub(crate) restarted: u64,
    /// Changes not applied in time, and other problems.
    pub(crate) failures: Vec<String>,
}

/// The churn's state: the pool of backends and which are listed.
pub(crate) struct Churn {
    /// The pool; index `i` is backend `d{i}`.
    pool: Vec<TestBackend>,
    /// Listed backends, by index in `pool`.
    listed: BTreeMap<usize, DiscEntry>,
    /// Backends of `pool` that are stopped.
    stopped: Vec<bool>,
    file: PathBuf,
    admin: SocketAddr,
    rng: fastrand::Rng,
}

impl Churn {
    /// Starts `n` backends `d0`, `d1`, ... and lists all but the last.
    pub(crate) async fn start(n: usize, file: PathBuf) -> anyhow::Result<Self> {
        let mut pool = Vec::with_capacity(n);
        for i in 0..n {
            pool.push(TestBackend::start(&format!("d{i}")).await);
        }
        let listed = (0..n.saturating_sub(1))
            .map(|i| {
                let entry = DiscEntry {
                    addr: pool[i].addr(),
                    weight: 1,
                    enabled: true,
                };
                (i, entry)
            })
            .collect();
        let churn = Self {
            stopped: vec![false; n],
            pool,
            listed,
            file,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            rng: fastrand::Rng::with_seed(7),
        };
        churn.write()?;
        Ok(churn)
    }

    /// Rewrites the file every `period` until `stop` is cancelled, with the admin listener
    /// at `admin` to confirm each change. Returns the backends too: the caller drops them
    /// once the clients' last requests are answered (dropped here, they would fail them).
    pub(crate) async fn run(
        mut self,
        admin: SocketAddr,
        period: Duration,
        stop: CancellationToken,
    ) -> (ChurnReport, Vec<TestBackend>) {
        self.admin = admin;
        let mut report = ChurnReport::default();
        loop {
            tokio::select! {
                () = tokio::time::sleep(period) => {}
                () = stop.cancelled() => return (report, self.pool),
            }
            if let Err(e) = self.step(&mut report).await {
                report.failures.push(format!("{e:#}"));
            }
        }
    }

    /// One change: written, confirmed in `/status`, and followed by the stop of a removed
    /// backend.
    async fn step(&mut self, report: &mut ChurnReport) -> anyhow::Result<()> {
        let mut removed = None;
        let unlisted: Vec<usize> = (0..self.pool.len())
            .filter(|i| !self.listed.contains_key(i))
            .collect();
        match self.rng.u32(0..10) {
            0..4 if self.listed.len() > MIN_LISTED => {
                let keys: Vec<usize> = self.listed.keys().copied().collect();
                let i = keys[self.rng.usize(..keys.len())];
                let gone = self.listed.remove(&i);
                if self.listed.values().any(|e| e.enabled) {
                    removed = Some(i);
                } else if let Some(gone) = gone {
                    // It was the only enabled one: keep it.
                    self.listed.insert(i, gone);
                }
            }
            0..7 if !unlisted.is_empty() => {
                let i = unlisted[self.rng.usize(..unlisted.len())];
                if self.stopped[i] {
                    self.pool[i].start_again().await;
                    self.stopped[i] = false;
                    report.restarted += 1;
                }
                let entry = DiscEntry {
                    addr: self.pool[i].addr(),
                    weight: self.rng.u32(1..=3),
                    enabled: true,
                };
                self.listed.insert(i, entry);
            }
            _ => {
                let keys: Vec<usize> = self.listed.keys().copied().collect();
                let i = keys[self.rng.usize(..keys.len())];
                let enabled = self.listed.values().filter(|e| e.enabled).count();
                let flip = self.rng.bool();
                if let Some(entry) = self.listed.get_mut(&i) {
                    if flip && (!entry.enabled || enabled > 1) {
                        entry.enabled = !entry.enabled;
                    } else {
                        entry.weight = entry.weight % 3 + 1;
                    }
                }
            }
        }
        let written = Instant::now();
        self.write()?;
        self.confirm().await?;
        report.applied += 1;
        report.slowest = report.slowest.max(written.elapsed());
        if let Some(i) = removed {
            // The proxy no longer selects it; requests in flight on it finish first.
            self.pool[i].stop_gracefully().await;
            self.stopped[i] = true;
            report.stopped += 1;
        }
        Ok(())
    }

    fn write(&self) -> anyhow::Result<()> {
        let entries: Vec<DiscEntry> = self.listed.values().copied().collect();
        config::write_atomic(&self.file, &config::disc(&entries))
    }

    /// Waits until `/status` lists exactly the listed backends, with their weights and
    /// enabled flags.
    async fn confirm(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + APPLY_TIMEOUT;
        let mut want: Vec<(String, u64, bool)> = self
            .listed
            .values()
            .map(|e| (e.addr.to_string(), u64::from(e.weight), e.enabled))
            .collect();
        want.sort();
        loop {
            let status = admin::status(self.admin).await?;
            let mut seen: Vec<(String, u64, bool)> = admin::backends(&status, "disc")
                .iter()
                .map(|b: &Value| {
                    (
                        b["addr"].as_str().unwrap_or("").to_owned(),
                        b["weight"].as_u64().unwrap_or(0),
                        b["state"] != "disabled",
                    )
                })
                .collect();
            seen.sort();
            if seen == want {
                return Ok(());
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "discovery change not applied within {APPLY_TIMEOUT:?}: want {want:?}, /status has {seen:?}"
                );
            }
            // /status is the only outside view of the backend set: poll it.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
