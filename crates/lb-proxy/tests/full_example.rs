//! Binary upgrade and reload with the configuration most deployments have:
//! `examples/lb.toml` itself (a plain and a TLS listener, `[admin]`, an access log, two
//! upstreams), with the test's own addresses. Every scenario runs under load, on the proxy
//! listener and on the admin listener, and counts failed requests: zero, whether the
//! upgrade succeeds, the new process fails at start, is killed mid-start, or never
//! confirms.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
#![allow(clippy::print_stderr)] // the load tests report their counts

mod common;
mod process_support;
mod tls_kit;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use lb_testkit::TestBackend;
use process_support::{busy_connection, listen_addr, signal, write, Proxy, Tally, STEP};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Busy keep-alive connections of the load.
const CLIENTS: usize = 8;

/// Addresses, files and backends of one scenario.
struct Setup {
    dir: tempfile::TempDir,
    listen: SocketAddr,
    tls: SocketAddr,
    admin: SocketAddr,
    backends: Vec<TestBackend>,
    file: PathBuf,
}

/// The load: CLIENTS busy connections to the proxy listener, and a poller that opens a
/// new connection to the admin listener for every `GET /healthz`.
struct Load {
    proxy: Arc<Tally>,
    admin_ok: Arc<AtomicU64>,
    admin_failed: Arc<parking_lot::Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Setup {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let backends = TestBackend::start_many(3).await;
        let file = dir.path().join("lb.toml");
        let setup = Self {
            listen: listen_addr(),
            tls: listen_addr(),
            admin: listen_addr(),
            backends,
            file,
            dir,
        };
        setup.write("", setup.admin);
        setup
    }

    /// Writes examples/lb.toml with this scenario's addresses and `server_extra` lines in
    /// `[server]`, its admin listener on `admin`.
    fn write(&self, server_extra: &str, admin: SocketAddr) {
        self.write_admin(server_extra, Some((admin, "")));
    }

    /// As [`write`](Self::write), with `[admin]` as given: on an address with extra lines
    /// (a token), or left out.
    fn write_admin(&self, server_extra: &str, admin: Option<(SocketAddr, &str)>) {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let text = std::fs::read_to_string(examples.join("lb.toml")).unwrap();
        let table = "[admin]\nlisten = \"127.0.0.1:9901\"\n";
        assert!(text.contains(table), "examples/lb.toml has {table:?}");
        let admin_table = admin.map_or(String::new(), |(addr, extra)| {
            format!("[admin]\nlisten = \"{addr}\"\n{extra}\n")
        });
        let text = text.replacen(table, &admin_table, 1);
        let server = format!(
            "[server]\nupgrade_sock = \"{}\"\npid_file = \"{}\"\ngrace_period = \"4s\"\n{server_extra}\n",
            self.dir.path().join("upgrade.sock").display(),
            self.dir.path().join("lb.pid").display(),
        );
        let mut replaced = text.replacen("[server]\n", &server, 1);
        for (from, to) in [
            ("127.0.0.1:8080", self.listen),
            ("127.0.0.1:8443", self.tls),
            ("127.0.0.1:9001", self.backends[0].addr()),
            ("127.0.0.1:9002", self.backends[1].addr()),
            ("127.0.0.1:9003", self.backends[2].addr()),
        ] {
            assert!(replaced.contains(from), "examples/lb.toml has {from}");
            replaced = replaced.replace(from, &to.to_string());
        }
        let certs = format!("\"{}/certs/", examples.display());
        replaced = replaced.replace("\"certs/", &certs);
        write(self.dir.path(), "lb.toml", &replaced);
    }

    /// Adds an upstream whose DNS server (`silent`, which never answers) holds a start
    /// for the 5 s of its first discovery.
    fn add_silent_upstream(&self, silent: &std::net::UdpSocket) {
        let mut text = std::fs::read_to_string(&self.file).unwrap();
        text.push_str(&format!(
            "\n[upstreams.slow]\ndiscovery = {{ kind = \"dns\", name = \"slow.test\", port = 80, resolver = \"{}\" }}\n",
            silent.local_addr().unwrap()
        ));
        std::fs::write(&self.file, text).unwrap();
    }

    fn path(&self) -> &str {
        self.file.to_str().unwrap()
    }

    /// Starts the first process and waits until it serves.
    async fn start(&self) -> Proxy {
        let mut old = Proxy::start(&["-c", self.path()]);
        old.wait_for("pid file written").await;
        old
    }
}

