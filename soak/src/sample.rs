//! The proxy's resident memory and open file descriptors, read from `/proc/PID` every few
//! seconds, and the growth verdicts computed from them.
//!
//! Each verdict compares two windows of samples as long as the warm-up (two minutes of a
//! ten-minute run): the one right after the warm-up and the last one. The proxy's memory
//! moves in waves as connections are recycled (a long-lived HTTP/2 connection keeps the
//! buffers its streams grew until it closes; the load recycles each one after one to two
//! minutes): its live heap swings between about 3 and 5.5 MB, its RSS by about 1 MB, which is
//! 5% of it. Two short windows, or two samples, measure where the wave is at two moments
//! (the first full run compared the medians of the last 30 s of the warm-up and of the run:
//! +5.9%, while the samples after the third minute went up and down between 19.1 and
//! 19.9 MB with no trend). A window of two minutes holds whole waves, so the **mean** of its
//! samples is the level; a leak raises the level. Descriptors are compared by the **median**
//! of each window: a count that is transiently higher while a connection opens or a reload
//! swaps files does not decide. The [`trend`] (least-squares line after the warm-up) is
//! reported beside them, as a second view of the same question.

use std::time::Duration;

use anyhow::Context as _;
use nix::unistd::Pid;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// One reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sample {
    /// Time since the load started.
    pub(crate) at: Duration,
    /// `VmRSS` of `/proc/PID/status`, in KiB: the resident memory.
    pub(crate) rss_kib: u64,
    /// `RssAnon`: the resident part of the heap, stacks and other anonymous memory (what a
    /// leak grows).
    pub(crate) anon_kib: u64,
    /// `RssFile`: resident pages of mapped files, mostly the binary's code, paged in as
    /// code paths run for the first time.
    pub(crate) file_kib: u64,
    /// Entries of `/proc/PID/fd` that are sockets.
    pub(crate) sockets: u64,
    /// The other entries (files, epoll, eventfd, inotify, pipes).
    pub(crate) other_fds: u64,
}

/// Reads `pid`'s RSS and descriptors now; an error when the process is gone (or a zombie).
pub(crate) fn read(pid: Pid, at: Duration) -> anyhow::Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status: has lb-proxy exited?"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    if field("State:").is_some_and(|s| s.starts_with('Z')) {
        anyhow::bail!("lb-proxy (pid {pid}) has exited");
    }
    let kib = |name: &str| {
        field(name)
            .and_then(|v| v.trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    let (rss_kib, anon_kib, file_kib) = (kib("VmRSS:")?, kib("RssAnon:")?, kib("RssFile:")?);
    let (mut sockets, mut other_fds) = (0, 0);
    let dir = format!("/proc/{pid}/fd");
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {dir}"))? {
        // A descriptor closed while the directory is read is skipped.
        let Ok(entry) = entry else { continue };
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if target.to_string_lossy().starts_with("socket:") {
            sockets += 1;
        } else {
            other_fds += 1;
        }
    }
    Ok(Sample {
        at,
        rss_kib,
        anon_kib,
        file_kib,
        sockets,
        other_fds,
    })
}

/// Samples `pid` every `period` from `start` until `stop` is cancelled. If the process
/// disappears, cancels `stop` (the run is over) and returns the error with the samples.
pub(crate) async fn run(
    pid: Pid,
    start: Instant,
    period: Duration,
    stop: CancellationToken,
) -> (Vec<Sample>, Option<anyhow::Error>) {
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => break,
        }
        // Reading /proc is quick, but blocking: off the runtime's workers.
        let at = start.elapsed();
        let read = tokio::task::spawn_blocking(move || read(pid, at)).await;
        match read {
            Ok(Ok(sample)) => samples.push(sample),
            Ok(Err(e)) => {
                stop.cancel();
                return (samples, Some(e));
            }
            Err(e) => {
                stop.cancel();
                return (samples, Some(e.into()));
            }
        }
    }
    // One more after the load stopped: the state the run ends in.
    let at = start.elapsed();
    match tokio::task::spawn_blocking(move || read(pid, at)).await {
        Ok(Ok(sample)) => samples.push(sample),
        Ok(Err(e)) => return (samples, Some(e)),
        Err(e) => return (samples, Some(e.into())),
    }
    (samples, None)
}

