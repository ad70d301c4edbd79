//! Compatibility with a real nginx: the same backends behind nginx and behind lb-proxy, and
//! every key must reach the same backend through both.
//!
//! Needs the `nginx` binary (Debian package `nginx`; `.ci/run` installs it). Covers
//! `hash $arg_k consistent` with equal and unequal weights, an IPv6 server and a server
//! removed; `hash $arg_k`; `ip_hash` (client addresses set through nginx's realip module);
//! and the smooth weighted round-robin sequence for two weight sets. The configuration
//! lists servers in an order different from their address order, which nginx's `hash`,
//! `ip_hash` and round-robin tie-breaking depend on.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{free_port, Harness};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use lb_proxy::config::Config;
use lb_proxy::Upstream;
use lb_testkit::TestBackend;

/// A server line: the backend index and its weight.
type Server = (usize, u32);

struct Nginx {
    child: Child,
    port: u16,
    _dir: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `nginx` binary on PATH or in the sbin directories (Debian puts it in `/usr/sbin`,
/// which is not on a non-root user's PATH); the lookup `cargo xtask ci`'s preflight makes.
fn nginx_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join("nginx"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("the nginx tests need the `nginx` binary: install it with `apt-get install nginx` (.ci/run does)")
        })
}

/// The text a server is configured with (nginx and lb-proxy use the same).
fn server_text(addr: SocketAddr) -> String {
    addr.to_string() // IPv6 keeps its brackets: "[::1]:port"
}

impl Nginx {
    async fn start(method: &str, servers: &[(String, u32)], extra_http: &str) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("nginx-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let lines: String = servers
            .iter()
            .map(|(text, w)| format!("        server {text} weight={w};\n"))
            .collect();
        let d = dir.display();
        let conf = format!(
            "worker_processes 1;\ndaemon off;\nmaster_process off;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nevents {{ worker_connections 256; }}\n\
             http {{\n    access_log off;\n    client_body_temp_path {d}/cb;\n    proxy_temp_path {d}/pt;\n\
                 fastcgi_temp_path {d}/ft;\n    uwsgi_temp_path {d}/ut;\n    scgi_temp_path {d}/st;\n\
                 {extra_http}\n    upstream u {{\n        {method}\n{lines}    }}\n\
                 server {{\n        listen 127.0.0.1:{port};\n        location / {{\n\
                 proxy_pass http://u;\n            proxy_next_upstream off;\n        }}\n    }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run nginx ({e}): install it with `apt-get install nginx` (.ci/run does)")
            });
        let mut nginx = Self {
            child,
            port,
            _dir: dir,
        };
        // nginx gives no readiness signal we can await: poll its port, bounded.
        let deadline = Instant::now() + Duration::from_secs(15);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Some(status) = nginx.child.try_wait().unwrap() {
                panic!("nginx exited with {status} (its error output is above)");
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen within 15 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        nginx
    }
}

