#!/usr/bin/env bash
# bench/peers.sh - side-by-side reverse-proxy benchmark on loopback (127.0.0.1 only), by scenario.
#
# The project's copy of ../shared/bench/peers.sh (same structure, same process-group cleanup, same
# bounded loads), extended with the scenarios of issue 8. `cargo xtask bench` runs it with LB_CMD set
# to the release lb-proxy; see docs/benchmarks.md for the configurations and how to read the tables.
#
# Usage:
#   bash bench/peers.sh                                   # every scenario, direct vs nginx, haproxy, pingora
#   SCENARIOS="keepalive tls" LB_NAME=lb-proxy \
#   LB_CMD='exec ./target/release/lb-proxy -c "$LB_CONFIG"' bash bench/peers.sh
#
# Scenarios (SCENARIOS, space-separated, in this order by default):
#   keepalive    HTTP/1.1 keep-alive both sides, 13-byte responses, 3 backends, WORKERS workers (1)
#   keepalive2   the same with 2 workers per proxy
#   close        a new client connection per request (wrk -H 'Connection: close'), keep-alive upstream
#   body16k      16 KiB responses          body1m   1 MiB responses (streaming throughput)
#   tls          HTTPS termination, TLS 1.3 only, self-signed P-256 certificate made with openssl
#                (pingora skipped: the peer has no TLS listener)
#   h2           HTTP/2 downstream (h2c prior knowledge, h2load -m 10), HTTP/1.1 upstream
#                (pingora skipped: the peer serves HTTP/1.1 only)
#   hash100      consistent hashing on header x-key over 100 backends, 1,000 distinct keys
#                (pingora skipped: the peer is round robin only)
#   post         POST with a 1 KiB body (wrk Lua script), keep-alive both sides, 13-byte responses
#   post64k      the same with 64 KiB bodies (the streaming path; nginx buffers them to disk, its default)
#   fwd          keep-alive with forwarding headers: lb-proxy at its defaults (X-Forwarded-For,
#                X-Forwarded-Proto, X-Real-IP), nginx and HAProxy told to add the same three
#                (pingora skipped: the peer adds none)
#   idle         RSS idle and with 1,000 idle keep-alive client connections (no load)
#   idletls      the same over TLS 1.3 (pingora skipped: the peer has no TLS listener)
#
# Parameters (env): DURATION=10 (s per run)  CONNS=64  ROUNDS=3  THREADS=1 (wrk/h2load threads)
#   WORKERS=1 (workers of every proxy, except keepalive2: 2)  WARMUP=2 (s per target)
#   H2_N=100000 (requests per h2load run)  IDLE_CONNS=1000  PEERS="nginx haproxy pingora"
#   KEEP_WORKDIR=1 keeps configs/logs  PEERS_CACHE=~/.cache/lb-bench-peers (the pingora peer, built once)
# LB_CMD runs under `bash -c` in the current directory, in the foreground, with LB_PORT, LB_BACKENDS
#   (host:port,...), LB_WORKERS, LB_SCENARIO, LB_CONFIG (an lb-proxy TOML file written for the
#   scenario: listener, TLS, upstream, selection, forwarding headers off like the peers) and
#   LB_TLS_CERT/LB_TLS_KEY set; it must answer on 127.0.0.1:$LB_PORT within LB_START_TIMEOUT=30 s.
# The tables go to stdout, progress to stderr. Every process started here is stopped on exit.
set -euo pipefail

DURATION=${DURATION:-10} CONNS=${CONNS:-64} ROUNDS=${ROUNDS:-3} THREADS=${THREADS:-1}
WORKERS=${WORKERS:-1} WARMUP=${WARMUP:-2} H2_N=${H2_N:-100000} IDLE_CONNS=${IDLE_CONNS:-1000}
LB_START_TIMEOUT=${LB_START_TIMEOUT:-30}
SCENARIOS=${SCENARIOS:-"keepalive keepalive2 close post post64k fwd body16k body1m tls h2 hash100 idle idletls"}
PEERS=${PEERS-"nginx haproxy pingora"} LB_NAME=$(printf %s "${LB_NAME:-lb}" | tr -c 'A-Za-z0-9_-' _)
PEERS_CACHE=${PEERS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lb-bench-peers}
PG_DIR=$PEERS_CACHE/pingora-lb PG_BIN=$PEERS_CACHE/pingora-lb/target/release/pingora-lb

