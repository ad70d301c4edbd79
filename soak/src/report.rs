//! The end of the run: the figures as tables, and the pass criteria checked one by one.
//!
//! Criteria (each a row of the verdict table); "after warm-up" and "end" are two windows as
//! long as the warm-up, the one right after it and the last one (see [`sample`] for why):
//! - every request answered 2xx with the right body: no non-2xx, transport error, timeout or
//!   wrong answer (a request that hit a backend just removed by discovery must have been
//!   retried away by the proxy; the retries are shown);
//! - RSS: the mean of the end window within 5% of the mean of the window after warm-up;
//! - descriptors other than sockets (files, epoll, eventfd, inotify, pipes): no growth at
//!   all between the medians of the two windows;
//! - sockets: at most [`Figures::socket_slack`] more (see there why any);
//! - every reload succeeded (checked as it happened, and in `lb_config_reloads_total` at the
//!   end); every discovery change showed in `/status` in time;
//! - the proxy ran the whole time and stopped cleanly on SIGTERM.

use std::fmt::Write as _;
use std::time::Duration;

use crate::churn::ChurnReport;
use crate::reloads::Reload;
use crate::sample::{self, Sample};
use crate::tally::{Class, Kind, Tally};

/// One figure of a sample.
type Reading = fn(&Sample) -> u64;

/// The largest RSS growth accepted, in percent.
const RSS_GROWTH_LIMIT: f64 = 5.0;

/// Everything measured.
pub(crate) struct Figures<'a> {
    /// How long the load ran (shorter than planned if it was cut).
    pub(crate) ran: Duration,
    /// The planned duration.
    pub(crate) planned: Duration,
    /// The warm-up at its start.
    pub(crate) warmup: Duration,
    /// The length of the two windows compared (the warm-up's).
    pub(crate) window: Duration,
    /// Request counts.
    pub(crate) tally: &'a Tally,
    /// RSS and descriptor readings.
    pub(crate) samples: &'a [Sample],
    /// The reloads made.
    pub(crate) reloads: &'a [Reload],
    /// `lb_config_reloads_total` at the end: success, failure.
    pub(crate) reload_counters: (u64, u64),
    /// `lb_upstream_retries_total` at the end, by reason.
    pub(crate) retries: Vec<(String, u64)>,
    /// The churn.
    pub(crate) churn: &'a ChurnReport,
    /// Sockets the end may have beyond the warm-up: one pooled upstream connection per
    /// request the load can have in flight. The proxy keeps an idle keep-alive connection
    /// to a backend for `idle_timeout` (60 s) after its last use, so how many are open at a
    /// sample depends on how many requests overlapped in the last minute, up to the load's
    /// concurrency; a leak of one socket per request, per connection, per discovery change
    /// or per reload exceeds it within the run.
    pub(crate) socket_slack: u64,
    /// Problems outside the tables (the proxy died, a task hung, the stop was not clean).
    pub(crate) problems: Vec<String>,
    /// Warnings and errors of the proxy's log, by message.
    pub(crate) log_lines: Vec<(String, String, u64)>,
}

/// One row of the verdict table.
struct Check {
    what: &'static str,
    figure: String,
    pass: bool,
}

