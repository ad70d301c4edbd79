//! The configuration files the soak writes: the proxy's TOML (in the variants the reloads
//! step through) and the backend file of the discovery upstream.
//!
//! Upstreams: `web` (static, HTTP health checks; a reload adds and removes a fourth
//! backend), `api` (static, TCP checks; a reload switches its selection, which rebuilds it),
//! `disc` (file discovery, TCP checks; the churn rewrites its file). Routes: `x-pool: disc`
//! to `disc`, POSTs and `/api/` to `api`, `/extra/` to `api` while a reload has added that
//! route, everything else to `web`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The fixed parts: backend addresses and file paths.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    /// The `web` backends; the last one is in the upstream only while a reload adds it.
    pub(crate) web: Vec<SocketAddr>,
    /// The `api` backends.
    pub(crate) api: Vec<SocketAddr>,
    /// The backend file of `disc` (alone in its directory: discovery watches the directory).
    pub(crate) disc_file: PathBuf,
    /// The access log.
    pub(crate) access_log: PathBuf,
}

/// What the reloads change. Reload `k` applies [`Variant::nth`]`(k)`; each differs from
/// the one before in something the proxy must act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Variant {
    /// `web` has its fourth backend.
    pub(crate) web_extra: bool,
    /// The `/extra/` route to `api` exists (else `/extra/` goes to `web`).
    pub(crate) extra_route: bool,
    /// `api` uses `least_conn` instead of `round_robin` (a change that rebuilds it).
    pub(crate) api_least_conn: bool,
}

impl Variant {
    /// The configuration in force after `k` reloads: a cycle of four.
    ///
    /// | k mod 4 | change |
    /// |---|---|
    /// | 1 | `web` gets a backend |
    /// | 2 | the `/extra/` route is added |
    /// | 3 | `web` loses the backend; `api` switches to `least_conn` (rebuilt) |
    /// | 0 | the route is removed; `api` back to `round_robin` (rebuilt) |
    pub(crate) fn nth(k: u32) -> Self {
        match k % 4 {
            0 => Self {
                web_extra: false,
                extra_route: false,
                api_least_conn: false,
            },
            1 => Self {
                web_extra: true,
                extra_route: false,
                api_least_conn: false,
            },
            2 => Self {
                web_extra: true,
                extra_route: true,
                api_least_conn: false,
            },
            _ => Self {
                web_extra: false,
                extra_route: true,
                api_least_conn: true,
            },
        }
    }

    /// What changed from `before` to this one, for the report.
    pub(crate) fn change_from(self, before: Self) -> String {
        let mut out = Vec::new();
        if self.web_extra != before.web_extra {
            out.push(if self.web_extra {
                "web +1 backend"
            } else {
                "web -1 backend"
            });
        }
        if self.extra_route != before.extra_route {
            out.push(if self.extra_route {
                "route /extra/ added"
            } else {
                "route /extra/ removed"
            });
        }
        if self.api_least_conn != before.api_least_conn {
            out.push(if self.api_least_conn {
                "api least_conn (rebuilt)"
            } else {
                "api round_robin (rebuilt)"
            });
        }
        out.join(", ")
    }
}

