//! The `lb-proxy` binary: command line, logging, the worker runtimes (one `current_thread`
//! runtime per worker thread, see `lb_proxy::worker`), signals, daemon mode and the
//! binary upgrade. Everything else lives in the `lb_proxy` library.

// The binary reports errors and `-t` results to the operator on stderr, as nginx does.
#![allow(clippy::print_stderr)]

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use lb_core::Backend;
use lb_proxy::config::{BackendList, Config, LogFormat};
use lb_proxy::process::{daemon, logging, PidFile};
use lb_proxy::signals::{Signal, Signals};
use lb_proxy::{demo, handover, HandoverError, Proxy, Workers};

/// A load-balancing HTTP/1.1 and HTTP/2 reverse proxy driven by one TOML file.
///
/// With no -c and no --backend it runs a demo: three small backends on loopback behind a
/// round-robin balancer on 127.0.0.1:8080.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML); see docs/configuration.md.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Check the configuration file and exit: 0 when it is valid, 1 otherwise (like `nginx -t`).
    #[arg(short = 't', long = "test", requires = "config")]
    test: bool,

    /// Listen address; without -c, with --backend, runs a round-robin balancer (default
    /// 127.0.0.1:8080). Repeatable.
    #[arg(long, value_name = "ADDR", conflicts_with = "config")]
    listen: Vec<SocketAddr>,

    /// Backend address (host:port, [ipv6]:port or unix:/path) for the balancer without a
    /// file. Repeatable, or comma-separated.
    #[arg(
        long,
        alias = "backends",
        value_name = "ADDR",
        value_delimiter = ',',
        conflicts_with = "config"
    )]
    backend: Vec<String>,

    /// Worker threads (default: the number of CPUs; overrides `server.threads`).
    #[arg(long, alias = "workers", value_name = "N")]
    threads: Option<NonZeroU32>,

    /// Run in the background: returns once the proxy serves and the pid file is written.
    #[arg(short = 'd', long = "daemon")]
    daemon: bool,

    /// Graceful binary upgrade: take the listening sockets of the running lb-proxy over
    /// `server.upgrade_sock` (send it SIGQUIT) instead of binding them.
    #[arg(short = 'u', long = "upgrade", requires = "config")]
    upgrade: bool,

    /// Write the pid here (overrides `server.pid_file`); removed on exit.
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,

    /// Append logs to this file instead of stderr (overrides `server.error_log`).
    #[arg(long, value_name = "FILE")]
    error_log: Option<PathBuf>,
}

// The allocator: glibc's unless built with `--features mimalloc` (docs/benchmarks.md has
// the figures behind that default).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEMO_LISTEN: &str = "127.0.0.1:8080";

/// How long `--upgrade` waits for the running process to send its sockets (SIGQUIT).
const UPGRADE_WAIT: Duration = Duration::from_secs(60);

/// How long the running process, on SIGQUIT, tries to reach the new one on `upgrade_sock`
/// (then `server.upgrade_timeout` for it to start).
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a new process that has started waits for the previous one's commit.
const COMMIT_WAIT: Duration = Duration::from_secs(10);