/// The mean of `value` over the samples taken in `[from, to]`; `None` without samples.
pub(crate) fn mean(
    samples: &[Sample],
    from: Duration,
    to: Duration,
    value: fn(&Sample) -> u64,
) -> Option<f64> {
    let values: Vec<u64> = samples
        .iter()
        .filter(|s| s.at >= from && s.at <= to)
        .map(value)
        .collect();
    (!values.is_empty()).then(|| values.iter().sum::<u64>() as f64 / values.len() as f64)
}

/// The median of `value` over the samples taken in `[from, to]`; `None` without samples.
pub(crate) fn median(
    samples: &[Sample],
    from: Duration,
    to: Duration,
    value: fn(&Sample) -> u64,
) -> Option<u64> {
    let mut values: Vec<u64> = samples
        .iter()
        .filter(|s| s.at >= from && s.at <= to)
        .map(value)
        .collect();
    values.sort_unstable();
    // The lower median of an even count: a reading that was really there.
    let mid = values.len().checked_sub(1)? / 2;
    values.get(mid).copied()
}

/// The least-squares line of `value` over the samples taken in `[from, to]`: its values at
/// `from` and at `to`. `None` with fewer than two samples.
pub(crate) fn trend(
    samples: &[Sample],
    from: Duration,
    to: Duration,
    value: fn(&Sample) -> u64,
) -> Option<(f64, f64)> {
    let points: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.at >= from && s.at <= to)
        .map(|s| (s.at.as_secs_f64(), value(s) as f64))
        .collect();
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    if sxx == 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let at = |x: f64| mean_y + slope * (x - mean_x);
    Some((at(from.as_secs_f64()), at(to.as_secs_f64())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, rss: u64) -> Sample {
        Sample {
            at: Duration::from_secs(secs),
            rss_kib: rss,
            anon_kib: 0,
            file_kib: 0,
            sockets: 0,
            other_fds: 0,
        }
    }

    #[test]
    fn the_median_of_a_window_ignores_one_spike() {
        let samples = [
            at(5, 100),
            at(10, 900),
            at(15, 102),
            at(20, 101),
            at(25, 500),
        ];
        let rss = |s: &Sample| s.rss_kib;
        let m = median(
            &samples,
            Duration::from_secs(5),
            Duration::from_secs(20),
            rss,
        );
        assert_eq!(m, Some(101));
        let none = median(
            &samples,
            Duration::from_secs(30),
            Duration::from_secs(40),
            rss,
        );
        assert_eq!(none, None);
    }

    #[test]
    fn the_trend_finds_a_slope_under_noise_and_none_in_noise() {
        let rss = |s: &Sample| s.rss_kib;
        // 1000 KiB +- 50 alternating, plus 1 KiB a second: +100 KiB over 100 s.
        let leak: Vec<Sample> = (0..=20)
            .map(|i| at(i * 5, 1000 + i * 5 + if i % 2 == 0 { 50 } else { 0 }))
            .collect();
        let (a, b) = trend(&leak, Duration::ZERO, Duration::from_secs(100), rss).unwrap();
        assert!((b - a - 100.0).abs() < 5.0, "{a} -> {b}");
        // The same noise without the slope.
        let flat: Vec<Sample> = (0..=20)
            .map(|i| at(i * 5, 1000 + if i % 2 == 0 { 50 } else { 0 }))
            .collect();
        let (a, b) = trend(&flat, Duration::ZERO, Duration::from_secs(100), rss).unwrap();
        assert!((b - a).abs() < 5.0, "{a} -> {b}");
        assert_eq!(trend(&flat[..1], Duration::ZERO, Duration::MAX, rss), None);
    }

    #[test]
    fn reads_this_process() {
        let pid = Pid::from_raw(i32::try_from(std::process::id()).unwrap());
        let sample = read(pid, Duration::ZERO).unwrap();
        assert!(sample.rss_kib > 0);
        assert!(sample.other_fds > 0, "stdin/stdout/stderr at least");
    }
}
