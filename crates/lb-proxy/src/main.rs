//! The `lb-proxy` binary: command line, logging, runtime, signals. Everything else lives in
//! the `lb_proxy` library.

// The binary reports errors and `-t` results to the operator on stderr, as nginx does.
#![allow(clippy::print_stderr)]

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use lb_core::Backend;
use lb_proxy::config::{BackendList, Config};
use lb_proxy::{demo, signals, Proxy};
use tracing_subscriber::EnvFilter;

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
}

const DEMO_LISTEN: &str = "127.0.0.1:8080";

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("lb-proxy: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(path) = &cli.config {
        let config = Config::load(path)?;
        if cli.test {
            runtime(NonZeroU32::new(1))?.block_on(async { lb_proxy::check(&config) })?;
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
        let threads = cli.threads.or(config.server.threads);
        return runtime(threads)?.block_on(serve(config, None));
    }
    let listen = if cli.listen.is_empty() {
        vec![DEMO_LISTEN.parse()?]
    } else {
        cli.listen.clone()
    };
    let runtime = runtime(cli.threads)?;
    if cli.backend.is_empty() {
        return runtime.block_on(async {
            let backends = demo::start_backends(3).await?;
            serve(demo::config(listen, &backends), Some(&backends)).await
        });
    }
    let mut list = Vec::new();
    for text in &cli.backend {
        list.extend(Backend::resolve(text).with_context(|| format!("--backend {text}"))?);
    }
    runtime.block_on(serve(Config::quick(listen, BackendList(list)), None))
}

fn runtime(threads: Option<NonZeroU32>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = threads {
        builder.worker_threads(n.get() as usize);
    }
    builder.build().context("cannot start the runtime")
}

async fn serve(config: Config, demo_backends: Option<&[SocketAddr]>) -> anyhow::Result<()> {
    let running = Proxy::new(config).start().await?;
    if let Some(backends) = demo_backends {
        print_demo_banner(running.local_addrs(), backends);
    }
    signals::terminated()
        .await
        .context("cannot wait for signals")?;
    running.shutdown().await;
    Ok(())
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