impl Load {
    fn start(setup: &Setup) -> Self {
        let proxy = Arc::new(Tally::default());
        let stop = Arc::new(AtomicBool::new(false));
        let admin_ok = Arc::new(AtomicU64::new(0));
        let admin_failed = Arc::new(parking_lot::Mutex::new(Vec::new()));
        // Far enough to never be reached: the scenario stops the load.
        let end = tokio::time::Instant::now() + Duration::from_secs(120);
        let mut tasks: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (tally, stop, listen) = (proxy.clone(), stop.clone(), setup.listen);
                tokio::spawn(async move {
                    while !stop.load(SeqCst) && tokio::time::Instant::now() < end {
                        // One connection at a time; `Connection: close` ends it early.
                        let until = tokio::time::Instant::now() + Duration::from_millis(500);
                        if let Err(e) = busy_connection(listen, until, &tally).await {
                            tally.failed.fetch_add(1, SeqCst);
                            tally.errors.lock().push(e);
                        }
                    }
                })
            })
            .collect();
        let (ok, failed, stop2, admin) = (
            admin_ok.clone(),
            admin_failed.clone(),
            stop.clone(),
            setup.admin,
        );
        tasks.push(tokio::spawn(async move {
            while !stop2.load(SeqCst) && tokio::time::Instant::now() < end {
                match healthz(admin).await {
                    Ok(()) => {
                        ok.fetch_add(1, SeqCst);
                    }
                    Err(e) => failed.lock().push(e),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
        Self {
            proxy,
            admin_ok,
            admin_failed,
            stop,
            tasks,
        }
    }

    /// Waits until `n` more proxy requests and a few more admin requests have been
    /// answered: both listeners served in the span.
    async fn runs_for(&self, n: u64) {
        let target = self.proxy.ok.load(SeqCst) + n;
        let admin_target = self.admin_ok.load(SeqCst) + 3;
        let deadline = tokio::time::Instant::now() + STEP;
        while self.proxy.ok.load(SeqCst) < target || self.admin_ok.load(SeqCst) < admin_target {
            assert!(tokio::time::Instant::now() < deadline, "the load stalled");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the load and asserts that nothing failed.
    async fn finish(self, what: &str) {
        self.stop.store(true, SeqCst);
        for task in self.tasks {
            task.await.unwrap();
        }
        let (ok, failed) = (self.proxy.ok.load(SeqCst), self.proxy.failed.load(SeqCst));
        let admin_ok = self.admin_ok.load(SeqCst);
        let admin_failed = self.admin_failed.lock().clone();
        let errors = self.proxy.errors.lock().clone();
        eprintln!(
            "{what}: {ok} proxy requests ({failed} failed), {admin_ok} admin requests ({} failed)",
            admin_failed.len()
        );
        assert_eq!(
            failed,
            0,
            "{what}: proxy errors {:?}",
            &errors[..errors.len().min(10)]
        );
        assert!(
            admin_failed.is_empty(),
            "{what}: admin errors {:?}",
            &admin_failed[..admin_failed.len().min(10)]
        );
        assert!(
            ok > 100 && admin_ok > 3,
            "{what}: the load ran ({ok}, {admin_ok})"
        );
    }
}

/// `GET /healthz` on a new connection to the admin listener.
async fn healthz(admin: SocketAddr) -> Result<(), String> {
    let (status, _) = admin_get(admin, "/healthz").await?;
    (status == 200)
        .then_some(())
        .ok_or(format!("status {status}"))
}

/// `GET path` on a new connection to `addr`, read to the end.
async fn admin_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    admin_get_with(addr, path, None).await
}

/// `GET path` with `Authorization: Bearer token`, when given.
async fn admin_get_with(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> Result<(u16, String), String> {
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {:?}", e.kind()))?;
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
        tcp.write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut answer = String::new();
        tcp.read_to_string(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        let status = answer
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or(format!("no status line: {answer:?}"))?;
        let body = answer
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_owned();
        Ok((status, body))
    };
    tokio::time::timeout(STEP, exchange)
        .await
        .map_err(|_| format!("no answer from {addr} within {STEP:?}"))?
}

/// One keep-alive HTTP/1.1 connection to the admin listener.
struct KeptAlive {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    addr: SocketAddr,
}

impl KeptAlive {
    async fn open(addr: SocketAddr) -> Self {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let io = hyper_util::rt::TokioIo::new(tcp);
        let (sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        Self { sender, addr }
    }

    /// `GET path` on this connection: the status, or why there is none.
    async fn get(&mut self, path: &str) -> Result<u16, String> {
        let req = http::Request::get(path)
            .header(http::header::HOST, self.addr.to_string())
            .body(http_body_util::Empty::new())
            .unwrap();
        let resp = tokio::time::timeout(STEP, self.sender.send_request(req))
            .await
            .map_err(|_| format!("no answer within {STEP:?}"))?
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map_err(|e| e.to_string())?;
        Ok(status)
    }
}

/// The TLS listener answers (the example's test certificate, for www.example.com).
async fn tls_answers(tls: SocketAddr) {
    let answer = tls_kit::ClientOptions::any_cert()
        .get(tls, "www.example.com")
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
}

/// A scenario with its first process serving under load.
async fn serving() -> (Setup, Proxy, Load) {
    let setup = Setup::new().await;
    let old = setup.start().await;
    let load = Load::start(&setup);
    load.runs_for(200).await;
    (setup, old, load)
}

/// Starts `lb-proxy -u` with the scenario's file and, once it waits, sends SIGQUIT to
/// `old`: the upgrade is under way.
async fn begin_upgrade(setup: &Setup, old: &Proxy) -> Proxy {
    let mut new = Proxy::start(&["-u", "-c", setup.path()]);
    new.wait_for("waiting for the listening sockets").await;
    old.signal("QUIT");
    new
}

/// The process keeps serving after a failed upgrade: it logged why, and a second
/// upgrade, with the file fixed, succeeds.
async fn upgrade_again_succeeds(setup: &Setup, mut old: Proxy, load: Load) {
    setup.write("", setup.admin);
    let mut new = begin_upgrade(setup, &old).await;
    new.wait_for("upgrade committed").await;
    old.wait_for("drained; exiting").await;
    assert_eq!(old.exit().await.code(), Some(0));
    load.runs_for(200).await;
    load.finish("a second upgrade after a failed one").await;
    tls_answers(setup.tls).await;
    new.signal("TERM");
    assert_eq!(new.exit().await.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_with_the_full_example_hands_every_listener_over_under_load() {
    let (setup, mut old, load) = serving().await;

    let mut new = begin_upgrade(&setup, &old).await;
    new.wait_for("upgrade committed").await;
    old.wait_for("took over; draining").await;
    old.wait_for("drained; exiting").await;
    assert_eq!(old.exit().await.code(), Some(0));
    let inherited: Vec<&String> = new
        .seen
        .iter()
        .filter(|l| l.contains("on the socket of the previous process"))
        .collect();
    assert_eq!(
        inherited.len(),
        3,
        "http, tls and admin inherited: {inherited:#?}"
    );
    assert!(
        inherited.iter().any(|l| l.contains("was=admin")),
        "{inherited:#?}"
    );
    load.runs_for(300).await;
    load.finish("upgrade with the full example").await;

    tls_answers(setup.tls).await;
    let (status, body) = admin_get(setup.admin, "/status").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"api\"") && body.contains("\"web\""),
        "{body}"
    );
    let pid = std::fs::read_to_string(setup.dir.path().join("lb.pid")).unwrap();
    assert_eq!(
        pid.trim(),
        new.pid().to_string(),
        "the new process owns the pid file"
    );
    new.signal("TERM");
    assert_eq!(new.exit().await.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_process_that_fails_after_receiving_the_sockets_leaves_the_old_one_serving() {
    let (setup, mut old, load) = serving().await;

    // The new file moves the admin listener to a port another program holds.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    setup.write("", taken.local_addr().unwrap());
    let mut new = begin_upgrade(&setup, &old).await;
    new.wait_for("received the listening sockets").await;
    let why = old.wait_for("upgrade failed; still serving").await;
    assert!(
        why.contains("failed to start") && why.contains(&taken.local_addr().unwrap().to_string()),
        "{why}"
    );
    assert_ne!(
        new.exit().await.code(),
        Some(0),
        "the new process exits with an error"
    );
    load.runs_for(200).await;
    tls_answers(setup.tls).await;
    assert!(old.is_running());
    drop(taken);
    upgrade_again_succeeds(&setup, old, load).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_process_killed_mid_start_leaves_the_old_one_serving() {
    let (setup, mut old, load) = serving().await;

    // The new file adds an upstream whose DNS server never answers: its first discovery
    // holds the start for 5 s, the window the kill lands in.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    setup.add_silent_upstream(&silent);
    let mut new = begin_upgrade(&setup, &old).await;
    new.wait_for("received the listening sockets").await;
    signal(new.pid(), "KILL");
    let why = old.wait_for("upgrade failed; still serving").await;
    assert!(why.contains("closed it while waiting for ready"), "{why}");
    let _ = new.exit().await;
    load.runs_for(200).await;
    drop(silent);
    upgrade_again_succeeds(&setup, old, load).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_over_that_never_confirms_times_out_back_to_serving() {
    let setup = Setup::new().await;
    setup.write("upgrade_timeout = \"1s\"", setup.admin);
    let mut old = setup.start().await;
    let load = Load::start(&setup);
    load.runs_for(200).await;

    // The new process holds the sockets, then spends 5 s on a first discovery: longer
    // than the old one's upgrade_timeout.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    setup.add_silent_upstream(&silent);
    let mut new = begin_upgrade(&setup, &old).await;
    let why = old.wait_for("upgrade failed; still serving").await;
    assert!(why.contains("no ready within 1s"), "{why}");
    load.runs_for(200).await;
    // Started at last, it confirms to a process that gave up: no commit, so it stops.
    new.wait_for("did not take the hand-over").await;
    assert_ne!(new.exit().await.code(), Some(0));
    assert!(old.is_running());
    drop(silent);
    // The timeout is the running process's own setting, and a reload changes it.
    setup.write("", setup.admin);
    old.signal("HUP");
    old.wait_for("configuration reloaded").await;
    upgrade_again_succeeds(&setup, old, load).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_of_the_full_example_applies_admin_and_names_what_it_cannot() {
    let (setup, mut old, load) = serving().await;

    // Under load: a token on the same admin address (its socket is kept: the poller sees
    // no failure), and a thread count, which a reload cannot change.
    const TOKEN: &str = "t0k3n";
    let token = format!("token = \"{TOKEN}\"");
    // A keep-alive admin connection open across the reload: it is not served with the old
    // token afterwards (the token is read per request, and the replaced listener's
    // connections close once idle).
    let mut kept = KeptAlive::open(setup.admin).await;
    assert_eq!(kept.get("/status").await, Ok(200));
    setup.write_admin("threads = 3", Some((setup.admin, &token)));
    old.signal("HUP");
    old.wait_for("configuration reloaded").await;
    let warned = old.wait_for("not applied").await;
    assert!(warned.contains("server.threads"), "{warned}");
    load.runs_for(200).await;
    load.finish("reload of the full example").await;
    let after = kept.get("/status").await;
    assert!(
        after != Ok(200),
        "the old token no longer opens /status: {after:?}"
    );
    let (status, _) = admin_get(setup.admin, "/metrics").await.unwrap();
    assert_eq!(status, 401, "the new token is asked for");
    let (status, metrics) = admin_get_with(setup.admin, "/metrics", Some(TOKEN))
        .await
        .unwrap();
    assert_eq!(status, 200);
    for series in [
        r#"lb_config_reloads_total{result="not_applied",setting="server.threads"} 1"#,
        r#"lb_config_reloads_total{result="success"} 1"#,
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }

    // Moved: the old address closes, the new one answers.
    let moved = listen_addr();
    setup.write_admin("threads = 3", Some((moved, &token)));
    old.signal("HUP");
    old.wait_for("configuration reloaded").await;
    assert!(
        admin_get(setup.admin, "/healthz").await.is_err(),
        "the old address is closed"
    );
    assert_eq!(admin_get(moved, "/healthz").await.unwrap().0, 200);

    // Turned off, then on again.
    setup.write_admin("threads = 3", None);
    old.signal("HUP");
    old.wait_for("configuration reloaded").await;
    assert!(
        admin_get(moved, "/healthz").await.is_err(),
        "admin turned off"
    );
    setup.write_admin("threads = 3", Some((moved, "")));
    old.signal("HUP");
    old.wait_for("configuration reloaded").await;
    let (status, metrics) = admin_get(moved, "/metrics").await.unwrap();
    assert_eq!(status, 200, "admin on again, without a token");
    assert!(
        metrics.contains(
            r#"lb_config_reloads_total{result="not_applied",setting="server.threads"} 1"#
        ),
        "an unchanged thread count is not counted again: {metrics}"
    );
    tls_answers(setup.tls).await;
    old.signal("TERM");
    assert_eq!(old.exit().await.code(), Some(0));
}
