//! Talks to the proxy's admin listener: `GET /status` (JSON), `GET /metrics` (Prometheus
//! text, parsed with a real parser) and `POST /reload`, each on a fresh HTTP/1.1 connection
//! and under a timeout.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Every admin call is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(10);

/// `method path` on the admin listener at `addr`: the status and the body.
pub(crate) async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
) -> anyhow::Result<(u16, String)> {
    tokio::time::timeout(TIMEOUT, call_unbounded(addr, method, path))
        .await
        .with_context(|| format!("{method} {path}: no answer within {TIMEOUT:?}"))?
}

async fn call_unbounded(
    addr: SocketAddr,
    method: &str,
    path: &str,
) -> anyhow::Result<(u16, String)> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to the admin listener {addr}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// `GET /status`, parsed.
pub(crate) async fn status(addr: SocketAddr) -> anyhow::Result<Value> {
    let (code, body) = call(addr, "GET", "/status").await?;
    if code != 200 {
        bail!("GET /status: {code}: {body}");
    }
    serde_json::from_str(&body).context("GET /status: not JSON")
}

/// The backends of upstream `name` in a `/status` answer.
pub(crate) fn backends<'a>(status: &'a Value, name: &str) -> &'a [Value] {
    status["upstreams"]
        .as_array()
        .and_then(|ups| ups.iter().find(|u| u["name"] == name))
        .and_then(|u| u["backends"].as_array())
        .map_or(&[], Vec::as_slice)
}

/// `GET /metrics`, parsed.
pub(crate) async fn metrics(addr: SocketAddr) -> anyhow::Result<Metrics> {
    let (code, body) = call(addr, "GET", "/metrics").await?;
    if code != 200 {
        bail!("GET /metrics: {code}: {body}");
    }
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).context("GET /metrics: not parsable")?;
    Ok(Metrics(scrape))
}

/// A parsed `/metrics` answer.
pub(crate) struct Metrics(prometheus_parse::Scrape);

impl Metrics {
    /// The sum of the samples of `metric` whose labels include `labels`.
    pub(crate) fn sum(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .samples
            .iter()
            .filter(|s| s.metric == metric)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    }

    /// `lb_config_reloads_total` with `result` (`success` or `failure`).
    pub(crate) fn reloads(&self, result: &str) -> u64 {
        self.sum("lb_config_reloads_total", &[("result", result)]) as u64
    }
}
