//! The command line of the `lb-proxy` binary ([`Args`], parsed with clap). Each field's doc
//! comment is its `--help` text.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;

use clap::Parser;

/// A load-balancing HTTP/1.1 and HTTP/2 reverse proxy driven by one TOML file.
///
/// With no -c and no --backend it runs a demo: three small backends on loopback behind a
/// round-robin balancer on 127.0.0.1:8080.
#[derive(Debug, Default, Parser)]
#[command(version, about)]
pub struct Args {
    /// Configuration file (TOML); see docs/configuration.md.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Check the configuration file and exit: 0 when it is valid, 1 otherwise (like `nginx -t`).
    #[arg(short = 't', long = "test", requires = "config")]
    pub test: bool,

    /// Listen address; without -c, with --backend, runs a round-robin balancer (default
    /// 127.0.0.1:8080). Repeatable.
    #[arg(long, value_name = "ADDR", conflicts_with = "config")]
    pub listen: Vec<SocketAddr>,

    /// Backend address (host:port, bracketed-IPv6:port or unix:/path) for the balancer without a
    /// file. Repeatable, or comma-separated.
    #[arg(
        long,
        alias = "backends",
        value_name = "ADDR",
        value_delimiter = ',',
        conflicts_with = "config"
    )]
    pub backend: Vec<String>,

    /// Worker threads (default: the number of CPUs; overrides `server.threads`).
    #[arg(long, alias = "workers", value_name = "N")]
    pub threads: Option<NonZeroU32>,

    /// Run in the background: returns once the proxy serves and the pid file is written.
    #[arg(short = 'd', long = "daemon")]
    pub daemon: bool,

    /// Graceful binary upgrade: take the listening sockets of the running lb-proxy over
    /// `server.upgrade_sock` (send it SIGQUIT) instead of binding them.
    #[arg(short = 'u', long = "upgrade", requires = "config")]
    pub upgrade: bool,

    /// Write the pid here (overrides `server.pid_file`); removed on exit.
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,

    /// Append logs to this file instead of stderr (overrides `server.error_log`).
    #[arg(long, value_name = "FILE")]
    pub error_log: Option<PathBuf>,
}
