#!/usr/bin/env bash
# workers.sh - how lb-proxy's workers share a keep-alive load: each thread's CPU time and each
# worker's connections (lb_worker_connections_total), under wrk on loopback.
#
# Usage: bash bench/workers.sh [LB_BIN]   (default ./target/release/lb-proxy)
#   env: THREADS=2 CONNS=64 DURATION=6
# Starts one nginx backend on 3 loopback ports and the proxy (round robin, forwarding headers
# off, [admin] on), runs `wrk -t1 -cCONNS -dDURATIONs`, then prints requests/s, the clock ticks
# each thread of the proxy used during the load, and the per-worker metrics. Every process it
# starts is stopped on exit.
set -euo pipefail
LB_BIN=${1:-./target/release/lb-proxy}
THREADS=${THREADS:-2} CONNS=${CONNS:-64} DURATION=${DURATION:-6}
W=$(mktemp -d "${TMPDIR:-/tmp}/lbworkers.XXXXXX")
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
B1=$(port) B2=$(port) B3=$(port) P=$(port) A=$(port)
cat >"$W/lb.toml" <<CONF
[server]
listen = ["127.0.0.1:$P"]
threads = $THREADS
[server.forwarding]
x_forwarded_for = false
x_forwarded_proto = false
x_real_ip = false
[admin]
listen = "127.0.0.1:$A"
[upstreams.web]
backends = ["127.0.0.1:$B1", "127.0.0.1:$B2", "127.0.0.1:$B3"]
health_check = { kind = "tcp", interval = "1s" }
[[routes]]
upstream = "web"
CONF
backend "$B1" "$B2" "$B3"
setsid "$LB_BIN" -c "$W/lb.toml" >"$W/lb.log" 2>&1 &
LB=$!
PIDS+=($LB)
ready "$P"
ticks() { for t in /proc/"$LB"/task/*; do echo "$(cat "$t/comm") $(awk '{print $14 + $15}' "$t/stat")"; done | sort; }
ticks >"$W/before"
timeout $((DURATION + 10)) wrk -t1 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$P/" | grep 'Requests/sec'
ticks >"$W/after"
echo "clock ticks per thread during the load:"
join "$W/before" "$W/after" | awk '{ printf "  %-16s %d\n", $1, $3 - $2 }'
curl -fsS --max-time 2 "http://127.0.0.1:$A/metrics" | grep '^lb_worker'
