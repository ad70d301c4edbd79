//! The configuration reloads: every period the proxy's file is rewritten with the next
//! [`Variant`] and the proxy told to reload, alternately by SIGHUP and by `POST /reload`.
//! Each reload is checked from the outside: `lb_config_reloads_total{result="success"}`
//! counts it (and `failure` stays 0), `/status` shows `web` with the backends the file
//! lists, and a probe of `/extra/` is answered by the upstream the routes now name.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use nix::sys::signal::Signal;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::admin;
use crate::config::{self, Layout, Variant};
use crate::proxy::ProxyChild;

/// A reload must be counted in the metrics within this.
const APPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// One reload and what became of it.
#[derive(Debug)]
pub(crate) struct Reload {
    /// Its number, from 1.
    pub(crate) k: u32,
    /// When it started, from the start of the load.
    pub(crate) at: Duration,
    /// `SIGHUP` or `POST /reload`.
    pub(crate) via: &'static str,
    /// What the new file changed.
    pub(crate) change: String,
    /// From the signal or request to the reload being counted and checked.
    pub(crate) took: Duration,
    /// Why it failed, if it did.
    pub(crate) error: Option<String>,
}

/// Drives the reloads.
pub(crate) struct Reloader<'a> {
    /// The configuration file.
    pub(crate) file: PathBuf,
    /// Backend addresses and paths.
    pub(crate) layout: Layout,
    /// The proxy (for SIGHUP).
    pub(crate) proxy: &'a ProxyChild,
    /// Its admin listener.
    pub(crate) admin: SocketAddr,
    /// Its plain listener (for the probe).
    pub(crate) listen: SocketAddr,
}

impl Reloader<'_> {
    /// Reloads at each of `times` after `start`, until `stop` is cancelled.
    pub(crate) async fn run(
        &self,
        start: Instant,
        times: &[Duration],
        stop: CancellationToken,
    ) -> Vec<Reload> {
        let mut done = Vec::new();
        for (k, at) in (1..).zip(times) {
            tokio::select! {
                () = tokio::time::sleep_until(start + *at) => {}
                () = stop.cancelled() => break,
            }
            let via = if k % 2 == 1 { "SIGHUP" } else { "POST /reload" };
            let variant = Variant::nth(k);
            let change = variant.change_from(Variant::nth(k - 1));
            let started = Instant::now();
            let error = self
                .reload(k, variant)
                .await
                .err()
                .map(|e| format!("{e:#}"));
            done.push(Reload {
                k,
                at: started.duration_since(start),
                via,
                change,
                took: started.elapsed(),
                error,
            });
        }
        done
    }

    async fn reload(&self, k: u32, variant: Variant) -> anyhow::Result<()> {
        config::write_atomic(&self.file, &config::proxy(&self.layout, variant))?;
        if k % 2 == 1 {
            self.proxy.signal(Signal::SIGHUP)?;
        } else {
            let (code, body) = admin::call(self.admin, "POST", "/reload").await?;
            if code != 200 {
                bail!("POST /reload answered {code}: {body}");
            }
        }
        // SIGHUP has no answer: wait for the counter (POST answered after the swap, so
        // this returns at once for it).
        let deadline = Instant::now() + APPLY_TIMEOUT;
        loop {
            let metrics = admin::metrics(self.admin).await?;
            let (ok, failed) = (metrics.reloads("success"), metrics.reloads("failure"));
            if failed > 0 {
                bail!("lb_config_reloads_total{{result=\"failure\"}} = {failed}");
            }
            if ok >= u64::from(k) {
                break;
            }
            if Instant::now() >= deadline {
                bail!("reload {k} not counted within {APPLY_TIMEOUT:?} (success = {ok})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.check(variant).await
    }

    /// The new configuration is the one in force: `web`'s backends and `/extra/`'s upstream.
    async fn check(&self, variant: Variant) -> anyhow::Result<()> {
        let status = admin::status(self.admin).await?;
        let web = admin::backends(&status, "web").len();
        let want = if variant.web_extra {
            self.layout.web.len()
        } else {
            self.layout.web.len() - 1
        };
        if web != want {
            bail!("/status lists {web} web backends, the file {want}");
        }
        let backend = probe(self.listen, "/extra/probe").await?;
        let want = if variant.extra_route { 'a' } else { 'w' };
        if !backend.starts_with(want) {
            bail!("/extra/probe answered by {backend:?}, not an upstream-{want} backend");
        }
        Ok(())
    }
}

/// GET `path` through the proxy on a fresh connection: the `x-backend` that answered.
async fn probe(listen: SocketAddr, path: &str) -> anyhow::Result<String> {
    let run = async {
        let tcp = tokio::net::TcpStream::connect(listen).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = http::Request::get(path)
            .header(http::header::HOST, listen.to_string())
            .body(Empty::<Bytes>::new())?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let backend = resp
            .headers()
            .get("x-backend")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        resp.into_body().collect().await?;
        if status != 200 {
            bail!("probe {path}: {status}");
        }
        Ok(backend)
    };
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .context("probe: no answer within 10s")?
}
