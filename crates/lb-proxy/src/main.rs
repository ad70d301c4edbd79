//! The `lb-proxy` binary: parses the command line and runs the process
//! (`lb_proxy::process::run`), then tells the operator how it ended and exits with 0, or
//! 1 on an error. Everything else lives in the `lb_proxy` library.

// The binary reports errors and `-t` results to the operator on stderr, as nginx does.
#![allow(clippy::print_stderr)]

use std::process::ExitCode;

use clap::Parser;
use lb_proxy::config::error_chain;
use lb_proxy::process::{self, Args, Exit};

// The allocator: glibc's unless built with `--features mimalloc` (docs/benchmarks.md has
// the figures behind that default).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match process::run(Args::parse()) {
        Ok(Exit::Checked(path)) => {
            let path = path.display();
            eprintln!("lb-proxy: the configuration file {path} syntax is ok");
            eprintln!("lb-proxy: configuration file {path} test is successful");
            ExitCode::SUCCESS
        }
        Ok(Exit::Background(pid)) => {
            eprintln!("lb-proxy: running in the background, pid {pid}");
            ExitCode::SUCCESS
        }
        // Exit::Stopped (the enum is non-exhaustive).
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("lb-proxy: {}", error_chain(&error));
            ExitCode::FAILURE
        }
    }
}