log() { echo "[peers $(date +%T)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
for v in DURATION CONNS ROUNDS THREADS WORKERS WARMUP H2_N IDLE_CONNS LB_START_TIMEOUT; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer"
done
((DURATION >= 1 && ROUNDS >= 1 && THREADS >= 1 && WORKERS >= 1 && CONNS >= THREADS && H2_N >= CONNS)) || die "bad parameters"
for p in $PEERS; do [[ $p =~ ^(nginx|haproxy|pingora)$ ]] || die "unknown peer '$p'"; done
for s in $SCENARIOS; do
  [[ $s =~ ^(keepalive|keepalive2|close|post|post64k|fwd|body16k|body1m|tls|h2|hash100|idle|idletls)$ ]] || die "unknown scenario '$s'"
done
has_peer() { [[ " $PEERS " == *" $1 "* ]]; }
# 1,000 idle connections through a proxy need twice as many descriptors, and more for the backends.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ------------------------------------------------------------------ install what is missing
SUDO=; ((EUID == 0)) || SUDO=sudo; APT_UPDATED=0
apt_install() {
  (($#)) || return 0
  log "apt-get install $*"
  ((APT_UPDATED)) || { $SUDO apt-get update -qq >&2; APT_UPDATED=1; }
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >&2
}
missing() { local pair out=(); for pair; do command -v "${pair%%:*}" >/dev/null || out+=("${pair#*:}"); done; echo "${out[@]}"; }
# shellcheck disable=SC2046
apt_install $(missing nginx:nginx haproxy:haproxy wrk:wrk h2load:nghttp2-client curl:curl openssl:openssl python3:python3)

# ------------------------------------------------------------------ pingora peer (small, ours)
write_pingora_src() {
  mkdir -p "$1/src"
  cat >"$1/Cargo.toml" <<'EOF'
[package]
name = "pingora-lb"
version = "0.1.0"
edition = "2021"
[dependencies]
pingora = { version = "=0.9.1", features = ["lb", "openssl"] }
async-trait = "0.1"
[profile.release]
lto = "thin"
EOF
  cat >"$1/src/main.rs" <<'EOF'
// Standard Pingora round-robin load balancer: plain HTTP upstreams, TCP health check every 1 s.
// usage: pingora-lb LISTEN_ADDR THREADS RUN_DIR BACKEND [BACKEND...]
use async_trait::async_trait;
use pingora::lb::{health_check::TcpHealthCheck, selection::RoundRobin, LoadBalancer};
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use pingora::services::background::background_service;
use std::{sync::Arc, time::Duration};
struct Lb(Arc<LoadBalancer<RoundRobin>>);
#[async_trait]
impl ProxyHttp for Lb {
    type CTX = ();
    fn new_ctx(&self) {}
    async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> Result<Box<HttpPeer>> {
        let up = self.0.select(b"", 256).ok_or_else(|| Error::new(ErrorType::ConnectNoRoute))?;
        Ok(Box::new(HttpPeer::new(up, false, String::new())))
    }
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    assert!(a.len() >= 4, "usage: pingora-lb LISTEN_ADDR THREADS RUN_DIR BACKEND [BACKEND...]");
    let mut conf = ServerConf::default();
    conf.threads = a[1].parse().expect("THREADS must be a number");
    conf.pid_file = format!("{}/pingora.pid", a[2]);
    conf.upgrade_sock = format!("{}/pingora_upgrade.sock", a[2]);
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut ups = LoadBalancer::try_from_iter(a[3..].iter().map(|s| s.as_str())).unwrap();
    ups.set_health_check(TcpHealthCheck::new());
    ups.health_check_frequency = Some(Duration::from_secs(1));
    let bg = background_service("health check", ups);
    let mut lb = http_proxy_service(&server.configuration, Lb(bg.task()));
    lb.add_tcp(&a[0]);
    server.add_service(bg);
    server.add_service(lb);
    server.run_forever();
}
EOF
}
if has_peer pingora; then
  src=$(mktemp -d)
  write_pingora_src "$src"
  if [[ -x $PG_BIN ]] && cat "$src/Cargo.toml" "$src/src/main.rs" | cmp -s - "$PG_DIR/built-from"; then
    log "pingora peer already built: $PG_BIN"
  else
    command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain, or set PEERS without pingora"
    # shellcheck disable=SC2046
    apt_install $(missing cc:build-essential make:make perl:perl cmake:cmake pkg-config:pkg-config)
    mkdir -p "$PG_DIR" && cp -r "$src"/. "$PG_DIR"/
    log "building the pingora peer in $PG_DIR (first time: 4-6 min on 2 cores)"
    (cd "$PG_DIR" && CARGO_TARGET_DIR="$PG_DIR/target" timeout 3600 cargo build --release --quiet) >&2 ||
      die "pingora peer build failed"
    cat "$src/Cargo.toml" "$src/src/main.rs" >"$PG_DIR/built-from" # stamp: what the binary was built from
  fi
  rm -rf "$src"
fi

# ------------------------------------------------------------------ process bookkeeping
W=$(mktemp -d "${TMPDIR:-/tmp}/peers.XXXXXX") && chmod 755 "$W" && mkdir -p "$W/tmp" "$W/www"
declare -A PGID PORT; PIDS=() USED=" "
# Each process gets its own session and process group (setsid), so its whole tree can be stopped.
start() { local name=$1; shift; setsid "$@" >"$W/$name.log" 2>&1 & PGID[$name]=$!; PIDS+=("$!"); }
any_alive() { local p; for p in "${PIDS[@]}"; do kill -0 -- "-$p" 2>/dev/null || kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
stop_all() { # $1 = signal, then wait up to 3 s
  local p
  for p in "${PIDS[@]}"; do kill "-$1" -- "-$p" 2>/dev/null || kill "-$1" "$p" 2>/dev/null || true; done
  for p in $(seq 30); do any_alive || return 0; sleep 0.1; done
  return 1
}
stop_scenario() { # every process of the scenario, gently first; then the list starts afresh
  if ((${#PIDS[@]})); then stop_all INT || stop_all TERM || stop_all KILL || true; fi
  PIDS=() USED=" "; PGID=(); PORT=()
}
cleanup() {
  trap - EXIT INT TERM
  if ((${#PIDS[@]})); then stop_all INT || stop_all TERM || stop_all KILL || true; fi
  if [[ ${KEEP_WORKDIR:-0} == 1 ]]; then log "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT; trap 'exit 130' INT TERM

alloc_port() { # $1 = variable to set: a random free port below the usual ephemeral range
  local p
  for _ in $(seq 500); do
    p=$((20000 + RANDOM % 12000))
    [[ $USED == *" $p "* ]] && continue
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
    USED+="$p "; printf -v "$1" %s "$p"; return 0
  done
  die "no free port found"
}
group_pids() { ps -e -o pid=,pgid= | awk -v g="$1" '$2 == g { print $1 }'; }
cpu_ticks() { # utime + stime of every process in the group (all threads)
  local t=0 p v
  for p in $(group_pids "$1"); do v=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 }'); t=$((t + ${v:-0})); done
  echo "$t"
}
rss_kib() { local t=0 p v; for p in $(group_pids "$1"); do v=$(awk '/^VmRSS/ { print $2 }' "/proc/$p/status" 2>/dev/null); t=$((t + ${v:-0})); done; echo "$t"; }
url() { echo "$SCHEME://127.0.0.1:${PORT[$1]}$2"; }
wait_ready() { # name timeout_s: the target is up and answers the backend's body
  local body proto=()
  [[ $LOAD == h2load ]] && proto=(--http2-prior-knowledge)
  for _ in $(seq $(($2 * 10))); do
    kill -0 "${PGID[$1]}" 2>/dev/null || die "$1 exited during startup: $(tail -n 5 "$W/$1.log")"
    body=$(curl -kfsS "${proto[@]}" --max-time 1 "$(url "$1" /)" 2>/dev/null) && [[ $body == "hello, world" ]] && return 0
    sleep 0.1
  done
  die "$1 not ready on port ${PORT[$1]} after $2 s: $(tail -n 5 "$W/$1.log")"
}

# ------------------------------------------------------------------ fixed inputs
head -c 16384 /dev/zero | tr '\0' 'a' >"$W/www/16k"
head -c 1048576 /dev/zero | tr '\0' 'b' >"$W/www/1m"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$W/key.pem" -out "$W/cert.pem" 2>/dev/null ||
  die "openssl could not make a certificate"
cat "$W/cert.pem" "$W/key.pem" >"$W/combined.pem"
cat >"$W/keys.lua" <<'EOF'
-- 1,000 distinct x-key values, one per request in turn (precomputed: no formatting per request)
local reqs, i = {}, 0
init = function(args)
  for k = 1, 1000 do reqs[k] = wrk.format("GET", "/", { ["x-key"] = "user-" .. k }) end
end
request = function()
  i = i % 1000 + 1
  return reqs[i]
end
EOF
for n in 1024 65536; do # post1024.lua, post65536.lua: POST / with an n-byte body on every request
  cat >"$W/post$n.lua" <<EOF
wrk.method = "POST"
wrk.body = string.rep("p", $n)
wrk.headers["Content-Type"] = "application/octet-stream"
EOF
done
cat >"$W/idle.py" <<'EOF'
# Opens N keep-alive connections to 127.0.0.1:PORT one after the other (over TLS when SCHEME is
# https, no certificate check), each sending one GET and reading the answer (so the proxy needs
# one upstream connection, not N), then writes READY_FILE and holds them all open for HOLD
# seconds (the script measures RSS meanwhile).
import socket, ssl, sys, time
port, n, ready, hold = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
tls = len(sys.argv) > 5 and sys.argv[5] == "https"
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["http/1.1"])
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    if tls:
        s = ctx.wrap_socket(s, server_hostname="localhost")
    s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
    data = b""
    while not data.endswith(b"hello, world\n"):
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("connection closed before the answer")
        data += chunk
    socks.append(s)
open(ready, "w").write("ok")
time.sleep(hold)
EOF

# ------------------------------------------------------------------ configurations per scenario
nginx_conf() { # name workers server-blocks
  cat <<EOF
worker_processes $2;
worker_rlimit_nofile 65536;
daemon off;
pid $W/$1.pid;
error_log $W/$1-error.log warn;
events { worker_connections $((CONNS * 4 + IDLE_CONNS * 2 + 512)); }
http {
  access_log off; keepalive_requests 1000000; keepalive_timeout 60s;
  client_body_temp_path $W/tmp/$1-body; proxy_temp_path $W/tmp/$1-proxy; fastcgi_temp_path $W/tmp/$1-fcgi;
  uwsgi_temp_path $W/tmp/$1-uwsgi; scgi_temp_path $W/tmp/$1-scgi;
$3
}
EOF
}
setup_scenario() { # $1 = scenario: sets the globals below, starts the backend and every target
  local s=$1 b i
  S_WORKERS=$WORKERS NB=3 REQ_PATH=/ SCHEME=http LOAD=wrk WRK_ARGS=() SELECT=round_robin NOTE= FWD=0
  case $s in
    keepalive2) S_WORKERS=2 ;;
    close) WRK_ARGS=(-H "Connection: close") ;;
    body16k) REQ_PATH=/16k ;;
    body1m) REQ_PATH=/1m ;;
    tls) SCHEME=https ;;
    h2) LOAD=h2load ;;
    hash100) NB=100 SELECT=consistent WRK_ARGS=(-s "$W/keys.lua") ;;
    post) WRK_ARGS=(-s "$W/post1024.lua") ;;
    post64k) WRK_ARGS=(-s "$W/post65536.lua") ;;
    fwd) FWD=1 ;;
    idle) LOAD=none ;;
    idletls) LOAD=none SCHEME=https ;;
  esac
  BACKEND_PORTS=()
  for i in $(seq "$NB"); do alloc_port b; BACKEND_PORTS+=("$b"); done
  BACKENDS=$(printf '127.0.0.1:%s,' "${BACKEND_PORTS[@]}") && BACKENDS=${BACKENDS%,}
  alloc_port "PORT[direct]"
  local listens="" h2direct=""
  for b in "${BACKEND_PORTS[@]}"; do listens+="listen 127.0.0.1:$b; "; done
  # The direct row of the h2 and tls scenarios: the backend itself over h2c / TLS 1.3 on its own port.
  case $SCHEME/$LOAD in
    https/*) h2direct="listen 127.0.0.1:${PORT[direct]} ssl; ssl_certificate $W/cert.pem; ssl_certificate_key $W/key.pem; ssl_protocols TLSv1.3;" ;;
    */h2load) h2direct="listen 127.0.0.1:${PORT[direct]} http2;" ;;
    *) h2direct="listen 127.0.0.1:${PORT[direct]};" ;;
  esac
  nginx_conf backend "${BACKEND_WORKERS:-1}" "  server {
    $listens
    $h2direct
    location = / { default_type text/plain; return 200 \"hello, world\n\"; }
    location = /16k { default_type text/plain; alias $W/www/16k; }
    location = /1m { default_type text/plain; alias $W/www/1m; }
  }" >"$W/backend.conf"
  start backend nginx -p "$W" -c "$W/backend.conf" -e "$W/backend-error.log"
  PGID[direct]=${PGID[backend]} TARGETS=(direct)

  local upstream_servers="" haproxy_servers="" lb_backends=""
  for b in "${BACKEND_PORTS[@]}"; do
    upstream_servers+="server 127.0.0.1:$b; "
    haproxy_servers+="  server b$b 127.0.0.1:$b check inter 1s"$'\n'
    lb_backends+="\"127.0.0.1:$b\", "
  done
  if has_peer nginx; then
    alloc_port "PORT[nginx]"
    local nlisten="listen 127.0.0.1:${PORT[nginx]};" nhash=""
    [[ $SCHEME == https ]] && nlisten="listen 127.0.0.1:${PORT[nginx]} ssl; ssl_certificate $W/cert.pem; ssl_certificate_key $W/key.pem; ssl_protocols TLSv1.3;"
    [[ $LOAD == h2load ]] && nlisten="listen 127.0.0.1:${PORT[nginx]} http2;"
    [[ $SELECT == consistent ]] && nhash="hash \$http_x_key consistent;"
    local nfwd=""
    ((FWD)) && nfwd="proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; proxy_set_header X-Forwarded-Proto \$scheme; proxy_set_header X-Real-IP \$remote_addr;"
    nginx_conf nginx "$S_WORKERS" "  upstream be {
    $nhash
    $upstream_servers
    keepalive $((CONNS > 64 ? CONNS : 64));
    keepalive_requests 1000000;
  }
  server {
    $nlisten
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection \"\"; $nfwd }
  }" >"$W/nginx.conf"
    start nginx nginx -p "$W" -c "$W/nginx.conf" -e "$W/nginx-error.log" && TARGETS+=(nginx)
  fi
  if has_peer haproxy; then
    alloc_port "PORT[haproxy]"
    local hbind="bind 127.0.0.1:${PORT[haproxy]}" hbalance="balance roundrobin"
    [[ $SCHEME == https ]] && hbind+=" ssl crt $W/combined.pem ssl-min-ver TLSv1.3 alpn http/1.1"
    [[ $LOAD == h2load ]] && hbind+=" proto h2"
    [[ $SELECT == consistent ]] && hbalance=$'balance hdr(x-key)\n  hash-type consistent'
    local hfwd=""
    ((FWD)) && hfwd=$'  option forwardfor\n  http-request set-header X-Forwarded-Proto http\n  http-request set-header X-Real-IP %[src]'
    cat >"$W/haproxy.cfg" <<EOF