/// The process settings, from the command line over `[server]`.
#[derive(Debug, Default)]
struct Process {
    /// `-c`: what SIGHUP reads again.
    config_file: Option<PathBuf>,
    pid_file: Option<PathBuf>,
    upgrade_sock: Option<PathBuf>,
    upgrade: bool,
    daemon_child: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("lb-proxy: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config.as_deref().map(Config::load).transpose()?;
    let server = config.as_ref().map(|c| &c.server);
    let process = Process {
        config_file: cli.config.clone(),
        pid_file: cli
            .pid_file
            .clone()
            .or_else(|| server.and_then(|s| s.pid_file.clone())),
        upgrade_sock: server.and_then(|s| s.upgrade_sock.clone()),
        upgrade: cli.upgrade,
        daemon_child: daemon::is_child(),
    };
    let error_log = cli
        .error_log
        .clone()
        .or_else(|| server.and_then(|s| s.error_log.clone()));
    if cli.upgrade && process.upgrade_sock.is_none() {
        anyhow::bail!("--upgrade needs `upgrade_sock` in [server] of the configuration file");
    }
    if cli.daemon && !cli.test && !process.daemon_child {
        if error_log.is_none() {
            eprintln!("lb-proxy: no error log (--error-log, server.error_log): logs after start-up are discarded");
        }
        let pid = daemon::spawn()?;
        eprintln!("lb-proxy: running in the background, pid {pid}");
        return Ok(());
    }
    if process.daemon_child {
        daemon::detach().context("cannot detach")?;
    }
    let format = server.map_or(LogFormat::Text, |s| s.log_format);
    logging::init(format, error_log.as_deref())?;
    let runtime = runtime()?;
    if let (Some(config), Some(path)) = (config, &cli.config) {
        if cli.test {
            runtime.block_on(async { lb_proxy::check(&config) })?;
            eprintln!(
                "lb-proxy: the configuration file {} syntax is ok",
                path.display()
            );
            eprintln!(
                "lb-proxy: configuration file {} test is successful",
                path.display()
            );
            return Ok(());
        }
        let workers = start_workers(&runtime, cli.threads.or(config.server.threads))?;
        let served = runtime.block_on(serve(config, None, &process, &workers));
        workers.join();
        return served;
    }
    let listen = if cli.listen.is_empty() {
        vec![DEMO_LISTEN.parse()?]
    } else {
        cli.listen.clone()
    };
    let workers = start_workers(&runtime, cli.threads)?;
    let served = if cli.backend.is_empty() {
        runtime.block_on(async {
            let backends = demo::start_backends(3).await?;
            let config = demo::config(listen, &backends);
            serve(config, Some(&backends), &process, &workers).await
        })
    } else {
        let mut list = Vec::new();
        for text in &cli.backend {
            list.extend(Backend::resolve(text).with_context(|| format!("--backend {text}"))?);
        }
        let config = Config::quick(listen, BackendList(list));
        runtime.block_on(serve(config, None, &process, &workers))
    };
    workers.join();
    served
}

/// The main thread's runtime: worker 0, and the control plane (signals, health checks,
/// discovery, admin, reloads).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

/// `threads` workers (default: one per CPU): the main thread's `runtime` and a thread with
/// its own runtime for each other one (see `lb_proxy::worker`).
fn start_workers(
    runtime: &tokio::runtime::Runtime,
    threads: Option<NonZeroU32>,
) -> anyhow::Result<Workers> {
    let threads = match threads {
        Some(n) => NonZeroUsize::try_from(n).context("server.threads")?,
        None => std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
    };
    runtime
        .block_on(async { Workers::start(threads) })
        .context("cannot start the worker threads")
}

/// A hand-over in progress (`RunningProxy::hand_over`).
type Upgrading<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), HandoverError>> + 'a>>;

