//! The first step of `cargo xtask ci`: before anything is built, check that every program
//! the tests and the later steps run is installed, looked up the way they look it up, and
//! if any is missing stop at once with one line naming them all and the command that
//! installs them (rather than a failing test twenty minutes into the run).
//!
//! | Program | Found like | Needed by |
//! |---|---|---|
//! | `nginx` | PATH, then `/usr/sbin`, `/sbin` | `lb-proxy` tests/nginx_compat.rs |
//! | `dnsmasq` | PATH, then `/usr/sbin`, `/sbin` | lb-testkit `Dnsmasq` (DNS outage tests) |
//! | `etcd` | PATH | lb-testkit `Etcd` (etcd discovery tests) |
//! | `chromium` or `chromium-browser` | PATH | `lb-proxy` tests/status_page.rs |
//! | `curl` with HTTP/2 | PATH | `lb-proxy` tests/tls.rs, the quick-start step |
//! | `git` | PATH | the quick-start step (clones the checkout) |
//! | `kill` | PATH | the process tests (signals to the real binary) |
//! | `python3` and its `prometheus_client` | PATH | `lb-proxy` tests/metrics_format.rs |
//! | `cargo fmt`, `cargo clippy` | rustup components | the fmt and clippy steps |
//!
//! `/usr/sbin` matters: it is not on a non-root user's PATH on Debian, and the tests look
//! there. A `python3` that is Debian's own (PEP 668 `EXTERNALLY-MANAGED`) gets
//! `prometheus_client` from apt, since pip refuses to install into it; any other from pip.
//! `.ci/run` installs the same list.

use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::cmd::Cmd;

/// How a missing program is installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fix {
    /// A Debian package.
    Apt(&'static str),
    /// A Python package, into the `python3` on PATH.
    Pip(&'static str),
    /// A rustup component.
    Rustup(&'static str),
}

/// One missing program: its name in the message, and how to install it.
#[derive(Debug)]
struct Missing {
    what: &'static str,
    fix: Fix,
}

/// Checks everything; the error is the one line that says what is missing and how to
/// install it.
pub(crate) fn check(root: &Path) -> anyhow::Result<()> {
    let missing = find_missing(root);
    if missing.is_empty() {
        return Ok(());
    }
    bail!("{}", message(&missing, is_root()));
}

/// What is not installed, in the order of the table above.
fn find_missing(root: &Path) -> Vec<Missing> {
    let mut missing = Vec::new();
    let mut need = |found: bool, what: &'static str, fix: Fix| {
        if !found {
            missing.push(Missing { what, fix });
        }
    };
    need(
        on_path_or_sbin("nginx").is_some(),
        "nginx",
        Fix::Apt("nginx"),
    );
    need(
        on_path_or_sbin("dnsmasq").is_some(),
        "dnsmasq",
        Fix::Apt("dnsmasq"),
    );
    need(on_path("etcd").is_some(), "etcd", Fix::Apt("etcd-server"));
    need(
        on_path("chromium").is_some() || on_path("chromium-browser").is_some(),
        "chromium",
        Fix::Apt("chromium"),
    );
    need(curl_has_http2(root), "curl (with HTTP/2)", Fix::Apt("curl"));
    need(on_path("git").is_some(), "git", Fix::Apt("git"));
    need(on_path("kill").is_some(), "kill", Fix::Apt("procps"));
    if on_path("python3").is_some() {
        let module = Cmd::new("python3")
            .args([
                "-c",
                "import prometheus_client.openmetrics.parser, prometheus_client.parser",
            ])
            .succeeds(root);
        let fix = if python_is_externally_managed(root) {
            Fix::Apt("python3-prometheus-client")
        } else {
            Fix::Pip("prometheus-client")
        };
        need(module, "python3 module prometheus_client", fix);
    } else {
        need(false, "python3", Fix::Apt("python3"));
        need(
            false,
            "python3 module prometheus_client",
            Fix::Apt("python3-prometheus-client"),
        );
    }
    let cargo = |sub: &str| Cmd::new("cargo").args([sub, "--version"]).succeeds(root);
    need(cargo("fmt"), "rustfmt", Fix::Rustup("rustfmt"));
    need(cargo("clippy"), "clippy", Fix::Rustup("clippy"));
    missing
}

/// The one line: ``missing nginx, etcd: install with `sudo apt-get install nginx
/// etcd-server`, or run .ci/run``.
fn message(missing: &[Missing], root: bool) -> String {
    let names: Vec<&str> = missing.iter().map(|m| m.what).collect();
    let of = |pick: fn(Fix) -> Option<&'static str>| -> Vec<&str> {
        let mut packages: Vec<&str> = Vec::new();
        for p in missing.iter().filter_map(|m| pick(m.fix)) {
            if !packages.contains(&p) {
                packages.push(p);
            }
        }
        packages
    };
    let apt = of(|f| match f {
        Fix::Apt(p) => Some(p),
        _ => None,
    });
    let pip = of(|f| match f {
        Fix::Pip(p) => Some(p),
        _ => None,
    });
    let rustup = of(|f| match f {
        Fix::Rustup(p) => Some(p),
        _ => None,
    });
    let mut commands = Vec::new();
    if !apt.is_empty() {
        let sudo = if root { "" } else { "sudo " };
        commands.push(format!("`{sudo}apt-get install {}`", apt.join(" ")));
    }
    if !pip.is_empty() {
        commands.push(format!("`python3 -m pip install {}`", pip.join(" ")));
    }
    if !rustup.is_empty() {
        commands.push(format!("`rustup component add {}`", rustup.join(" ")));
    }
    format!(
        "missing {}: install with {}, or run .ci/run",
        names.join(", "),
        commands.join(" and ")
    )
}

