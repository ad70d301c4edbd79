//! What the process costs, read from `/proc/self`: CPU time, peak RSS and the open-files limit.

use crate::Result;

/// CPU time of this process, all threads, in seconds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CpuTime {
    pub(crate) user: f64,
    pub(crate) system: f64,
}

impl CpuTime {
    pub(crate) fn since(self, earlier: Self) -> Self {
        Self {
            user: self.user - earlier.user,
            system: self.system - earlier.system,
        }
    }

    pub(crate) fn total(self) -> f64 {
        self.user + self.system
    }
}

/// Clock ticks per second of `/proc/*/stat` (`USER_HZ`, 100 on every Linux
/// architecture; `getconf CLK_TCK` prints it).
const TICKS_PER_SECOND: f64 = 100.0;

/// `utime` and `stime` of `/proc/self/stat` (fields 14 and 15; parsed after the last `)`,
/// since the command name in field 2 may contain spaces).
pub(crate) fn cpu_time() -> Result<CpuTime> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or("unexpected /proc/self/stat")?;
    // Field 3 (state) is the first one after the name.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |field: usize| -> Result<f64> {
        let text = fields.get(field - 3).ok_or("short /proc/self/stat")?;
        Ok(text.parse::<u64>()? as f64 / TICKS_PER_SECOND)
    };
    Ok(CpuTime {
        user: ticks(14)?,
        system: ticks(15)?,
    })
}

/// A `kB` line of `/proc/self/status`, such as `VmHWM` (peak RSS) or `VmRSS`.
pub(crate) fn status_kib(key: &str) -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .ok_or_else(|| format!("no {key} in /proc/self/status"))?;
    let kib = line.trim().trim_end_matches("kB").trim();
    Ok(kib.parse()?)
}

/// The soft limit on open files, from `/proc/self/limits`.
pub(crate) fn open_files_limit() -> Result<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .ok_or("no open-files line in /proc/self/limits")?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()
        .ok_or("unexpected /proc/self/limits")?;
    Ok(if soft == "unlimited" {
        u64::MAX
    } else {
        soft.parse()?
    })
}
