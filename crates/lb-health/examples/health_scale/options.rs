//! The command line of `health_scale`: its usage text, the check variants and the options.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use lb_health::Schedule;

use crate::Result;

pub(crate) const USAGE: &str = "\
usage: health_scale listen [--count N] [--net B] [--port P] [--threads T] [--http]
       health_scale check  [--count N] [--net B] [--port P] [--threads T]
                           [--interval-ms MS] [--timeout-ms MS] [--seconds S] [--warmup S]
                           [--max-concurrency C] [--check tcp|tcp-rst|http-reuse|floor]

Addresses are 127.B.(i/250).(i%250+1):P for i in 0..N.
Defaults: N=10000, B=64, P=7171, T=number of CPUs, MS=1000 (interval), 1000 (timeout),
S=20, warmup 2, C=256 (the scheduler's default), check tcp (TcpHealthCheck).
`--check http-reuse` needs `listen --http`.";

/// Which check the `check` role runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// [`TcpHealthCheck`].
    Tcp,
    /// [`ResetTcpCheck`].
    TcpRst,
    /// [`HttpHealthCheck`] with `reuse_connection`.
    HttpReuse,
    /// Not a check: the kernel's cost of the same connects, see [`floor`].
    Floor,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::TcpRst => "tcp-rst",
            Self::HttpReuse => "http-reuse",
            Self::Floor => "floor",
        }
    }
}

/// Command-line options shared by both roles (each role ignores what it does not use).
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub(crate) count: usize,
    pub(crate) net: u8,
    pub(crate) port: u16,
    pub(crate) threads: usize,
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) seconds: u64,
    pub(crate) warmup: u64,
    pub(crate) max_concurrency: usize,
    pub(crate) kind: Kind,
    pub(crate) http: bool,
}

impl Options {
    pub(crate) fn parse(args: &[String]) -> Result<Self> {
        let mut options = Self {
            count: 10_000,
            net: 64,
            port: 7171,
            threads: std::thread::available_parallelism().map_or(1, usize::from),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            seconds: 20,
            warmup: 2,
            max_concurrency: Schedule::new(Duration::from_secs(1)).max_concurrency,
            kind: Kind::Tcp,
            http: false,
        };
        let mut rest = args.iter();
        while let Some(flag) = rest.next() {
            if flag == "--http" {
                options.http = true;
                continue;
            }
            let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
            let number = || value.parse::<u64>().map_err(|e| bad(&e));
            match flag.as_str() {
                "--count" => options.count = value.parse().map_err(|e| bad(&e))?,
                "--net" => options.net = value.parse().map_err(|e| bad(&e))?,
                "--port" => options.port = value.parse().map_err(|e| bad(&e))?,
                "--threads" => options.threads = value.parse().map_err(|e| bad(&e))?,
                "--interval-ms" => options.interval = Duration::from_millis(number()?),
                "--timeout-ms" => options.timeout = Duration::from_millis(number()?),
                "--seconds" => options.seconds = number()?,
                "--warmup" => options.warmup = number()?,
                "--max-concurrency" => {
                    options.max_concurrency = value.parse().map_err(|e| bad(&e))?;
                }
                "--check" => {
                    options.kind = [Kind::Tcp, Kind::TcpRst, Kind::HttpReuse, Kind::Floor]
                        .into_iter()
                        .find(|k| k.name() == value)
                        .ok_or_else(|| bad(&"expected tcp, tcp-rst, http-reuse or floor"))?;
                }
                _ => return Err(format!("unknown option {flag}").into()),
            }
        }
        if options.count == 0 || options.count > 256 * 250 {
            return Err("--count must be 1..=64000 (250 addresses per /24)".into());
        }
        if options.threads == 0 {
            return Err("--threads must be at least 1".into());
        }
        if options.warmup >= options.seconds {
            return Err("--warmup must be shorter than --seconds".into());
        }
        Ok(options)
    }

    /// The address of backend `i`.
    pub(crate) fn addr(&self, i: usize) -> SocketAddr {
        // `i < 64000`, so both octets fit (checked in `parse`).
        let third = u8::try_from(i / 250).unwrap_or(u8::MAX);
        let fourth = u8::try_from(i % 250 + 1).unwrap_or(u8::MAX);
        SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::new(127, self.net, third, fourth),
            self.port,
        ))
    }

    pub(crate) fn runtime(&self) -> Result<tokio::runtime::Runtime> {
        Ok(tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.threads)
            .enable_all()
            .build()?)
    }
}