global
  nbthread $S_WORKERS
  maxconn $((CONNS * 4 + IDLE_CONNS * 2 + 256))
  pidfile $W/haproxy.pid
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  http-reuse always
frontend fe
  $hbind
$hfwd
  default_backend be
backend be
  $hbalance
$haproxy_servers
EOF
    start haproxy haproxy -db -f "$W/haproxy.cfg" && TARGETS+=(haproxy)
  fi
  if has_peer pingora; then
    if [[ $SCHEME == https || $LOAD == h2load || $SELECT == consistent ]]; then
      NOTE+=" pingora skipped (the peer is a plain HTTP/1.1 round-robin balancer)."
    elif ((FWD)); then
      NOTE+=" pingora skipped (the peer adds no forwarding headers)."
    else
      alloc_port "PORT[pingora]"
      # shellcheck disable=SC2086
      start pingora "$PG_BIN" "127.0.0.1:${PORT[pingora]}" "$S_WORKERS" "$W" ${BACKENDS//,/ }
      TARGETS+=(pingora)
    fi
  fi
  if [[ -n ${LB_CMD:-} ]]; then
    alloc_port "PORT[$LB_NAME]"
    {
      echo "[server]"
      [[ $SCHEME == https ]] || echo "listen = [\"127.0.0.1:${PORT[$LB_NAME]}\"]"
      echo "threads = $S_WORKERS"
      if ((FWD == 0)); then
        echo "[server.forwarding]  # off, like the peers' configurations"
        echo "x_forwarded_for = false"
        echo "x_forwarded_proto = false"
        echo "x_real_ip = false"
      fi
      if [[ $SCHEME == https ]]; then
        echo "[[server.tls]]"
        echo "listen = [\"127.0.0.1:${PORT[$LB_NAME]}\"]"
        echo "certificates = [{ cert = \"$W/cert.pem\", key = \"$W/key.pem\" }]"
        echo "default_certificate = 0"
        echo "min_version = \"1.3\""
        echo "alpn = [\"http/1.1\"]"
      fi
      echo "[upstreams.be]"
      echo "backends = [${lb_backends%, }]"
      echo "selection = \"$SELECT\""
      [[ $SELECT == consistent ]] && echo "hash_key = \"header:x-key\""
      echo "pool_max_idle = $((CONNS > 64 ? CONNS : 64))"
      echo "health_check = { kind = \"tcp\", interval = \"1s\" }"
      echo "[[routes]]"
      echo "upstream = \"be\""
    } >"$W/lb.toml"
    start "$LB_NAME" env LB_PORT="${PORT[$LB_NAME]}" LB_BACKENDS="$BACKENDS" LB_WORKERS="$S_WORKERS" \
      LB_SCENARIO="$s" LB_CONFIG="$W/lb.toml" LB_TLS_CERT="$W/cert.pem" LB_TLS_KEY="$W/key.pem" bash -c "$LB_CMD"
    TARGETS+=("$LB_NAME")
  fi
  for t in "${TARGETS[@]}"; do wait_ready "$t" "$LB_START_TIMEOUT"; done
  sleep 1 # let the health checks settle
  declare -gA RSS0
  for t in "${TARGETS[@]}"; do RSS0[$t]=$(rss_kib "${PGID[$t]}"); done
}