/// The proxy's configuration for `variant`.
pub(crate) fn proxy(layout: &Layout, variant: Variant) -> String {
    let web_count = if variant.web_extra {
        layout.web.len()
    } else {
        layout.web.len() - 1
    };
    let list = |addrs: &[SocketAddr]| {
        addrs
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "# Written by lb-soak (cargo xtask soak).\n\
         [server]\n\
         listen = [\"127.0.0.1:0\"]\n\
         threads = 2\n\
         grace_period = \"2s\"\n\
         log_format = \"json\"\n\
         \n\
         [admin]\n\
         listen = \"127.0.0.1:0\"\n\
         \n\
         [access_log]\n\
         path = \"{access_log}\"\n\
         format = \"json\"\n\
         \n\
         [upstreams.web]\n\
         backends = [{web}]\n\
         health_check = {{ kind = \"http\", path = \"/healthz\", interval = \"1s\", timeout = \"500ms\" }}\n\
         \n\
         [upstreams.api]\n\
         selection = \"{api_selection}\"\n\
         backends = [{api}]\n\
         health_check = {{ kind = \"tcp\", interval = \"1s\" }}\n\
         \n\
         [upstreams.disc]\n\
         selection = \"p2c\"\n\
         discovery = {{ kind = \"file\", path = \"{disc}\" }}\n\
         health_check = {{ kind = \"tcp\", interval = \"500ms\" }}\n\
         \n\
         [[routes]]\n\
         upstream = \"disc\"\n\
         headers = [{{ name = \"x-pool\", value = \"disc\" }}]\n\
         \n\
         [[routes]]\n\
         upstream = \"api\"\n\
         methods = [\"POST\"]\n\
         \n\
         [[routes]]\n\
         upstream = \"api\"\n\
         path_prefix = \"/api/\"\n\
         \n",
        access_log = layout.access_log.display(),
        web = list(&layout.web[..web_count]),
        api_selection = if variant.api_least_conn {
            "least_conn"
        } else {
            "round_robin"
        },
        api = list(&layout.api),
        disc = layout.disc_file.display(),
    );
    if variant.extra_route {
        out.push_str(
            "[[routes]]\n\
             upstream = \"api\"\n\
             path_prefix = \"/extra/\"\n\
             request_headers = { set = { \"x-soak-route\" = \"extra\" } }\n\
             \n",
        );
    }
    out.push_str("[[routes]]\nupstream = \"web\"\n");
    out
}

/// One entry of the discovery file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DiscEntry {
    /// The backend.
    pub(crate) addr: SocketAddr,
    /// Its weight.
    pub(crate) weight: u32,
    /// `enabled = false` keeps it listed but out of selection.
    pub(crate) enabled: bool,
}

/// The discovery file listing `entries`.
pub(crate) fn disc(entries: &[DiscEntry]) -> String {
    let items: Vec<String> = entries
        .iter()
        .map(|e| {
            format!(
                "  {{ addr = \"{}\", weight = {}, enabled = {} }},\n",
                e.addr, e.weight, e.enabled
            )
        })
        .collect();
    format!("backends = [\n{}]\n", items.concat())
}

/// Replaces `path` with `text` atomically (a new file renamed over it), as deployment tools
/// do: the proxy never reads a half-written file.
pub(crate) fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reload_changes_something() {
        for k in 1..=8 {
            let change = Variant::nth(k).change_from(Variant::nth(k - 1));
            assert!(!change.is_empty(), "reload {k} changes nothing");
        }
    }

    #[test]
    fn variants_differ_where_they_say() {
        let layout = Layout {
            web: vec![
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap(),
            ],
            api: vec!["127.0.0.1:3".parse().unwrap()],
            disc_file: "/d/b.toml".into(),
            access_log: "/l/a.log".into(),
        };
        let base = proxy(&layout, Variant::nth(0));
        assert!(base.contains("backends = [\"127.0.0.1:1\"]"), "{base}");
        assert!(!base.contains("/extra/"));
        let more = proxy(&layout, Variant::nth(2));
        assert!(more.contains("backends = [\"127.0.0.1:1\", \"127.0.0.1:2\"]"));
        assert!(more.contains("path_prefix = \"/extra/\""));
        assert!(proxy(&layout, Variant::nth(3)).contains("least_conn"));
        let file = disc(&[DiscEntry {
            addr: "127.0.0.1:4".parse().unwrap(),
            weight: 2,
            enabled: false,
        }]);
        assert_eq!(
            file,
            "backends = [\n  { addr = \"127.0.0.1:4\", weight = 2, enabled = false },\n]\n"
        );
    }
}