/// `name` in a directory of PATH, as `Command::new(name)` finds it.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `name` on PATH or in the sbin directories, as the nginx and dnsmasq tests find it.
fn on_path_or_sbin(name: &str) -> Option<PathBuf> {
    on_path(name).or_else(|| {
        ["/usr/sbin", "/sbin"]
            .iter()
            .map(|dir| Path::new(dir).join(name))
            .find(|p| p.is_file())
    })
}

/// `curl` runs and was built with HTTP/2 (the TLS test asks it for `--http2`).
fn curl_has_http2(root: &Path) -> bool {
    on_path("curl").is_some()
        && std::process::Command::new("curl")
            .arg("--version")
            .current_dir(root)
            .output()
            .is_ok_and(|out| {
                out.status.success() && String::from_utf8_lossy(&out.stdout).contains("HTTP2")
            })
}

/// The `python3` on PATH is a distribution's own, which pip must not install into (PEP 668:
/// an `EXTERNALLY-MANAGED` file next to its standard library).
fn python_is_externally_managed(root: &Path) -> bool {
    Cmd::new("python3")
        .args([
            "-c",
            "import os, sys, sysconfig; \
             sys.exit(not os.path.exists(os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED')))",
        ])
        .succeeds(root)
}

/// Whether this process runs as root (then the hint needs no `sudo`).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|ids| ids.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_names_everything_and_groups_the_commands() {
        let missing = [
            Missing {
                what: "nginx",
                fix: Fix::Apt("nginx"),
            },
            Missing {
                what: "etcd",
                fix: Fix::Apt("etcd-server"),
            },
            Missing {
                what: "python3 module prometheus_client",
                fix: Fix::Pip("prometheus-client"),
            },
        ];
        assert_eq!(
            message(&missing, false),
            "missing nginx, etcd, python3 module prometheus_client: install with `sudo apt-get install nginx etcd-server` and \
             `python3 -m pip install prometheus-client`, or run .ci/run"
        );
        assert_eq!(
            message(&missing[..1], true),
            "missing nginx: install with `apt-get install nginx`, or run .ci/run"
        );
    }
}