async fn body(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: String,
    real_ip: Option<IpAddr>,
) -> String {
    let mut req = Request::get(url);
    if let Some(ip) = real_ip {
        req = req.header("x-real-ip", ip.to_string());
    }
    let resp = client
        .request(req.body(Full::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

/// Backends b0..b(n-1); the last listens on IPv6 loopback when `ipv6` is set.
async fn backends(n: usize, ipv6: bool) -> Vec<TestBackend> {
    let mut out = Vec::new();
    for i in 0..n {
        let addr = if ipv6 && i == n - 1 {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        };
        out.push(TestBackend::start_on(&format!("b{i}"), addr.parse().unwrap()).await);
    }
    out
}

/// The servers in configuration order: highest address first, so the written order differs
/// from the sorted order.
fn written(backends: &[TestBackend], servers: &[Server]) -> Vec<(String, u32)> {
    let mut s: Vec<_> = servers
        .iter()
        .map(|&(i, w)| (backends[i].addr(), w))
        .collect();
    s.sort_by_key(|e| std::cmp::Reverse(e.0));
    s.into_iter().map(|(a, w)| (server_text(a), w)).collect()
}

fn lb_toml(selection: &str, extra: &str, servers: &[(String, u32)]) -> String {
    let list: Vec<String> = servers
        .iter()
        .map(|(t, w)| format!("{{ addr = \"{t}\", weight = {w} }}"))
        .collect();
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[upstreams.u]\nselection = \"{selection}\"\n{extra}\nbackends = [{}]\n\n[[routes]]\nupstream = \"u\"\n",
        list.join(", ")
    )
}

fn keys() -> Vec<String> {
    let mut keys: Vec<String> = (0..1000).map(|i| format!("key-{i}")).collect();
    keys.extend([
        "".to_owned(),
        "a".repeat(300),
        "user-42".into(),
        "%2Fpath".into(),
    ]);
    keys
}

/// Asserts nginx (`method`) and lb-proxy (`selection` + `extra`) agree on every key.
async fn same_mapping(
    method: &str,
    selection: &str,
    extra: &str,
    backends: &[TestBackend],
    servers: &[Server],
) {
    let list = written(backends, servers);
    let nginx = Nginx::start(method, &list, "").await;
    let (ours, _events) = Harness::start(&lb_toml(selection, extra, &list)).await;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let mut spread = std::collections::BTreeMap::new();
    for k in keys() {
        let theirs = body(
            &client,
            format!("http://127.0.0.1:{}/?k={k}", nginx.port),
            None,
        )
        .await;
        let mine = body(&client, ours.url(&format!("/?k={k}")), None).await;
        assert_eq!(
            mine, theirs,
            "key {k:?}: nginx `{method}` chose {theirs}, lb-proxy {mine} ({list:?})"
        );
        *spread.entry(mine).or_insert(0) += 1;
    }
    assert!(
        spread.len() > 1,
        "keys spread over the backends: {spread:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hashing_maps_every_key_like_nginx() {
    let b = backends(5, true).await;
    let method = "hash $arg_k consistent;";
    let extra = "hash_key = \"query:k\"";
    same_mapping(
        method,
        "consistent",
        extra,
        &b,
        &[(0, 1), (1, 1), (2, 1), (3, 1), (4, 1)],
    )
    .await;
    same_mapping(
        method,
        "consistent",
        extra,
        &b,
        &[(0, 1), (1, 2), (2, 3), (3, 1), (4, 5)],
    )
    .await;
    // One server removed: still identical (and only its keys moved, by the ring property).
    same_mapping(
        method,
        "consistent",
        extra,
        &b,
        &[(0, 1), (1, 2), (3, 1), (4, 5)],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_hash_maps_every_key_like_nginx() {
    let b = backends(5, true).await;
    same_mapping(
        "hash $arg_k;",
        "hash",
        "hash_key = \"query:k\"",
        &b,
        &[(0, 1), (1, 3), (2, 1), (3, 2), (4, 1)],
    )
    .await;
    same_mapping(
        "hash $arg_k;",
        "hash",
        "hash_key = \"query:k\"",
        &b,
        &[(0, 1), (1, 1), (2, 1)],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_hash_maps_every_client_like_nginx() {
    let b = backends(4, true).await;
    let list = written(&b, &[(0, 1), (1, 2), (2, 1), (3, 3)]);
    let realip = "set_real_ip_from 127.0.0.1;\n    real_ip_header X-Real-IP;";
    let nginx = Nginx::start("ip_hash;", &list, realip).await;
    let config = Config::from_toml_str(&lb_toml("ip_hash", "", &list), "ip_hash.toml").unwrap();
    let ours = Upstream::new("u", &config.upstreams["u"]).unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http();
    let mut clients: Vec<IpAddr> = (0..800u32)
        .map(|i| {
            IpAddr::from([
                (i * 7 % 223 + 1) as u8,
                (i * 13 % 256) as u8,
                (i % 256) as u8,
                9,
            ])
        })
        .collect();
    clients.extend(
        (0..200u16).map(|i| IpAddr::from([0x2001, 0xdb8, i, 0, 0, 0, i.wrapping_mul(31), 1])),
    );
    for ip in clients {
        let theirs = body(
            &client,
            format!("http://127.0.0.1:{}/", nginx.port),
            Some(ip),
        )
        .await;
        let octets: Vec<u8> = match ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        let picked = ours.balancer().select(&octets, 256).unwrap(); // the proxy tries at most 256
        let mine = b
            .iter()
            .find(|t| t.addr() == picked.addr().as_inet().unwrap())
            .unwrap()
            .name();
        assert_eq!(
            mine, theirs,
            "client {ip}: nginx ip_hash chose {theirs}, lb {mine}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smooth_weighted_round_robin_sequence_is_nginx_sequence() {
    for weights in [&[5u32, 1, 1][..], &[3, 2, 1, 4], &[1, 1, 1]] {
        let b = backends(weights.len(), false).await;
        let servers: Vec<Server> = weights.iter().copied().enumerate().collect();
        let list = written(&b, &servers);
        let nginx = Nginx::start("", &list, "").await;
        let (ours, _events) = Harness::start(&lb_toml("round_robin", "", &list)).await;
        let client = Client::builder(TokioExecutor::new()).build_http();
        let total: u32 = weights.iter().sum::<u32>() * 2;
        let mut theirs = Vec::new();
        let mut mine = Vec::new();
        for _ in 0..total {
            theirs.push(body(&client, format!("http://127.0.0.1:{}/", nginx.port), None).await);
            mine.push(body(&client, ours.url("/"), None).await);
        }
        assert_eq!(mine, theirs, "weights {weights:?} written as {list:?}");
    }
}
