//! What the library itself tells the person who started `lb-proxy`, outside the log: the
//! warning that `-d` without an error log discards the logs (it must show before the
//! background process starts, so before [`run`](super::run) returns), and the demo's
//! banner on stdout (once the demo serves, which only the library knows). Everything else
//! the operator reads on stderr, errors and `-t` results, the binary prints.

// The only module of the library that writes to stdout and stderr, for the reasons above.
#![allow(clippy::print_stderr, clippy::print_stdout)]

use std::net::SocketAddr;

/// `-d` without `--error-log` or `server.error_log`.
pub(super) fn no_error_log() {
    eprintln!(
        "lb-proxy: no error log (--error-log, server.error_log): logs after start-up are discarded"
    );
}

/// The demo's welcome: where to send requests, and how to run a real setup.
pub(super) fn demo_banner(listen: &[SocketAddr], backends: &[SocketAddr]) {
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