# ------------------------------------------------------------------ load
UNITS='function us(v) { if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000; if (v ~ /s$/) return v * 1e6; return v + 0 }'
run_wrk() { # name round
  local c0 c1 out
  c0=$(cpu_ticks "${PGID[$1]}")
  out=$(timeout $((DURATION + 30)) wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "${WRK_ARGS[@]}" "$(url "$1" "$REQ_PATH")" 2>&1) ||
    log "wrk failed against $1"
  c1=$(cpu_ticks "${PGID[$1]}")
  printf '%s\n' "$out" >"$W/wrk-$SCN-$1-$2.txt"
  printf '%s\n' "$out" | awk -v n="$1" -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" "$UNITS"'
    /requests in/ { reqs = $1 }
    /^Requests\/sec/ { rps = $2 }
    $1 == "50%" { p50 = us($2) }
    $1 == "99%" { p99 = us($2) }
    /Socket errors/ { gsub(/[^0-9 ]/, " "); for (i = 1; i <= NF; i++) err += $i }
    /Non-2xx/ { err += $NF }
    END { printf "%s\t%.2f\t%.1f\t%.1f\t%.3f\t%d\n", n, rps, p50, p99, (reqs > 0 ? t * 1e6 / hz / reqs : 0), err }' >>"$W/results.tsv"
}
run_h2load() { # name round: h2c prior knowledge, 10 streams per connection, H2_N requests
  local c0 c1 out
  c0=$(cpu_ticks "${PGID[$1]}")
  out=$(timeout 300 h2load -n "$H2_N" -c "$CONNS" -t "$THREADS" -m 10 "$(url "$1" "$REQ_PATH")" 2>&1) ||
    log "h2load failed against $1"
  c1=$(cpu_ticks "${PGID[$1]}")
  printf '%s\n' "$out" >"$W/h2load-$SCN-$1-$2.txt"
  printf '%s\n' "$out" | awk -v n="$1" -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" "$UNITS"'
    /^finished in/ { rps = $4 }
    /^requests:/ { ok = $8; bad = $10 + $12 + $14 }
    /^status codes:/ { non2xx = $5 + $7 + $9 }
    /time for request:/ { mean = us($6); sd = us($8) }
    END { printf "%s\t%.2f\t%.1f\t%.1f\t%.3f\t%d\n", n, rps, mean, mean + 2 * sd, (ok > 0 ? t * 1e6 / hz / ok : 0), bad + non2xx }' >>"$W/results.tsv"
}
measure_idle() { # per target: RSS with IDLE_CONNS idle keep-alive connections (one request each)
  local t ready pid
  : >"$W/idle.tsv"
  for t in "${TARGETS[@]}"; do
    ready="$W/idle-$t.ready"
    log "idle: $IDLE_CONNS keep-alive connections to $t"
    start "idle-$t" timeout 120 python3 "$W/idle.py" "${PORT[$t]}" "$IDLE_CONNS" "$ready" 30 "$SCHEME"
    pid=${PGID[idle-$t]}
    for _ in $(seq 600); do [[ -e $ready ]] && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if [[ -e $ready ]]; then
      sleep 1
      printf '%s\t%s\t%s\n' "$t" "${RSS0[$t]}" "$(rss_kib "${PGID[$t]}")" >>"$W/idle.tsv"
    else
      log "idle: $t did not serve $IDLE_CONNS connections: $(tail -n 2 "$W/idle-$t.log")"
      printf '%s\t%s\t0\n' "$t" "${RSS0[$t]}" >>"$W/idle.tsv"
    fi
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
}

