#!/usr/bin/env bash
# idle-dhat.sh - what lb-proxy's heap holds per idle keep-alive client connection (dhat).
#
# Usage: bash bench/idle-dhat.sh [LB_BIN]   (default ./target/release/lb-proxy)
#   env: N=1000 OUT=target/profile
# Runs the proxy (1 worker, round robin to one loopback nginx) under `valgrind --tool=dhat`,
# opens N client connections one after the other, each sending one GET and staying open,
# stops the proxy with SIGINT while they are open, and prints the allocation sites of the
# heap's peak (t-gmax) with bytes per connection. Every process it starts is stopped on exit.
set -euo pipefail
LB_BIN=${1:-./target/release/lb-proxy}
N=${N:-1000} OUT=${OUT:-target/profile}
mkdir -p "$OUT"
W=$(mktemp -d "${TMPDIR:-/tmp}/lbidle.XXXXXX")
# shellcheck source=bench/lib.sh
GRACE=100  # valgrind needs longer to stop
source "$(dirname "$0")/lib.sh"
ulimit -n $((N * 2 + 1024)) 2>/dev/null || true
B=$(port) P=$(port)
backend "$B"
setsid valgrind --tool=dhat --dhat-out-file="$OUT/dhat-idle.out" "$LB_BIN" --listen "127.0.0.1:$P" \
  --backends "127.0.0.1:$B" --workers 1 >"$W/lb.log" 2>&1 &
LB=$!
PIDS+=($LB)
ready "$P" 60
# The clients: N connections, one GET each (bounded reads), held open until the proxy, stopped
# with SIGINT, closes them.
python3 - "$P" "$N" "$LB" <<'PY'
import os, signal, socket, sys, time
port, n, lb = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
held = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET / HTTP/1.1\r\nHost: idle\r\n\r\n")
    data = b""
    for _ in range(100):
        data += s.recv(4096)
        if b"hello" in data:
            break
    held.append(s)
os.kill(lb, signal.SIGINT)
for s in held:  # the proxy closes idle connections as it shuts down
    s.settimeout(10)
    try:
        while s.recv(4096):
            pass
    except OSError:
        pass
PY
wait "$LB" || true  # dhat writes its output as the proxy exits
python3 - "$OUT/dhat-idle.out" "$N" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); n = int(sys.argv[2]); ftbl = d["ftbl"]
pps = sorted(d["pps"], key=lambda p: -p.get("gb", 0))
print(f"heap at its peak: {sum(p.get('gb', 0) for p in pps)} bytes; by site, bytes per connection:")
for p in pps[:12]:
    frames = [ftbl[i] for i in p["fs"]]
    site = next((f for f in frames if "lb_proxy" in f or "hyper" in f or "tokio" in f), frames[-1])
    print(f"  {p.get('gb', 0) / n:>9.0f}  {p.get('gbk', 0):>6} blocks  {site[:150]}")
PY
