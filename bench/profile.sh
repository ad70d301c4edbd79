#!/usr/bin/env bash
# profile.sh - user-space instructions per proxied request of lb-proxy, under callgrind.
#
# Instruction counts are repeatable on a shared machine where wall-clock time is not. The proxy
# (release build, 1 worker) runs under `valgrind --tool=callgrind` with instrumentation off; after
# a warm-up of WARM requests, counting is switched on, N keep-alive GETs go through it (h2load --h1,
# CONNS connections, bounded by -n), the counters are dumped and the proxy stopped.
#
# Usage: bash bench/profile.sh [LB_BIN]   (default ./target/release/lb-proxy)
#   env: N=5000 WARM=500 CONNS=8 TOOL=callgrind|dhat OUT=target/profile CONFIG=<toml, optional>
#   LOAD="--h1" (h2load's protocol options: LOAD="-m 10" profiles HTTP/2 with prior knowledge,
#   10 streams per connection; HEADERS="-H x-key:k1" adds request headers)
#   CONFIG may use @B1@ @B2@ @B3@ @PORT@ placeholders; without it the proxy runs
#   `--listen --backends --workers 1` (round robin, default settings).
# Prints: instructions per request (callgrind) or heap blocks per request (dhat), and the
# top functions (inclusive/self) into $OUT. Every process it starts is stopped on exit.
set -euo pipefail
LB_BIN=${1:-./target/release/lb-proxy}
N=${N:-5000} WARM=${WARM:-500} CONNS=${CONNS:-8} TOOL=${TOOL:-callgrind} OUT=${OUT:-target/profile}
read -r -a LOAD_ARGS <<<"${LOAD:---h1} ${HEADERS:-}"
mkdir -p "$OUT"
W=$(mktemp -d "${TMPDIR:-/tmp}/lbprof.XXXXXX")
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
B1=$(port) B2=$(port) B3=$(port) P=$(port)
backend "$B1" "$B2" "$B3"
if [[ -n ${CONFIG:-} ]]; then
  sed -e "s/@B1@/$B1/g; s/@B2@/$B2/g; s/@B3@/$B3/g; s/@PORT@/$P/g" "$CONFIG" >"$W/lb.toml"
  ARGS=(-c "$W/lb.toml" --workers 1)
else
  ARGS=(--listen "127.0.0.1:$P" --backends "127.0.0.1:$B1,127.0.0.1:$B2,127.0.0.1:$B3" --workers 1)
fi
case $TOOL in
  callgrind) VG=(valgrind --tool=callgrind --instr-atstart=no "--callgrind-out-file=$OUT/callgrind.out") ;;
  dhat) VG=(valgrind --tool=dhat "--dhat-out-file=$OUT/dhat.out") ;;
  *) echo "TOOL must be callgrind or dhat" >&2; exit 2 ;;
esac
RUST_LOG=warn setsid "${VG[@]}" "$LB_BIN" "${ARGS[@]}" >"$W/lb.log" 2>&1 &
PIDS+=($!)
LB_PID=$!
ready "$P" 120
timeout 300 h2load "${LOAD_ARGS[@]}" -n "$WARM" -c "$CONNS" "http://127.0.0.1:$P/" >/dev/null
if [[ $TOOL == callgrind ]]; then
  callgrind_control -i on "$LB_PID" >/dev/null 2>&1 || true
  timeout 600 h2load "${LOAD_ARGS[@]}" -n "$N" -c "$CONNS" "http://127.0.0.1:$P/" | grep -E '^requests:' >&2
  callgrind_control -d "$LB_PID" >/dev/null 2>&1 || true
  sleep 1
  f=$(ls "$OUT"/callgrind.out.* | sort -t. -k3 -n | tail -1)
  total=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ && !done { gsub(/,/, "", $1); print $1; done = 1 }')
  echo "instructions/request: $((total / N))  (total $total over $N requests, $f)"
  callgrind_annotate --inclusive=yes "$f" >"$OUT/inclusive.txt" 2>/dev/null || true
  callgrind_annotate "$f" >"$OUT/self.txt" 2>/dev/null || true
else
  # dhat counts from start to exit: run the warm-up twice as a baseline is not possible here,
  # so subtract a run of WARM requests measured the same way (two runs, see docs/benchmarks.md).
  timeout 600 h2load "${LOAD_ARGS[@]}" -n "$N" -c "$CONNS" "http://127.0.0.1:$P/" | grep -E '^requests:' >&2
  kill -INT "$LB_PID"
  for _ in $(seq 100); do kill -0 "$LB_PID" 2>/dev/null || break; sleep 0.1; done
  grep -E 'Total:|At t-gmax' "$W/lb.log" || tail -20 "$W/lb.log"
fi