# ------------------------------------------------------------------ report
describe() {
  case $1 in
    keepalive) echo "HTTP/1.1 keep-alive both sides, 13-byte responses, round robin over 3 backends, $S_WORKERS worker(s)" ;;
    keepalive2) echo "HTTP/1.1 keep-alive both sides, 13-byte responses, round robin over 3 backends, $S_WORKERS workers" ;;
    close) echo "a new client connection per request (Connection: close), keep-alive upstream, 13-byte responses, $S_WORKERS worker(s)" ;;
    body16k) echo "16 KiB responses (GET /16k), keep-alive both sides, $S_WORKERS worker(s)" ;;
    body1m) echo "1 MiB responses (GET /1m), keep-alive both sides, $S_WORKERS worker(s)" ;;
    tls) echo "HTTPS termination, TLS 1.3 (P-256 certificate), HTTP/1.1 keep-alive, plain upstream, $S_WORKERS worker(s); direct = the backend over TLS" ;;
    h2) echo "HTTP/2 downstream (h2c, h2load -m 10, $H2_N requests per run), HTTP/1.1 upstream, $S_WORKERS worker(s); direct = the backend over h2c" ;;
    hash100) echo "consistent hashing on header x-key (1,000 keys) over 100 backends, keep-alive, $S_WORKERS worker(s)" ;;
    post) echo "POST / with a 1 KiB body, keep-alive both sides, 13-byte responses, $S_WORKERS worker(s)" ;;
    post64k) echo "POST / with a 64 KiB body (nginx: proxy_request_buffering on, its default), keep-alive, $S_WORKERS worker(s)" ;;
    fwd) echo "keep-alive with X-Forwarded-For, X-Forwarded-Proto and X-Real-IP added (lb-proxy's defaults), $S_WORKERS worker(s)" ;;
    idle) echo "memory: RSS idle and with $IDLE_CONNS idle keep-alive client connections, $S_WORKERS worker(s)" ;;
    idletls) echo "memory: RSS idle and with $IDLE_CONNS idle keep-alive client connections over TLS 1.3, $S_WORKERS worker(s)" ;;
  esac
}
report_load() {
  local load
  if [[ $LOAD == h2load ]]; then
    load="h2load -n $H2_N -c $CONNS -t $THREADS -m 10; latency columns: mean and mean + 2 sd"
  else
    load="wrk -t$THREADS -c$CONNS -d${DURATION}s --latency ${WRK_ARGS[*]}"
  fi
  echo "## $SCN: $(describe "$SCN")"
  echo "# load: $load; $ROUNDS interleaved rounds of (${TARGETS[*]}); warm-up ${WARMUP}s each.$NOTE"
  echo
  awk -F'\t' -v order="${TARGETS[*]}" -v rssf="$W/rss.tsv" '
    function sorted(s, a,   n, i, j, x) {
      n = split(s, a, " ")
      for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > x + 0; j--) a[j + 1] = a[j]; a[j + 1] = x }
      return n
    }
    function med(s,   a, n) { n = sorted(s, a); return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    function spread(s,   a, n, m) { n = sorted(s, a); m = med(s); return m > 0 ? 100 * (a[n] - a[1]) / m : 0 }
    function x(v, r) { return r > 0 ? sprintf("%.2f", v / r) : "-" }
    BEGIN { while ((getline l < rssf) > 0) { split(l, f, "\t"); r0[f[1]] = f[2] / 1024; r1[f[1]] = f[3] / 1024 } }
    { rps[$1] = rps[$1] " " $2; p50[$1] = p50[$1] " " $3; p99[$1] = p99[$1] " " $4; cpu[$1] = cpu[$1] " " $5; err[$1] += $6 }
    END {
      printf "%-9s %8s %5s %5s %6s %7s %7s %7s %5s %8s %8s %6s\n", "target", "req/s", "x", "xngx", "spread",
        "p50 ms", "p99 ms", "cpu us", "xngx", "rss idle", "rss load", "errors"
      n = split(order, t, " ")
      if ("nginx" in rps) { nR = med(rps["nginx"]); nC = med(cpu["nginx"]) }
      for (i = 1; i <= n; i++) {
        k = t[i]; R = med(rps[k]); P5 = med(p50[k]) / 1000; P9 = med(p99[k]) / 1000; C = med(cpu[k])
        if (i == 1) { rR = R }
        printf "%-9s %8.0f %5s %5s %5.0f%% %7.3f %7.3f %7.2f %5s %7.1fM %7.1fM %6d\n", k, R, x(R, rR),
          (i == 1 ? "-" : x(R, nR)), spread(rps[k]), P5, P9, C, (i == 1 ? "-" : x(C, nC)), r0[k], r1[k], err[k]
      }
    }' "$W/results.tsv"
  echo
}
report_idle() {
  echo "## $SCN: $(describe "$SCN")"
  echo "# one GET per connection, then idle; RSS of all the target's processes (nginx: master + workers).$NOTE"
  echo
  awk -F'\t' '
    BEGIN { printf "%-9s %9s %12s %15s\n", "target", "rss idle", "rss 1k conns", "KiB per conn" }
    { printf "%-9s %8.1fM %11.1fM %15.1f\n", $1, $2 / 1024, $3 / 1024, ($3 > 0 ? ($3 - $2) / '"$IDLE_CONNS"' : 0) }' "$W/idle.tsv"
  echo
}

