//! [`run`]: from the parsed command line to a running proxy, and back to how it ended. It
//! loads the configuration (or builds the demo or `--backend` one), checks it for `-t`,
//! detaches for `-d`, sets up logging, the main runtime and the workers, then serves
//! ([`start`](super::start)) until the proxy is stopped or handed over.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;

use lb_core::Backend;

use super::start::{serve, Settings};
use super::{daemon, logging, notice, Args, RunError};
use crate::config::{BackendList, Config, LogFormat};
use crate::{demo, Workers};

/// Where the demo and the `--backend` balancer listen without `--listen`: 127.0.0.1:8080.
const DEMO_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

/// How [`run`] ended without a failure: what the binary tells the operator, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exit {
    /// The proxy served until SIGTERM or SIGINT, or until it handed its sockets over to a
    /// new binary (SIGQUIT) and drained.
    Stopped,
    /// `-t`: this configuration file is valid.
    Checked(PathBuf),
    /// `-d`: the background process serves; this is its pid.
    Background(u32),
}

/// Runs the `lb-proxy` process for `args`, as the binary does: blocks until the proxy has
/// stopped (or, for `-t` and `-d`, until the check is done or the background process
/// serves). Call it from `main`, on a thread without a tokio runtime: it starts its own,
/// and installs the global `tracing` subscriber.
pub fn run(args: Args) -> Result<Exit, RunError> {
    let config = args.config.as_deref().map(Config::load).transpose()?;
    let server = config.as_ref().map(|c| &c.server);
    let settings = Settings {
        config_file: args.config.clone(),
        pid_file: args
            .pid_file
            .clone()
            .or_else(|| server.and_then(|s| s.pid_file.clone())),
        upgrade_sock: server.and_then(|s| s.upgrade_sock.clone()),
        upgrade: args.upgrade,
        daemon_child: daemon::is_child(),
    };
    let error_log = args
        .error_log
        .clone()
        .or_else(|| server.and_then(|s| s.error_log.clone()));
    if args.upgrade && settings.upgrade_sock.is_none() {
        return Err(RunError::UpgradeNeedsSock);
    }
    if args.daemon && !args.test && !settings.daemon_child {
        if error_log.is_none() {
            notice::no_error_log();
        }
        return Ok(Exit::Background(daemon::spawn()?));
    }
    if settings.daemon_child {
        daemon::detach().map_err(RunError::Detach)?;
    }
    let format = server.map_or(LogFormat::Text, |s| s.log_format);
    logging::init(format, error_log.as_deref())?;
    let runtime = runtime()?;
    if let (Some(config), Some(path)) = (config, &args.config) {
        if args.test {
            runtime.block_on(async { crate::check(&config) })?;
            return Ok(Exit::Checked(path.clone()));
        }
        let workers = start_workers(&runtime, args.threads.or(config.server.threads))?;
        let served = runtime.block_on(serve(config, None, &settings, &workers));
        workers.join();
        return served.map(|()| Exit::Stopped);
    }
    let listen = if args.listen.is_empty() {
        vec![DEMO_LISTEN]
    } else {
        args.listen.clone()
    };
    let workers = start_workers(&runtime, args.threads)?;
    let served = if args.backend.is_empty() {
        runtime.block_on(async {
            let backends = demo::start_backends(3).await.map_err(RunError::Demo)?;
            let config = demo::config(listen, &backends);
            serve(config, Some(&backends), &settings, &workers).await
        })
    } else {
        let mut list = Vec::new();
        for text in &args.backend {
            let resolved = Backend::resolve(text).map_err(|source| RunError::Backend {
                text: text.clone(),
                source,
            })?;
            list.extend(resolved);
        }
        let config = Config::quick(listen, BackendList(list));
        runtime.block_on(serve(config, None, &settings, &workers))
    };
    workers.join();
    served.map(|()| Exit::Stopped)
}

/// The main thread's runtime: worker 0, and the control plane (signals, health checks,
/// discovery, admin, reloads).
fn runtime() -> Result<tokio::runtime::Runtime, RunError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RunError::Runtime)
}

/// `threads` workers (default: one per CPU): the main thread's `runtime` and a thread with
/// its own runtime for each other one (see [`crate::worker`]).
fn start_workers(
    runtime: &tokio::runtime::Runtime,
    threads: Option<NonZeroU32>,
) -> Result<Workers, RunError> {
    let threads = match threads {
        Some(n) => NonZeroUsize::try_from(n).map_err(RunError::Threads)?,
        None => std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
    };
    runtime
        .block_on(async { Workers::start(threads) })
        .map_err(RunError::Workers)
}