impl Figures<'_> {
    /// The report text and whether the run passed.
    pub(crate) fn render(&self) -> (String, bool) {
        let mut out = String::new();
        self.requests(&mut out);
        self.memory(&mut out);
        self.events(&mut out);
        let checks = self.checks();
        let pass = checks.iter().all(|c| c.pass);
        let _ = writeln!(out, "\nverdict");
        for c in &checks {
            let mark = if c.pass { "pass" } else { "FAIL" };
            let _ = writeln!(out, "  {mark}  {:<34} {}", c.what, c.figure);
        }
        for p in &self.problems {
            let _ = writeln!(out, "  FAIL  {p}");
        }
        let pass = pass && self.problems.is_empty();
        let _ = writeln!(out, "\nsoak {}", if pass { "PASSED" } else { "FAILED" });
        (out, pass)
    }

    fn requests(&self, out: &mut String) {
        let t = self.tally;
        let _ = writeln!(
            out,
            "\nrequests ({:.0} s of load)\n  {:<20} {:>9} {:>7} {:>7} {:>7} {:>8} {:>8}",
            self.ran.as_secs_f64(),
            "kind",
            "2xx ok",
            "non-2xx",
            "error",
            "timeout",
            "mismatch",
            "max ms"
        );
        for kind in Kind::ALL {
            let _ = writeln!(
                out,
                "  {:<20} {:>9} {:>7} {:>7} {:>7} {:>8} {:>8}",
                kind.label(),
                t.count(kind, Class::Ok),
                t.count(kind, Class::Status),
                t.count(kind, Class::Error),
                t.count(kind, Class::Timeout),
                t.count(kind, Class::Mismatch),
                t.max_latency(kind).as_millis()
            );
        }
        let _ = writeln!(
            out,
            "  {:<20} {:>9} {:>7} {:>7} {:>7} {:>8}",
            "total",
            t.total(Class::Ok),
            t.total(Class::Status),
            t.total(Class::Error),
            t.total(Class::Timeout),
            t.total(Class::Mismatch)
        );
        let _ = writeln!(
            out,
            "  client connections opened: {}; keep-alive connections found closed by the proxy between requests: {}",
            t.connections.load(std::sync::atomic::Ordering::Relaxed),
            t.closed_between_requests.load(std::sync::atomic::Ordering::Relaxed)
        );
        let statuses = t.statuses();
        if !statuses.is_empty() {
            let _ = writeln!(out, "  non-2xx by status: {statuses:?}");
        }
        for s in t.samples() {
            let _ = writeln!(out, "  failure: {s}");
        }
    }

    fn memory(&self, out: &mut String) {
        let (wf, wt) = self.warm_window();
        let (ef, et) = self.end_window();
        let _ = writeln!(
            out,
            "\nproxy process: the first sample, the windows after warm-up ({:.0}-{:.0} s) and at the \
             end ({:.0}-{:.0} s), the peak;\nmemory as the mean of each window, descriptors as the median\n  \
             {:<16} {:>10} {:>10} {:>10} {:>10}",
            wf.as_secs_f64(),
            wt.as_secs_f64(),
            ef.as_secs_f64(),
            et.as_secs_f64(),
            "",
            "start",
            "warm-up",
            "end",
            "peak"
        );
        let memory: [(&str, Reading); 3] = [
            ("RSS (KiB)", |s| s.rss_kib),
            ("  anon (KiB)", |s| s.anon_kib),
            ("  file (KiB)", |s| s.file_kib),
        ];
        let fds: [(&str, Reading); 2] =
            [("sockets", |s| s.sockets), ("other fds", |s| s.other_fds)];
        let mean = |v: Option<f64>| v.map(|v| v.round() as u64);
        for (name, value) in memory {
            let row = [self.warm_mean(value), self.end_mean(value)].map(mean);
            self.row(out, name, value, row);
        }
        for (name, value) in fds {
            self.row(out, name, value, [self.warm(value), self.end(value)]);
        }
        for (name, value) in [("RSS", memory[0].1), ("anon", memory[1].1)] {
            if let Some((w, e, growth)) = self.growth(value) {
                let _ = writeln!(
                    out,
                    "  {name} least-squares trend after warm-up: {w:.0} -> {e:.0} KiB ({growth:+.2}%)"
                );
            }
        }
        let _ = writeln!(out, "  {} samples", self.samples.len());
        // One line a minute, to see a trend.
        let mut next = Duration::ZERO;
        for s in self.samples {
            if s.at >= next {
                let _ = writeln!(
                    out,
                    "  t={:>4.0}s  RSS {:>7} KiB (anon {:>7}, file {:>6})  sockets {:>4}  other fds {:>3}",
                    s.at.as_secs_f64(),
                    s.rss_kib,
                    s.anon_kib,
                    s.file_kib,
                    s.sockets,
                    s.other_fds
                );
                next = s.at + Duration::from_secs(60).min(self.planned / 10);
            }
        }
    }

    fn events(&self, out: &mut String) {
        let _ = writeln!(out, "\nreloads");
        for r in self.reloads {
            let result = r.error.as_deref().unwrap_or("ok");
            let _ = writeln!(
                out,
                "  #{:<2} t={:>4.0}s {:<13} {:<48} {:>5} ms  {result}",
                r.k,
                r.at.as_secs_f64(),
                r.via,
                r.change,
                r.took.as_millis()
            );
        }
        let (ok, failed) = self.reload_counters;
        let _ = writeln!(
            out,
            "  lb_config_reloads_total: success {ok}, failure {failed}"
        );
        let c = self.churn;
        let _ = writeln!(
            out,
            "\ndiscovery churn\n  {} file changes applied (slowest {} ms to show in /status), {} backends stopped after removal, {} started again",
            c.applied,
            c.slowest.as_millis(),
            c.stopped,
            c.restarted
        );
        for f in &c.failures {
            let _ = writeln!(out, "  failure: {f}");
        }
        let retries: u64 = self.retries.iter().map(|(_, n)| n).sum();
        let _ = writeln!(out, "\nproxy\n  retries: {retries} {:?}", self.retries);
        if self.log_lines.is_empty() {
            let _ = writeln!(out, "  log: no warning or error");
        }
        for (level, message, n) in &self.log_lines {
            let _ = writeln!(out, "  log {level} x{n}: {message}");
        }
    }

    /// One line of the process table: `value`'s first sample, the two windows, the peak.
    fn row(&self, out: &mut String, name: &str, value: Reading, windows: [Option<u64>; 2]) {
        let first = self.samples.first().map(value);
        let peak = self.samples.iter().map(value).max();
        let _ = writeln!(
            out,
            "  {name:<16} {:>10} {:>10} {:>10} {:>10}",
            show(first),
            show(windows[0]),
            show(windows[1]),
            show(peak)
        );
    }

    /// The trend of `value` after the warm-up: its values at the end of the warm-up and at
    /// the end, and the growth between them in percent.
    fn growth(&self, value: Reading) -> Option<(f64, f64, f64)> {
        let (w, e) = sample::trend(self.samples, self.warmup, self.ran, value)?;
        (w > 0.0).then(|| (w, e, (e - w) * 100.0 / w))
    }

    /// The window right after the warm-up.
    fn warm_window(&self) -> (Duration, Duration) {
        (self.warmup, self.warmup + self.window)
    }

    /// The last window.
    fn end_window(&self) -> (Duration, Duration) {
        (self.ran.saturating_sub(self.window), self.ran)
    }

    fn warm(&self, value: Reading) -> Option<u64> {
        let (from, to) = self.warm_window();
        sample::median(self.samples, from, to, value)
    }

    fn end(&self, value: Reading) -> Option<u64> {
        let (from, to) = self.end_window();
        sample::median(self.samples, from, to, value)
    }

    fn warm_mean(&self, value: Reading) -> Option<f64> {
        let (from, to) = self.warm_window();
        sample::mean(self.samples, from, to, value)
    }

    fn end_mean(&self, value: Reading) -> Option<f64> {
        let (from, to) = self.end_window();
        sample::mean(self.samples, from, to, value)
    }

    fn checks(&self) -> Vec<Check> {
        let t = self.tally;
        let ok = t.total(Class::Ok);
        let failed: u64 = Class::ALL[1..].iter().map(|c| t.total(*c)).sum();
        let mut checks = vec![Check {
            what: "every request 2xx and correct",
            figure: format!("{ok} ok, {failed} not"),
            pass: ok > 0 && failed == 0,
        }];
        let rss = (self.warm_mean(|s| s.rss_kib), self.end_mean(|s| s.rss_kib));
        checks.push(match rss {
            (Some(w), Some(e)) if w > 0.0 => {
                let growth = (e - w) * 100.0 / w;
                Check {
                    what: "RSS growth after warm-up < 5%",
                    figure: format!("{w:.0} -> {e:.0} KiB ({growth:+.2}%)"),
                    pass: growth < RSS_GROWTH_LIMIT,
                }
            }
            _ => missing("RSS growth after warm-up < 5%"),
        });
        checks.push(
            match (self.warm(|s| s.other_fds), self.end(|s| s.other_fds)) {
                (Some(w), Some(e)) => Check {
                    what: "no growth of other fds",
                    figure: format!("{w} -> {e}"),
                    pass: e <= w,
                },
                _ => missing("no growth of other fds"),
            },
        );
        checks.push(match (self.warm(|s| s.sockets), self.end(|s| s.sockets)) {
            (Some(w), Some(e)) => Check {
                what: "no growth of sockets",
                figure: format!("{w} -> {e} (slack {})", self.socket_slack),
                pass: e <= w + self.socket_slack,
            },
            _ => missing("no growth of sockets"),
        });
        let made = self.reloads.len() as u64;
        let good = self.reloads.iter().filter(|r| r.error.is_none()).count() as u64;
        let (counted, refused) = self.reload_counters;
        checks.push(Check {
            what: "every reload applied",
            figure: format!("{good}/{made} checked; counted success {counted}, failure {refused}"),
            pass: made > 0 && good == made && counted == made && refused == 0,
        });
        checks.push(Check {
            what: "every discovery change applied",
            figure: format!(
                "{} applied, {} failed",
                self.churn.applied,
                self.churn.failures.len()
            ),
            pass: self.churn.applied > 0 && self.churn.failures.is_empty(),
        });
        checks
    }
}

fn missing(what: &'static str) -> Check {
    Check {
        what,
        figure: "no samples in a window (run too short?)".to_owned(),
        pass: false,
    }
}

fn show(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}