PG_VER=$(awk '/^name = "pingora"$/ { getline; gsub(/"/, "", $3); print $3 }' "$PG_DIR/Cargo.lock" 2>/dev/null || true)
echo "# loopback reverse-proxy benchmark by scenario, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "# host: $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r)"
echo "# versions: nginx $(nginx -v 2>&1 | sed 's|.*/||'), haproxy $(haproxy -v | awk 'NR == 1 { print $3 }')," \
  "pingora crate ${PG_VER:-n/a}, wrk $(wrk -v 2>&1 | awk 'NR == 1 { print $2 }'), h2load $(h2load --version | awk '{ print $2 }')"
echo "# columns: medians over the rounds; x = req/s ratio to the direct row; xngx = ratio to nginx (req/s, then CPU per"
echo "# request: below 1 is cheaper); spread = (max - min) / median of req/s; cpu us = CPU time (user + sys, every"
echo "# process and thread) per request; rss = resident memory before any load and after the last round"
echo

# ------------------------------------------------------------------ scenarios
for SCN in $SCENARIOS; do
  log "scenario $SCN"
  setup_scenario "$SCN"
  : >"$W/results.tsv"
  if [[ $LOAD == none ]]; then
    measure_idle
    report_idle
    stop_scenario
    continue
  fi
  for t in "${TARGETS[@]}"; do
    ((WARMUP > 0)) || break
    log "warm-up ${WARMUP}s: $t"
    if [[ $LOAD == h2load ]]; then
      timeout 120 h2load -n $((H2_N / 5)) -c "$CONNS" -t "$THREADS" -m 10 "$(url "$t" "$REQ_PATH")" >/dev/null 2>&1 || true
    else
      timeout $((WARMUP + 30)) wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" "${WRK_ARGS[@]}" "$(url "$t" "$REQ_PATH")" >/dev/null 2>&1 || true
    fi
  done
  for r in $(seq "$ROUNDS"); do
    for t in "${TARGETS[@]}"; do
      log "$SCN round $r/$ROUNDS: $t"
      if [[ $LOAD == h2load ]]; then run_h2load "$t" "$r"; else run_wrk "$t" "$r"; fi
    done
  done
  : >"$W/rss.tsv"
  for t in "${TARGETS[@]}"; do printf '%s\t%s\t%s\n' "$t" "${RSS0[$t]}" "$(rss_kib "${PGID[$t]}")" >>"$W/rss.tsv"; done
  report_load
  stop_scenario
done