/// Runs the proxy until SIGTERM/SIGINT (shutdown) or a committed SIGQUIT hand-over
/// (drain), then returns.
async fn serve(
    config: Config,
    demo_backends: Option<&[SocketAddr]>,
    process: &Process,
    workers: &Workers,
) -> anyhow::Result<()> {
    // Registered first: from here on SIGQUIT no longer kills the process (with a core).
    let mut signals = Signals::new().context("cannot handle signals")?;
    let mut proxy = Proxy::new(config).workers(workers);
    if let Some(path) = &process.config_file {
        proxy = proxy.config_file(path);
    }
    let mut taking_over = None;
    if let (true, Some(sock)) = (process.upgrade, &process.upgrade_sock) {
        let sock = sock.clone();
        let mut handover =
            tokio::task::spawn_blocking(move || handover::receive(&sock, UPGRADE_WAIT))
                .await
                .context("upgrade")??;
        let inherited = handover.take_sockets();
        tracing::info!(
            sockets = inherited.len(),
            "received the listening sockets of the previous process; it serves until this one has started"
        );
        proxy = proxy.inherit(inherited);
        taking_over = Some(handover);
    }
    let running = match proxy.start().await {
        Ok(running) => running,
        Err(error) => {
            let error = anyhow::Error::from(error);
            if let Some(handover) = taking_over {
                // The previous process keeps every listener and serves on.
                handover.abort(&format!("{error:#}")).await;
            }
            return Err(error);
        }
    };
    if let Some(handover) = taking_over {
        if let Err(error) = handover.confirm(COMMIT_WAIT).await {
            tracing::error!(
                error = &error as &dyn std::error::Error,
                "the previous process did not take the hand-over; it serves on, and this one stops"
            );
            running.shutdown().await;
            return Err(anyhow::Error::from(error).context("upgrade not committed"));
        }
        tracing::info!(
            "upgrade committed: the previous process stopped accepting; this one serves"
        );
    }
    // Written only once this process is in charge: a failed upgrade leaves the file alone.
    let _pid_file = match &process.pid_file {
        Some(path) => {
            let file = PidFile::create(path)
                .with_context(|| format!("cannot write the pid file {}", path.display()))?;
            tracing::info!(pid = std::process::id(), pid_file = %path.display(), "pid file written");
            Some(file)
        }
        None => None,
    };
    if let Some(backends) = demo_backends {
        print_demo_banner(&running.local_addrs(), backends);
    }
    if process.daemon_child {
        daemon::ready().context("cannot detach")?;
    }
    // A hand-over in progress: the proxy serves on while it runs.
    let mut upgrading: Option<Upgrading<'_>> = None;
    loop {
        let signal = match upgrading.as_mut() {
            Some(upgrade) => tokio::select! {
                signal = signals.recv() => signal,
                done = upgrade => {
                    upgrading = None;
                    match done {
                        Ok(()) => {
                            tracing::info!("the new process has started and took over; draining");
                            running.drain().await;
                            tracing::info!("drained; exiting");
                            return Ok(());
                        }
                        Err(error) => {
                            tracing::error!(
                                error = &error as &dyn std::error::Error,
                                "upgrade failed; still serving on every listener"
                            );
                            continue;
                        }
                    }
                }
            },
            None => signals.recv().await,
        };
        match signal {
            Signal::Upgrade => {
                let Some(sock) = &process.upgrade_sock else {
                    tracing::warn!("SIGQUIT ignored: no upgrade_sock in [server]");
                    continue;
                };
                if upgrading.is_some() {
                    tracing::warn!("SIGQUIT ignored: an upgrade is already in progress");
                    continue;
                }
                tracing::info!(upgrade_sock = %sock.display(), "SIGQUIT: offering the listening sockets to the new process");
                upgrading = Some(Box::pin(running.hand_over(sock, HANDOVER_TIMEOUT)));
            }
            Signal::Reload => {
                // Logged and counted by the reload itself, whatever the outcome.
                let _ = running.reload_file().await;
            }
            // Signal::Terminate (the enum is non-exhaustive).
            _ => {
                // An upgrade in progress is given up: the new process sees the socket close.
                drop(upgrading);
                running.shutdown().await;
                tracing::info!("stopped");
                return Ok(());
            }
        }
    }
}

#[allow(clippy::print_stdout)] // the demo talks to the person who started it
fn print_demo_banner(listen: &[SocketAddr], backends: &[SocketAddr]) {
    let list: Vec<String> = backends.iter().map(ToString::to_string).collect();
    let addr = listen.first().map_or_else(String::new, ToString::to_string);
    println!(
        "\nlb-proxy demo: round robin over {} demo backends ({}), TCP health checks every 1s.\n\
         \n    curl http://{addr}/\n\n\
         Repeat it: each answer names the backend that served it. Health transitions appear\n\
         in the log. Stop with Ctrl-C. Run your own setup with `lb-proxy -c lb.toml`\n\
         (see docs/configuration.md) or `lb-proxy --listen ADDR --backend HOST:PORT ...`.\n",
        backends.len(),
        list.join(", "),
    );
}
